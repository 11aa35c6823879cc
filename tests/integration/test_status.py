"""`plexica-gitops status`: from any directory (the store names the runtime), as JSON with
`observed` flags, and as whole lines in a pipe. Real PostgreSQL, real containers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
from apply_support import EchoPlatform, run_cli
from conftest import EXAMPLE_DESIRED_STATE

from plexica_gitops.desired.validate import validate_directory
from plexica_gitops.desired.view import manifest_hash
from plexica_gitops.service import _record_runtime
from plexica_gitops.store import catalog
from plexica_gitops.store.runtime import record_runtime, recorded_runtime


def _status(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command in `cwd`, its output a pipe (not a terminal), no COLUMNS set."""
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    environ.update({k: v for k, v in env.items() if k != "COLUMNS"})
    return subprocess.run(
        [sys.executable, "-m", "plexica_gitops.cli", "status", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _elsewhere(tmp_path: Path) -> Path:
    """A working directory with no desired-state in it."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


def test_status_from_anywhere_as_json_and_as_whole_lines(
    echo: EchoPlatform, environment: dict[str, str], tmp_path: Path
) -> None:
    root = echo.write("1.0.0", replicas=2)
    assert run_cli(environment, "init")[0] == 0
    code, output = run_cli(environment, "apply", root, "--auto-approve")
    assert code == 0, output
    with psycopg.connect(environment["PLEXICA_DATABASE_URL"], autocommit=True) as conn:
        _record_runtime(conn, validate_directory(Path(root)).desired)  # what apply records

    elsewhere = _elsewhere(tmp_path)
    done = _status(environment, elsewhere, "--format", "json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["format_version"] == "1.0"
    assert document["runtime"] == {"provider": "docker", "settings_from": "store", "observed": True}
    (plugin,) = document["plugins"]
    workload = plugin["workload"]
    assert (plugin["id"], plugin["status"], plugin["version"]) == ("echo", "ACTIVE", "1.0.0")
    assert workload["observed"] is True
    assert (workload["replicas"], workload["ready"], workload["running"]) == (2, 2, True)
    assert (workload["cpu"], workload["memory"]) == ("250m", "64Mi")
    assert len(plugin["endpoints"]) == 2
    assert all(e["url"].startswith("http://127.0.0.1:") for e in plugin["endpoints"])
    (tenant,) = document["tenants"]
    assert tenant["slug"] == "acme" and tenant["plugins"] == {"echo": True}
    assert tenant["migrations"] == {"echo": [{"version": 1, "name": "create_echo_messages"}]}
    assert document["topics"] == {"observed": False}  # no broker named: never "no topics"

    done = _status(environment, elsewhere)
    assert done.returncode == 0, done.stderr
    (row,) = [line for line in done.stdout.splitlines() if line.startswith("echo ")]
    urls = ", ".join(e["url"] for e in plugin["endpoints"])
    assert row.split() == ["echo", "ACTIVE", "1.0.0", "2/2", "250m", "64Mi", *urls.split()]
    assert len(row) > 80  # whole, although a pipe is no terminal
    assert "Topics: (not observed)" in done.stdout


def test_apply_records_the_runtime_for_status(
    echo: EchoPlatform, environment: dict[str, str], tmp_path: Path
) -> None:
    root = echo.write("1.0.0", replicas=1)
    assert run_cli(environment, "init")[0] == 0
    code, output = run_cli(environment, "apply", root, "--auto-approve")
    assert code == 0, output
    with psycopg.connect(environment["PLEXICA_DATABASE_URL"]) as conn:
        recorded = recorded_runtime(conn)
    assert recorded is not None and recorded.settings["scope"] == echo.scope
    done = _status(environment, _elsewhere(tmp_path))
    assert done.returncode == 0 and " 1/1 " in done.stdout


def _register_contacts(dsn: str) -> None:
    entry = validate_directory(EXAMPLE_DESIRED_STATE).desired.plugins["contacts"]
    manifest = entry.manifest.model_dump(mode="json", by_alias=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        catalog.register_plugin(
            conn, "contacts", "Contacts", entry.manifest.version, manifest, manifest_hash(entry)
        )


def _json_status(env: dict[str, str], cwd: Path) -> tuple[dict[str, Any], str]:
    done = _status(env, cwd, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def test_status_never_claims_what_it_did_not_see(postgres_database: str, tmp_path: Path) -> None:
    env = {"PLEXICA_DATABASE_URL": postgres_database}
    assert run_cli(env, "init")[0] == 0
    _register_contacts(postgres_database)
    elsewhere = _elsewhere(tmp_path)

    # nothing recorded yet, no directory named: the catalog is shown, workloads are not
    document, stderr = _json_status(env, elsewhere)
    assert document["runtime"] == {"provider": None, "settings_from": None, "observed": False}
    (plugin,) = document["plugins"]
    assert plugin["status"] == "REGISTERED" and plugin["workload"] == {"observed": False}
    assert "no apply has recorded its runtime provider" in stderr
    assert document["warnings"] and "status DIR" in document["warnings"][0]

    # recorded, but the engine does not answer: still exit 0, and says why
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        record_runtime(conn, "docker", {"baseUrl": "unix:///nonexistent/podman.sock"})
    document, stderr = _json_status(env, elsewhere)
    assert document["runtime"]["settings_from"] == "store"
    assert document["runtime"]["observed"] is False
    assert document["plugins"][0]["workload"] == {"observed": False}
    assert "runtime provider was not observed" in stderr

    done = _status(env, elsewhere)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^contacts +REGISTERED +1\.3\.0 +\(not observed\) +-$", done.stdout, re.M)


def test_status_names_a_missing_directory(postgres_database: str, tmp_path: Path) -> None:
    done = _status({"PLEXICA_DATABASE_URL": postgres_database}, tmp_path, "no-such-dir")
    assert done.returncode == 2
    assert "no-such-dir is not a directory" in done.stderr
