"""`plexica-gitops reconcile` as a real process on real PostgreSQL and Podman, reading a bare
git repository over file:// that the test pushes commits to: report-only never applies,
--self-heal heals a container stopped by hand back to the LAST APPLIED commit (not the
newer head), --auto-apply applies a pushed commit, two replicas never apply at once (the
store's apply history), SIGTERM during an apply lets it finish and exits 0; /metrics is
parsed with prometheus_client's parser, /readyz is 503 until the first reconcile finished."""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import docker
import psycopg
import pytest
from apply_support import EchoPlatform, containers_of, run_cli
from git_repos import commit_all, git, init
from prometheus_client.parser import text_string_to_metric_families

from devenv.servers import free_port
from plexica_gitops.source.git import default_cache_dir

ROOT = Path(__file__).resolve().parent.parent
INTERVAL = "1"


class Reconcile:
    """A `plexica-gitops reconcile` process: its JSON log lines, its HTTP port."""

    def __init__(self, env: dict[str, str], *args: str, interval: str = INTERVAL) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "plexica_gitops.cli", "reconcile", *args]
        command += ["--interval", interval, "--log-format", "json"]
        command += ["--metrics-address", f"127.0.0.1:{self.port}"]
        self.process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        threading.Thread(target=self._read_errors, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(json.loads(line))

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        self.errors.extend(self.process.stderr)

    def cycles(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["event"] == "reconcile"]

    def wait_for(self, what: Callable[[], Any], timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = what()
            if got:
                return got
            assert self.process.poll() is None, (self.lines, self.errors)
            time.sleep(0.05)
        raise AssertionError(f"timed out: {self.lines[-5:]} {self.errors[-5:]}")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as answer:
            return answer.code, answer.read().decode()

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code


@pytest.fixture
def processes() -> Iterator[list[Reconcile]]:
    started: list[Reconcile] = []
    yield started
    for process in started:
        if process.process.poll() is None:
            process.process.kill()
            process.process.wait(10)


@pytest.fixture
def remote(echo: EchoPlatform, tmp_path: Path) -> str:
    """The echo desired state committed in a work tree (echo.root), pushed to a bare
    repository; returns its file:// URL."""
    echo.write("1.0.0", replicas=1)
    init(echo.root)
    commit_all(echo.root, "echo 1.0.0")
    bare = init(tmp_path / "remote.git", bare=True)
    git(echo.root, "push", "-q", str(bare), "main")
    return bare.as_uri()


def _push(echo: EchoPlatform, remote: str, message: str) -> str:
    sha = commit_all(echo.root, message)
    git(echo.root, "push", "-q", remote, "main")
    return sha


def _env(environment: dict[str, str], tmp_path: Path, name: str) -> dict[str, str]:
    """A replica's environment: its own git cache, as a pod of its own has."""
    return {**environment, "XDG_CACHE_HOME": str(tmp_path / f"cache-{name}")}


class Applied(NamedTuple):
    id: int
    revision: str
    result: str
    pid: int
    started_at: datetime
    finished_at: datetime | None


def _applies(dsn: str) -> list[Applied]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT id, desired_revision, result, pid, started_at, finished_at"
            " FROM plexica_gitops.applies ORDER BY id"
        ).fetchall()
    return [Applied(*row) for row in rows]


def _in_flight_steps(dsn: str, apply_id: int) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM plexica_gitops.journal WHERE apply_id = %s"
            " AND status = 'started'",
            (apply_id,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _running(client: docker.DockerClient, scope: str) -> int:
    return sum(c.status == "running" for c in containers_of(client, scope, "echo"))


def _families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_report_only_never_applies_and_self_heal_heals_back_to_the_last_applied_commit(
    echo: EchoPlatform,
    remote: str,
    environment: dict[str, str],
    docker_client: docker.DockerClient,
    processes: list[Reconcile],
    tmp_path: Path,
) -> None:
    dsn = environment["PLEXICA_DATABASE_URL"]
    assert run_cli(environment, "init")[0] == 0
    code, output = run_cli(
        environment, "apply", "--repo", remote, "--ref", "main", "--auto-approve"
    )
    assert code == 0, output
    [first] = _applies(dsn)
    applied = first.revision
    containers_of(docker_client, echo.scope, "echo")[0].stop(timeout=1)  # by hand
    echo.write("1.0.0", replicas=1, tenants=("acme", "globex"))
    _push(echo, remote, "a tenant more")  # pending: not to be applied by a heal

    env = _env(environment, tmp_path, "a")
    source = ("--repo", remote, "--ref", "main")
    code, output = run_cli(env, "reconcile", *source, "--once", "--log-format", "json",
                           "--metrics-address", "127.0.0.1:0")  # fmt: skip
    assert code == 2, output  # drift left: exit as `drift`
    [line] = [json.loads(x) for x in output.splitlines() if '"reconcile"' in x]
    assert line["did"] == "reported" and line["drift"] == 1 and line["pending"] >= 1, line
    assert len(_applies(dsn)) == 1 and _running(docker_client, echo.scope) == 0

    # the first fetch waits for the git cache's lock held here: /readyz says not ready
    mirror = default_cache_dir(env) / hashlib.sha256(remote.encode()).hexdigest()
    mirror.parent.mkdir(parents=True, exist_ok=True)
    with open(str(mirror) + ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        healer = Reconcile(env, *source, "--self-heal")
        processes.append(healer)
        healer.wait_for(lambda: healer.lines)  # "started": serving
        assert healer.get("/readyz")[0] == 503
        assert healer.get("/healthz")[0] == 200
    healed = healer.wait_for(lambda: [c for c in healer.cycles() if c["did"] == "healed"])
    assert healed[0]["result"] == "success" and healed[0]["sync"] == "Succeeded", healed
    assert healer.get("/readyz")[0] == 200
    assert _running(docker_client, echo.scope) == 1
    with psycopg.connect(dsn) as conn:  # the heal applied the last applied commit, not git's
        assert conn.execute("SELECT count(*) FROM plexica.tenants").fetchone() == (1,)
    heal = _applies(dsn)[-1]
    assert heal.result == "succeeded" and heal.revision.endswith(applied.rpartition("@")[2])

    status, text = healer.get("/metrics")
    assert status == 200
    families = _families(text)
    assert families["plexica_reconcile_duration_seconds"].type == "histogram"
    syncs = {
        s.labels["phase"]: s.value
        for s in families["plexica_sync"].samples
        if s.name == "plexica_sync_total"
    }
    assert syncs["Succeeded"] >= 1
    info = {
        (s.labels["kind"], s.labels["name"], s.labels["tenant"]): s.labels
        for s in families["plexica_resource_info"].samples
    }
    workload = info[("workload", "echo", "")]
    assert set(workload) == {"kind", "name", "tenant", "ready", "revision"}
    assert workload["revision"].endswith(applied.rpartition("@")[2])
    assert ("plugin", "echo", "") in info
    # a tenant's resources are counted, not one series each (bounded cardinality)
    tenants = {
        (s.labels["kind"], s.labels["ready"]): s.value
        for s in families["plexica_tenant_resources"].samples
    }
    assert tenants[("binding", "True")] == 1 and tenants[("tenant", "True")] == 1, tenants
    # drift is counted per kind (the heal's own cycle saw it; a later one sees 0)
    drift = {s.labels["kind"]: s.value for s in families["plexica_drift_resources"].samples}
    assert "workload" in drift and drift.keys() <= {
        "plugin", "workload", "permissions", "routes", "data", "topic", "tenant", "binding",
        "migrations",
    }  # fmt: skip

    assert healer.stop() == 0
    assert any(line["event"] == "stopped" for line in healer.lines)


def test_two_replicas_apply_a_commit_once_never_at_once_and_sigterm_lets_an_apply_finish(
    echo: EchoPlatform,
    remote: str,
    environment: dict[str, str],
    processes: list[Reconcile],
    tmp_path: Path,
) -> None:
    dsn = environment["PLEXICA_DATABASE_URL"]
    assert run_cli(environment, "init")[0] == 0
    source = ("--repo", remote, "--ref", "main", "--auto-apply")
    replicas = [Reconcile(_env(environment, tmp_path, name), *source) for name in "ab"]
    processes.extend(replicas)
    first = replicas[0].wait_for(lambda: [a for a in _applies(dsn) if a.result == "succeeded"])
    assert first[0].revision.startswith("main@sha1:")

    echo.write("1.0.0", replicas=1, tenants=("acme", "globex"))
    sha = _push(echo, remote, "a tenant more")
    for replica in replicas:  # each sees it applied: nobody applies it again
        _wait_in_sync(replica, sha)
    history = _applies(dsn)
    assert [a.revision for a in history] == [first[0].revision, f"main@sha1:{sha}"], history
    assert all(a.result == "succeeded" for a in history)
    assert "applied" in {c["did"] for r in replicas for c in r.cycles()}

    # SIGTERM to the replica running an apply: the step in flight finishes, it exits 0
    echo.write("1.1.0", replicas=1, tenants=("acme", "globex"))
    upgrade = _push(echo, remote, "echo 1.1.0: a rolling update")
    [running] = replicas[0].wait_for(lambda: [a for a in _applies(dsn) if a.result == "running"])
    [holder] = [r for r in replicas if r.process.pid == running.pid]
    [other] = [r for r in replicas if r is not holder]
    assert holder.stop() == 0, holder.errors
    [stopped] = [a for a in _applies(dsn) if a.id == running.id]
    assert stopped.finished_at is not None and stopped.result in {"interrupted", "succeeded"}
    assert _in_flight_steps(dsn, running.id) == 0  # the journal is complete
    cycle = holder.cycles()[-1]
    assert cycle["did"] == "applied" and cycle["sync"] in {"Terminated", "Succeeded"}, cycle
    assert any(line["event"] == "stopped" for line in holder.lines)

    _wait_in_sync(other, upgrade)  # the other replica applies what is left
    history = _applies(dsn)
    assert [a.revision for a in history].count(f"main@sha1:{sha}") == 1, history
    for earlier, later in itertools.pairwise(history):  # never two at once
        assert earlier.finished_at is not None and earlier.finished_at <= later.started_at
    assert other.stop() == 0
    # observing while the other replica's rollout removes a container is no failure (the
    # Docker provider takes a listing that Podman failed that way again)
    failed = [c["detail"] for r in replicas for c in r.cycles() if c["did"] == "failed"]
    assert not failed, failed


def _wait_in_sync(replica: Reconcile, sha: str) -> None:
    replica.wait_for(
        lambda: [c for c in replica.cycles() if c["did"] == "in_sync" and sha in c["revision"]],
        timeout=40,
    )


def test_a_failing_cycle_backs_off_keeps_running_and_never_claims_in_sync(tmp_path: Path) -> None:
    """No server needed: the store is a port nobody listens on."""
    url = f"postgresql://plexica@127.0.0.1:{free_port()}/plexica"
    env = {"PLEXICA_DATABASE_URL": url, "XDG_CACHE_HOME": str(tmp_path)}
    loop = Reconcile(env, str(ROOT / "desired-state"), "--max-backoff", "1", interval="0.25")
    loop.wait_for(lambda: len(loop.cycles()) >= 2)
    first, second = loop.cycles()[:2]
    assert first["result"] == second["result"] == "failure" and first["did"] == "failed"
    assert "127.0.0.1" in first["detail"] and "drift" not in first  # nothing was observed
    assert (first["next_in_seconds"], second["next_in_seconds"]) == (0.5, 1)  # doubled, capped
    assert loop.get("/readyz")[0] == 200 and loop.get("/healthz")[0] == 200
    families = _families(loop.get("/metrics")[1])
    results = {
        s.labels["result"]: s.value
        for s in families["plexica_reconcile"].samples
        if s.name == "plexica_reconcile_total"
    }
    assert results["failure"] == 2 and results["success"] == 0
    assert families["plexica_drift_resources"].samples == []  # never 0 for what was not seen
    assert loop.stop(timeout=10) == 0  # during the wait: at once


def _once(environment: dict[str, str], root: str) -> tuple[int, dict[str, Any]]:
    code, output = run_cli(environment, "reconcile", root, "--once", "--self-heal",
                           "--log-format", "json", "--metrics-address", "127.0.0.1:0")  # fmt: skip
    [line] = [json.loads(x) for x in output.splitlines() if '"reconcile"' in x]
    return code, line


def test_an_in_sync_cycle_records_a_lost_last_applied_row_so_self_heal_heals_there(
    echo: EchoPlatform, environment: dict[str, str]
) -> None:
    """A crash between a step's effect and its journal end leaves the value in sync and no
    last-applied row. Nothing is planned, so only an in-sync cycle can write the row: else a
    later edit by hand would stay a pending change in git that --self-heal never heals."""
    root = echo.install(environment, "1.0.0")
    dsn = environment["PLEXICA_DATABASE_URL"]
    address = "tenant.acme.plugin.echo"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM plexica_gitops.last_applied WHERE address = %s", (address,))

    code, line = _once(environment, root)
    assert code == 0 and line["did"] == "in_sync", line
    assert "recorded what was last applied at 1 in-sync resource" in line["detail"], line
    with psycopg.connect(dsn, autocommit=True) as conn:
        recorded = conn.execute(
            "SELECT count(*) FROM plexica_gitops.last_applied WHERE address = %s", (address,)
        ).fetchone()
        conn.execute("""UPDATE plexica.tenant_plugins SET configuration = '{"edited": true}'""")
    assert recorded == (1,) and len(_applies(dsn)) == 1  # no apply of its own

    code, line = _once(environment, root)
    assert code == 0 and line["did"] == "healed" and line["drift"] == 1, line
    with psycopg.connect(dsn) as conn:
        configuration = conn.execute("SELECT configuration FROM plexica.tenant_plugins").fetchone()
    assert configuration is not None and configuration[0] != {"edited": True}
    code, line = _once(environment, root)
    assert line["did"] == "in_sync" and "recorded" not in line["detail"], line
