"""Out-of-band edits of the store, as an operator with `psql` makes them, are drift: the
plan says so (never "No changes"), apply heals them, and the plan after it is empty. And a
value in the store too deep or too large to read is a finding naming its address, never a
traceback and never printed. Real PostgreSQL and Podman."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker
import psycopg
import pytest
from apply_support import EchoPlatform, containers_of, run_cli

DEEP = json.dumps(json.loads("[" * 200 + '"needle-value"' + "]" * 200))
WIDE = json.dumps({"blob": "x" * (2 << 20), "marker": "needle-value"})


def _sql(dsn: str, statement: str, *params: Any) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement, params)


def _plan(environment: dict[str, str], root: str) -> tuple[int, dict[str, Any], str]:
    code, text = run_cli(environment, "plan", root, "--detailed-exitcode")
    json_code, document = run_cli(environment, "plan", root, "--format", "json")
    assert json_code == 0, document
    return code, json.loads(document[document.index("{") :]), text


@pytest.fixture
def installed(
    tmp_path: Path,
    docker_scope: str,
    echo_images: dict[str, str],
    environment: dict[str, str],
) -> str:
    root = EchoPlatform(tmp_path / "state", docker_scope).write("1.0.0")
    assert run_cli(environment, "init")[0] == 0
    code, output = run_cli(environment, "apply", root, "--auto-approve")
    assert code == 0, output
    assert run_cli(environment, "plan", root, "--detailed-exitcode")[0] == 0
    return root


EDITS: dict[str, tuple[str, tuple[Any, ...], str, str]] = {
    # name: (SQL, params, the action planned, what its reason says)
    "registry emptied": (
        "DELETE FROM plexica.route_endpoints WHERE plugin_id = 'echo'",
        (),
        "plugin.echo.workload:start",
        "drift: 2 ready replicas are missing from the service registry",
    ),
    "version": (
        "UPDATE plexica.plugins SET version = '0.0.1' WHERE id = 'echo'",
        (),
        "plugin.echo:update",
        "drift: the catalog's version changed outside plexica-gitops",
    ),
    "manifest": (
        "UPDATE plexica.plugins SET manifest = '{}' WHERE id = 'echo'",
        (),
        "plugin.echo:update",
        "drift: the catalog's manifest changed outside plexica-gitops",
    ),
    "name": (
        "UPDATE plexica.plugins SET name = 'Not Echo' WHERE id = 'echo'",
        (),
        "plugin.echo:update",
        "drift: the catalog's name changed outside plexica-gitops",
    ),
    "manifest hash": (
        "UPDATE plexica.plugins SET manifest_hash = 'forged' WHERE id = 'echo'",
        (),
        "plugin.echo:update",
        "drift: the catalog's manifest_hash changed outside plexica-gitops",
    ),
    "manifest nested 200 levels": (
        "UPDATE plexica.plugins SET manifest = %s::jsonb WHERE id = 'echo'",
        (json.dumps({"dependencies": json.loads(DEEP)}),),
        "plugin.echo:update",
        "drift: the catalog's manifest changed outside plexica-gitops",
    ),
    "binding configuration nested 200 levels": (
        "UPDATE plexica.tenant_plugins SET configuration = %s::jsonb",
        (json.dumps({"a": json.loads(DEEP)}),),
        "tenant.acme.plugin.echo:configure",
        "drift: the stored configuration nested deeper than 64 levels",
    ),
    "binding configuration of 2 MiB": (
        "UPDATE plexica.tenant_plugins SET configuration = %s::jsonb",
        (WIDE,),
        "tenant.acme.plugin.echo:configure",
        "drift: the stored configuration larger than 1024 KiB",
    ),
}


def test_every_edit_of_the_store_is_drift_that_apply_heals(
    installed: str,
    environment: dict[str, str],
    docker_client: docker.DockerClient,
    docker_scope: str,
) -> None:
    """One edit at a time, each healed before the next (one install for all of them)."""
    dsn = environment["PLEXICA_DATABASE_URL"]
    for edit, (statement, params, step_id, reason) in EDITS.items():
        _sql(dsn, statement, *params)

        code, document, text = _plan(environment, installed)
        assert code == 2, f"{edit}: {text}"  # never "No changes"
        assert "needle-value" not in text and "needle-value" not in json.dumps(document), edit
        assert "Traceback" not in text
        actions = {a["id"]: a for a in document["actions"]}
        assert step_id in actions, (edit, sorted(actions))
        assert actions[step_id]["reason"].startswith(reason), (edit, actions[step_id]["reason"])
        if "levels" in edit or "MiB" in edit:
            (finding,) = [w for w in document["warnings"] if w["code"] == "PGP110"]
            address = "plugin.echo" if "manifest" in edit else "tenant.acme.plugin.echo"
            assert finding["message"].startswith(f"{address}: the "), edit
        _still_readable(environment, installed)

        code, output = run_cli(environment, "apply", installed, "--auto-approve")
        assert code == 0, f"{edit}: {output}"
        code, text = run_cli(environment, "plan", installed, "--detailed-exitcode")
        assert code == 0, f"{edit}, after apply: {text}"
        _assert_registry_lists_the_replicas(dsn, docker_client, docker_scope)


def _still_readable(environment: dict[str, str], root: str) -> None:
    """`status` still works: one bad value does not take the whole platform down."""
    code, output = run_cli(environment, "status", root)
    assert code == 0, output
    assert "needle-value" not in output


def _assert_registry_lists_the_replicas(dsn: str, client: docker.DockerClient, scope: str) -> None:
    urls = {
        f"http://127.0.0.1:{c.attrs['NetworkSettings']['Ports']['8080/tcp'][0]['HostPort']}"
        for c in containers_of(client, scope, "echo")
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT endpoint FROM plexica.route_endpoints WHERE plugin_id = 'echo'"
        ).fetchall()
    assert {endpoint for (endpoint,) in rows} == urls and len(urls) == 2
