"""A plugin desired `disabled` while tenants enable it in git: the plan names those tenants
(PGP109) and holds their bindings off (the tenant's intent stays in git) until the plugin
is active again, when they are enabled back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulator import platform_document as platform
from simulator import plugin_document, simulate, tenant_document, write_desired_state

from plexica_gitops.desired.build import DesiredState
from plexica_gitops.desired.validate import validate_directory
from plexica_gitops.live.model import LiveState
from plexica_gitops.plan.builder import build_plan

ON = {"enabled": True}


def _desired(root: Path, crm: str, tenants: dict[str, dict[str, Any]]) -> DesiredState:
    plugins = [
        plugin_document("contacts"),
        plugin_document("crm", state=crm, dependencies=["contacts"], migrations=True),
    ]
    documents = [tenant_document(slug, plugins=bindings) for slug, bindings in tenants.items()]
    write_desired_state(root, platform(), plugins, documents, {"crm": 1})
    report = validate_directory(root)
    # PGV604 (enabling a plugin not desired active) is the validator's, and being lifted
    # for `disabled`: the planner must do the right thing either way
    assert {f.code for f in report.errors} <= {"PGV604"}, [f.message for f in report.errors]
    return report.desired


def _ids(plan: Any) -> list[str]:
    return [a.id for a in plan.actions]


def test_a_disabled_plugin_holds_its_tenants_bindings_until_it_is_active(tmp_path: Path) -> None:
    both = {"contacts": ON, "crm": ON}
    # crm served acme; globex enables crm only later, while crm is disabled
    serving = _desired(tmp_path / "v1", "active", {"acme": both, "globex": {"contacts": ON}})
    live = simulate(build_plan(serving, LiveState()), serving, LiveState())
    assert live.tenants["acme"].plugins["crm"].enabled

    disabled = _desired(tmp_path / "v2", "disabled", {"acme": both, "globex": both})
    plan = build_plan(disabled, live)
    assert not plan.errors, [f.message for f in plan.errors]
    (held,) = [w for w in plan.warnings if w.code == "PGP109"]
    assert held.message.startswith(
        "plugin 'crm' is desired disabled, and 2 tenants enable it in git (acme, globex)"
    )
    assert held.subjects == ("crm", "acme", "globex")
    assert held.location is not None and held.location.file == "plugins/crm/plugin.yaml"
    off = next(a for a in plan.actions if a.id == "tenant.acme.plugin.crm:disable")
    assert off.after == {"enabled": False} and "held off" in off.reason
    assert "tenant.acme.plugin.crm:disable" in _depends_transitively(plan, "plugin.crm:disable")
    assert not [i for i in _ids(plan) if i.startswith("tenant.globex.plugin.crm")]  # not created

    held_live = simulate(plan, disabled, live)
    assert not held_live.tenants["acme"].plugins["crm"].enabled
    assert "crm" not in held_live.tenants["globex"].plugins
    again = build_plan(disabled, held_live)
    assert again.actions == [] and "PGP109" in [w.code for w in again.warnings]

    back = _desired(tmp_path / "v3", "active", {"acme": both, "globex": both})
    plan = build_plan(back, held_live)
    for slug in ("acme", "globex"):
        enable = f"tenant.{slug}.plugin.crm:enable"
        assert "plugin.crm:activate" in _depends_transitively(plan, enable)
    assert "PGP109" not in [w.code for w in plan.warnings]
    served = simulate(plan, back, held_live)
    assert all(served.tenants[s].plugins["crm"].enabled for s in ("acme", "globex"))
    assert build_plan(back, served).actions == []


def test_thousands_of_held_tenants_are_one_compact_line(tmp_path: Path) -> None:
    tenants = {f"t{n:02d}": {"contacts": ON, "crm": ON} for n in range(12)}
    plan = build_plan(_desired(tmp_path, "disabled", tenants), LiveState())
    (held,) = [w for w in plan.warnings if w.code == "PGP109"]
    assert "12 tenants enable it in git (t00, t01, t02, t03, t04 and 7 more)" in held.message
    assert len(held.subjects) == 13  # every tenant, for machines
    assert not [a for a in plan.actions if a.id.endswith("plugin.crm:enable")]


def _depends_transitively(plan: Any, step_id: str) -> set[str]:
    by_id = {a.id: a for a in plan.actions}
    found: set[str] = set()
    stack = list(by_id[step_id].depends_on)
    while stack:
        current = stack.pop()
        if current not in found:
            found.add(current)
            stack.extend(by_id[current].depends_on)
    return found
