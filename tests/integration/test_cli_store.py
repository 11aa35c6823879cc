"""`init` and `plan` against a real PostgreSQL: the store is the live state's source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from plexica_gitops.cli import app
from plexica_gitops.desired.validate import validate_directory
from plexica_gitops.desired.view import manifest_hash
from plexica_gitops.lifecycle import LifecycleStatus
from plexica_gitops.store import catalog

EXAMPLE = Path(__file__).parents[2] / "desired-state"


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Exit code and everything printed (standard output and error)."""
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def _json(*args: str, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """Exit code and the JSON on standard output (warnings go to standard error)."""
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, json.loads(result.stdout)


def test_init_is_idempotent(postgres_database: str) -> None:
    code, output = _run("init", "--database-url", postgres_database)
    assert code == 0 and "applied version(s) 1, 2, 3, 4, 5" in output
    code, output = _run("init", env={"PLEXICA_DATABASE_URL": postgres_database})
    assert code == 0 and "up to date (version 5)" in output


def test_plan_observes_the_store(postgres_database: str) -> None:
    _run("init", "--database-url", postgres_database)
    # no engine answers there: the runtime cannot be observed, and the plan must say so
    env = {"PLEXICA_DATABASE_URL": postgres_database, "DOCKER_HOST": "unix:///nonexistent.sock"}
    # no broker configured while plugins publish events: the plan cannot be made ...
    code, output = _run("plan", str(EXAMPLE), env=env)
    assert code == 1, output
    assert "the event broker was not observed" in output and "KAFKA_BOOTSTRAP_SERVERS" in output
    assert "--unobserved broker" in output
    # ... unless asked for without it: topics are left out, and the plan says so
    args = ("plan", str(EXAMPLE), "--format", "json", "--unobserved", "broker")
    code, plan = _json(*args, env=env)
    assert code == 0, plan
    assert plan["unobserved"] == ["broker"]
    ids = [a["id"] for a in plan["actions"]]
    assert "plugin.contacts:register" in ids and "tenant.acme:create" in ids
    assert not any(i.startswith("topic.") for i in ids)
    assert "PGP201" in [w["code"] for w in plan["warnings"]]

    # contacts is ACTIVE in the catalog; its containers cannot be seen without the runtime,
    # so no workload step is planned for it (never "create" what may already run)
    entry = validate_directory(EXAMPLE).desired.plugins["contacts"]
    manifest = entry.manifest.model_dump(mode="json", by_alias=True)
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        catalog.register_plugin(
            conn, "contacts", "Contacts", entry.manifest.version, manifest, manifest_hash(entry)
        )
        for before, after in [
            (LifecycleStatus.REGISTERED, LifecycleStatus.INSTALLING),
            (LifecycleStatus.INSTALLING, LifecycleStatus.INSTALLED),
            (LifecycleStatus.INSTALLED, LifecycleStatus.ACTIVE),
        ]:
            catalog.transition(conn, "contacts", before, after)
    code, output = _run(*args, env=env)
    assert code == 1, output  # contacts may run containers that nobody could see
    assert "the runtime provider was not observed" in output and "nonexistent.sock" in output
    assert "--unobserved runtime" in output
    code, plan = _json(*args, "--unobserved", "runtime", env=env)
    assert code == 0 and plan["unobserved"] == ["broker", "runtime"]
    ids = [a["id"] for a in plan["actions"]]
    assert not any(i.startswith("plugin.contacts.workload") for i in ids)
    assert "plugin.contacts:register" not in ids
    assert "PGP205" in [w["code"] for w in plan["warnings"]]


@pytest.mark.parametrize("command", ["init", "plan"])
def test_unreachable_database_is_a_clear_error_without_the_password(command: str) -> None:
    url = "postgresql://admin:hunter2-db-secret@127.0.0.1:1/platform"
    args = [command, "--database-url", url]
    if command == "plan":
        args.insert(1, str(EXAMPLE))
    code, output = _run(*args)
    assert code == 1
    assert "127.0.0.1:1" in output
    assert "hunter2-db-secret" not in output


def test_history_lists_applies(postgres_database: str) -> None:
    from plexica_gitops.store import journal

    code, output = _run("history", "--database-url", postgres_database)
    assert code == 1 and "plexica-gitops init" in output  # no store yet: say what to do
    _run("init", "--database-url", postgres_database)
    code, output = _run("history", "--database-url", postgres_database)
    assert code == 0 and "No applies recorded yet." in output
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        apply_id = journal.start_apply(conn, "sha256:" + "a" * 64, "sha256:" + "b" * 64, "ci-7", 42)
        journal.step_started(conn, apply_id, "plugin.crm:register")
        journal.step_finished(conn, apply_id, "plugin.crm:register", "succeeded")
        journal.step_started(conn, apply_id, "plugin.crm:install")
        journal.finish_apply(conn, apply_id, "failed", {"succeeded": 1, "failed": 1})
    code, output = _run("history", "--database-url", postgres_database)
    assert code == 0, output
    row = next(line for line in output.splitlines() if line.lstrip().startswith(str(apply_id)))
    assert "aaaaaaaaaaaa" in row and "bbbbbbbbbbbb" in row and "failed" in row
    assert "1 succeeded" in row
