"""The planner, through what a user of `plan` would notice: which steps, in which order, for
what reason, and which findings. Desired states are small YAML directories (tests/simulator.py
writes them); live states are what a perfect apply of another desired state leaves, edited
the way platforms drift."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from simulator import (
    load_valid,
    migration_file_name,
    platform_document,
    plugin_document,
    simulate,
    tenant_document,
    write_desired_state,
)

from plexica_gitops.desired.build import DesiredState
from plexica_gitops.desired.model import TenantStatus
from plexica_gitops.lifecycle import LIFECYCLE_EDGES, LifecycleStatus, lifecycle_path
from plexica_gitops.live.model import (
    LivePermission,
    LivePlugin,
    LiveReplica,
    LiveState,
    LiveTenant,
    LiveTenantPlugin,
    LiveTopic,
)
from plexica_gitops.plan.builder import build_plan
from plexica_gitops.plan.graph import select_targets
from plexica_gitops.plan.model import Action, ActionKind, Cause, Plan, Replacement

S = LifecycleStatus


class World:
    """Desired states written under one tmp dir; each `desired()` call is a new revision."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def desired(
        self,
        *plugins: dict[str, Any],
        tenants: Iterable[dict[str, Any]] = (),
        migrations: dict[str, int] | None = None,
        **platform: Any,
    ) -> DesiredState:
        self.count += 1
        root = self.root / f"rev{self.count}"
        write_desired_state(root, platform_document(**platform), plugins, tenants, migrations)
        return load_valid(root)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def applied(desired: DesiredState, live: LiveState | None = None) -> LiveState:
    """The platform after a perfect apply of the plan for `desired`."""
    live = live or LiveState()
    plan = build_plan(desired, live)
    assert not plan.errors, [f.message for f in plan.errors]
    return simulate(plan, desired, live)


def ids(plan: Plan) -> list[str]:
    return [a.id for a in plan.actions]


def action(plan: Plan, step_id: str) -> Action:
    found = [a for a in plan.actions if a.id == step_id]
    assert found, f"{step_id} not planned; plan: {ids(plan)}"
    return found[0]


def before(plan: Plan, first: str, second: str) -> bool:
    """`first` comes earlier in the plan, and `second` waits for it (transitively)."""
    order = ids(plan)
    assert first in order and second in order, (first, second, order)
    by_id = {a.id: a for a in plan.actions}
    stack, seen = [second], set()
    while stack:
        current = stack.pop()
        if current == first:
            return order.index(first) < order.index(second)
        if current not in seen:
            seen.add(current)
            stack.extend(by_id[current].depends_on)
    return False


def lifecycle_steps(plan: Plan, pid: str) -> list[str]:
    return [a.step for a in plan.actions if a.address == f"plugin.{pid}" and a.step != "update"]


def codes(findings: Iterable[Any]) -> list[str]:
    return [f.code for f in findings]


def plugin(pid: str, **kw: Any) -> dict[str, Any]:
    return plugin_document(pid, **kw)


def set_plugin(live: LiveState, pid: str, **update: Any) -> LiveState:
    plugins = {**live.plugins, pid: live.plugins[pid].model_copy(update=update)}
    return live.model_copy(update={"plugins": plugins})


# --- the lifecycle, one edge at a time ---------------------------------------------------


def test_every_lifecycle_path_walks_edges_of_the_lifecycle() -> None:
    statuses: list[LifecycleStatus | None] = [None, *S]
    for start in statuses:
        for target in S:
            current = start
            for edge_start, edge_end, verb in lifecycle_path(start, target):
                assert edge_start == current
                assert (edge_end, verb) in LIFECYCLE_EDGES[edge_start]
                current = edge_end
            assert current == target or (start is None and target is S.UNINSTALLED)


def test_a_new_active_plugin_is_registered_installed_and_activated_in_order(world: World) -> None:
    desired = world.desired(plugin("alpha", permissions=["items:read"]))
    plan = build_plan(desired, LiveState())
    assert lifecycle_steps(plan, "alpha") == ["register", "install", "mark-installed", "activate"]
    for first, second in [
        ("plugin.alpha:register", "plugin.alpha:install"),
        ("plugin.alpha:install", "plugin.alpha.permissions:create"),
        ("plugin.alpha:install", "plugin.alpha.workload:create"),
        ("plugin.alpha.workload:create", "plugin.alpha:mark-installed"),
        ("plugin.alpha.permissions:create", "plugin.alpha:mark-installed"),
        ("plugin.alpha:mark-installed", "plugin.alpha.routes:create"),
        ("plugin.alpha.routes:create", "plugin.alpha:activate"),
    ]:
        assert before(plan, first, second), (first, second)


def test_a_new_disabled_plugin_waits_for_each_edge_before_the_next(world: World) -> None:
    """Regression: `disable` once had no dependency on `mark-installed` and came first."""
    desired = world.desired(plugin("alpha", state="disabled"))
    plan = build_plan(desired, LiveState())
    assert lifecycle_steps(plan, "alpha") == ["register", "install", "mark-installed", "disable"]
    assert before(plan, "plugin.alpha:mark-installed", "plugin.alpha:disable")
    simulate(plan, desired, LiveState())


def test_active_to_absent_disables_uninstalls_and_marks_uninstalled_in_order(
    world: World,
) -> None:
    live = applied(world.desired(plugin("alpha", permissions=["items:read"], frontend=True)))
    desired = world.desired(plugin("alpha", state="absent", permissions=["items:read"]))
    plan = build_plan(desired, live)
    assert lifecycle_steps(plan, "alpha") == ["disable", "uninstall", "mark-uninstalled"]
    assert before(plan, "plugin.alpha.routes:delete", "plugin.alpha:disable")
    assert before(plan, "plugin.alpha:disable", "plugin.alpha:uninstall")
    assert before(plan, "plugin.alpha:uninstall", "plugin.alpha.workload:delete")
    assert before(plan, "plugin.alpha:uninstall", "plugin.alpha.permissions:delete")
    assert before(plan, "plugin.alpha.workload:delete", "plugin.alpha:mark-uninstalled")
    assert action(plan, "plugin.alpha:uninstall").reason == "desired absent in git"
    after = simulate(plan, desired, live)
    assert after.plugins["alpha"].status is S.UNINSTALLED
    assert after.plugins["alpha"].workload is None
    assert build_plan(desired, after).actions == []


def test_installed_to_disabled_stops_the_workload_in_one_edge(world: World) -> None:
    live = applied(world.desired(plugin("alpha", state="installed")))
    desired = world.desired(plugin("alpha", state="disabled"))
    plan = build_plan(desired, live)
    assert ids(plan) == ["plugin.alpha.workload:stop", "plugin.alpha:disable"]
    assert action(plan, "plugin.alpha:disable").reason == "desired disabled"
    after = simulate(plan, desired, live)
    workload = after.plugins["alpha"].workload
    assert workload is not None and not workload.running


def test_an_interrupted_install_resumes(world: World) -> None:
    desired = world.desired(plugin("alpha"))
    live = applied(desired)
    crashed = set_plugin(live, "alpha", status=S.INSTALLING, routes=None)
    plan = build_plan(desired, crashed)
    assert lifecycle_steps(plan, "alpha") == ["mark-installed", "activate"]
    assert "interrupted" in action(plan, "plugin.alpha:mark-installed").reason
    assert build_plan(desired, simulate(plan, desired, crashed)).actions == []


def test_a_registered_plugin_that_git_removes_is_deregistered(world: World) -> None:
    live = applied(world.desired(plugin("alpha", state="registered")))
    desired = world.desired(plugin("alpha", state="absent"))
    plan = build_plan(desired, live)
    assert ids(plan) == ["plugin.alpha:deregister"]
    assert action(plan, "plugin.alpha:deregister").kind is ActionKind.DELETE


# --- dependencies ------------------------------------------------------------------------


def test_dependencies_are_installed_and_active_before_their_dependents(world: World) -> None:
    desired = world.desired(plugin("alpha"), plugin("beta", dependencies=["alpha"]))
    plan = build_plan(desired, LiveState())
    assert before(plan, "plugin.alpha:mark-installed", "plugin.beta:install")
    assert before(plan, "plugin.alpha:activate", "plugin.beta:activate")
    simulate(plan, desired, LiveState())


def test_dependents_are_disabled_and_uninstalled_before_their_dependencies(
    world: World,
) -> None:
    live = applied(world.desired(plugin("alpha"), plugin("beta", dependencies=["alpha"])))
    desired = world.desired(
        plugin("alpha", state="absent"), plugin("beta", state="absent", dependencies=["alpha"])
    )
    plan = build_plan(desired, live)
    assert before(plan, "plugin.beta:disable", "plugin.alpha:disable")
    assert before(plan, "plugin.beta:mark-uninstalled", "plugin.alpha:uninstall")
    simulate(plan, desired, live)


# --- tenants -----------------------------------------------------------------------------


def test_a_tenant_enables_a_plugin_after_its_activation_and_its_migrations(
    world: World,
) -> None:
    desired = world.desired(
        plugin("alpha", migrations=True),
        plugin("beta", dependencies=["alpha"]),
        tenants=[
            tenant_document(
                "acme",
                plugins={
                    "alpha": {"enabled": True, "configuration": {"level": 1}},
                    "beta": {"enabled": True},
                },
            )
        ],
        migrations={"alpha": 2},
    )
    plan = build_plan(desired, LiveState())
    assert before(plan, "tenant.acme:create", "tenant.acme.migrations.alpha:apply")
    assert before(plan, "tenant.acme.migrations.alpha:apply", "tenant.acme.plugin.alpha:enable")
    assert before(plan, "plugin.alpha:activate", "tenant.acme.plugin.alpha:enable")
    assert before(plan, "tenant.acme.plugin.alpha:enable", "tenant.acme.plugin.beta:enable")
    assert before(plan, "plugin.beta:activate", "tenant.acme.plugin.beta:enable")
    after = simulate(plan, desired, LiveState())
    assert after.tenants["acme"].plugins["alpha"].configuration == {"level": 1}
    assert [m.version for m in after.tenants["acme"].migrations["alpha"]] == [1, 2]


def test_a_suspended_tenant_gets_no_migrations_and_catches_up_when_active(
    world: World,
) -> None:
    def state(status: str) -> DesiredState:
        return world.desired(
            plugin("alpha", migrations=True),
            tenants=[tenant_document("acme", status=status), tenant_document("globex")],
            migrations={"alpha": 2},
        )

    suspended = state("suspended")
    plan = build_plan(suspended, LiveState())
    assert "tenant.globex.migrations.alpha:apply" in ids(plan)
    assert not [a for a in plan.actions if a.address == "tenant.acme.migrations.alpha"]
    live = simulate(plan, suspended, LiveState())
    assert "alpha" not in live.tenants["acme"].migrations
    active = state("active")
    plan = build_plan(active, live)
    assert ids(plan) == ["tenant.acme.migrations.alpha:apply", "tenant.acme:update"]
    assert before(plan, "tenant.acme.migrations.alpha:apply", "tenant.acme:update")
    assert action(plan, "tenant.acme.migrations.alpha:apply").reason == "2 pending migrations"


def test_an_edited_applied_migration_is_an_error_naming_tenant_and_file(world: World) -> None:
    desired = world.desired(
        plugin("alpha", migrations=True),
        tenants=[tenant_document("acme")],
        migrations={"alpha": 1},
    )
    live = applied(desired)
    path = desired.root / "plugins" / "alpha" / "migrations" / migration_file_name("alpha", 1)
    path.write_text("CREATE TABLE alpha_t1 (id bigint, edited text);\n", encoding="utf-8")
    edited = load_valid(desired.root)
    plan = build_plan(edited, live)
    assert codes(plan.errors) == ["PGP101"]
    finding = plan.errors[0]
    relative = f"plugins/alpha/migrations/{migration_file_name('alpha', 1)}"
    assert "'acme'" in finding.message and relative in finding.message
    assert finding.location is not None and finding.location.file == relative
    assert set(finding.subjects) == {"acme", "alpha"}


def test_a_tenant_schema_change_is_an_error(world: World) -> None:
    live = applied(world.desired(plugin("alpha"), tenants=[tenant_document("acme")]))
    desired = world.desired(
        plugin("alpha"), tenants=[tenant_document("acme", schema="tenant_acme_v2")]
    )
    plan = build_plan(desired, live)
    assert codes(plan.errors) == ["PGP105"]
    assert "tenant_acme_v2" in plan.errors[0].message
    assert plan.errors[0].location is not None
    assert plan.errors[0].location.file == "tenants/acme.yaml"
    assert not [a for a in plan.actions if a.tenant == "acme"]


# --- topics ------------------------------------------------------------------------------


def test_topics_are_left_out_when_the_broker_was_not_observed(world: World) -> None:
    desired = world.desired(plugin("alpha", publishes=["alpha.created"]))
    plan = build_plan(desired, LiveState(topics_observed=False))
    assert codes(plan.warnings) == ["PGP201"]
    assert not [a for a in plan.actions if a.address.startswith("topic.")]
    assert "plugin.alpha:activate" in ids(plan)


def test_a_topic_plexica_gitops_did_not_create_is_never_changed_or_deleted(
    world: World,
) -> None:
    desired = world.desired(
        plugin("alpha", publishes=["alpha.created"], state="absent", purge=True), prune=True
    )
    live = LiveState(
        topics={
            "alpha.created": LiveTopic(partitions=1),  # foreign: same name, not ours
            "legacy.events": LiveTopic(partitions=1),
        }
    )
    plan = build_plan(desired, live)
    assert not [a for a in plan.actions if a.address.startswith("topic.")]
    assert {"topic.alpha.created", "topic.legacy.events"} <= set(plan.unmanaged)
    published = world.desired(plugin("alpha", publishes=["alpha.created"]))
    plan = build_plan(published, live)
    assert "PGP203" in codes(plan.warnings)
    assert not [a for a in plan.actions if a.address == "topic.alpha.created"]


def test_a_topic_of_an_uninstalled_plugin_is_deleted_only_with_purge(world: World) -> None:
    live = applied(world.desired(plugin("alpha", publishes=["alpha.created"])))
    kept = build_plan(world.desired(plugin("alpha", state="absent")), live)
    assert "topic.alpha.created:delete" not in ids(kept)
    purged = build_plan(world.desired(plugin("alpha", state="absent", purge=True)), live)
    assert before(purged, "plugin.alpha:uninstall", "topic.alpha.created:delete")


# --- what git does not declare -----------------------------------------------------------


def unmanaged_live(world: World) -> LiveState:
    live = applied(
        world.desired(
            plugin("alpha"),
            plugin("legacy"),
            tenants=[tenant_document("acme"), tenant_document("old")],
        )
    )
    return live


def test_unmanaged_plugins_and_tenants_are_reported_and_left_alone(world: World) -> None:
    live = unmanaged_live(world)
    plan = build_plan(world.desired(plugin("alpha"), tenants=[tenant_document("acme")]), live)
    assert ids(plan) == []
    assert plan.unmanaged == ["plugin.legacy", "tenant.old"]


def test_prune_removes_unmanaged_plugins_and_tenants(world: World) -> None:
    live = unmanaged_live(world)
    desired = world.desired(plugin("alpha"), tenants=[tenant_document("acme")], prune=True)
    plan = build_plan(desired, live)
    assert lifecycle_steps(plan, "legacy") == ["disable", "uninstall", "mark-uninstalled"]
    assert "not in git and platform.prune is true" in action(plan, "plugin.legacy:uninstall").reason
    assert action(plan, "tenant.old:delete").after == {"status": "deleted"}
    after = simulate(plan, desired, live)
    assert build_plan(desired, after).actions == []


def test_an_unmanaged_active_plugin_depending_on_one_git_removes_is_an_error(
    world: World,
) -> None:
    live = applied(world.desired(plugin("alpha"), plugin("beta", dependencies=["alpha"])))
    plan = build_plan(world.desired(plugin("alpha", state="absent")), live)
    assert codes(plan.errors) == ["PGP104"]
    assert "'beta'" in plan.errors[0].message and "'alpha'" in plan.errors[0].message
    assert set(plan.errors[0].subjects) == {"alpha", "beta"}


def test_a_permission_registered_by_another_plugin_is_a_conflict(world: World) -> None:
    live = LiveState(
        plugins={
            "other": LivePlugin(
                status=S.ACTIVE,
                version="1.0.0",
                permissions={"alpha:items:read": LivePermission(name="read")},
            )
        }
    )
    plan = build_plan(world.desired(plugin("alpha", permissions=["items:read"])), live)
    assert codes(plan.errors) == ["PGP106"]
    assert "'other'" in plan.errors[0].message
    assert "alpha:items:read" in plan.errors[0].message


def test_a_permission_released_by_a_managed_plugin_is_not_a_conflict(world: World) -> None:
    shared = {"shared:items:read": "read"}
    live = applied(world.desired(plugin("alpha", permissions=shared)))
    desired = world.desired(plugin("alpha", state="absent"), plugin("beta", permissions=shared))
    plan = build_plan(desired, live)
    assert plan.errors == []
    assert before(plan, "plugin.alpha.permissions:delete", "plugin.beta.permissions:create")
    simulate(plan, desired, live)


# --- targeting ---------------------------------------------------------------------------


def test_target_selection_keeps_what_the_target_depends_on(world: World) -> None:
    desired = world.desired(
        plugin("alpha"), plugin("beta", dependencies=["alpha"]), plugin("gamma")
    )
    plan = build_plan(desired, LiveState())
    selected = select_targets(plan.actions, ["plugin.beta"])
    chosen = {a.id for a in selected}
    assert {"plugin.beta:activate", "plugin.alpha:activate", "plugin.alpha:register"} <= chosen
    assert not [a for a in selected if a.plugin == "gamma"]
    assert [a.id for a in plan.actions if a.id in chosen] == [a.id for a in selected]
    plan.actions = selected
    after = simulate(plan, desired, LiveState())
    assert after.plugins["beta"].status is S.ACTIVE and "gamma" not in after.plugins


# --- drift and change --------------------------------------------------------------------


def test_a_workload_stopped_by_hand_is_started_as_drift(world: World) -> None:
    desired = world.desired(plugin("alpha", replicas=2))
    live = applied(desired)
    workload = live.plugins["alpha"].workload
    assert workload is not None
    stopped = set_plugin(
        live, "alpha", workload=workload.model_copy(update={"running": False, "ready_replicas": 0})
    )
    plan = build_plan(desired, stopped)
    assert ids(plan) == ["plugin.alpha.workload:start"]
    assert action(plan, "plugin.alpha.workload:start").reason.startswith("drift:")
    assert action(plan, "plugin.alpha.workload:start").cause is Cause.DRIFT
    assert build_plan(desired, simulate(plan, desired, stopped)).actions == []


def test_endpoints_left_registered_for_replicas_that_are_gone_are_drift(world: World) -> None:
    desired = world.desired(plugin("alpha", replicas=2))
    live = applied(desired)
    workload = live.plugins["alpha"].workload
    assert workload is not None
    stale = set_plugin(live, "alpha", workload=workload.model_copy(update={"stale_endpoints": 2}))
    plan = build_plan(desired, stale)
    assert ids(plan) == ["plugin.alpha.workload:start"]
    reason = action(plan, "plugin.alpha.workload:start").reason
    assert reason.startswith("drift: 2 registered endpoints point at replicas that no longer run")
    assert build_plan(desired, simulate(plan, desired, stale)).actions == []


def test_ready_replicas_missing_from_the_registry_are_drift(world: World) -> None:
    desired = world.desired(plugin("alpha", replicas=2))
    live = applied(desired)
    workload = live.plugins["alpha"].workload
    assert workload is not None
    update = {"unregistered_endpoints": 2}
    emptied = set_plugin(live, "alpha", workload=workload.model_copy(update=update))
    plan = build_plan(desired, emptied)
    assert ids(plan) == ["plugin.alpha.workload:start"]
    reason = action(plan, "plugin.alpha.workload:start").reason
    assert reason == (
        "drift: 2 ready replicas are missing from the service registry: refresh the registry"
    )
    assert build_plan(desired, simulate(plan, desired, emptied)).actions == []


def _replicas(*builds: tuple[str, int, bool]) -> tuple[LiveReplica, ...]:
    """(version, count, running) -> that many replicas of alpha built from that version."""
    found = []
    for version, count, running in builds:
        for n in range(count):
            found.append(
                LiveReplica(
                    name=f"plexica-alpha-{version}-{n}",
                    version=version,
                    image=f"registry.example.com/plugins/alpha:{version}",
                    running=running,
                    ready=running,
                )
            )
    return tuple(found)


@pytest.mark.parametrize(
    ("builds", "why"),
    [
        # kill -9 mid rolling update: both versions run, the catalog already says 1.1.0
        ((("1.0.0", 2, True), ("1.1.0", 2, True)), "(2 of 1.0.0 and 2 of 1.1.0)"),
        # the old ones drained and stopped, not yet removed
        ((("1.0.0", 2, False), ("1.1.0", 2, True)), "(2 of 1.0.0 and 2 of 1.1.0)"),
        # one stray of the old version beside a complete new set
        ((("1.1.0", 2, True), ("1.0.0", 1, True)), "(1 of 1.0.0 and 2 of 1.1.0)"),
    ],
)  # fmt: skip
def test_replicas_of_several_versions_are_drift_until_only_the_desired_ones_run(
    world: World, builds: tuple[tuple[str, int, bool], ...], why: str
) -> None:
    """Observe reports every replica; any mixture is replaced, whatever the counts say."""
    desired = world.desired(plugin("alpha", replicas=2, version="1.1.0"))
    live = applied(desired)
    workload = live.plugins["alpha"].workload
    assert workload is not None
    instances = _replicas(*builds)
    mixed = workload.model_copy(
        update={
            "instances": instances,
            "replicas": len(instances),
            "ready_replicas": sum(r.ready for r in instances),
        }
    )
    live = set_plugin(live, "alpha", workload=mixed)
    plan = build_plan(desired, live)
    assert ids(plan) == ["plugin.alpha.workload:replace"]
    replace = action(plan, "plugin.alpha.workload:replace")
    expected = (
        f"drift: replicas of 2 versions run {why}: replace every replica not built from 1.1.0"
    )
    assert replace.reason.startswith(expected)
    assert replace.before is not None and set(replace.before["versions"]) == {"1.0.0", "1.1.0"}
    assert build_plan(desired, simulate(plan, desired, live)).actions == []


def test_a_version_update_replaces_the_workload_after_the_tenant_migrations(
    world: World,
) -> None:
    tenants = [tenant_document("acme"), tenant_document("globex")]
    live = applied(
        world.desired(plugin("alpha", migrations=True), tenants=tenants, migrations={"alpha": 1})
    )
    desired = world.desired(
        plugin("alpha", version="1.1.0", migrations=True), tenants=tenants, migrations={"alpha": 2}
    )
    plan = build_plan(desired, live)
    replace = action(plan, "plugin.alpha.workload:replace")
    assert replace.kind is ActionKind.REPLACE
    assert replace.reason.startswith("update 1.0.0 → 1.1.0")
    for slug in ("acme", "globex"):
        assert before(plan, f"tenant.{slug}.migrations.alpha:apply", replace.id)
    assert before(plan, replace.id, "plugin.alpha:update")
    assert build_plan(desired, simulate(plan, desired, live)).actions == []


def test_a_change_made_by_hand_is_drift_and_a_change_in_git_is_not(world: World) -> None:
    desired = world.desired(
        plugin("alpha", frontend=True),
        tenants=[tenant_document("acme", plugins={"alpha": {"configuration": {"level": 1}}})],
    )
    live = applied(desired)
    # by hand: routes removed, tenant configuration edited
    edited = set_plugin(live, "alpha", routes=None)
    acme = edited.tenants["acme"]
    binding = LiveTenantPlugin(enabled=True, configuration={"level": 7})
    edited = edited.model_copy(
        update={"tenants": {"acme": acme.model_copy(update={"plugins": {"alpha": binding}})}}
    )
    plan = build_plan(desired, edited)
    assert action(plan, "plugin.alpha.routes:create").reason.startswith("drift:")
    assert action(plan, "tenant.acme.plugin.alpha:configure").reason.startswith("drift:")
    # in git: configuration changed, frontend dropped
    changed = world.desired(
        plugin("alpha"),
        tenants=[tenant_document("acme", plugins={"alpha": {"configuration": {"level": 2}}})],
    )
    plan = build_plan(changed, live)
    assert action(plan, "plugin.alpha.routes:update").reason == "routes changed in git"
    configure = action(plan, "tenant.acme.plugin.alpha:configure")
    assert configure.reason == "configuration changed in git"
    assert configure.fingerprint is not None


def test_secret_configuration_is_masked_in_the_plan_but_applied_as_written(
    world: World,
) -> None:
    reference = {"fromEnv": "ACME_TOKEN"}
    desired = world.desired(
        plugin("alpha"),
        tenants=[
            tenant_document(
                "acme", plugins={"alpha": {"configuration": {"level": 1, "apiToken": reference}}}
            )
        ],
    )
    plan = build_plan(desired, LiveState())
    enable = action(plan, "tenant.acme.plugin.alpha:enable")
    assert enable.after == {"enabled": True, "configuration": {"level": 1, "apiToken": reference}}
    after = simulate(plan, desired, LiveState())
    assert after.tenants["acme"].plugins["alpha"].configuration["apiToken"] == reference


# --- planner bugs found by the simulator (regression tests) ------------------------------


def test_an_interrupted_install_of_a_plugin_git_removes_is_finished_then_removed(
    world: World,
) -> None:
    desired = world.desired(plugin("alpha", permissions=["items:read"]))
    live = set_plugin(applied(desired), "alpha", status=S.INSTALLING, routes=None)
    removed = world.desired(plugin("alpha", state="absent", permissions=["items:read"]))
    plan = build_plan(removed, live)  # raises PlanCycleError
    assert lifecycle_steps(plan, "alpha") == [
        "mark-installed",
        "disable",
        "uninstall",
        "mark-uninstalled",
    ]
    assert build_plan(removed, simulate(plan, removed, live)).actions == []


def test_an_interrupted_uninstall_of_a_plugin_git_wants_back_is_finished_then_reinstalled(
    world: World,
) -> None:
    desired = world.desired(plugin("alpha", state="disabled", permissions=["items:read"]))
    live = set_plugin(applied(desired), "alpha", status=S.UNINSTALLING)
    wanted = world.desired(plugin("alpha", permissions=["items:read"]))
    plan = build_plan(wanted, live)
    after = simulate(plan, wanted, live)
    assert after.plugins["alpha"].status is S.ACTIVE
    assert set(after.plugins["alpha"].permissions) == {"alpha:items:read"}
    assert build_plan(wanted, after).actions == []


def test_a_registered_plugin_gets_the_version_git_declares(world: World) -> None:
    live = applied(world.desired(plugin("alpha", state="registered")))
    desired = world.desired(plugin("alpha", state="registered", version="1.1.0"))
    plan = build_plan(desired, live)
    assert ids(plan) == ["plugin.alpha:update"]
    assert simulate(plan, desired, live).plugins["alpha"].version == "1.1.0"


def test_prune_disables_a_pruned_dependent_before_its_dependency(world: World) -> None:
    live = applied(world.desired(plugin("alpha"), plugin("beta", dependencies=["alpha"])))
    desired = world.desired(plugin("alpha", state="absent"), prune=True)
    plan = build_plan(desired, live)
    assert before(plan, "plugin.beta:disable", "plugin.alpha:disable")
    assert before(plan, "plugin.beta:mark-uninstalled", "plugin.alpha:uninstall")
    simulate(plan, desired, live)


def test_an_unmanaged_disabled_plugin_depending_on_one_git_removes_is_an_error(
    world: World,
) -> None:
    live = applied(
        world.desired(plugin("alpha"), plugin("beta", state="disabled", dependencies=["alpha"]))
    )
    plan = build_plan(world.desired(plugin("alpha", state="absent")), live)
    assert codes(plan.errors) == ["PGP104"]


def test_an_unmanaged_active_plugin_whose_dependency_stops_serving_is_an_error(
    world: World,
) -> None:
    live = applied(world.desired(plugin("alpha"), plugin("beta", dependencies=["alpha"])))
    plan = build_plan(world.desired(plugin("alpha", state="installed")), live)
    assert codes(plan.errors) == ["PGP104"]


def test_an_unmanaged_installed_plugin_allows_its_dependency_to_be_disabled(
    world: World,
) -> None:
    live = applied(
        world.desired(plugin("alpha"), plugin("beta", state="installed", dependencies=["alpha"]))
    )
    plan = build_plan(world.desired(plugin("alpha", state="disabled")), live)
    assert plan.errors == []


def test_a_version_update_while_disabling_stops_routing_first(world: World) -> None:
    live = applied(world.desired(plugin("alpha"), plugin("beta", dependencies=["alpha"])))
    desired = world.desired(
        plugin("alpha", state="disabled", version="1.1.0"),
        plugin("beta", state="disabled", dependencies=["alpha"]),
    )
    plan = build_plan(desired, live)
    assert before(plan, "plugin.alpha.routes:delete", "plugin.alpha.workload:replace")
    simulate(plan, desired, live)


def test_a_dependency_is_deregistered_after_its_dependents_are_uninstalled(
    world: World,
) -> None:
    live = applied(
        world.desired(
            plugin("alpha", state="registered"),
            plugin("beta", state="registered", dependencies=["alpha"]),
        )
    )
    live = set_plugin(live, "beta", status=S.INSTALLING)  # crashed while installing
    desired = world.desired(plugin("gamma"), prune=True)
    plan = build_plan(desired, live)
    assert before(plan, "plugin.beta:mark-uninstalled", "plugin.alpha:deregister")


def test_a_workload_scaled_by_hand_is_reported_as_drift(world: World) -> None:
    desired = world.desired(plugin("alpha", replicas=2))
    live = applied(desired)
    workload = live.plugins["alpha"].workload
    assert workload is not None
    scaled = set_plugin(
        live, "alpha", workload=workload.model_copy(update={"replicas": 5, "ready_replicas": 5})
    )
    plan = build_plan(desired, scaled)
    assert action(plan, "plugin.alpha.workload:scale").reason.startswith("drift:")


def test_unmanaged_tenant_bindings_of_a_plugin_leaving_active_are_disabled(
    world: World,
) -> None:
    live = applied(
        world.desired(plugin("alpha"), tenants=[tenant_document("acme", plugins={"alpha": {}})])
    )
    desired = world.desired(plugin("alpha", state="disabled"), tenants=[tenant_document("acme")])
    plan = build_plan(desired, live)
    assert before(plan, "tenant.acme.plugin.alpha:disable", "plugin.alpha.routes:delete")
    after = simulate(plan, desired, live)
    assert after.tenants["acme"].plugins["alpha"] == LiveTenantPlugin(enabled=False)


def test_a_tenant_without_its_schema_record_is_created(world: World) -> None:
    live = LiveState(
        tenants={"other": LiveTenant(id="x", schema_name="tenant_other", status="active")}
    )
    desired = world.desired(plugin("alpha"), tenants=[tenant_document("acme")])
    plan = build_plan(desired, live)
    assert action(plan, "tenant.acme:create").kind is ActionKind.CREATE
    assert "tenant.other" in plan.unmanaged


# --- why each action is planned (Action.cause) -----------------------------------------


def test_every_planned_action_says_why_as_a_cause(world: World) -> None:
    """The planner never leaves a cause unknown: that is only a 1.0 plan read back."""
    tenants = [tenant_document("acme", plugins={"alpha": {}})]
    desired = world.desired(plugin("alpha", migrations=True), tenants=tenants)
    plan = build_plan(desired, LiveState())
    assert plan.actions
    assert {a.cause for a in plan.actions} == {Cause.GIT_CHANGE}


def test_a_changed_plugin_version_in_git_is_a_git_change(world: World) -> None:
    live = applied(world.desired(plugin("alpha")))
    plan = build_plan(world.desired(plugin("alpha", version="1.1.0")), live)
    assert action(plan, "plugin.alpha.workload:replace").cause is Cause.GIT_CHANGE
    assert action(plan, "plugin.alpha:update").cause is Cause.GIT_CHANGE


def test_drift_is_told_from_a_change_in_git_by_last_applied(world: World) -> None:
    desired = world.desired(
        plugin("alpha", frontend=True),
        tenants=[tenant_document("acme", plugins={"alpha": {"configuration": {"level": 1}}})],
    )
    live = applied(desired)
    edited = set_plugin(live, "alpha", routes=None)
    by_hand = build_plan(desired, edited)
    assert action(by_hand, "plugin.alpha.routes:create").cause is Cause.DRIFT
    in_git = build_plan(
        world.desired(plugin("alpha", frontend=True)),
        edited.model_copy(update={"last_applied": {}}),
    )
    assert action(in_git, "plugin.alpha.routes:create").cause is Cause.GIT_CHANGE


def test_what_is_in_sync_without_a_last_applied_row_is_recorded_so_drift_stays_drift(
    world: World,
) -> None:
    """A crash after a step's effect and before its end leaves the value in sync and no
    row. The plan has nothing to do there, but says what apply records; once recorded, a
    change by hand is drift again."""
    desired = world.desired(
        plugin("alpha", frontend=True, permissions=["items:read"]),
        tenants=[tenant_document("acme", plugins={"alpha": {"configuration": {"level": 1}}})],
    )
    full = applied(desired)
    first = build_plan(desired, LiveState())
    recorded = {a.address: a.fingerprint for a in first.actions if a.fingerprint}
    assert build_plan(desired, full).unrecorded == {}
    lost = ["tenant.acme", "tenant.acme.plugin.alpha", "plugin.alpha.routes"]
    lost += ["plugin.alpha.permissions", "plugin.alpha.workload"]
    crashed = full.model_copy(
        update={"last_applied": {a: f for a, f in full.last_applied.items() if a not in lost}}
    )
    plan = build_plan(desired, crashed)
    assert plan.actions == []
    assert plan.unrecorded == {a: recorded[a] for a in sorted(lost)}

    edited = set_plugin(crashed, "alpha", routes=None)
    assert action(build_plan(desired, edited), "plugin.alpha.routes:create").cause is (
        Cause.GIT_CHANGE
    )  # the gap: without the row, told as a change in git
    healed = simulate(plan, desired, crashed)  # the no-op apply writes the rows
    assert healed.last_applied == full.last_applied
    edited = set_plugin(healed, "alpha", routes=None)
    assert action(build_plan(desired, edited), "plugin.alpha.routes:create").cause is Cause.DRIFT


def test_a_tenant_suspended_by_hand_is_drift(world: World) -> None:
    desired = world.desired(plugin("alpha"), tenants=[tenant_document("acme")])
    live = applied(desired)
    tenant = live.tenants["acme"].model_copy(update={"status": TenantStatus.SUSPENDED})
    edited = live.model_copy(update={"tenants": {"acme": tenant}})
    update = action(build_plan(desired, edited), "tenant.acme:update")
    assert update.cause is Cause.DRIFT and update.reason.startswith("drift:")
    removed = live.model_copy(update={"tenants": {}})
    gone = action(build_plan(desired, removed), "tenant.acme:create")
    assert gone.cause is Cause.DRIFT


def test_an_installing_plugin_resumed_is_a_crash_repair(world: World) -> None:
    desired = world.desired(plugin("alpha"))
    crashed = set_plugin(applied(desired), "alpha", status=S.INSTALLING, routes=None)
    plan = build_plan(desired, crashed)
    assert action(plan, "plugin.alpha:mark-installed").cause is Cause.CRASH_REPAIR
    assert action(plan, "plugin.alpha:activate").cause is Cause.GIT_CHANGE


def test_an_uninstall_cut_short_is_finished_as_a_crash_repair(world: World) -> None:
    desired = world.desired(plugin("alpha", state="disabled", permissions=["items:read"]))
    live = set_plugin(applied(desired), "alpha", status=S.UNINSTALLING)
    plan = build_plan(world.desired(plugin("alpha", permissions=["items:read"])), live)
    assert action(plan, "plugin.alpha:mark-uninstalled").cause is Cause.CRASH_REPAIR
    assert action(plan, "plugin.alpha.permissions:delete").cause is Cause.CRASH_REPAIR
    assert action(plan, "plugin.alpha:install").cause is Cause.GIT_CHANGE


def test_replicas_of_a_rollout_cut_short_are_a_crash_repair(world: World) -> None:
    desired = world.desired(plugin("alpha", replicas=2, version="1.1.0"))
    live = applied(desired)
    workload = live.plugins["alpha"].workload
    assert workload is not None
    instances = _replicas(("1.0.0", 1, True), ("1.1.0", 1, True))
    mixed = workload.model_copy(update={"instances": instances, "replicas": 2})
    plan = build_plan(desired, set_plugin(live, "alpha", workload=mixed))
    assert action(plan, "plugin.alpha.workload:replace").cause is Cause.CRASH_REPAIR


def test_bindings_disabled_because_their_plugin_leaves_active_are_a_dependency(
    world: World,
) -> None:
    live = applied(
        world.desired(plugin("alpha"), tenants=[tenant_document("acme", plugins={"alpha": {}})])
    )
    undeclared = build_plan(
        world.desired(plugin("alpha", state="disabled"), tenants=[tenant_document("acme")]), live
    )
    assert action(undeclared, "tenant.acme.plugin.alpha:disable").cause is Cause.DEPENDENCY
    held = build_plan(
        world.desired(
            plugin("alpha", state="disabled"),
            tenants=[tenant_document("acme", plugins={"alpha": {}})],
        ),
        live,
    )
    assert action(held, "tenant.acme.plugin.alpha:disable").cause is Cause.DEPENDENCY
    assert action(held, "plugin.alpha:disable").cause is Cause.GIT_CHANGE


def test_what_prune_removes_is_a_prune(world: World) -> None:
    live = unmanaged_live(world)
    desired = world.desired(plugin("alpha"), tenants=[tenant_document("acme")], prune=True)
    plan = build_plan(desired, live)
    for step in ("disable", "uninstall", "mark-uninstalled"):
        assert action(plan, f"plugin.legacy:{step}").cause is Cause.PRUNE
    assert action(plan, "tenant.old:delete").cause is Cause.PRUNE


@pytest.mark.parametrize("cause", [Cause.REPLACE_REQUESTED, Cause.SECRET_ROTATION])
def test_a_forced_replacement_says_who_asked_for_it(world: World, cause: Cause) -> None:
    desired = world.desired(plugin("alpha"))
    live = applied(desired)
    plan = build_plan(desired, live, {"alpha": Replacement("asked", cause)})
    replace = action(plan, "plugin.alpha.workload:replace")
    assert replace.cause is cause
    assert replace.reason == "reconfigure (asked): rolling restart"


def _autoscaled(maximum: int, egress_port: int = 443) -> dict[str, Any]:
    document = plugin_document("alpha")
    document["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": maximum}
    document["spec"]["network"] = {"egress": [{"cidr": "192.0.2.0/24", "ports": [egress_port]}]}
    return document


@pytest.mark.parametrize(
    "changed", [_autoscaled(8), _autoscaled(4, egress_port=8443)], ids=["autoscaling", "egress"]
)
def test_a_change_of_only_autoscaling_or_egress_is_planned_on_kubernetes(
    world: World, changed: dict[str, Any]
) -> None:
    """Neither is in the pod template, and both are what the provider applies around it
    (HorizontalPodAutoscaler, NetworkPolicy): a git change of either alone must be planned,
    and nothing else must be planned with it."""
    before = world.desired(_autoscaled(4), provider="kubernetes")
    live = applied(before)
    assert build_plan(before, live).actions == []
    plan = build_plan(world.desired(changed, provider="kubernetes"), live)
    assert ids(plan) == ["plugin.alpha.workload:replace"]
    (replace,) = plan.actions
    assert replace.cause is Cause.GIT_CHANGE
    assert replace.reason == "reconfigure (autoscaling or egress): apply the changed objects"
    assert replace.after is not None
    policy = replace.after["policy"]  # shown in the plan, as git has it
    assert policy["autoscaling"]["maxReplicas"] == changed["spec"]["autoscaling"]["maxReplicas"]
    assert policy["egress"][0]["ports"] == changed["spec"]["network"]["egress"][0]["ports"]


def test_autoscaling_and_egress_plan_nothing_on_docker_which_ignores_them(world: World) -> None:
    """PGV518 warns that docker ignores them; a change of them then has nothing to apply."""
    before = world.desired(_autoscaled(4))
    live = applied(before)
    assert build_plan(world.desired(_autoscaled(8)), live).actions == []
