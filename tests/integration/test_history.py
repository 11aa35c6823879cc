"""Issue 14, item 5: `history --apply ID` shows one apply's journal — its revision, where
it ran, each step in the order it started with its status, duration and error, what was
rolled back — as text and as JSON. Against a real PostgreSQL and real containers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psycopg
from apply_support import EchoPlatform, run_cli
from git_repos import commit_all, init
from typer.testing import CliRunner

from plexica_gitops.cli import app
from plexica_gitops.store import journal

MISSING_IMAGE = "localhost/plexica-test/no-such-echo:1.0.0"
STEP_KEYS = ["position", "id", "status", "started_at", "finished_at", "duration_seconds",
             "error", "detail"]  # fmt: skip


def _json(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.exit_code, json.loads(result.stdout)


def _apply_id(output: str) -> str:
    found = re.search(r"Recorded as apply (\d+)", output)
    assert found, output
    return found.group(1)


def test_a_failed_apply_from_git_shows_its_steps_durations_and_error(
    echo: EchoPlatform, environment: dict[str, str], tmp_path: Path
) -> None:
    root = Path(echo.write("1.0.0", image=MISSING_IMAGE, replicas=1))
    init(root)
    sha = commit_all(root, "echo with an image no registry has")
    env = {**environment, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert run_cli(env, "init")[0] == 0
    code, output = run_cli(env, "apply", "--repo", str(root), "--ref", "main", "--auto-approve")
    assert code == 1, output
    apply_id = _apply_id(output)

    code, text = run_cli(env, "history", "--apply", apply_id)
    assert code == 0, text
    assert text.startswith(f"apply {apply_id}: failed\n")
    assert f"revision  main@sha1:{sha}\n" in text
    assert re.search(r"ran on +host \S+, pid \d+, lease epoch \d+", text)
    rows = [line for line in text.splitlines() if re.match(r" +\d+  ", line)]
    failed = next(line for line in rows if " failed " in line)
    assert "plugin.echo:install" in failed
    assert re.search(r"\+\d+\.\d\d s +\d+\.\d\d s$", failed)  # its start and duration
    after = text.splitlines()[text.splitlines().index(failed) + 1]
    assert after.strip().startswith("error: ") and "no-such-echo" in after
    skipped = [line for line in rows if " skipped " in line]
    assert skipped and all(line.endswith("-  -") for line in skipped)  # never started

    _, document = _json(env, "history", "--apply", apply_id, "--format", "json")
    assert list(document)[:9] == ["format_version", "id", "revision", "plan_hash", "host",
                                  "pid", "epoch", "result", "started_at"]  # fmt: skip
    assert document["id"] == int(apply_id) and document["result"] == "failed"
    assert document["revision"] == f"main@sha1:{sha}"
    steps = document["steps"]
    assert [s["position"] for s in steps] == list(range(1, len(steps) + 1))
    assert all(list(s) == STEP_KEYS for s in steps)
    starts = [s["started_at"] for s in steps if s["started_at"]]
    assert starts == sorted(starts)  # in the order they started
    ran = [s for s in steps if s["status"] in ("succeeded", "failed")]
    assert ran and all(s["duration_seconds"] is not None for s in ran)
    (failure,) = [s for s in steps if s["status"] == "failed"]
    assert "no-such-echo" in failure["error"] and failure["detail"] is None
    for step in (s for s in steps if s["status"] == "skipped"):
        assert step["duration_seconds"] is None and step["started_at"] is None
        assert step["detail"].startswith("not started: ")
    counts = document["step_counts"]
    assert counts["failed"] == 1 and sum(counts.values()) == len(steps)
    assert document["rolled_back"] == [] and document["in_flight"] == []


def test_a_rolled_back_update_is_listed_as_rolled_back(
    echo: EchoPlatform, environment: dict[str, str]
) -> None:
    echo.install(environment, "1.0.0", replicas=1)
    root = echo.write("1.2.0", replicas=1, timeout_seconds=2)  # never ready: rolled back
    code, output = run_cli(environment, "apply", root, "--auto-approve")
    assert code == 1, output
    apply_id = _apply_id(output)

    code, text = run_cli(environment, "history", "--apply", apply_id)
    assert code == 0, text
    assert "Rolled back: plugin.echo.workload:replace." in text
    row = next(line for line in text.splitlines() if "plugin.echo.workload:replace" in line)
    assert " rolled-back " in row
    _, document = _json(environment, "history", "--apply", apply_id, "--format", "json")
    assert document["rolled_back"] == ["plugin.echo.workload:replace"]
    (step,) = [s for s in document["steps"] if s["id"] == "plugin.echo.workload:replace"]
    assert step["status"] == "rolled-back" and step["error"]
    assert step["duration_seconds"] >= 2  # it waited out the readiness timeout


def test_an_unknown_apply_and_an_interrupted_one(postgres_database: str) -> None:
    env = {"PLEXICA_DATABASE_URL": postgres_database}
    assert run_cli(env, "init")[0] == 0
    code, output = run_cli(env, "history", "--apply", "4711")
    assert code == 1
    assert "no apply 4711" in output and "`plexica-gitops history` lists the applies" in output

    with psycopg.connect(postgres_database, autocommit=True) as conn:
        apply_id = journal.start_apply(conn, "sha256:" + "a" * 64, "sha256:" + "b" * 64, "ci-7", 42)
        journal.step_started(conn, apply_id, "plugin.crm:register")
        journal.step_finished(conn, apply_id, "plugin.crm:register", "succeeded")
        journal.step_started(conn, apply_id, "plugin.crm:install")
        conn.execute(  # the process died: the next apply marked it so
            "UPDATE plexica_gitops.applies SET result = 'interrupted', finished_at = now()"
        )
    code, text = run_cli(env, "history", "--apply", str(apply_id))
    assert code == 0, text
    assert "ran on    host ci-7, pid 42\n" in text
    assert re.search(r"plugin\.crm:install +in flight +\+\d+\.\d\d s +-$", text, re.M)
    assert "In flight (when the apply died): plugin.crm:install." in text
    _, document = _json(env, "history", "--apply", str(apply_id), "--format", "json")
    assert document["in_flight"] == ["plugin.crm:install"] and document["epoch"] is None
    assert [s["status"] for s in document["steps"]] == ["succeeded", "started"]
    assert document["steps"][1]["finished_at"] is None

    code, output = run_cli(env, "history", "--format", "json")
    assert code == 2 and "--format json needs --apply ID" in output
