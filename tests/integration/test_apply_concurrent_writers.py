"""Issue 11, found 5: apply while another process edits the catalog. Version, binding,
route and endpoint writes are compare-and-set against what the plan observed, so a step
that races another writer stops with a conflict (expected, found, "re-plan") instead of
writing over it; and an apply racing a writer in a loop ends either converged or with a
plan that shows the work left — never in a state the next plan calls "no changes".
Against a real PostgreSQL and real containers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import psycopg
import pytest
from apply_support import EchoPlatform, containers_of, run_cli

from plexica_gitops.apply.steps import (
    ConnectionPool,
    StepContext,
    StepFailed,
    StoreRouteRegistry,
    run_step,
)
from plexica_gitops.desired.build import DesiredState
from plexica_gitops.desired.validate import validate_directory
from plexica_gitops.desired.view import manifest_hash
from plexica_gitops.observe import observe_platform
from plexica_gitops.plan.builder import build_plan
from plexica_gitops.plan.model import Action
from plexica_gitops.runtime.provider import Endpoint
from plexica_gitops.store.catalog import ConflictError


def _desired(root: str) -> DesiredState:
    result = validate_directory(Path(root))
    assert result.valid, result.errors
    return result.desired


def _sql(dsn: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(query, params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def installed(echo: EchoPlatform, environment: dict[str, str]) -> str:
    echo.install(environment, "1.0.0")
    return environment["PLEXICA_DATABASE_URL"]


@pytest.fixture
def context(installed: str, docker_provider: Any) -> Iterator[tuple[StepContext, Any]]:
    pool = ConnectionPool(installed, 2)
    yield StepContext(_desired_placeholder(), pool, docker_provider, {}), docker_provider
    pool.close()


def _desired_placeholder() -> DesiredState:
    return DesiredState(Path("."), None, {}, {}, "sha256:none", [])


def _planned(root: str, dsn: str, provider: Any, action_id: str) -> tuple[DesiredState, Action]:
    desired = _desired(root)
    plan = build_plan(desired, observe_platform(dsn, provider))
    (action,) = [a for a in plan.actions if a.id == action_id]
    return desired, action


def test_each_write_is_compare_and_set_against_what_the_plan_observed(
    echo: EchoPlatform, installed: str, context: tuple[StepContext, Any]
) -> None:
    dsn = installed
    step_context, provider = context
    root = echo.write("1.1.0")

    # the catalog's version: planned 1.0.0 -> 1.1.0, someone re-registers it meanwhile
    step_context.desired, update = _planned(root, dsn, provider, "plugin.echo:update")
    _sql(dsn, "UPDATE plexica.plugins SET version = '0.0.1', manifest_hash = 'theirs'")
    with pytest.raises(StepFailed) as caught:
        run_step(update, step_context)
    assert caught.value.message.startswith("conflict at plugin.echo: expected version 1.0.0")
    assert "found version 0.0.1 (manifest theirs)" in caught.value.message
    assert "nothing was written" in caught.value.message and "re-plan" in caught.value.hint
    assert _sql(dsn, "SELECT version, manifest_hash FROM plexica.plugins") == [("0.0.1", "theirs")]
    # a retry after a lost reply finds its own write: not a conflict
    entry = step_context.desired.plugins["echo"]
    _sql(
        dsn,
        "UPDATE plexica.plugins SET version = '1.1.0', manifest_hash = %s",
        manifest_hash(entry),
    )
    assert run_step(update, step_context) == "catalog records echo 1.1.0"

    # a tenant's binding: planned enable of a disabled one, reconfigured meanwhile
    _sql(dsn, "UPDATE plexica.tenant_plugins SET enabled = false")
    step_context.desired, enable = _planned(root, dsn, provider, "tenant.acme.plugin.echo:enable")
    _sql(dsn, """UPDATE plexica.tenant_plugins SET configuration = '{"by": "them"}'""")
    with pytest.raises(StepFailed) as caught:
        run_step(enable, step_context)
    assert caught.value.message.startswith("conflict at tenant.acme.plugin.echo: expected")
    assert '{"by": "them"}' in caught.value.message
    assert _sql(dsn, "SELECT enabled, configuration FROM plexica.tenant_plugins") == [
        (False, {"by": "them"})
    ]

    # the routes: planned repair of a changed remote entry, changed again meanwhile
    _sql(dsn, "UPDATE plexica.routes SET backend_prefix = '/elsewhere'")
    step_context.desired, routes = _planned(root, dsn, provider, "plugin.echo.routes:update")
    _sql(dsn, "UPDATE plexica.routes SET backend_prefix = '/somewhere-else'")
    with pytest.raises(StepFailed, match=r"^conflict at plugin\.echo\.routes: .*somewhere-else"):
        run_step(routes, step_context)
    assert _sql(dsn, "SELECT backend_prefix FROM plexica.routes") == [("/somewhere-else",)]


def test_endpoint_writes_compare_with_the_registry_the_step_found(
    installed: str, context: tuple[StepContext, Any]
) -> None:
    dsn = installed

    def registered() -> set[str]:
        return {row[0] for row in _sql(dsn, "SELECT endpoint FROM plexica.route_endpoints")}

    step_context, _ = context
    registry = StoreRouteRegistry(step_context, "echo")
    known = sorted(registry.expected)
    assert len(known) == 2
    theirs = "http://127.0.0.1:9/"
    _sql(
        dsn,
        "INSERT INTO plexica.route_endpoints (plugin_id, endpoint, instance, version)"
        " VALUES ('echo', %s, 'someone-elses', '0.0.1')",
        theirs,
    )
    # mid-rollout, the step writes its own replica's row and leaves the other writer's alone
    new = Endpoint("plexica-echo-x-0", "http://127.0.0.1:10/", "1.1.0")
    registry.register(new)
    assert registered() == {*known, theirs, new.url}
    # at its end, the sync finds what it did not expect: conflict, and nothing is synced
    with pytest.raises(ConflictError) as caught:
        registry.sync([new], {new.url})
    assert caught.value.address == "plugin.echo.routes"
    assert caught.value.found == f"also {theirs}"
    assert registered() == {*known, theirs, new.url}

    # an endpoint the step knew, removed by another writer while it ran
    registry = StoreRouteRegistry(step_context, "echo")
    _sql(dsn, "DELETE FROM plexica.route_endpoints WHERE endpoint = %s", known[0])
    registry.deregister(Endpoint("old-0", known[0], "1.0.0"))
    with pytest.raises(ConflictError, match="removed by another writer"):
        registry.finish()


class Racer(threading.Thread):
    """Another writer, editing echo's catalog row, its endpoints and a binding in a loop
    (what issue 11 found 5 ran), on a session that is not an apply's."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.stop = threading.Event()
        self.writes = 0

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.wait(0.03):
                n = self.writes
                conn.execute(
                    "UPDATE plexica.plugins SET version = %s, manifest_hash = %s WHERE id = 'echo'",
                    (f"0.0.{n % 7}", f"theirs-{n % 7}"),
                )
                conn.execute(
                    "INSERT INTO plexica.route_endpoints (plugin_id, endpoint, instance, version)"
                    " SELECT 'echo', 'http://127.0.0.1:9/', 'theirs', '0.0.1'"
                    "  FROM plexica.routes WHERE plugin_id = 'echo'"
                    " ON CONFLICT DO NOTHING"
                    if n % 2 == 0
                    else "DELETE FROM plexica.route_endpoints WHERE instance = 'theirs'"
                )
                conn.execute(
                    "UPDATE plexica.tenant_plugins SET enabled = NOT enabled"
                    " WHERE plugin_id = 'echo' AND tenant_id ="
                    " (SELECT id FROM plexica.tenants WHERE slug = 'acme')"
                )
                self.writes += 1


def _live_matches_desired(dsn: str, client: docker.DockerClient, scope: str, root: str) -> None:
    """The platform is exactly git's: echo 1.1.0 in the catalog with git's manifest, two
    running replicas of it, each registered and nothing else, both tenants bound."""
    entry = _desired(root).plugins["echo"]
    assert _sql(dsn, "SELECT version, manifest_hash, status FROM plexica.plugins") == [
        ("1.1.0", manifest_hash(entry), "ACTIVE")
    ]
    replicas = containers_of(client, scope, "echo")
    assert {(c.status, c.labels["io.plexica.version"]) for c in replicas} == {("running", "1.1.0")}
    ports = {
        b["HostPort"] for c in replicas for b in c.attrs["NetworkSettings"]["Ports"]["8080/tcp"]
    }
    registered = _sql(dsn, "SELECT endpoint FROM plexica.route_endpoints")
    assert len(replicas) == 2 and {e.rsplit(":", 1)[1] for (e,) in registered} == ports
    assert _sql(dsn, "SELECT enabled FROM plexica.tenant_plugins") == [(True,), (True,)]


def test_an_apply_racing_another_writer_never_ends_in_a_state_plan_calls_no_changes(
    echo: EchoPlatform,
    installed: str,
    environment: dict[str, str],
    docker_client: docker.DockerClient,
) -> None:
    dsn = installed
    root = echo.write("1.1.0", tenants=("acme", "beta"))
    racer = Racer(dsn)
    racer.start()
    try:
        code, output = run_cli(environment, "apply", root, "--auto-approve", "--log-format", "json")
    finally:
        racer.stop.set()
        racer.join(timeout=10)
    assert racer.writes > 10
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    failed = [e for e in events if e["event"] == "step.finished" and e["status"] == "failed"]
    assert code == (1 if failed else 0), output
    for event in failed:  # the only way it may fail: a conflict, named as such
        assert event["detail"].startswith("conflict"), event
        assert "re-plan" in event["hint"] or "plexica-gitops plan" in event["hint"], event

    # the racer stopped: the plan tells the truth about what the race left
    code, output = run_cli(environment, "plan", root, "--detailed-exitcode", "--format", "json")
    if code == 0:
        _live_matches_desired(dsn, docker_client, echo.scope, root)
        return
    assert code == 2 and json.loads(output)["actions"], output
    code, output = run_cli(environment, "apply", root, "--auto-approve")  # and it converges
    assert code == 0, output
    assert run_cli(environment, "plan", root, "--detailed-exitcode")[0] == 0
    _live_matches_desired(dsn, docker_client, echo.scope, root)
