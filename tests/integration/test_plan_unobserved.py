"""A plan never claims what it did not see: a part of the platform it needs but could not
observe (the runtime provider, the broker) fails `plan`, unless the user asks to plan
without it (`--unobserved PART`), and then the plan says so in every format."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from simulator import simulate
from typer.testing import CliRunner

from devenv.tansu import free_port
from plexica_gitops.cli import app
from plexica_gitops.desired.validate import validate_directory
from plexica_gitops.live.model import LiveState
from plexica_gitops.plan.builder import build_plan
from plexica_gitops.plan.wire import plan_from_json

EXAMPLE = Path(__file__).parents[2] / "desired-state"


def _run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env=env, input=stdin)


def _converged() -> LiveState:
    """The example desired state after a perfect apply."""
    desired = validate_directory(EXAMPLE).desired
    return simulate(build_plan(desired, LiveState()), desired, LiveState())


def _snapshot(tmp_path: Path, live: LiveState) -> str:
    path = tmp_path / "live.json"
    path.write_text(live.model_dump_json(), encoding="utf-8")
    return str(path)


def test_a_snapshot_without_topics_fails_the_plan_naming_the_flag(tmp_path: Path) -> None:
    live = _converged().model_copy(update={"topics": {}, "topics_observed": False})
    result = _run("plan", str(EXAMPLE), "--live-state", _snapshot(tmp_path, live))
    assert result.exit_code == 1, result.output
    assert "the event broker was not observed" in result.output
    assert "topics_observed: false" in result.output
    assert "--unobserved broker" in result.output
    assert "No changes" not in result.output


def test_detailed_exitcode_with_a_skipped_part_says_what_was_not_observed(
    tmp_path: Path,
) -> None:
    snapshot = _snapshot(tmp_path, _converged())
    args = ("plan", str(EXAMPLE), "--live-state", snapshot, "--detailed-exitcode")
    full = _run(*args)
    assert full.exit_code == 0 and "No changes. The platform matches" in full.output

    result = _run(*args, "--unobserved", "broker")
    assert result.exit_code == 0, result.output
    assert "The platform matches the desired state" not in result.output
    assert "Not observed: broker (topics not compared)" in result.output
    assert "Topics were not observed" in result.output

    markdown = _run(*args, "--unobserved", "broker", "--format", "markdown")
    assert "Not observed: broker" in markdown.output
    assert "The platform matches the desired state" not in markdown.output
    document = json.loads(_run(*args, "--unobserved", "broker", "--format", "json").output)
    assert document["unobserved"] == ["broker"] and document["actions"] == []


def test_a_plan_without_the_runtime_names_it_in_the_header(tmp_path: Path) -> None:
    live = _converged()
    crm = live.plugins["crm"]
    drifted = crm.model_copy(update={"version": "1.1.0", "manifest_hash": "old"})
    live = live.model_copy(update={"plugins": {**live.plugins, "crm": drifted}})
    snapshot = _snapshot(tmp_path, live)
    result = _run("plan", str(EXAMPLE), "--live-state", snapshot, "--unobserved", "runtime")
    assert result.exit_code == 0, result.output
    assert "Not observed: runtime (workloads not compared)" in result.output
    assert "plugin.crm.workload" not in result.output  # not seen: nothing planned there
    document = json.loads(
        _run(
            "plan", str(EXAMPLE), "--live-state", snapshot, "--unobserved", "runtime,broker",
            "--format", "json",
        ).output
    )  # fmt: skip
    assert document["unobserved"] == ["broker", "runtime"]
    assert "PGP205" in [w["code"] for w in document["warnings"]]


def test_an_unknown_part_is_a_usage_error() -> None:
    result = _run("plan", str(EXAMPLE), "--live-state", "-", "--unobserved", "kafka", stdin="{}")
    assert result.exit_code == 2
    assert "--unobserved kafka" in result.output and "runtime, broker" in result.output


def test_an_empty_platform_needs_nothing_unobserved() -> None:
    """`echo '{}' | plan --live-state -` (the README's first plan) still works."""
    result = _run("plan", str(EXAMPLE), "--live-state", "-", stdin="{}")
    assert result.exit_code == 0, result.output


def test_a_plan_saved_before_the_field_still_loads() -> None:
    document = json.loads(
        _run("plan", str(EXAMPLE), "--live-state", "-", "--format", "json", stdin="{}").output
    )
    del document["unobserved"]
    assert plan_from_json(document).unobserved == []


def test_an_unreachable_broker_fails_the_plan_within_seconds(postgres_database: str) -> None:
    closed = f"127.0.0.1:{free_port()}"
    env = {
        "PLEXICA_DATABASE_URL": postgres_database,
        "KAFKA_BOOTSTRAP_SERVERS": closed,
        "DOCKER_HOST": "unix:///nonexistent.sock",
    }
    assert _run("init", env=env).exit_code == 0
    started = time.monotonic()
    result = _run("plan", str(EXAMPLE), "--unobserved", "runtime", env=env)
    elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.output
    assert f"the event broker at {closed} did not answer within 3s" in result.output
    assert "--unobserved broker" in result.output
    assert elapsed < 8
    skipped = _run("plan", str(EXAMPLE), "--unobserved", "runtime,broker", env=env)
    assert skipped.exit_code == 0, skipped.output
    assert "Not observed: broker (topics not compared), runtime" in skipped.output


@pytest.mark.parametrize("command", ["plan", "graph"])
def test_graph_fails_the_same_way(tmp_path: Path, command: str) -> None:
    live = _converged().model_copy(update={"topics_observed": False})
    result = _run(command, str(EXAMPLE), "--live-state", _snapshot(tmp_path, live))
    assert result.exit_code == 1 and "--unobserved broker" in result.output
