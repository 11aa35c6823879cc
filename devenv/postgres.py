"""A real PostgreSQL server for the tests, the benchmarks and the demo: throwaway (one per
test session) or persistent (the demo's, reused between runs).

initdb and pg_ctl run as the `postgres` user when the tests run as root (PostgreSQL refuses
root), in a temporary directory, on a free loopback port with its own socket directory, so
nothing else on the machine is touched (ENVIRONMENT.md)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _bin_dir() -> Path:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found: apt-get install -y postgresql")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.base = Path(tempfile.mkdtemp(prefix="plexica-pg-"))
        self.data = self.base / "data"
        self.sockets = self.base / "sockets"
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        self.sockets.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)
        if self.as_postgres:
            shutil.chown(self.base, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=100"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.base / "log"),
            "-w", "start",
        )  # fmt: skip

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
    """A server that outlives the process (the demo's): its cluster lives in `state_dir`
    and a second `ensure()` finds it running and reuses it."""

    def __init__(self, state_dir: Path, port: int) -> None:
        super().__init__()
        shutil.rmtree(self.base, ignore_errors=True)  # the base class made a temporary one
        self.base = state_dir
        self.data = state_dir / "data"
        self.sockets = state_dir / "sockets"
        self.port = port

    def running(self) -> bool:
        try:
            self._run("pg_ctl", "-D", str(self.data), "status")
        except subprocess.CalledProcessError:
            return False
        return True

    def ensure(self) -> str:
        if self.data.exists() and self.running():
            return self.dsn
        if not self.data.exists():
            self.base.mkdir(parents=True, exist_ok=True)
            self.start()
            return self.dsn
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.base / "log"),
            "-w", "start",
        )  # fmt: skip
        return self.dsn

    def stop_keeping_data(self) -> None:
        if self.data.exists() and self.running():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
