"""Plugins: spec 004's lifecycle, one edge at a time, and the plugin's resources on the way.

Per plugin the resource steps are made first (workload, permissions, routes,
subscriptions, migrations, the catalog row, purge), then the walk from the live status to
the desired one, never skipping an edge: each edge is made after the one before it and
after the resource steps that realise it (`_realised_by`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from plexica_gitops.desired.view import DesiredPlugin
from plexica_gitops.findings import error
from plexica_gitops.lifecycle import DEPLOYED, NEEDED_BY, LifecycleStatus, S, lifecycle_path
from plexica_gitops.live.model import LivePlugin
from plexica_gitops.plan import catalog, registry, workload
from plexica_gitops.plan.migrations import TenantMigrations
from plexica_gitops.plan.model import Action, ActionKind, Cause

if TYPE_CHECKING:
    from plexica_gitops.plan.builder import PlanBuilder


@dataclass
class _Resources:
    """The resource steps of one plugin (ids; None: nothing to do)."""

    workload: str | None = None
    permissions: str | None = None
    routes: str | None = None
    subscriptions: str | None = None
    migrations: list[str] = field(default_factory=list)
    updates: list[str] = field(default_factory=list)  # all of the above, and purge
    removed: list[str | None] = field(default_factory=list)  # before an install again


def plan_plugins(b: PlanBuilder) -> None:
    check_unmanaged_dependents(b)
    migrations = TenantMigrations(b)
    for pid in sorted(b.targets):
        plan_plugin(b, migrations, pid)


def check_unmanaged_dependents(b: PlanBuilder) -> None:
    """Spec 004 edge case 5, at plan time: a live plugin that git does not manage may
    depend on one git is about to take away."""
    for pid, live_plugin in sorted(b.live.plugins.items()):
        if b.targets.get(pid) is not None:  # managed, or pruned
            continue
        needs = NEEDED_BY.get(live_plugin.status)
        if needs is None:
            continue
        for dependency in sorted(live_plugin.dependencies):
            target = b.targets.get(dependency)
            if dependency in b.plugins and target not in needs:
                b.errors.append(
                    error(
                        "PGP104",
                        f"plugin {pid!r} is {live_plugin.status.value} on the platform (not "
                        f"in git) and depends on {dependency!r}, which git wants "
                        f"{b.desired.plugins[dependency].document.spec.state.value}",
                        f"Declare {pid} in git (and disable or remove it first), or keep "
                        f"{dependency} active.",
                        b.desired.plugins[dependency].location("spec", "state"),
                        (pid, dependency),
                    )
                )


def plan_plugin(b: PlanBuilder, migrations: TenantMigrations, pid: str) -> None:
    live = b.live.plugins.get(pid)
    target = b.targets[pid]
    desired = b.plugins.get(pid)
    if desired is None and target is None:
        b.unmanaged.append(f"plugin.{pid}")
        return
    path = lifecycle_path(live.status if live else None, target)
    verbs = {verb for _, _, verb in path}
    final = target or S.UNINSTALLED
    resources = _plan_resources(b, migrations, pid, desired, live, final, verbs)
    previous: str | None = None
    for before, after, verb in path:
        # Each edge waits for the one before it: a plan never skips an edge.
        realised_by = _realised_by(pid, verb, final, resources)
        previous = add_transition(b, pid, before, after, verb, desired, previous, realised_by)


def _plan_resources(
    b: PlanBuilder,
    migrations: TenantMigrations,
    pid: str,
    desired: DesiredPlugin | None,
    live: LivePlugin | None,
    final: LifecycleStatus,
    verbs: set[str],
) -> _Resources:
    r = _Resources()
    install = f"plugin.{pid}:install"  # what a new resource waits for
    if "mark-uninstalled" in verbs and final in DEPLOYED and live is not None:
        # Finish the interrupted uninstall (tear down what is left) ...
        r.removed = [
            workload.plan_workload(b, pid, None, live, S.UNINSTALLED, verbs, install, []),
            registry.plan_permissions(b, pid, None, live, S.UNINSTALLED, install),
            registry.plan_routes(b, pid, None, live, S.UNINSTALLED, None),
            registry.plan_subscriptions(b, pid, None, live, S.UNINSTALLED),
        ]
        # ... then install again from nothing.
        live = live.model_copy(
            update={"workload": None, "permissions": {}, "routes": None, "subscriptions": {}}
        )
    r.migrations = migrations.plan(pid, desired, final, install)
    r.permissions = registry.plan_permissions(b, pid, desired, live, final, install)
    r.workload = workload.plan_workload(b, pid, desired, live, final, verbs, install, r.migrations)
    r.routes = registry.plan_routes(b, pid, desired, live, final, r.workload)
    r.subscriptions = registry.plan_subscriptions(b, pid, desired, live, final)
    resource_steps = (r.workload, r.permissions, r.routes, r.subscriptions, *r.migrations)
    r.updates = [x for x in resource_steps if x]
    if desired is not None and live is not None and final is not S.UNINSTALLED:
        catalog.plan_catalog_update(b, pid, desired, live, r.updates, verbs)
    if desired is not None and desired.purge_data and "uninstall" in verbs:
        r.updates.append(plan_purge(b, pid))
    return r


def _realised_by(pid: str, verb: str, final: LifecycleStatus, r: _Resources) -> list[str]:
    """The resource steps a lifecycle edge waits for: what realises it. The teardown steps
    are named by id: the plan has them only while the plugin is taken down, and then the
    edge always waits for them."""
    steps: list[str | None] = []
    if verb == "mark-installed" and final in DEPLOYED:
        steps = [r.workload, r.permissions, *r.migrations]
    elif verb == "activate" and final is S.ACTIVE:
        steps = [r.workload, r.routes, r.subscriptions]
    elif verb == "start" and final is S.INSTALLED:
        steps = [r.workload]
    elif verb == "disable":  # stop routing, consuming and running first
        prefix = f"plugin.{pid}"
        steps = [f"{prefix}.routes:delete", f"{prefix}.subscriptions:delete"]
        steps.append(f"{prefix}.workload:stop")
    elif verb == "uninstall":
        steps = [f"plugin.{pid}.routes:delete", f"plugin.{pid}.subscriptions:delete"]
    elif verb == "mark-uninstalled":
        steps = [*r.removed, *(r.updates if final not in DEPLOYED else ())]
    return [s for s in steps if s]


def plan_purge(b: PlanBuilder, pid: str) -> str:
    return b.add(
        Action(
            f"plugin.{pid}.data",
            "purge",
            ActionKind.DELETE,
            "purgeDataOnUninstall: drop the plugin's tables in every tenant schema",
            plugin=pid,
            cause=Cause.GIT_CHANGE,
        ),
        after=[f"plugin.{pid}:uninstall"],
    )


def add_transition(
    b: PlanBuilder,
    pid: str,
    before: LifecycleStatus | None,
    after: LifecycleStatus,
    verb: str,
    desired: DesiredPlugin | None,
    previous: str | None,
    realised_by: list[str],
) -> str:
    address = f"plugin.{pid}"
    deps: list[str] = [previous] if previous else []
    deps += realised_by
    kind = ActionKind.TRANSITION
    after_attrs: dict[str, Any] = {"status": after.value}
    cause = Cause.GIT_CHANGE
    if verb == "register":
        kind = ActionKind.CREATE
        assert desired is not None
        after_attrs = {"status": after.value, "version": desired.version}
        reason = "new in git" if before is None else "re-registered: declared again in git"
    elif verb == "deregister":
        kind = ActionKind.DELETE
        deps += [f"plugin.{d}:mark-uninstalled" for d in b.dependents.get(pid, [])]
        reason, cause = b.removal_reason(pid), b.removal_cause(pid)
    elif verb == "install":
        assert desired is not None
        deps += [f"plugin.{d}:mark-installed" for d in desired.dependencies]
        deps.append(f"{address}:register")
        reason = f"desired {desired.target.value.lower()}: install {desired.version}"
    elif verb == "mark-installed":
        deps += [f"{address}:install"]
        reason = "image pulled, workload healthy, migrations and permissions in place"
        if before is S.INSTALLING and not b.has(f"{address}:install"):
            reason = "resume an install that was interrupted (live status INSTALLING)"
            cause = Cause.CRASH_REPAIR
    elif verb == "activate":
        assert desired is not None
        deps += [f"{address}:mark-installed"]
        deps += [f"plugin.{d}:activate" for d in desired.dependencies]
        reason = "desired active: serve traffic"
    elif verb == "disable":
        deps += [f"plugin.{d}:disable" for d in b.dependents.get(pid, [])]
        reason = (
            "desired disabled"
            if desired and desired.target is S.DISABLED
            else "on the way to " + (desired.target.value if desired else "absent")
        )
        cause = b.removal_cause(pid)
    elif verb == "start":
        reason = "desired installed: run without serving traffic"
    elif verb == "uninstall":
        deps += [f"{address}:disable"]
        deps += [f"plugin.{d}:mark-uninstalled" for d in b.dependents.get(pid, [])]
        reason, cause = b.removal_reason(pid), b.removal_cause(pid)
    else:  # mark-uninstalled
        deps += [f"{address}:uninstall"]
        reason = "workload removed, routes and permissions deregistered"
        cause = b.removal_cause(pid)
        if before is S.UNINSTALLING and not b.has(f"{address}:uninstall"):
            reason = "resume an uninstall that was interrupted (live status UNINSTALLING)"
            cause = Cause.CRASH_REPAIR
    return b.add(
        Action(
            address=address,
            step=verb,
            kind=kind,
            reason=reason,
            before={"status": before.value} if before else None,
            after=after_attrs,
            plugin=pid,
            cause=cause,
        ),
        after=deps,
    )
