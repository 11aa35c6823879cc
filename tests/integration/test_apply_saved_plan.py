"""Issue 11, found 4: a saved plan applies only as its desired state justifies it. `apply
PLANFILE` plans again from the same desired revision and live state and refuses any other
plan, naming the difference; destructive steps check their precondition when they run.
Against a real PostgreSQL and real containers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import psycopg
import pytest
from apply_support import (
    EchoPlatform,
    containers_of,
    install_example,
    no_broker,
    plugin_statuses,
    run_cli,
)
from conftest import EXAMPLE_DESIRED_STATE, DesiredStateCopy

from devenv.images import build_desired_state_images
from plexica_gitops.apply.steps import StepContext, StepFailed, run_step
from plexica_gitops.desired.validate import validate_directory
from plexica_gitops.plan.model import Action, ActionKind
from plexica_gitops.store.pool import ConnectionPool

PURGE = {
    "id": "plugin.crm.data:purge",
    "address": "plugin.crm.data",
    "action": "delete",
    "step": "purge",
    "reason": "purgeDataOnUninstall: drop the plugin's tables in every tenant schema",
    "before": None,
    "after": None,
    "depends_on": [],
    "wave": 0,
    "plugin": "crm",
    "tenant": None,
    "fingerprint": None,
}


@pytest.fixture(scope="session")
def example_images(docker_client: docker.DockerClient) -> list[str]:
    return build_desired_state_images(docker_client, EXAMPLE_DESIRED_STATE)


SUMMARY = {"create": "add", "update": "change", "replace": "change", "delete": "destroy"}


def forge(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit a saved plan, then recompute its summary and checksum, as anyone with the file
    can (without PLEXICA_PLAN_SIGNING_KEY)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    edit(document["plan"])
    summary = dict.fromkeys(("add", "change", "destroy", "transition"), 0)
    for action in document["plan"]["actions"]:
        summary[SUMMARY.get(action["action"], "transition")] += 1
    document["plan"]["summary"] = summary
    canonical = json.dumps(document["plan"], sort_keys=True, separators=(",", ":")).encode()
    document["checksum"] = "sha256:" + hashlib.sha256(canonical).hexdigest()
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")


def crm_data(dsn: str) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
    """crm's tables in every tenant schema, and its migration history."""
    with psycopg.connect(dsn) as conn:
        tables = conn.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE tablename LIKE 'crm\\_%'"
            " ORDER BY 1, 2"
        ).fetchall()
        history = conn.execute(
            "SELECT tenant_id, version, checksum FROM plexica.tenant_migrations"
            " WHERE plugin_id = 'crm' ORDER BY 1, 2"
        ).fetchall()
    return tables, history


def test_an_injected_purge_is_refused_and_drops_nothing(
    desired_state_copy: DesiredStateCopy,
    environment: dict[str, str],
    example_images: list[str],
    docker_scope: str,
    tmp_path: Path,
) -> None:
    root, _ = install_example(desired_state_copy.root, docker_scope, environment)
    dsn = environment["PLEXICA_DATABASE_URL"]
    before = crm_data(dsn)
    tenants = {schema for schema, _ in before[0]}
    assert len(tenants) >= 2 and before[1]  # crm's tables live in several tenant schemas

    saved = tmp_path / "release.plan"
    code, output = run_cli(environment, "plan", root, "--out", str(saved), *no_broker(environment))
    assert code == 0, output
    forge(saved, lambda plan: plan["actions"].append(PURGE))
    code, output = run_cli(
        environment,
        "apply",
        str(saved),
        "--desired-state",
        root,
        "--auto-approve",
        *no_broker(environment),
    )
    assert code == 1
    assert "not what its desired state gives" in output
    assert "in the saved plan only: plugin.crm.data:purge" in output
    assert "Nothing was applied" in output
    assert crm_data(dsn) == before  # every table and the whole history, in every tenant
    assert plugin_statuses(dsn)["crm"] == ("ACTIVE", None)


def test_a_saved_plan_missing_or_changing_an_action_is_refused_naming_it(
    echo: EchoPlatform, environment: dict[str, str], tmp_path: Path
) -> None:
    run_cli(environment, "init")
    root = echo.write("1.0.0")
    saved = tmp_path / "release.plan"
    assert run_cli(environment, "plan", root, "--out", str(saved))[0] == 0
    pristine = saved.read_text(encoding="utf-8")

    def drop_activation(plan: dict[str, Any]) -> None:
        plan["actions"] = [a for a in plan["actions"] if a["id"] != "plugin.echo:activate"]

    def scale_up(plan: dict[str, Any]) -> None:
        for action in plan["actions"]:
            if action["id"] == "plugin.echo.workload:create":
                action["after"]["replicas"] = 9

    def reorder(plan: dict[str, Any]) -> None:
        actions = plan["actions"]
        first = next(i for i, a in enumerate(actions) if a["id"] == "tenant.acme:create")
        actions.insert(0, actions.pop(first))

    expected = {
        drop_activation: "missing from it: plugin.echo:activate",
        scale_up: "changed: plugin.echo.workload:create",
        reorder: "the same actions in another order",
    }
    for edit, difference in expected.items():
        saved.write_text(pristine, encoding="utf-8")
        forge(saved, edit)
        code, output = run_cli(
            environment, "apply", str(saved), "--desired-state", root, "--auto-approve"
        )
        assert code == 1 and difference in output, (edit.__name__, output)
        assert plugin_statuses(environment["PLEXICA_DATABASE_URL"]) == {}
    saved.write_text(pristine, encoding="utf-8")  # the reviewed plan itself applies
    code, output = run_cli(
        environment, "apply", str(saved), "--desired-state", root, "--auto-approve"
    )
    assert code == 0, output


def _action(address: str, step: str, **fields: Any) -> Action:
    return Action(address, step, ActionKind.DELETE, "forged", **fields)


def test_destructive_steps_recheck_their_precondition_when_they_run(
    echo: EchoPlatform,
    environment: dict[str, str],
    docker_provider: Any,
    docker_client: docker.DockerClient,
) -> None:
    """Whatever a plan says: nothing is purged, removed, uninstalled or deleted while git
    and the store do not ask for it."""
    dsn = environment["PLEXICA_DATABASE_URL"]
    root = echo.install(environment, "1.0.0")
    desired = validate_directory(Path(root)).desired
    refused = [
        (_action("plugin.echo.data", "purge", plugin="echo"), "purgeDataOnUninstall"),
        (_action("plugin.echo.workload", "delete", plugin="echo"), "is ACTIVE"),
        (_action("plugin.echo.permissions", "delete", plugin="echo"), "is ACTIVE"),
        (
            _action(
                "plugin.echo",
                "uninstall",
                plugin="echo",
                before={"status": "DISABLED"},
                after={"status": "UNINSTALLING"},
            ),
            "git wants plugin 'echo' active",
        ),
        (
            _action(
                "tenant.acme",
                "delete",
                tenant="acme",
                before={"status": "active"},
                after={"status": "deleted"},
            ),
            "git wants tenant 'acme' active",
        ),
    ]

    def snapshot() -> list[Any]:
        with psycopg.connect(dsn) as conn:
            rows = [
                conn.execute(query).fetchall()
                for query in (
                    "SELECT id, status FROM plexica.plugins",
                    "SELECT slug, status FROM plexica.tenants",
                    "SELECT key FROM plexica.permissions",
                    "SELECT tablename FROM pg_tables WHERE tablename LIKE 'echo\\_%'",
                    "SELECT plugin_id, version FROM plexica.tenant_migrations",
                )
            ]
        return [*rows, sorted(c.name for c in containers_of(docker_client, echo.scope, "echo"))]

    before = snapshot()
    assert len(before[-1]) == 2
    pool = ConnectionPool(dsn, 2)
    context = StepContext(desired, pool, docker_provider, {})
    try:
        for action, why in refused:
            with pytest.raises(StepFailed) as caught:
                run_step(action, context)
            assert caught.value.message.startswith(f"refusing {action.id}: "), action.id
            assert why in caught.value.message and "nothing was changed" in caught.value.message
    finally:
        pool.close()
    assert snapshot() == before
