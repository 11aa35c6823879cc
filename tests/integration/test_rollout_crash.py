"""`kill -9` of a real `plexica-gitops apply` at EVERY step boundary of an update, rolling
and blue-green (2 replicas, 1.0.0 <-> 1.1.0): the next apply converges, the plan after it is
empty (`plan --detailed-exitcode` exits 0), and exactly the desired replicas run, each
registered once in the service registry.

The docker provider SIGKILLs its own process at a named boundary when the test-only
PLEXICA_TEST_CRASH_AT is set (plexica_gitops_docker.provider.crash_point), so the kills land
on each boundary in turn rather than wherever a timer happens to fall. The applies take a
2 s lease (PLEXICA_APPLY_LEASE_SECONDS) so that each recovery waits out a short one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import docker
import psycopg
import pytest
from apply_support import EchoPlatform, containers_of, run_cli

from plexica_gitops.store.lock import LEASE_ENV
from plexica_gitops_docker.provider import CRASH_AT_ENV, CRASH_POINTS

REPLICAS = 2


def _write(platform: EchoPlatform, version: str, strategy: str) -> str:
    """The echo desired state at `version`, with a rollout as fast as the engine allows."""
    root = platform.write(version, replicas=REPLICAS)
    path = Path(root) / "platform.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("    strategy: rolling\n", f"    strategy: {strategy}\n")
    text = text.replace("readyProbes: 2", "readyProbes: 1").replace(
        "probeIntervalSeconds: 0.2", "probeIntervalSeconds: 0.1"
    )
    text = text.replace(
        f"scope: {platform.scope}}}",
        f"scope: {platform.scope}, drainSeconds: 0.1, stopTimeoutSeconds: 1}}",
    )
    path.write_text(text, encoding="utf-8")
    return root


def _killed_apply(root: str, environment: dict[str, str], boundary: str) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "plexica_gitops.cli", "apply", root, "--auto-approve"],
        env={**os.environ, **environment, CRASH_AT_ENV: boundary},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )
    assert process.returncode == -signal.SIGKILL, (
        f"apply was never at {boundary!r} (exit {process.returncode}):\n{process.stdout}"
    )


def _url(container: docker.models.containers.Container) -> str:
    bindings = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"]
    return f"http://127.0.0.1:{bindings[0]['HostPort']}"


@pytest.mark.parametrize("strategy", ["rolling", "blue-green"])
def test_kill_9_at_every_boundary_of_an_update_then_the_next_apply_converges(
    strategy: str,
    tmp_path: Path,
    docker_scope: str,
    echo_images: dict[str, str],
    environment: dict[str, str],
    docker_client: docker.DockerClient,
) -> None:
    environment = {**environment, LEASE_ENV: "2"}
    platform = EchoPlatform(tmp_path / "state", docker_scope)
    root = _write(platform, "1.0.0", strategy)
    assert run_cli(environment, "init")[0] == 0
    code, output = run_cli(environment, "apply", root, "--auto-approve")
    assert code == 0, output
    dsn = environment["PLEXICA_DATABASE_URL"]
    version = "1.0.0"
    for boundary in CRASH_POINTS:
        version = "1.1.0" if version == "1.0.0" else "1.0.0"
        root = _write(platform, version, strategy)
        _killed_apply(root, environment, boundary)

        code, output = run_cli(environment, "apply", root, "--auto-approve", "--lock-timeout", "10")
        assert code == 0, f"after a kill at {boundary!r}, apply failed:\n{output}"
        code, output = run_cli(environment, "plan", root, "--detailed-exitcode")
        assert code == 0, f"after a kill at {boundary!r} and an apply, plan is not empty:\n{output}"

        containers = containers_of(docker_client, docker_scope, "echo")
        running = [(c.labels["io.plexica.version"], c.status) for c in containers]
        assert running == [(version, "running")] * REPLICAS, (boundary, running)
        with psycopg.connect(dsn, autocommit=True) as conn:
            registered = set(
                conn.execute(
                    "SELECT endpoint, version FROM plexica.route_endpoints WHERE plugin_id = 'echo'"
                ).fetchall()
            )
            catalog = conn.execute(
                "SELECT version FROM plexica.plugins WHERE id = 'echo'"
            ).fetchone()
        assert registered == {(_url(c), version) for c in containers}, boundary
        assert catalog == (version,), boundary
