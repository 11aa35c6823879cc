"""Helpers shared by the apply tests: the CLI runner, a one-plugin desired state, and
reading back what the platform holds."""

from __future__ import annotations

import json
import re
import textwrap
import threading
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import docker
import psycopg
from typer.testing import CliRunner

from plexica_gitops.cli import app
from plexica_gitops.store import catalog

SCOPE_LABEL = "io.plexica.scope"
# The example's plugins, six at once, may take more than 6 s to answer on a busy machine
# (seen: inventory "not ready within 6 s" beside a parallel suite); no test waits it out.
FAST_ROLLOUT = """\
  rollout:
    strategy: rolling
    readyProbes: 2
    probeIntervalSeconds: 0.2
    timeoutSeconds: 15
    gracePeriodSeconds: 1
"""
ECHO_IMAGE = "localhost/plexica-test/echo"


def run_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def scoped_platform(text: str, scope: str) -> str:
    """platform.yaml with this test's container scope and a fast rollout."""
    text = text.replace(
        "    endpointMode: loopback\n", f"    endpointMode: loopback\n    scope: {scope}\n"
    )
    return re.sub(r"  rollout:\n(    .*\n)+", FAST_ROLLOUT, text)


def install_example(root: Path, scope: str, environment: dict[str, str]) -> tuple[str, str]:
    """Init the store and apply a copy of the example desired state in this test's scope;
    (its root, the apply's output)."""
    platform = root / "platform.yaml"
    platform.write_text(scoped_platform(platform.read_text(encoding="utf-8"), scope))
    assert run_cli(environment, "init")[0] == 0
    code, output = run_cli(
        environment,
        "apply",
        str(root),
        "--auto-approve",
        "--parallelism",
        "6",
        *no_broker(environment),
    )
    assert code == 0, output
    assert "Apply complete!" in output
    return str(root), output


def no_broker(environment: dict[str, str]) -> tuple[str, ...]:
    """The flag a plan or apply of the example needs when the test runs no broker: the
    example's plugins publish events, and a plan never claims what it did not see."""
    return () if "KAFKA_BOOTSTRAP_SERVERS" in environment else ("--unobserved", "broker")


def write_files(root: Path, files: dict[str, str]) -> None:
    """Each file under `root` (relative path -> text, dedented), directories made."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


def containers_of(client: docker.DockerClient, scope: str, plugin: str) -> list[Any]:
    return client.containers.list(
        all=True,
        filters={"label": [f"{SCOPE_LABEL}={scope}", f"io.plexica.plugin={plugin}"]},
        ignore_removed=True,  # removed between the listing and its inspection: gone
    )


def plugin_statuses(dsn: str) -> dict[str, tuple[str, str | None]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT id, status, last_error FROM plexica.plugins").fetchall()
    return {pid: (status, error) for pid, status, error in rows}


class EchoPlatform:
    """A one-plugin desired state written from scratch, so a test can move its version."""

    def __init__(self, root: Path, scope: str) -> None:
        self.root = root
        self.scope = scope

    def write(
        self,
        version: str,
        *,
        image: str | None = None,
        replicas: int = 2,
        state: str = "active",
        publishes: Sequence[str] = (),
        topics: dict[str, Any] | None = None,
        purge: bool = False,
        tenants: Sequence[str] = ("acme",),
        timeout_seconds: float = 15,
        env: dict[str, Any] | None = None,
    ) -> str:
        """Write the desired state; `publishes`/`topics` give echo events and per-event
        topic settings (the platform default is 1 partition, retention 1 day);
        `timeout_seconds` is the rollout's readiness timeout (roomy: a replica on a slow
        engine must not fail a test that expects it ready); `env` echo's env (references like
        `{"fromEnv": "NAME"}`)."""
        image = image or f"{ECHO_IMAGE}:{version}"
        bindings = "{echo: {enabled: true}}" if state == "active" else "{}"
        files = {
            "platform.yaml": f"""
                apiVersion: plexica.io/v1alpha1
                kind: Platform
                metadata: {{name: test}}
                spec:
                  version: 2.4.0
                  runtime: {{provider: docker, endpointMode: loopback, scope: {self.scope}}}
                  rollout:
                    strategy: rolling
                    readyProbes: 2
                    probeIntervalSeconds: 0.2
                    timeoutSeconds: {timeout_seconds:g}
                    gracePeriodSeconds: 1
                  events:
                    defaults: {{partitions: 1, config: {{retention.ms: "86400000"}}}}
            """,
            "plugins/echo/plugin.yaml": f"""
                apiVersion: plexica.io/v1alpha1
                kind: Plugin
                metadata: {{name: echo}}
                spec:
                  state: {state}
                  replicas: {replicas}
                  purgeDataOnUninstall: {json.dumps(purge)}
                  topics: {json.dumps(topics or {})}
                  env: {json.dumps(env or {})}
                  manifest:
                    id: echo
                    name: Echo
                    version: {version}
                    runtime:
                      type: typescript
                      image: {image}
                      resources: {{cpu: 250m, memory: 64Mi}}
                    compat: {{core: ^2.0.0}}
                    api: {{basePath: /api/plugins/echo, port: 8080}}
                    permissions:
                      - {{key: "echo:messages:read", name: Read messages}}
                    events: {{publishes: {json.dumps(list(publishes))}}}
                    migrations: {{path: migrations}}
            """,
            "plugins/echo/migrations/0001_create_echo_messages.sql": """
                CREATE TABLE echo_messages (id serial PRIMARY KEY, body text NOT NULL);
            """,
        }
        for slug in tenants:
            files[f"tenants/{slug}.yaml"] = f"""
                apiVersion: plexica.io/v1alpha1
                kind: Tenant
                metadata: {{name: {slug}}}
                spec:
                  id: {uuid.uuid5(uuid.NAMESPACE_DNS, slug)}
                  schema: tenant_{slug}
                  plugins: {bindings}
            """
        write_files(self.root, files)
        return str(self.root)

    def install(self, environment: dict[str, str], version: str, **options: Any) -> str:
        """Init the store and apply `write(version, **options)`; returns the root."""
        assert run_cli(environment, "init")[0] == 0
        root = self.write(version, **options)
        code, output = run_cli(environment, "apply", root, "--auto-approve")
        assert code == 0, output
        return root


class TrafficLoop(threading.Thread):
    """A client that keeps requesting the plugin the way the gateway does: it reads the
    registered endpoints from the service registry and sends each request to one of them."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.stop = threading.Event()
        self.requests = 0
        self.failures: list[str] = []
        self.versions: set[str] = set()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                registered = catalog.endpoints(conn, "echo")
                if not registered:
                    self.failures.append("no endpoint registered")
                    continue
                endpoint = registered[self.requests % len(registered)].endpoint
                self.requests += 1
                try:
                    with urllib.request.urlopen(endpoint + "/index.html", timeout=5) as answer:
                        self.versions.add(json.loads(answer.read())["version"])
                except Exception as error:
                    self.failures.append(f"{endpoint}: {error}")
