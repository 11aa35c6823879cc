"""A real PostgreSQL server for the tests, the benchmarks and the demo: throwaway (one per
test session) or persistent (the demo's, reused between runs).

initdb and pg_ctl run as the `postgres` user when the tests run as root (PostgreSQL refuses
root), in a temporary directory, on a free loopback port with its own socket directory, so
nothing else on the machine is touched (ENVIRONMENT.md)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from devenv.servers import (
    LOOPBACK,
    ServerRecord,
    ServerStartError,
    cause_from_log,
    free_port,
    new_token,
    pick_port,
    process_runs,
)


def _bin_dir() -> Path:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found: apt-get install -y postgresql")


class PostgresServer:
    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.base = Path(tempfile.mkdtemp(prefix="plexica-pg-"))
        self.data = self.base / "data"
        self.sockets = self.base / "sockets"
        self.log = self.base / "log"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        """A throwaway cluster, tuned for tests (no fsync)."""
        self._initdb()
        self._start_cluster(
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )

    def _initdb(self) -> None:
        self.sockets.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)
        if self.as_postgres:
            shutil.chown(self.base, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        try:
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        except subprocess.CalledProcessError as error:
            lines = (error.stderr or "").strip().splitlines() or [f"exit status {error.returncode}"]
            raise ServerStartError("PostgreSQL (initdb)", lines[-1]) from None

    def _start_cluster(self, settings: str = "") -> None:
        """pg_ctl start on `self.port`; a ServerStartError with the log's reason if it fails."""
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses={LOOPBACK} {settings}"
        try:
            self._run(
                "pg_ctl", "-D", str(self.data), "-o", options.strip(), "-l", str(self.log),
                "-w", "start",
            )  # fmt: skip
        except subprocess.CalledProcessError:
            cause = cause_from_log(self.log, f"pg_ctl start failed on port {self.port}")
            raise ServerStartError("PostgreSQL", cause, self.log) from None

    def restart(self) -> None:
        """Restart the server (a fast shutdown: every session is terminated), as an
        operator's `pg_ctl restart` or a failover does; same port and options."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.base / "log"), "-m", "fast", "-w",
            "restart",
        )  # fmt: skip

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def install_server() -> None:
    """Install PostgreSQL's server binaries from Debian when they are missing (root)."""
    try:
        _bin_dir()
        return
    except RuntimeError:
        pass
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True, env=env)


class PersistentPostgres(PostgresServer):
    """A server that outlives the process (the demo's): its cluster lives in `state_dir`.
    `ensure()` reuses it while it runs, recognised by `server.json` (devenv/servers.py);
    otherwise it starts it on `port`, or on a free port when something else answers there
    (unless `port_required`: then that is an error)."""

    def __init__(self, state_dir: Path, port: int, *, port_required: bool = False) -> None:
        super().__init__()
        shutil.rmtree(self.base, ignore_errors=True)  # the base class made a temporary one
        self.base = state_dir
        self.data = state_dir / "data"
        self.sockets = state_dir / "sockets"
        self.log = state_dir / "log"
        self.record_path = state_dir / "server.json"
        self.port = port
        self.port_required = port_required

    def running(self) -> bool:
        try:
            self._run("pg_ctl", "-D", str(self.data), "status")
        except subprocess.CalledProcessError:
            return False
        return True

    def ensure(self) -> str:
        record = ServerRecord.load(self.record_path)
        if record is not None and self._answers_as(record):
            self.port = record.port
            return self.dsn
        if self.data.exists() and self.running():
            # our cluster (its data directory), but not recognisable: restart it with a token
            self.stop_keeping_data()
        self.port = pick_port("PostgreSQL", self.port, required=self.port_required)
        if not self.data.exists():
            self.base.mkdir(parents=True, exist_ok=True)
            self._initdb()
        token = new_token()
        self._start_cluster(f"-c cluster_name={token}")
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        ServerRecord(pid, self.port, token).save(self.record_path)
        return self.dsn

    def _answers_as(self, record: ServerRecord) -> bool:
        """The recorded postmaster still runs on our data directory, and the server on the
        recorded port is that one (it answers with the recorded token)."""
        if not process_runs(record.pid, str(self.data)):
            return False
        dsn = f"postgresql://postgres@{LOOPBACK}:{record.port}/postgres"
        try:
            with psycopg.connect(dsn, connect_timeout=3) as conn:
                row = conn.execute("SHOW cluster_name").fetchone()
        except psycopg.Error:
            return False
        return row is not None and row[0] == record.token

    def stop_keeping_data(self) -> None:
        if self.data.exists() and self.running():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.record_path.unlink(missing_ok=True)
