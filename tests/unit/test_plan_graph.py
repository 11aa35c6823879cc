"""The plan graph keeps the promises of the README (Plans, "Order."), walked as a user's
apply would walk it: a step runs only after everything it waits for, transitively. And
`--target plugin.<id>` takes in everything the plugin owns."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from conftest import DesiredStateCopy
from simulator import simulate

from plexica_gitops.desired.build import DesiredState
from plexica_gitops.desired.validate import validate_directory
from plexica_gitops.live.model import LiveState
from plexica_gitops.plan.builder import build_plan
from plexica_gitops.plan.graph import select_targets
from plexica_gitops.plan.model import Plan
from plexica_gitops.render.json import render_json

EXAMPLE = Path(__file__).parents[2] / "desired-state"


@dataclass
class Graph:
    """A plan's steps with the transitive closure of what each waits for."""

    plan: Plan
    checked: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids = [a.id for a in self.plan.actions]
        self.deps = {a.id: set(a.depends_on) for a in self.plan.actions}
        self.closure: dict[str, set[str]] = {}
        for step_id in self.ids:  # executable order: every dependency's closure is known
            found = set(self.deps[step_id])
            for dep in self.deps[step_id]:
                found |= self.closure[dep]
            self.closure[step_id] = found

    def matching(self, pattern: str) -> list[str]:
        return [i for i in self.ids if re.fullmatch(pattern, i)]

    def promise(self, name: str, first: str, then: str) -> None:
        """`then` waits (transitively) for `first`; both must be planned."""
        assert first in self.deps, f"{name}: {first} is not planned"
        assert then in self.deps, f"{name}: {then} is not planned"
        assert first in self.closure[then], f"{name}: {then} does not wait for {first}"
        self.checked[name] = self.checked.get(name, 0) + 1


def _desired(root: Path) -> DesiredState:
    report = validate_directory(root)
    assert report.valid, [f.message for f in report.errors]
    return report.desired


def _plan(desired: DesiredState, live: LiveState) -> Plan:
    plan = build_plan(desired, live)
    assert not plan.errors, [f.message for f in plan.errors]
    return plan


def _dependencies(desired: DesiredState) -> Iterator[tuple[str, str]]:
    for pid, entry in sorted(desired.plugins.items()):
        for dependency in entry.manifest.dependencies:
            yield pid, dependency.plugin


def _leaving(copy: DesiredStateCopy, *plugins: str, state: str) -> None:
    """Take `plugins` to `state`, and switch their tenants' bindings off in git."""
    for pid in plugins:
        copy.replace(f"plugins/{pid}/plugin.yaml", "  state: active", f"  state: {state}")
    for tenant in sorted(copy.root.glob("tenants/*.yaml")):
        text = tenant.read_text(encoding="utf-8")
        for pid in plugins:
            text = text.replace(
                f"    {pid}:\n      enabled: true", f"    {pid}:\n      enabled: false"
            )
        tenant.write_text(text, encoding="utf-8")


def test_the_plan_graph_keeps_every_ordering_promise_of_the_readme(
    desired_state_copy: DesiredStateCopy,
) -> None:
    example = _desired(EXAMPLE)
    install = Graph(_plan(example, LiveState()))
    converged = simulate(install.plan, example, LiveState())

    # --- fresh install ---------------------------------------------------------------------
    # "Dependencies install and activate before their dependents"
    for pid, dependency in _dependencies(example):
        if example.plugins[pid].document.spec.state.value != "active":
            continue
        promise = "dependencies install and activate before their dependents"
        install.promise(promise, f"plugin.{dependency}:mark-installed", f"plugin.{pid}:install")
        install.promise(promise, f"plugin.{dependency}:activate", f"plugin.{pid}:activate")
    # "migrations, permissions and topics exist before a workload is marked installed"
    for pid, entry in sorted(example.plugins.items()):
        marked = f"plugin.{pid}:mark-installed"
        promise = "migrations, permissions and topics exist before it is marked installed"
        for migrations in install.matching(rf"tenant\.[^.]+\.migrations\.{pid}:apply"):
            install.promise(promise, migrations, marked)
        if entry.manifest.permissions:
            install.promise(promise, f"plugin.{pid}.permissions:create", marked)
        for event in entry.manifest.events.publishes:
            install.promise(promise, f"topic.{event}:create", marked)
        install.promise(promise, f"plugin.{pid}.workload:create", marked)
    # "routes register only after the workload is ready and the plugin's dependencies are
    # active"
    for pid in sorted(p for p in example.plugins if f"plugin.{p}.routes:create" in install.deps):
        routes = f"plugin.{pid}.routes:create"
        promise = "routes only after the workload is ready and the dependencies are active"
        install.promise(promise, f"plugin.{pid}.workload:create", routes)
        for dependency in example.plugins[pid].manifest.dependencies:
            install.promise(promise, f"plugin.{dependency.plugin}:activate", routes)
    # "tenants enable a plugin only after it is active and migrated in their schema (a
    # suspended tenant is migrated when git makes it active again, before it is)"
    for enable in install.matching(r"tenant\.[^.]+\.plugin\.[^.]+:enable"):
        slug, pid = enable.split(":")[0].split(".")[1::2]
        promise = "a tenant enables a plugin only after it is active and migrated there"
        install.promise(promise, f"plugin.{pid}:activate", enable)
        suspended = example.tenants[slug].document.spec.status.value == "suspended"
        if example.plugins[pid].migrations and not suspended:
            install.promise(promise, f"tenant.{slug}.migrations.{pid}:apply", enable)
    # (Event topics) "created before ... any subscriber is wired"
    for pid, entry in sorted(example.plugins.items()):
        for event in entry.manifest.events.subscribes:
            if f"topic.{event}:create" in install.deps:
                promise = "topics exist before a subscriber is wired"
                install.promise(
                    promise, f"topic.{event}:create", f"plugin.{pid}.subscriptions:create"
                )
    # "(a suspended tenant is migrated when git makes it active again ...)"
    assert not install.matching(r"tenant\.initech\.migrations\..*"), "suspended: not migrated"

    # --- a suspended tenant made active again: "... before it is" --------------------------
    desired_state_copy.replace("tenants/initech.yaml", "  status: suspended", "  status: active")
    reactivated = Graph(_plan(_desired(desired_state_copy.root), converged))
    migrated = reactivated.matching(r"tenant\.initech\.migrations\.[^.]+:apply")
    assert migrated
    for migrations in migrated:
        promise = "a suspended tenant is migrated before it is active again"
        reactivated.promise(promise, migrations, "tenant.initech:update")

    # --- uninstall and disable: "disable and uninstall run dependents first" -----------------
    desired_state_copy.replace("tenants/initech.yaml", "  status: active", "  status: suspended")
    _leaving(desired_state_copy, "crm", "billing", state="absent")
    _leaving(desired_state_copy, "analytics", state="disabled")  # it consumes their events
    leaving_desired = _desired(desired_state_copy.root)
    leaving = Graph(_plan(leaving_desired, converged))
    for pid, dependency in _dependencies(example):
        promise = "disable and uninstall run dependents first"
        if f"plugin.{dependency}:disable" in leaving.deps:
            leaving.promise(promise, f"plugin.{pid}:disable", f"plugin.{dependency}:disable")
        if f"plugin.{dependency}:uninstall" in leaving.deps:
            leaving.promise(
                promise, f"plugin.{pid}:mark-uninstalled", f"plugin.{dependency}:uninstall"
            )

    # "Each action has a wave: actions in the same wave are independent"
    for graph in (install, reactivated, leaving):
        waves = {a.id: a.wave for a in graph.plan.actions}
        for action in graph.plan.actions:
            assert all(waves[d] < action.wave for d in action.depends_on), action.id
    # "Ties break by address: the same inputs give a byte-identical plan"
    shuffled = list(converged.tenants.items())
    random.Random(4).shuffle(shuffled)
    reordered = converged.model_copy(update={"tenants": dict(shuffled)})
    assert render_json(build_plan(leaving_desired, reordered)) == render_json(leaving.plan)
    for graph in (install, reactivated, leaving):
        keys = [(a.wave, a.address, a.id) for a in graph.plan.actions]
        assert keys == sorted(keys)

    checked = {**install.checked, **reactivated.checked, **leaving.checked}
    assert len(checked) == 7 and all(checked.values()), checked  # no promise went untested


def test_a_targeted_plugin_takes_in_its_topics_and_data(
    desired_state_copy: DesiredStateCopy,
) -> None:
    """A topic of crm deleted by hand shows in `--target plugin.crm`, as in a plain plan."""
    example = _desired(EXAMPLE)
    converged = simulate(build_plan(example, LiveState()), example, LiveState())
    topics = {k: v for k, v in converged.topics.items() if k != "crm.deal.won"}
    drifted = converged.model_copy(update={"topics": topics})
    plan = build_plan(example, drifted)
    assert [a.id for a in plan.actions] == ["topic.crm.deal.won:create"]
    kept = [a.id for a in select_targets(plan.actions, ["plugin.crm"])]
    assert kept == ["topic.crm.deal.won:create"]
    assert select_targets(plan.actions, ["plugin.billing"]) == []

    # uninstalled with purge: its data and its topics go with a targeted plan too
    _leaving(desired_state_copy, "billing", state="absent")
    desired_state_copy.replace(
        "plugins/billing/plugin.yaml", "purgeDataOnUninstall: false", "purgeDataOnUninstall: true"
    )
    purge = build_plan(_desired(desired_state_copy.root), converged)
    kept = {a.id for a in select_targets(purge.actions, ["plugin.billing"])}
    assert "plugin.billing.data:purge" in kept
    assert {"topic.billing.invoice.issued:delete", "plugin.billing.subscriptions:delete"} <= kept
    # the tenant's bindings belong to the tenant: in only because the uninstall waits for them
    bindings = {i for i in kept if i.startswith("tenant.")}
    assert bindings == {
        a.id for a in purge.actions if a.id.startswith("tenant.") and a.plugin == "billing"
    }


def test_mark_installed_waits_for_the_topics_of_the_plugin() -> None:
    """The issue's reproducer: `plugin.crm:mark-installed` after the `topic.crm.*` creates."""
    plan = build_plan(_desired(EXAMPLE), LiveState())
    marked = next(a for a in plan.actions if a.id == "plugin.crm:mark-installed")
    assert {"topic.crm.deal.created:create", "topic.crm.deal.won:create"} <= set(marked.depends_on)
