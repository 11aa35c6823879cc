"""`plan`, `show`, `graph` and `schemas` as a user runs them, and saved plan files."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from simulator import simulate
from typer.testing import CliRunner

from plexica_gitops.cli import app
from plexica_gitops.desired.build import DesiredState
from plexica_gitops.desired.schemas import render_schema, schema_file_name
from plexica_gitops.desired.validate import validate_directory
from plexica_gitops.live.model import LiveState, LiveTenantPlugin
from plexica_gitops.plan.builder import build_plan
from plexica_gitops.plan.planfile import (
    SIGNING_KEY_ENV,
    PlanFileError,
    StalePlanError,
    check_current,
    load_plan,
    save_plan,
)

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "desired-state"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "desired-state"
    shutil.copytree(EXAMPLE, root)
    (tmp_path / "empty.json").write_text("{}", encoding="utf-8")
    return root


def _run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), input=stdin)
    return result.exit_code, result.output


def _plan_json(repo: Path, *extra: str) -> dict[str, object]:
    code, output = _run(
        "plan", str(repo), "--live-state", "-", "--format", "json", *extra, stdin="{}"
    )
    assert code == 0, output
    return json.loads(output)  # type: ignore[no-any-return]


def test_committed_schemas_match_the_models() -> None:
    for kind in ("Platform", "Plugin", "Tenant"):
        committed = (ROOT / "schemas" / schema_file_name(kind)).read_text(encoding="utf-8")
        assert committed == render_schema(kind), (
            f"schemas/{schema_file_name(kind)} is stale: run `plexica-gitops schemas`"
        )


def test_example_files_point_editors_at_the_schemas() -> None:
    for path in EXAMPLE.rglob("*.yaml"):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        target = (path.parent / first.split("$schema=", 1)[1]).resolve()
        assert target.is_file(), f"{path}: {target} does not exist"


def test_plan_of_an_empty_platform_installs_everything_in_dependency_order(repo: Path) -> None:
    plan = _plan_json(repo)
    ids = [action["id"] for action in plan["actions"]]  # type: ignore[index]
    assert plan["summary"] == {"add": 87, "change": 0, "destroy": 0, "transition": 17}
    # each active subscriber's consumer group is registered before it is activated
    crm_subscriptions = next(
        a
        for a in plan["actions"]
        if a["id"] == "plugin.crm.subscriptions:create"  # type: ignore[union-attr]
    )
    assert crm_subscriptions["after"] == {
        "subscriptions": {
            "contacts.contact.created": "plugin-crm",
            "contacts.contact.deleted": "plugin-crm",
        }
    }
    assert ids.index("plugin.crm.subscriptions:create") < ids.index("plugin.crm:activate")
    # contacts before crm before billing: install, then activation
    for step in ("mark-installed", "activate"):
        order = [ids.index(f"plugin.{p}:{step}") for p in ("contacts", "crm", "billing")]
        assert order == sorted(order), step
    assert ids.index("plugin.crm:activate") < ids.index("tenant.acme.plugin.crm:enable")
    seen: set[str] = set()
    for action in plan["actions"]:  # type: ignore[attr-defined]
        assert set(action["depends_on"]) <= seen, action["id"]
        seen.add(action["id"])


def test_text_plan_ends_with_the_summary_line(repo: Path) -> None:
    code, output = _run("plan", str(repo), "--live-state", "-", stdin="{}")
    assert code == 0
    assert output.rstrip().endswith(
        "Plan: 87 to add, 0 to change, 0 to destroy, 17 lifecycle transitions."
    )


def test_detailed_exitcode(repo: Path, tmp_path: Path) -> None:
    code, _ = _run("plan", str(repo), "--live-state", "-", "--detailed-exitcode", stdin="{}")
    assert code == 2
    desired = validate_directory(repo).desired
    live = _converged_live(desired)
    live_file = tmp_path / "live.json"
    live_file.write_text(live.model_dump_json(), encoding="utf-8")
    code, output = _run("plan", str(repo), "--live-state", str(live_file), "--detailed-exitcode")
    assert code == 0, output
    assert "No changes." in output


def test_a_plan_says_what_apply_records_for_values_in_sync_without_a_record(
    repo: Path, tmp_path: Path
) -> None:
    desired = validate_directory(repo).desired
    converged = _converged_live(desired)
    rows = converged.last_applied
    acme = [a for a in rows if a == "tenant.acme" or a.startswith("tenant.acme.")]
    live_file = tmp_path / "live.json"
    live_file.write_text(converged.model_dump_json(), encoding="utf-8")
    code, output = _run("plan", str(repo), "--live-state", str(live_file))
    assert code == 0 and "No changes." in output and "records" not in output
    # the rows lost (or the platform there before the reconciler): still no changes
    unrecorded = converged.model_copy(update={"last_applied": {}})
    live_file.write_text(unrecorded.model_dump_json(), encoding="utf-8")
    code, output = _run("plan", str(repo), "--live-state", str(live_file), "--detailed-exitcode")
    assert code == 0 and "No changes." in output, output
    assert f"records what was last applied at {len(rows)} resources in sync" in output
    code, output = _run(
        "plan", str(repo), "--live-state", str(live_file), "--target", "tenant.acme"
    )
    assert len(acme) > 1 and f"at {len(acme)} resources in sync" in output, output
    code, output = _run("plan", str(repo), "--live-state", str(live_file), "--format", "markdown")
    assert f"at {len(rows)} resources in sync" in output, output


def test_a_snapshot_file_and_the_same_text_on_stdin_plan_alike(repo: Path, tmp_path: Path) -> None:
    """A file is read a piece at a time and its configurations shared with git's; standard
    input is read whole: the plans are the same, byte for byte."""
    converged = _converged_live(validate_directory(repo).desired)
    acme = converged.tenants["acme"]
    edited = {pid: LiveTenantPlugin(b.enabled, {"x": 1}) for pid, b in acme.plugins.items()}
    tenants = {**converged.tenants, "acme": acme.model_copy(update={"plugins": edited})}
    text = converged.model_copy(update={"tenants": tenants}).model_dump_json()
    live_file = tmp_path / "live.json"
    live_file.write_text(text, encoding="utf-8")
    code, from_file = _run("plan", str(repo), "--live-state", str(live_file), "--format", "json")
    assert code == 0, from_file
    code, from_stdin = _run("plan", str(repo), "--live-state", "-", "--format", "json", stdin=text)
    assert code == 0 and from_file == from_stdin
    assert len(json.loads(from_file)["actions"]) == len(edited) > 0


def _converged_live(desired: DesiredState) -> LiveState:
    return simulate(build_plan(desired, LiveState()), desired, LiveState())


def test_invalid_desired_state_makes_no_plan(repo: Path) -> None:
    path = repo / "plugins/crm/plugin.yaml"
    path.write_text(path.read_text().replace("state: active", "state: absent"))
    code, output = _run("plan", str(repo), "--live-state", "-", stdin="{}")
    assert code == 1
    assert "PGV401" in output and "Plan failed" in output
    code, output = _run("plan", str(repo), "--live-state", "-", "--format", "json", stdin="{}")
    assert code == 1
    document = json.loads(output)
    assert document["actions"] == [] and document["errors"][0]["code"] == "PGV401"


def test_missing_or_malformed_live_state_is_a_clear_error(repo: Path, tmp_path: Path) -> None:
    code, output = _run("plan", str(repo))
    assert code == 1 and "--live-state" in output
    bad = tmp_path / "bad.json"
    bad.write_text('{"plugins": {"crm": {"status": "RUNNING"}}}')
    code, output = _run("plan", str(repo), "--live-state", str(bad))
    assert code == 1 and "plugins.crm" in output and "malformed" in output


def test_target_keeps_the_target_and_what_it_depends_on(repo: Path) -> None:
    plan = _plan_json(repo, "--target", "plugin.crm.routes")
    ids = {action["id"] for action in plan["actions"]}  # type: ignore[index]
    assert "plugin.crm.routes:create" in ids
    assert {"plugin.contacts:activate", "plugin.crm:mark-installed"} <= ids
    assert not any(i.startswith("plugin.billing") for i in ids)
    assert plan["targets"] == ["plugin.crm.routes"]


def test_saved_plan_round_trips_through_show(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "release.plan"
    code, _ = _run("plan", str(repo), "--live-state", "-", "--out", str(out), stdin="{}")
    assert code == 0
    shown_code, shown = _run("show", str(out), "--format", "json")
    assert shown_code == 0
    assert json.loads(shown) == _plan_json(repo)


def test_an_altered_plan_file_is_refused(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "release.plan"
    _run("plan", str(repo), "--live-state", "-", "--out", str(out), stdin="{}")
    document = json.loads(out.read_text())
    document["plan"]["actions"] = document["plan"]["actions"][1:]
    out.write_text(json.dumps(document))
    code, output = _run("show", str(out))
    assert code == 1 and "altered" in output


def test_signed_plans(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    desired = validate_directory(repo).desired
    plan = build_plan(desired, LiveState())
    unsigned = tmp_path / "unsigned.plan"
    save_plan(plan, unsigned)
    monkeypatch.setenv(SIGNING_KEY_ENV, "k1")
    signed = tmp_path / "signed.plan"
    save_plan(plan, signed)
    assert load_plan(signed).actions == plan.actions
    with pytest.raises(PlanFileError, match="signature"):
        load_plan(unsigned)
    # Recomputing the checksum after an edit is not enough when plans are signed.
    document = json.loads(signed.read_text())
    document["plan"]["actions"][0]["reason"] = "trust me"

    from plexica_gitops.plan.planfile import _canonical

    document["checksum"] = "sha256:" + hashlib.sha256(_canonical(document["plan"])).hexdigest()
    signed.write_text(json.dumps(document))
    with pytest.raises(PlanFileError, match="signature"):
        load_plan(signed)
    monkeypatch.setenv(SIGNING_KEY_ENV, "another key")
    save_plan(plan, signed)
    monkeypatch.setenv(SIGNING_KEY_ENV, "k1")
    with pytest.raises(PlanFileError, match="signature"):
        load_plan(signed)


def test_stale_plans_say_what_changed(repo: Path) -> None:
    desired = validate_directory(repo).desired
    live = LiveState()
    plan = build_plan(desired, live)
    check_current(plan, desired.revision, live.fingerprint())  # current: no error

    path = repo / "tenants/acme.yaml"
    path.write_text(path.read_text().replace("staleDealDays: 21", "staleDealDays: 14"))
    changed = validate_directory(repo).desired
    assert changed.revision != desired.revision
    with pytest.raises(StalePlanError, match="desired state changed") as stale:
        check_current(plan, changed.revision, live.fingerprint())
    assert "live platform" not in str(stale.value)

    moved = _converged_live(desired)
    with pytest.raises(StalePlanError, match="live platform changed"):
        check_current(plan, desired.revision, moved.fingerprint())


def test_unreadable_plan_files(tmp_path: Path) -> None:
    code, output = _run("show", str(tmp_path / "nope.plan"))
    assert code == 1 and "no such plan file" in output
    garbage = tmp_path / "garbage.plan"
    garbage.write_text("not json")
    code, output = _run("show", str(garbage))
    assert code == 1 and "not a readable plan file" in output


@pytest.mark.parametrize(
    ("fmt", "marker"), [("dot", "digraph plan {"), ("mermaid", "flowchart LR")]
)
def test_graph_draws_every_dependency(repo: Path, fmt: str, marker: str) -> None:
    code, output = _run("graph", str(repo), "--live-state", "-", "--format", fmt, stdin="{}")
    assert code == 0 and output.startswith(marker)
    plan = _plan_json(repo)
    edges = sum(len(a["depends_on"]) for a in plan["actions"])  # type: ignore[attr-defined]
    arrows = output.count("->") if fmt == "dot" else output.count("-->")
    assert arrows == edges > 0


def test_schemas_command_writes_the_schemas(tmp_path: Path) -> None:
    code, _ = _run("schemas", "--out", str(tmp_path))
    assert code == 0
    written = json.loads((tmp_path / "plugin.schema.json").read_text())
    assert written["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert written["properties"]["kind"]["const"] == "Plugin"


def test_mistyped_targets_and_bad_paths_are_usage_errors(repo: Path, tmp_path: Path) -> None:
    code, output = _run(
        "plan", str(repo), "--live-state", "-", "--target", "plugin.crmm", stdin="{}"
    )
    assert code == 2 and "plugin.crmm names nothing" in output
    code, output = _run("plan", str(repo), "--live-state", "-", "--out", str(tmp_path), stdin="{}")
    assert code == 2 and "is a directory" in output
    missing = tmp_path / "nope" / "release.plan"
    code, output = _run("plan", str(repo), "--live-state", "-", "--out", str(missing), stdin="{}")
    assert code == 2 and "does not exist" in output
    assert not list(tmp_path.glob(".*.plan*")), "no temporary file is left behind"
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe")
    code, output = _run("plan", str(repo), "--live-state", str(binary))
    assert code == 1 and "not UTF-8" in output
