"""Golden files: what a reviewer sees for each kind of change, in text, JSON and Markdown.

Each scenario edits a copy of the example desired state and plans it against a live state:
empty, or the platform as a perfect apply of the example leaves it (tests/simulator.py).
Regenerate after an intended change with `PLEXICA_UPDATE_GOLDEN=1 python -m pytest
tests/unit/test_golden.py`, then review the diff of tests/golden/ like any other change.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console
from simulator import simulate

from plexica_gitops.desired.build import DesiredState
from plexica_gitops.desired.validate import validate_directory
from plexica_gitops.lifecycle import LifecycleStatus
from plexica_gitops.live.model import LivePlugin, LiveState
from plexica_gitops.plan.builder import build_plan
from plexica_gitops.plan.model import Plan
from plexica_gitops.render.json import render_json
from plexica_gitops.render.markdown import render_markdown
from plexica_gitops.render.text import print_plan

EXAMPLE = Path(__file__).parents[2] / "desired-state"
GOLDEN = Path(__file__).parents[1] / "golden"
UPDATE = os.environ.get("PLEXICA_UPDATE_GOLDEN") == "1"

Edit = Callable[[Path], None]


def _replace(root: Path, relative: str, old: str, new: str) -> None:
    path = root / relative
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} must occur once in {relative}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def _desired(root: Path) -> DesiredState:
    report = validate_directory(root)
    assert report.valid, [f.message for f in report.errors]
    return report.desired


def _converged(workdir: Path) -> LiveState:
    """The live platform after a perfect apply of the unedited example."""
    example = workdir / "example"
    shutil.copytree(EXAMPLE, example)
    desired = _desired(example)
    live = simulate(build_plan(desired, LiveState()), desired, LiveState())
    assert not build_plan(desired, live).actions, "the example must converge in one apply"
    return live


# --- scenarios -----------------------------------------------------------------------------


def upgrade_contacts(root: Path) -> None:
    """contacts 1.3.0 → 1.3.1 with a new migration; crm, notifications, inventory and
    billing depend on it (notifications on ~1.3) and must not move."""
    plugin = "plugins/contacts/plugin.yaml"
    _replace(root, plugin, "version: 1.3.0", "version: 1.3.1")
    _replace(root, plugin, "contacts:1.3.0", "contacts:1.3.1")
    (root / "plugins/contacts/migrations/0003_add_contact_notes.sql").write_text(
        "ALTER TABLE contacts ADD COLUMN notes text;\n", encoding="utf-8"
    )


def disable_notifications(root: Path) -> None:
    _replace(root, "plugins/notifications/plugin.yaml", "state: active", "state: disabled")
    for tenant in ("acme", "globex"):
        path = root / f"tenants/{tenant}.yaml"
        text = path.read_text(encoding="utf-8")
        start = text.index("    notifications:\n")
        path.write_text(
            text[:start] + text[start:].replace("enabled: true", "enabled: false", 1),
            encoding="utf-8",
        )


def onboard_tenant(root: Path) -> None:
    (root / "tenants/initrode.yaml").write_text(
        """apiVersion: plexica.io/v1alpha1
kind: Tenant
metadata:
  name: initrode
spec:
  id: 0b6c3a52-58f4-4f8e-9d0a-3c7a1e2b9f10
  displayName: Initrode
  schema: tenant_initrode
  status: active
  plugins:
    contacts:
      enabled: true
    crm:
      enabled: true
      configuration:
        dealStages: [lead, won, lost]
        currency: USD
""",
        encoding="utf-8",
    )


def change_tenant_configuration(root: Path) -> None:
    _replace(root, "tenants/acme.yaml", "staleDealDays: 21", "staleDealDays: 14")


def suspend_tenant(root: Path) -> None:
    _replace(root, "tenants/umbrella.yaml", "status: active", "status: suspended")


def reactivate_tenant(root: Path) -> None:
    _replace(root, "tenants/initech.yaml", "status: suspended", "status: active")


def uninstall_crm_and_billing(root: Path) -> None:
    """Git removes crm (and billing, which needs it) but the live platform runs a plugin
    git does not manage that depends on crm: the plan must refuse (spec 004 edge case 5)."""
    for plugin in ("crm", "billing"):
        _replace(root, f"plugins/{plugin}/plugin.yaml", "state: active", "state: absent")
    for tenant in ("acme", "globex", "initech", "umbrella"):
        path = root / f"tenants/{tenant}.yaml"
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept, skipping = [], False
        for line in lines:
            if line in ("    crm:\n", "    billing:\n"):
                skipping = True
                continue
            if skipping and line.startswith("      "):
                continue
            skipping = False
            kept.append(line)
        path.write_text("".join(kept), encoding="utf-8")


def _with_unmanaged_crm_dependent(live: LiveState) -> LiveState:
    reports = LivePlugin(
        status=LifecycleStatus.ACTIVE,
        version="0.3.0",
        manifest_hash="0123456789abcdef",
        dependencies={"crm": "^1.0.0"},
    )
    return live.model_copy(update={"plugins": {**live.plugins, "reports": reports}})


SCENARIOS: dict[str, tuple[Edit | None, str]] = {
    "fresh-install": (None, "empty"),
    "no-op": (None, "converged"),
    "upgrade-with-dependents": (upgrade_contacts, "converged"),
    "disable": (disable_notifications, "converged"),
    "uninstall-with-active-dependent": (uninstall_crm_and_billing, "unmanaged-dependent"),
    "tenant-onboarding": (onboard_tenant, "converged"),
    "tenant-config-change": (change_tenant_configuration, "converged"),
    "suspended-tenant": (suspend_tenant, "converged"),
    "tenant-reactivated": (reactivate_tenant, "converged"),
}


def _plan(tmp_path: Path, scenario: str) -> Plan:
    edit, live_kind = SCENARIOS[scenario]
    root = tmp_path / "desired-state"
    shutil.copytree(EXAMPLE, root)
    if edit is not None:
        edit(root)
    live = LiveState() if live_kind == "empty" else _converged(tmp_path)
    if live_kind == "unmanaged-dependent":
        live = _with_unmanaged_crm_dependent(live)
    return build_plan(_desired(root), live)


def _text(plan: Plan) -> str:
    buffer = io.StringIO()
    print_plan(plan, Console(file=buffer, force_terminal=False, width=110, color_system=None))
    return buffer.getvalue()


RENDERERS: dict[str, Callable[[Plan], str]] = {
    "txt": _text,
    "json": render_json,
    "md": render_markdown,
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_golden(tmp_path: Path, scenario: str) -> None:
    plan = _plan(tmp_path, scenario)
    for extension, render in RENDERERS.items():
        rendered = render(plan)
        golden = GOLDEN / f"{scenario}.{extension}"
        if UPDATE:
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(rendered, encoding="utf-8")
        assert golden.exists(), f"missing {golden}: run with PLEXICA_UPDATE_GOLDEN=1"
        assert rendered == golden.read_text(encoding="utf-8"), (
            f"{scenario}.{extension} differs from the golden file; if the change is "
            "intended, regenerate with PLEXICA_UPDATE_GOLDEN=1 and review the diff"
        )


def test_golden_plans_say_what_a_reviewer_needs(tmp_path: Path) -> None:
    """The properties behind the golden files, so a regenerated file cannot silently lose
    them."""
    upgrade = json.loads(render_json(_plan(tmp_path / "a", "upgrade-with-dependents")))
    ids = [a["id"] for a in upgrade["actions"]]
    assert "plugin.contacts.workload:replace" in ids
    assert not any(a["plugin"] in {"crm", "billing"} for a in upgrade["actions"])
    replace = ids.index("plugin.contacts.workload:replace")
    migrations = [i for i, a in enumerate(ids) if a.startswith("tenant.") and "contacts" in a]
    assert migrations and max(migrations) < replace  # migrate every tenant, then hot-swap

    noop = _plan(tmp_path / "b", "no-op")
    assert not noop.actions and "No changes." in _text(noop)

    refused = _plan(tmp_path / "c", "uninstall-with-active-dependent")
    assert [e.code for e in refused.errors] == ["PGP104", "PGP108", "PGP108", "PGP108"]
    assert set(refused.errors[0].subjects) == {"reports", "crm"}
    # analytics stays active and still consumes crm's and billing's events: refused too
    assert {e.subjects for e in refused.errors[1:]} == {
        ("analytics", "crm"),
        ("analytics", "billing"),
    }
    assert "Plan failed" in _text(refused)

    suspended = _plan(tmp_path / "d", "suspended-tenant")
    assert [a["id"] for a in json.loads(render_json(suspended))["actions"]] == [
        "tenant.umbrella:update"
    ]
    back = _plan(tmp_path / "e", "tenant-reactivated")
    steps = {a.id for a in back.actions}
    assert "tenant.initech:update" in steps
    assert {
        "tenant.initech.migrations.contacts:apply",
        "tenant.initech.migrations.crm:apply",
    } <= steps


def test_uninstall_with_a_dependent_still_desired_active_is_a_validation_error(
    tmp_path: Path,
) -> None:
    root = tmp_path / "desired-state"
    shutil.copytree(EXAMPLE, root)
    _replace(root, "plugins/crm/plugin.yaml", "state: active", "state: absent")
    report = validate_directory(root)
    problems = [f for f in report.errors if f.code == "PGV401"]
    assert problems and {"billing", "crm"} <= set(problems[0].subjects)
