"""Issue 11, found 2: a PostgreSQL restart drops the apply lock while a rolling update runs.
Against a real PostgreSQL (its own, so that it can be restarted) and real Podman: the first
apply must stop at once and cancel its rollout, the second must wait until the first's
lease is over, and the two must never drive the workload at the same time. A second test
freezes the first apply (SIGSTOP) across the restart, so that only its lease can hold the
second back, and wakes it mid-way through the second's rollout.

The invariant, checked on the journals and on the containers sampled every 0.1 s:
- the first apply creates no container after the second created its first one: every
  replica of the first apply's rollout is gone before any of the second's exists;
- the second apply's rollout starts (journal) after the first apply ended (journal);
- never more than `replicas + 2` containers run: what ONE rolling update needs (a new
  replica starting while the previous old one drains); two rollouts at once ran 6;
- the end state is exactly the desired replicas, running, registered and ready, and the
  next plan is empty."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import psycopg
import pytest
from apply_support import EchoPlatform, containers_of, run_cli

from devenv.images import build_plugin_image
from devenv.postgres import PostgresServer

SLOW_IMAGE = "localhost/plexica-test/echo-slow:1.1.0"
REPLICAS = 2
GENERATION = "io.plexica.generation"


@pytest.fixture
def restartable_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def slow_update_image(docker_client: docker.DockerClient) -> str:
    """Echo 1.1.0 that needs ~6 s before it answers: the restart lands mid-rollout."""
    return build_plugin_image(docker_client, SLOW_IMAGE, "echo", "1.1.0", startup_delay=6)


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic
    containers: tuple[tuple[str, str, bool], ...]  # (name, generation, running)

    def generations(self) -> set[str]:
        return {generation for _, generation, _ in self.containers}

    @property
    def running(self) -> int:
        return sum(1 for _, _, running in self.containers if running)


class Sampler(threading.Thread):
    def __init__(self, client: docker.DockerClient, scope: str) -> None:
        super().__init__(daemon=True)
        self.client, self.scope = client, scope
        self.samples: list[Sample] = []
        self.done = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self._sample()
        except BaseException as error:  # checked by the test: a gap must not go unnoticed
            self.failure = error

    def _sample(self) -> None:
        labels = [f"io.plexica.scope={self.scope}", "io.plexica.plugin=echo"]
        while not self.done.is_set():
            # The listing alone (no inspect per container, which races with removals).
            found = self.client.api.containers(all=True, filters={"label": labels})
            self.samples.append(
                Sample(
                    time.monotonic(),
                    tuple(
                        (c["Names"][0], c["Labels"][GENERATION], c["State"] == "running")
                        for c in found
                    ),
                )
            )
            self.done.wait(0.1)


def _apply(env: dict[str, str], root: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "plexica_gitops.cli", "apply", root, "--auto-approve", *extra],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _installed_then_updated(tmp_path: Path, scope: str, env: dict[str, str], image: str) -> str:
    """Echo 1.0.0 installed; the desired state then asks for the slow 1.1.0 (its root)."""
    echo = EchoPlatform(tmp_path / "state", scope)
    assert run_cli(env, "init")[0] == 0
    code, output = run_cli(env, "apply", echo.write("1.0.0", replicas=REPLICAS), "--auto-approve")
    assert code == 0, output
    return echo.write("1.1.0", image=image, replicas=REPLICAS, timeout_seconds=30)


def _wait_started(dsn: str, step_id: str, apply_id: int = 2, timeout: float = 60) -> None:
    """Until apply `apply_id` (the first after the install: 2) journaled `step_id`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT 1 FROM plexica_gitops.journal WHERE step_id = %s AND apply_id = %s",
                    (step_id, apply_id),
                ).fetchone()
        except psycopg.OperationalError:
            row = None  # the server is restarting
        if row:
            return
        time.sleep(0.05)
    raise AssertionError(f"{step_id} of apply {apply_id} never started")


def test_a_postgres_restart_mid_rollout_never_lets_two_applies_drive_the_workload(
    tmp_path: Path,
    docker_scope: str,
    docker_client: docker.DockerClient,
    echo_images: dict[str, str],
    slow_update_image: str,
    environment: dict[str, str],
    restartable_postgres: PostgresServer,
) -> None:
    dsn = restartable_postgres.dsn
    env = {**environment, "PLEXICA_DATABASE_URL": dsn}
    root = _installed_then_updated(tmp_path, docker_scope, env, slow_update_image)

    sampler = Sampler(docker_client, docker_scope)
    sampler.start()
    first = _apply(env, root)
    second: subprocess.Popen[str] | None = None
    try:
        _wait_started(dsn, "plugin.echo.workload:replace")
        time.sleep(4.0)  # the first new replica is starting, not ready yet
        restartable_postgres.restart()
        second = _apply(env, root, "--lock-timeout", "30")
        first_output, _ = first.communicate(timeout=120)
        second_output, _ = second.communicate(timeout=180)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
        sampler.done.set()
        sampler.join(timeout=10)

    # the first stopped at once and said why; the second finished the job
    assert first.returncode == 1, first_output
    assert "the apply lock was lost" in first_output
    assert second.returncode == 0, second_output
    waited = [line for line in second_output.splitlines() if line.startswith("waiting:")]
    assert all(f"pid {first.pid}" in line and "lease runs until" in line for line in waited)

    with psycopg.connect(dsn, autocommit=True) as conn:
        applies = conn.execute(
            "SELECT id, pid, epoch, result, started_at, finished_at FROM plexica_gitops.applies"
            " ORDER BY id"
        ).fetchall()
        replace = dict(
            (apply_id, (status, detail, started, finished))
            for apply_id, status, detail, started, finished in conn.execute(
                "SELECT apply_id, status, detail, started_at, finished_at"
                " FROM plexica_gitops.journal WHERE step_id = 'plugin.echo.workload:replace'"
            )
        )
    _, (a_id, a_pid, a_epoch, a_result, _, a_end), (b_id, b_pid, b_epoch, b_result, b_start, _) = (
        applies
    )
    assert (a_pid, b_pid) == (first.pid, second.pid)
    assert b_epoch > a_epoch  # the fencing token moved on
    assert (a_result, b_result) == ("interrupted", "succeeded")
    a_status, a_detail, _, a_step_end = replace[a_id]
    assert a_status == "failed" and "lost its lock" in a_detail, a_detail
    b_status, _, b_step_start, _ = replace[b_id]
    assert b_status == "succeeded"
    # journals: the second's rollout began after the first apply had ended
    assert a_step_end is not None and a_end is not None
    assert a_step_end <= a_end <= b_start <= b_step_start

    # containers: the two rollouts never overlapped
    assert sampler.failure is None
    samples = sampler.samples
    initial = samples[0].generations()
    new = [g for s in samples for g in sorted(s.generations() - initial)]
    rollouts = list(dict.fromkeys(new))  # generations in the order they appeared
    assert len(rollouts) == 2, rollouts  # the first apply's, then the second's
    first_gen, second_gen = rollouts
    last_of_first = max(s.at for s in samples if first_gen in s.generations())
    first_of_second = min(s.at for s in samples if second_gen in s.generations())
    assert last_of_first < first_of_second
    most = max(s.running for s in samples)
    assert most <= REPLICAS + 2, most

    _assert_converged(docker_client, docker_scope, dsn, second_gen)
    assert run_cli(env, "plan", root, "--detailed-exitcode")[0] == 0


def test_a_second_apply_waits_out_the_lease_of_one_frozen_across_the_restart(
    tmp_path: Path,
    docker_scope: str,
    docker_client: docker.DockerClient,
    echo_images: dict[str, str],
    slow_update_image: str,
    environment: dict[str, str],
    restartable_postgres: PostgresServer,
) -> None:
    dsn = restartable_postgres.dsn
    env = {**environment, "PLEXICA_DATABASE_URL": dsn}
    root = _installed_then_updated(tmp_path, docker_scope, env, slow_update_image)

    sampler = Sampler(docker_client, docker_scope)
    sampler.start()
    first = _apply(env, root)
    second: subprocess.Popen[str] | None = None
    try:
        _wait_started(dsn, "plugin.echo.workload:replace")
        time.sleep(4.0)
        first.send_signal(signal.SIGSTOP)  # it cannot notice, cancel, nor give its lease up
        frozen_at = time.monotonic()
        restartable_postgres.restart()
        restarted = time.time()
        second = _apply(env, root, "--lock-timeout", "30")
        _wait_started(dsn, "plugin.echo.workload:replace", apply_id=3)
        first.send_signal(signal.SIGCONT)  # back in the middle of the second's rollout
        thawed_at = time.monotonic()
        first_output, _ = first.communicate(timeout=60)
        woke_for = time.monotonic() - thawed_at
        second_output, _ = second.communicate(timeout=180)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
        sampler.done.set()
        sampler.join(timeout=10)

    assert second.returncode == 0, second_output
    (waited,) = [line for line in second_output.splitlines() if line.startswith("waiting:")]
    assert f"pid {first.pid}" in waited and "lease runs until" in waited, waited
    left = float(re.search(r"\(([0-9.]+) s\)", waited).group(1))  # type: ignore[union-attr]
    assert left >= 3.0  # most of the lease: nobody renewed or gave it up
    # the frozen one stops on waking, at once: its lease had run out while it slept
    assert first.returncode == 1, first_output
    assert "exiting at once" in first_output and woke_for < 3.0, (woke_for, first_output)
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, result, started_at FROM plexica_gitops.applies ORDER BY id"
        ).fetchall()
        a_steps = conn.execute(
            "SELECT step_id, status FROM plexica_gitops.journal WHERE apply_id = 2"
        ).fetchall()
    assert [r[1] for r in rows] == ["succeeded", "interrupted", "succeeded"]
    assert rows[2][2].timestamp() >= restarted + left - 1.0  # it waited the lease out
    # what it wrote on waking was refused: its step is still as the freeze left it
    assert a_steps == [("plugin.echo.workload:replace", "started")]

    assert sampler.failure is None
    samples = sampler.samples
    initial = samples[0].generations()
    rollouts = list(dict.fromkeys(g for s in samples for g in sorted(s.generations() - initial)))
    assert len(rollouts) == 2, rollouts
    first_gen, second_gen = rollouts

    def first_apply_replicas(since: float, until: float) -> set[str]:
        return {
            name
            for s in samples
            if since <= s.at < until
            for name, generation, _ in s.containers
            if generation == first_gen
        }

    before = first_apply_replicas(0, frozen_at)
    assert before and first_apply_replicas(frozen_at, float("inf")) <= before  # none created
    _assert_converged(docker_client, docker_scope, dsn, second_gen)
    assert run_cli(env, "plan", root, "--detailed-exitcode")[0] == 0


def _assert_converged(
    docker_client: docker.DockerClient, scope: str, dsn: str, generation: str
) -> None:
    """Exactly the desired replicas of 1.1.0, running and ready, each registered."""
    final = containers_of(docker_client, scope, "echo")
    assert len(final) == REPLICAS
    assert {(c.status, c.labels["io.plexica.version"], c.labels[GENERATION]) for c in final} == {
        ("running", "1.1.0", generation)
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        endpoints = conn.execute(
            "SELECT endpoint, version FROM plexica.route_endpoints WHERE plugin_id = 'echo'"
        ).fetchall()
        (version,) = conn.execute(
            "SELECT version FROM plexica.plugins WHERE id = 'echo'"
        ).fetchone()
    assert version == "1.1.0"
    assert len(endpoints) == REPLICAS and {v for _, v in endpoints} == {"1.1.0"}
    ports = {
        binding["HostPort"]
        for c in final
        for binding in c.attrs["NetworkSettings"]["Ports"]["8080/tcp"] or []
    }
    assert {e.rsplit(":", 1)[1] for e, _ in endpoints} == ports
    for endpoint, _ in endpoints:
        with urllib.request.urlopen(endpoint + "/health/ready", timeout=5) as answer:
            assert answer.status == 200
