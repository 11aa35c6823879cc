"""Saved plans written by release 1.0 of the plan format (commit d78c9cc, before the
architecture refactor of issue 12) still load, show exactly as that release showed them,
are justified by planning their inputs again, and apply. The fixtures were written by that
release: see tests/fixtures/README.md."""

from __future__ import annotations

import io
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import docker
import psycopg
import pytest
from apply_support import run_cli
from docker_engine import remove_scope
from rich.console import Console

from plexica_gitops.desired.validate import validate_directory
from plexica_gitops.live.model import LiveState
from plexica_gitops.plan.builder import build_plan
from plexica_gitops.plan.model import Cause
from plexica_gitops.plan.planfile import (
    UnjustifiedPlanError,
    check_current,
    check_justified,
    load_plan,
)
from plexica_gitops.render.json import render_json
from plexica_gitops.render.markdown import render_markdown
from plexica_gitops.render.text import print_plan

FIXTURES = Path(__file__).parents[1] / "fixtures"
ECHO_SCOPE = "plan-1-0-fixture"  # the scope the echo fixture's platform.yaml names


def _text(plan: Any) -> str:
    buffer = io.StringIO()
    print_plan(plan, Console(file=buffer, force_terminal=False, width=110, color_system=None))
    return buffer.getvalue()


def _without_causes(rendered: str) -> dict[str, Any]:
    """The JSON form as format 1.0 wrote it: 1.1 only adds each action's `cause`."""
    document = json.loads(rendered)
    document["format_version"] = "1.0"
    for action in document["actions"]:
        action.pop("cause", None)
    return document


def _assert_shows_as_release_1_0(plan_file: Path, shown: Path) -> None:
    plan = load_plan(plan_file)
    assert _text(plan) == shown.with_suffix(".txt").read_text(encoding="utf-8")
    assert render_markdown(plan) == shown.with_suffix(".md").read_text(encoding="utf-8")
    expected = json.loads(shown.with_suffix(".json").read_text(encoding="utf-8"))
    assert _without_causes(render_json(plan)) == expected


def test_a_1_0_install_plan_shows_as_it_did() -> None:
    _assert_shows_as_release_1_0(FIXTURES / "plan-1.0.plan", FIXTURES / "plan-1.0-show.json")


def test_a_1_0_plan_of_changes_and_drift_shows_and_is_justified(tmp_path: Path) -> None:
    fixture = FIXTURES / "plan-1.0-changes"
    _assert_shows_as_release_1_0(fixture / "plan-1.0.plan", fixture / "show.json")
    root = tmp_path / "desired-state"
    shutil.copytree(fixture / "desired-state", root)
    desired = validate_directory(root).desired
    live = LiveState.from_json((fixture / "live-state.json").read_bytes())
    saved = load_plan(fixture / "plan-1.0.plan")
    check_current(saved, desired.revision, live.fingerprint())
    check_justified(saved, build_plan(desired, live))  # what `apply PLANFILE` checks


def test_a_1_0_saved_plan_applies(
    environment: dict[str, str],
    echo_images: dict[str, str],
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    fixture = FIXTURES / "plan-1.0-echo"
    root = tmp_path / "desired-state"
    shutil.copytree(fixture / "desired-state", root)
    try:
        assert run_cli(environment, "init")[0] == 0
        code, output = run_cli(environment, "show", str(fixture / "plan-1.0.plan"))
        assert code == 0 and "plugin.echo.workload" in output, output
        code, output = run_cli(
            environment,
            "apply",
            str(fixture / "plan-1.0.plan"),
            "--desired-state",
            str(root),
            "--auto-approve",
        )
        assert code == 0, output
        assert "Apply complete! 10 succeeded, 0 failed" in output
        with psycopg.connect(environment["PLEXICA_DATABASE_URL"]) as conn:
            status = conn.execute("SELECT status FROM plexica.plugins WHERE id = 'echo'")
            assert status.fetchone() == ("ACTIVE",)
        code, output = run_cli(environment, "plan", str(root), "--detailed-exitcode")
        assert code == 0, output  # converged: nothing left to do
    finally:
        remove_scope(docker_client, ECHO_SCOPE)


def test_a_1_0_plan_reads_with_its_causes_unknown_and_is_written_as_1_1() -> None:
    """Format 1.0 did not record why: the cause is not guessed from the words."""
    plan = load_plan(FIXTURES / "plan-1.0-changes" / "plan-1.0.plan")
    assert plan.format_version == "1.0"
    assert plan.actions and {a.cause for a in plan.actions} == {Cause.UNKNOWN}
    document = json.loads(render_json(plan))
    assert document["format_version"] == "1.1"
    assert {a["cause"] for a in document["actions"]} == {"unknown"}


def test_a_1_0_plan_whose_actions_differ_is_still_refused(tmp_path: Path) -> None:
    """Comparing a 1.0 plan without causes hides nothing else."""
    fixture = FIXTURES / "plan-1.0-changes"
    root = tmp_path / "desired-state"
    shutil.copytree(fixture / "desired-state", root)
    replanned = build_plan(
        validate_directory(root).desired,
        LiveState.from_json((fixture / "live-state.json").read_bytes()),
    )
    saved = load_plan(fixture / "plan-1.0.plan")
    saved.actions[0] = replace(saved.actions[0], reason="something else")
    with pytest.raises(UnjustifiedPlanError, match="changed: " + re.escape(saved.actions[0].id)):
        check_justified(saved, replanned)
