"""`kill -9` of a real `plexica-gitops apply` mid-install, then a re-run: the journal shows
what was in flight, and the next apply converges from the real state with nothing lost
or duplicated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import psycopg
import pytest
from apply_support import EchoPlatform, containers_of, plugin_statuses, run_cli

from devenv.images import build_plugin_image
from plexica_gitops.store import journal
from plexica_gitops.store.lock import LEASE_ENV

SLOW_IMAGE = "localhost/plexica-test/echo-slow:1.0.0"


@pytest.fixture(scope="session")
def slow_image(docker_client: docker.DockerClient) -> str:
    """Echo that takes 3 s to start serving: an apply is surely mid-rollout when killed."""
    return build_plugin_image(docker_client, SLOW_IMAGE, "echo", "1.0.0", startup_delay=3)


def _wait_for_step(dsn: str, step_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT status FROM plexica_gitops.journal WHERE step_id = %s", (step_id,)
            ).fetchone()
            if row and row[0] == "started":
                return
            time.sleep(0.05)
    raise AssertionError(f"{step_id} never started")


def _apply_in_background(
    tmp_path: Path, scope: str, image: str, environment: dict[str, str]
) -> tuple[str, subprocess.Popen[str]]:
    """A real `plexica-gitops apply` process of a slow-starting echo, as a pipeline runs it;
    returns the desired-state root and the process (its output on stdout)."""
    root = EchoPlatform(tmp_path / "state", scope).write("1.0.0", image=image)
    assert run_cli(environment, "init")[0] == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "plexica_gitops.cli", "apply", root, "--auto-approve"],
        env={**os.environ, **environment},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return root, process


def test_kill_9_mid_apply_then_rerun_converges(
    tmp_path: Path,
    docker_scope: str,
    slow_image: str,
    environment: dict[str, str],
    docker_client: docker.DockerClient,
) -> None:
    environment = {**environment, LEASE_ENV: "2"}  # the rerun waits out the killed one's lease
    dsn = environment["PLEXICA_DATABASE_URL"]
    root, process = _apply_in_background(tmp_path, docker_scope, slow_image, environment)
    try:
        _wait_for_step(dsn, "plugin.echo.workload:create")
        time.sleep(1.0)  # containers created, not ready yet
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()

    with psycopg.connect(dsn, autocommit=True) as conn:
        (killed,) = journal.history(conn, 1)
        assert killed.result == "running"  # nobody could record its end
        assert "plugin.echo.workload:create" in journal.in_flight(conn, killed.id)
    assert plugin_statuses(dsn)["echo"][0] == "INSTALLING"

    code, output = run_cli(environment, "apply", root, "--auto-approve")
    assert code == 0, output
    assert plugin_statuses(dsn)["echo"] == ("ACTIVE", None)
    containers = containers_of(docker_client, docker_scope, "echo")
    assert len(containers) == 2 and all(c.status == "running" for c in containers)
    assert {c.labels["io.plexica.version"] for c in containers} == {"1.0.0"}
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrations = conn.execute(
            "SELECT plugin_id, version, count(*) FROM plexica.tenant_migrations"
            " GROUP BY plugin_id, version"
        ).fetchall()
        permissions = conn.execute("SELECT key FROM plexica.permissions").fetchall()
        records = journal.history(conn, 2)
    assert migrations == [("echo", 1, 1)]  # applied exactly once
    assert permissions == [("echo:messages:read",)]
    assert [r.result for r in records] == ["succeeded", "interrupted"]
    assert run_cli(environment, "plan", root, "--detailed-exitcode")[0] == 0


def test_ctrl_c_lets_steps_in_flight_finish_and_records_the_apply_interrupted(
    tmp_path: Path,
    docker_scope: str,
    slow_image: str,
    environment: dict[str, str],
    docker_client: docker.DockerClient,
) -> None:
    dsn = environment["PLEXICA_DATABASE_URL"]
    root, process = _apply_in_background(tmp_path, docker_scope, slow_image, environment)
    _wait_for_step(dsn, "plugin.echo.workload:create")
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert "interrupted" in output and "Apply interrupted." in output

    with psycopg.connect(dsn, autocommit=True) as conn:
        (record,) = journal.history(conn, 1)
        statuses = dict(
            conn.execute(
                "SELECT step_id, status FROM plexica_gitops.journal WHERE apply_id = %s",
                (record.id,),
            ).fetchall()
        )
    assert record.result == "interrupted"
    # the step in flight was finished, not abandoned; what came after never started
    assert statuses["plugin.echo.workload:create"] == "succeeded"
    assert statuses["plugin.echo:activate"] == "skipped"
    assert "started" not in statuses.values()
    assert len(containers_of(docker_client, docker_scope, "echo")) == 2
    # and the next apply finishes the job
    code, output = run_cli(environment, "apply", root, "--auto-approve")
    assert code == 0, output
    assert plugin_statuses(dsn)["echo"] == ("ACTIVE", None)
