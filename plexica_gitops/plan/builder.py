"""The planner: desired state + live state -> an ordered plan. Pure: no I/O.

Per plugin it walks spec 004's lifecycle one edge at a time (never skipping one) from the
live status to the desired one, and converges the plugin's resources (workload,
permissions, routes, topics, per-tenant migrations) at the right point of that walk. Then
it converges tenants and their plugin bindings. Dependencies between steps are declared by
id as the steps are made; `graph.order` keeps those that exist, checks for cycles and
assigns waves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import cached_property
from itertools import compress, repeat
from operator import attrgetter, methodcaller, ne
from types import SimpleNamespace
from typing import Any

from plexica_gitops.addresses import Address, AddressError, ResourceKind, parse_target
from plexica_gitops.desired.build import DesiredState, TenantEntry
from plexica_gitops.desired.model import TenantStatus
from plexica_gitops.desired.view import (
    DesiredPlugin,
    consumer_group,
    desired_plugin,
    env_hash,
    topic_settings,
)
from plexica_gitops.findings import Finding, Location, error, warning
from plexica_gitops.hashing import stable_hash
from plexica_gitops.lifecycle import (
    DEPLOYED,
    MAY_RUN,
    NEEDED_BY,
    RUNNING,
    LifecycleStatus,
    S,
    lifecycle_path,
)
from plexica_gitops.live.model import (
    LivePlugin,
    LiveState,
    LiveTenant,
    LiveTenantPlugin,
    LiveTopic,
    LiveWorkload,
    ObservedPart,
    not_read,
)
from plexica_gitops.plan.graph import order
from plexica_gitops.plan.model import Action, ActionKind, Cause, Plan, Replacement
from plexica_gitops.sensitive import mask

_BINDING_VALUES = attrgetter("enabled", "configuration")
_NO_BINDING = SimpleNamespace(enabled=None, configuration=None)  # not on the platform
HELD_NAMES_SHOWN = 5  # tenants named in a PGP109 warning; the rest are counted


def fingerprint_of(value: Any) -> str:
    """What apply records as last-applied at an address. Secret-looking values are masked
    first: a short unsalted hash of a short secret could be brute-forced from a plan."""
    return stable_hash(mask(value))


_Why = tuple[Cause, str]  # an action's cause and its reason in words


@dataclass
class _Step:
    action: Action
    depends_on: list[str] = field(default_factory=list)


class Planner:
    def __init__(
        self,
        desired: DesiredState,
        live: LiveState,
        replace: Mapping[str, Replacement] | None = None,
    ) -> None:
        self.desired = desired
        self.live = live
        self.replace = dict(replace or {})  # plugin -> why its workload must be replaced
        self.steps: dict[str, _Step] = {}
        self.errors: list[Finding] = []
        self.warnings: list[Finding] = []
        self.unmanaged: list[str] = []
        # Parts the live state lacks that this plan needed (Plan.unobserved).
        self.unobserved: set[ObservedPart] = set()
        # plugin -> tenants whose bindings git enables while the plugin is not to serve
        self.held_tenants: dict[str, list[str]] = defaultdict(list)
        platform = desired.platform.document.spec if desired.platform else None
        self.prune = platform.prune if platform else False
        self.plugins = {
            pid: desired_plugin(e, desired) for pid, e in sorted(desired.plugins.items())
        }
        self.targets: dict[str, LifecycleStatus | None] = {
            pid: p.target for pid, p in self.plugins.items()
        }
        for pid in sorted(live.plugins):
            if pid not in self.plugins:
                self.targets[pid] = S.UNINSTALLED if self.prune else None
        self.dependents: dict[str, list[str]] = defaultdict(list)
        for p in self.plugins.values():
            for dependency in p.dependencies:
                self.dependents[dependency].append(p.id)
        for pid, live_plugin in sorted(live.plugins.items()):
            if self.targets[pid] is not None:  # managed or pruned: what its live version needs
                for dependency in sorted(live_plugin.dependencies):
                    if pid not in self.dependents[dependency]:
                        self.dependents[dependency].append(pid)
        self.extra_deps: dict[str, list[str]] = defaultdict(list)

    # --- bookkeeping ---------------------------------------------------------------------

    def add(self, action: Action, depends_on: Iterable[str] = ()) -> str:
        self.steps[action.id] = _Step(action, list(depends_on))
        return action.id

    def why(self, address: str, after: Any, git_reason: str, drift_reason: str) -> _Why:
        """Why a resource that differs from git is changed: drift when the reconciler last
        applied exactly this desired value here (so git did not change; the platform did),
        else a change in git. The one place drift is told from change by last-applied."""
        applied = self.live.last_applied.get(address)
        if applied is not None and applied == fingerprint_of(after):
            return Cause.DRIFT, drift_reason
        return Cause.GIT_CHANGE, git_reason

    def removal_cause(self, pid: str) -> Cause:
        """Why a plugin leaves ACTIVE or goes away: git says so, or prune does."""
        return Cause.GIT_CHANGE if pid in self.plugins else Cause.PRUNE

    def teardown_cause(self, pid: str, live: LivePlugin | None) -> Cause:
        """Why a plugin's resource is taken down: finishing an interrupted uninstall
        (then to install again, or not), else as the plugin leaves."""
        if live is not None and live.status is S.UNINSTALLING:
            return Cause.CRASH_REPAIR
        return self.removal_cause(pid)

    # --- the plan ------------------------------------------------------------------------

    def plan(self) -> Plan:
        self.check_unmanaged_dependents()
        for pid in sorted(self.targets):
            self.plan_plugin(pid)
        self.plan_topics()
        self.plan_tenants()
        self.note_unreadable()
        for step_id, deps in self.extra_deps.items():
            if step_id in self.steps:
                self.steps[step_id].depends_on.extend(deps)
        actions = order({sid: (s.action, s.depends_on) for sid, s in self.steps.items()})
        return Plan(
            desired_revision=self.desired.revision,
            live_fingerprint=self.live.fingerprint(),
            actions=actions,
            warnings=self.warnings,
            errors=self.errors,
            unmanaged=sorted(self.unmanaged),
            unobserved=sorted(self.unobserved),
            desired_dirty=self.desired.work_tree_dirty,
            desired_head=self.desired.work_tree_head,
        )

    def check_unmanaged_dependents(self) -> None:
        """Spec 004 edge case 5, at plan time: a live plugin that git does not manage may
        depend on one git is about to take away."""
        for pid, live_plugin in sorted(self.live.plugins.items()):
            if self.targets.get(pid) is not None:  # managed, or pruned
                continue
            needs = NEEDED_BY.get(live_plugin.status)
            if needs is None:
                continue
            for dependency in sorted(live_plugin.dependencies):
                target = self.targets.get(dependency)
                if dependency in self.plugins and target not in needs:
                    self.errors.append(
                        error(
                            "PGP104",
                            f"plugin {pid!r} is {live_plugin.status.value} on the platform (not "
                            f"in git) and depends on {dependency!r}, which git wants "
                            f"{self.desired.plugins[dependency].document.spec.state.value}",
                            f"Declare {pid} in git (and disable or remove it first), or keep "
                            f"{dependency} active.",
                            self.desired.plugins[dependency].location("spec", "state"),
                            (pid, dependency),
                        )
                    )

    # --- plugins -------------------------------------------------------------------------

    def plan_plugin(self, pid: str) -> None:
        live = self.live.plugins.get(pid)
        target = self.targets[pid]
        desired = self.plugins.get(pid)
        if desired is None and target is None:
            self.unmanaged.append(f"plugin.{pid}")
            return
        start = live.status if live else None
        path = lifecycle_path(start, target)
        verbs = {verb for _, _, verb in path}
        address = f"plugin.{pid}"
        previous: str | None = None
        for before, after, verb in path:
            # Each edge waits for the one before it: a plan never skips an edge.
            previous = self.add_transition(pid, address, before, after, verb, desired, previous)
        final = target or S.UNINSTALLED
        install_hook = f"{address}:install"
        if "mark-uninstalled" in verbs and final in DEPLOYED and live is not None:
            # Finish the interrupted uninstall (tear down what is left) ...
            removed = [
                self.plan_workload(pid, None, live, S.UNINSTALLED, verbs, install_hook, []),
                self.plan_permissions(pid, None, live, S.UNINSTALLED, install_hook),
                self.plan_routes(pid, None, live, S.UNINSTALLED, None),
                self.plan_subscriptions(pid, None, live, S.UNINSTALLED),
            ]
            self.hook(f"{address}:mark-uninstalled", *removed)
            # ... then install again from nothing.
            live = live.model_copy(
                update={"workload": None, "permissions": {}, "routes": None, "subscriptions": {}}
            )
        migrations = self.plan_migrations(pid, desired, final, install_hook)
        permissions = self.plan_permissions(pid, desired, live, final, install_hook)
        workload = self.plan_workload(pid, desired, live, final, verbs, install_hook, migrations)
        routes = self.plan_routes(pid, desired, live, final, workload)
        subscriptions = self.plan_subscriptions(pid, desired, live, final)
        updates = [x for x in (workload, permissions, routes, subscriptions, *migrations) if x]
        if desired is not None and live is not None and final is not S.UNINSTALLED:
            self.plan_catalog_update(pid, desired, live, updates, verbs)
        if desired is not None and desired.purge_data and "uninstall" in verbs:
            updates.append(self.plan_purge(pid))
        if final in DEPLOYED:  # otherwise these are deletions, which come after uninstall
            self.hook(f"{address}:mark-installed", workload, permissions, *migrations)
        if final is S.ACTIVE:
            self.hook(f"{address}:activate", workload, routes, subscriptions)
        if final is S.INSTALLED:
            self.hook(f"{address}:start", workload)
        stopped = workload and self.steps[workload].action.step == "stop"
        self.hook(f"{address}:disable", workload if stopped else None)
        if final not in DEPLOYED:  # otherwise these are the re-install's creations
            self.hook(f"{address}:mark-uninstalled", *updates)

    def note_unobserved_workloads(self) -> None:
        if ObservedPart.RUNTIME in self.unobserved:
            return
        self.unobserved.add(ObservedPart.RUNTIME)
        self.warnings.append(
            warning(
                "PGP205",
                "the runtime provider was not observed: workload changes are left out of this plan",
                "Plan with the runtime provider reachable (or a full --live-state "
                "snapshot) to see workload drift and updates.",
            )
        )

    def hook(self, step_id: str, *dependencies: str | None) -> None:
        """Make a lifecycle step wait for the resource steps that realise it."""
        step = self.steps.get(step_id)
        if step is not None:
            step.depends_on.extend(d for d in dependencies if d and d != step_id)

    def plan_purge(self, pid: str) -> str:
        return self.add(
            Action(
                f"plugin.{pid}.data",
                "purge",
                ActionKind.DELETE,
                "purgeDataOnUninstall: drop the plugin's tables in every tenant schema",
                plugin=pid,
                cause=Cause.GIT_CHANGE,
            ),
            [f"plugin.{pid}:uninstall"],
        )

    def add_transition(
        self,
        pid: str,
        address: str,
        before: LifecycleStatus | None,
        after: LifecycleStatus,
        verb: str,
        desired: DesiredPlugin | None,
        previous: str | None,
    ) -> str:
        deps: list[str] = [previous] if previous else []
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
            deps += [f"plugin.{d}:mark-uninstalled" for d in self.dependents.get(pid, [])]
            reason, cause = self.removal_reason(pid), self.removal_cause(pid)
        elif verb == "install":
            assert desired is not None
            deps += [f"plugin.{d}:mark-installed" for d in desired.dependencies]
            deps.append(f"{address}:register")
            reason = f"desired {desired.target.value.lower()}: install {desired.version}"
        elif verb == "mark-installed":
            deps += [f"{address}:install"]
            reason = "image pulled, workload healthy, migrations and permissions in place"
            if before is S.INSTALLING and not self.steps.get(f"{address}:install"):
                reason = "resume an install that was interrupted (live status INSTALLING)"
                cause = Cause.CRASH_REPAIR
        elif verb == "activate":
            assert desired is not None
            deps += [f"{address}:mark-installed"]
            deps += [f"plugin.{d}:activate" for d in desired.dependencies]
            reason = "desired active: serve traffic"
        elif verb == "disable":
            deps += [f"plugin.{d}:disable" for d in self.dependents.get(pid, [])]
            reason = (
                "desired disabled"
                if desired and desired.target is S.DISABLED
                else "on the way to " + (desired.target.value if desired else "absent")
            )
            cause = self.removal_cause(pid)
        elif verb == "start":
            reason = "desired installed: run without serving traffic"
        elif verb == "uninstall":
            deps += [f"{address}:disable"]
            deps += [f"plugin.{d}:mark-uninstalled" for d in self.dependents.get(pid, [])]
            reason, cause = self.removal_reason(pid), self.removal_cause(pid)
        else:  # mark-uninstalled
            deps += [f"{address}:uninstall"]
            reason = "workload removed, routes and permissions deregistered"
            cause = self.removal_cause(pid)
            if before is S.UNINSTALLING and not self.steps.get(f"{address}:uninstall"):
                reason = "resume an uninstall that was interrupted (live status UNINSTALLING)"
                cause = Cause.CRASH_REPAIR
        return self.add(
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
            deps,
        )

    def removal_reason(self, pid: str) -> str:
        if pid in self.plugins:
            return "desired absent in git"
        return "not in git and platform.prune is true"

    def plan_workload(
        self,
        pid: str,
        desired: DesiredPlugin | None,
        live: LivePlugin | None,
        final: LifecycleStatus,
        verbs: set[str],
        install_hook: str,
        migrations: list[str],
    ) -> str | None:
        address = f"plugin.{pid}.workload"
        current = live.workload if live else None
        if not self.live.workloads_observed and live is not None and live.status in MAY_RUN:
            self.note_unobserved_workloads()
            return None
        if final not in DEPLOYED or desired is None:
            if current is None:
                return None
            stop = None
            if current.running:
                stop = self.add(
                    Action(
                        address,
                        "stop",
                        ActionKind.UPDATE,
                        "disable before uninstall: stop serving",
                        before={"running": True},
                        after={"running": False},
                        plugin=pid,
                        cause=self.teardown_cause(pid, live),
                    ),
                    [f"plugin.{pid}.routes:delete"],
                )
                self.extra_deps[f"plugin.{pid}:disable"].append(stop)
            return self.add(
                Action(
                    address,
                    "delete",
                    ActionKind.DELETE,
                    "uninstall: remove the containers (data is kept)",
                    before=_workload_view(current),
                    plugin=pid,
                    cause=self.teardown_cause(pid, live),
                ),
                [f"plugin.{pid}:uninstall", *([stop] if stop else [])],
            )
        want = {**desired.workload, "running": final in RUNNING}
        shown = mask(want)
        shown["env"] = sorted(want["env"])  # names only: values are references or literals
        fingerprint = fingerprint_of(want)
        if current is None:
            cause, reason = self.why(
                address,
                want,
                "install: pull the image, start the containers, wait until healthy",
                "drift: the workload was removed outside plexica-gitops",
            )
            return self.add(
                Action(
                    address,
                    "create",
                    ActionKind.CREATE,
                    reason,
                    after=shown,
                    plugin=pid,
                    fingerprint=fingerprint,
                    cause=cause,
                ),
                [install_hook, *migrations],
            )
        changed = _workload_changes(current, want)
        forced = self.replace.get(pid)  # a changed secret, or `apply --replace`
        if not changed and not forced:
            return None
        before = _workload_view(current)
        if forced or changed & {"image", "version", "cpu", "memory", "env", "builds"}:
            strategy = want["strategy"]
            causes = [*sorted(changed), *([forced.why] if forced else [])]
            reason = (
                f"update {current.version} → {want['version']}: {strategy} update"
                if current.version != want["version"]
                else f"reconfigure ({', '.join(causes)}): {strategy} restart"
            )
            if "builds" in changed:  # a rollout cut short: whatever git says, it is drift
                cause, reason = (
                    Cause.CRASH_REPAIR,
                    f"drift: {_mixture(current)}: replace every replica not built from "
                    f"{want['version']} as git says and retire the extras ({strategy} update)",
                )
            elif forced:
                cause = forced.cause
            else:
                cause, reason = self.why(
                    address, want, reason, "drift: the workload was changed outside git"
                )
            deps = [*migrations]
            deps += [f"plugin.{d}.workload:replace" for d in desired.dependencies]
            if not want["running"]:  # stopped containers: stop routing to them first
                deps.append(f"plugin.{pid}.routes:delete")
            return self.add(
                Action(
                    address,
                    "replace",
                    ActionKind.REPLACE,
                    reason,
                    before=before,
                    after=shown,
                    plugin=pid,
                    fingerprint=fingerprint,
                    cause=cause,
                ),
                deps,
            )
        step, deps, (cause, reason) = _workload_step(pid, current, want, changed, verbs)
        if step == "scale":
            cause, reason = self.why(
                address, want, reason, f"drift: {reason}, changed outside plexica-gitops"
            )
        return self.add(
            Action(
                address,
                step,
                ActionKind.UPDATE,
                reason,
                before=before,
                after=shown,
                plugin=pid,
                fingerprint=fingerprint,
                cause=cause,
            ),
            deps,
        )

    def plan_permissions(
        self,
        pid: str,
        desired: DesiredPlugin | None,
        live: LivePlugin | None,
        final: LifecycleStatus,
        install_hook: str,
    ) -> str | None:
        address = f"plugin.{pid}.permissions"
        current = {
            k: {"name": v.name, "description": v.description}
            for k, v in (live.permissions.items() if live else [])
        }
        if final not in DEPLOYED or desired is None:
            if not current:
                return None
            return self.add(
                Action(
                    address,
                    "delete",
                    ActionKind.DELETE,
                    "uninstall: deregister the plugin's permissions",
                    before={"keys": sorted(current)},
                    plugin=pid,
                    cause=self.teardown_cause(pid, live),
                ),
                [f"plugin.{pid}:uninstall"],
            )
        want = desired.permissions
        if want == current:
            return None
        deps = [install_hook]
        for key in sorted(set(want) - set(current)):
            owner = self.permission_owner(key, pid)
            if owner is None:
                continue
            if self.releases_permission(owner, key):
                deps.append(f"plugin.{owner}.permissions:update")
                deps.append(f"plugin.{owner}.permissions:delete")
                continue
            self.errors.append(
                error(
                    "PGP106",
                    f"permission {key!r} of plugin {pid!r} is registered on the platform by "
                    f"plugin {owner!r}",
                    "Permission keys are unique (spec 004 edge case 6): rename the key, or "
                    f"remove it from {owner} first.",
                    self.permission_location(pid, key),
                    (pid, owner),
                )
            )
        after = {"keys": sorted(want)}
        kind = ActionKind.CREATE if not current else ActionKind.UPDATE
        cause, reason = self.why(
            address,
            want,
            "register the plugin's permissions" if not current else "permissions changed in git",
            "drift: permissions changed outside plexica-gitops",
        )
        return self.add(
            Action(
                address,
                "create" if not current else "update",
                kind,
                reason,
                before={"keys": sorted(current)} if current else None,
                after=after,
                plugin=pid,
                fingerprint=fingerprint_of(want),
                cause=cause,
            ),
            deps,
        )

    def permission_location(self, pid: str, key: str) -> Location:
        entry = self.desired.plugins[pid]
        keys = [p.key for p in entry.manifest.permissions]
        return entry.manifest_location("permissions", keys.index(key), "key")

    def event_location(self, pid: str, event: str) -> Location | None:
        entry = self.desired.plugins.get(pid)
        if entry is None or event not in entry.manifest.events.publishes:
            return None
        index = entry.manifest.events.publishes.index(event)
        return entry.manifest_location("events", "publishes", index)

    def permission_owner(self, key: str, pid: str) -> str | None:
        for other, live_plugin in self.live.plugins.items():
            if other != pid and key in live_plugin.permissions:
                return other
        return None

    def releases_permission(self, owner: str, key: str) -> bool:
        target = self.targets.get(owner)
        if target is None:
            return False  # unmanaged: we never touch it
        desired = self.plugins.get(owner)
        return target not in DEPLOYED or desired is None or key not in desired.permissions

    def plan_routes(
        self,
        pid: str,
        desired: DesiredPlugin | None,
        live: LivePlugin | None,
        final: LifecycleStatus,
        workload: str | None,
    ) -> str | None:
        address = f"plugin.{pid}.routes"
        current = live.routes.model_dump() if live and live.routes else None
        if final is not S.ACTIVE or desired is None:
            if current is None:
                return None
            deps = [f"plugin.{d}:disable" for d in self.dependents.get(pid, [])]
            step = self.add(
                Action(
                    address,
                    "delete",
                    ActionKind.DELETE,
                    "stop routing traffic to the plugin (new requests get 404)",
                    before=current,
                    plugin=pid,
                    cause=self.teardown_cause(pid, live),
                ),
                deps,
            )
            self.extra_deps[f"plugin.{pid}:disable"].append(step)
            self.extra_deps[f"plugin.{pid}:uninstall"].append(step)
            return step
        want = desired.routes
        if current == want:
            return None
        deps = [x for x in (workload,) if x]
        deps += [f"plugin.{d}:activate" for d in desired.dependencies]
        deps += [f"topic.{event}:create" for event in desired.subscribes]
        deps.append(f"plugin.{pid}:mark-installed")
        cause, reason = self.why(
            address,
            want,
            "register gateway routes and the remote entry once ready"
            if current is None
            else "routes changed in git",
            "drift: routes changed or removed outside plexica-gitops",
        )
        return self.add(
            Action(
                address,
                "create" if current is None else "update",
                ActionKind.CREATE if current is None else ActionKind.UPDATE,
                reason,
                before=current,
                after=want,
                plugin=pid,
                fingerprint=fingerprint_of(want),
                cause=cause,
            ),
            deps,
        )

    def plan_subscriptions(
        self,
        pid: str,
        desired: DesiredPlugin | None,
        live: LivePlugin | None,
        final: LifecycleStatus,
    ) -> str | None:
        """The consumer group (`plugin-<id>`) of each subscribed event, in the registry
        while the plugin is ACTIVE: the platform wires consumers from it."""
        address = f"plugin.{pid}.subscriptions"
        current = dict(live.subscriptions) if live else {}
        if final is not S.ACTIVE or desired is None:
            if not current:
                return None
            step = self.add(
                Action(
                    address,
                    "delete",
                    ActionKind.DELETE,
                    "stop consuming: remove the plugin's subscriptions from the registry",
                    before={"subscriptions": current},
                    plugin=pid,
                    cause=self.teardown_cause(pid, live),
                )
            )
            self.extra_deps[f"plugin.{pid}:disable"].append(step)
            self.extra_deps[f"plugin.{pid}:uninstall"].append(step)
            return step
        self.check_subscriptions(pid, desired)
        want = {event: consumer_group(pid) for event in desired.subscribes}
        if want == current:
            return None
        cause, reason = self.why(
            address,
            want,
            "register the plugin's event subscriptions"
            if not current
            else "subscriptions changed in git",
            "drift: subscriptions changed outside plexica-gitops",
        )
        return self.add(
            Action(
                address,
                "create" if not current else "update",
                ActionKind.CREATE if not current else ActionKind.UPDATE,
                reason,
                before={"subscriptions": current} if current else None,
                after={"subscriptions": want},
                plugin=pid,
                fingerprint=fingerprint_of(want),
                cause=cause,
            ),
            [
                f"plugin.{pid}:mark-installed",
                *(f"topic.{event}:create" for event in desired.subscribes),
            ],
        )

    def check_subscriptions(self, pid: str, desired: DesiredPlugin) -> None:
        """An active plugin consuming a topic that no active plugin publishes (and the
        core does not either) would wait forever for its events."""
        platform = self.desired.platform
        core_topics = set(platform.document.spec.events.platform_topics) if platform else set()
        active_publishers = {
            event: other.id
            for other in self.plugins.values()
            if other.target is S.ACTIVE
            for event in other.publishes
        }
        entry = self.desired.plugins[pid]
        for index, event in enumerate(desired.subscribes):
            if event in core_topics or event in active_publishers:
                continue
            publisher = next((p.id for p in self.plugins.values() if event in p.publishes), None)
            self.errors.append(
                error(
                    "PGP108",
                    f"plugin {pid!r} is to be active and subscribes to {event!r}, but "
                    + (
                        f"its publisher {publisher!r} is not to be active"
                        if publisher
                        else "no plugin publishes it"
                    ),
                    f"Keep {publisher} active, or drop the subscription from {pid}."
                    if publisher
                    else "Fix the event name, or list it in the platform's events.platformTopics.",
                    entry.manifest_location("events", "subscribes", index),
                    (pid, publisher) if publisher else (pid,),
                )
            )

    def plan_catalog_update(
        self,
        pid: str,
        desired: DesiredPlugin,
        live: LivePlugin,
        updates: list[str],
        verbs: set[str],
    ) -> None:
        """Record git's version and manifest in the catalog row: after a change in git, or
        when the row was edited outside plexica-gitops (its version, name, manifest or
        manifest hash no longer what git says, with git unchanged)."""
        if "register" in verbs:
            return
        drifted = _catalog_drift(desired, live)
        if not drifted:
            return
        content_same = live.stored_manifest_hash == desired.stored_manifest_hash
        git_changed = live.manifest_hash != desired.manifest_hash and not content_same
        before = {"version": live.version, "manifest_hash": live.manifest_hash}
        after = {"version": desired.version, "manifest_hash": desired.manifest_hash}
        if "name" in drifted:
            before["name"], after["name"] = live.name or "", desired.name
        cause = Cause.GIT_CHANGE if git_changed else Cause.DRIFT
        if git_changed:
            reason = (
                f"version {live.version} → {desired.version}"
                if live.version != desired.version
                else "manifest changed in git"
            )
        else:
            reason = (
                f"drift: the catalog's {', '.join(drifted)} changed outside plexica-gitops: "
                "restore what git says"
            )
        self.add(
            Action(
                f"plugin.{pid}",
                "update",
                ActionKind.UPDATE,
                reason,
                before=before,
                after=after,
                plugin=pid,
                fingerprint=desired.manifest_hash,
                cause=cause,
            ),
            [*updates, *(f"plugin.{d}:update" for d in desired.dependencies)],
        )

    # --- migrations ----------------------------------------------------------------------

    def plan_migrations(
        self,
        pid: str,
        desired: DesiredPlugin | None,
        final: LifecycleStatus,
        install_hook: str,
    ) -> list[str]:
        if desired is None or final not in DEPLOYED or not desired.migrations:
            return []
        wanted = list(desired.migrations)
        by_version = {m[0]: m for m in wanted}
        created: list[str] = []
        # Tenants whose records equal an up-to-date list are skipped first, in one pass.
        # Comparing lists of records is cheap when the tenants share the record objects
        # (observe and parse_live_state build each record once), and right when they do not.
        active = self.active_tenants
        current = next(
            (
                applied
                for _, _, live_tenant in active
                if live_tenant is not None
                and (applied := live_tenant.migrations.get(pid)) is not None
                and len(applied) == len(wanted)
                and [(a.version, a.name, a.checksum) for a in applied] == wanted
            ),
            None,
        )
        if current is not None:  # a filter run in C: a million (plugin, tenant) pairs
            applied_lists = map(methodcaller("get", pid), self.live_migrations)
            active = list(compress(active, map(ne, applied_lists, repeat(current))))
        for slug, tenant, live_tenant in active:
            applied = live_tenant.migrations.get(pid, []) if live_tenant else []
            if (
                len(applied) == len(wanted)
                and [(a.version, a.name, a.checksum) for a in applied] == wanted
            ):
                continue
            pending = self.pending_migrations(slug, tenant, pid, applied, by_version)
            if not pending:
                continue
            address = f"tenant.{slug}.migrations.{pid}"
            deps = [install_hook, f"tenant.{slug}:create"]
            deps += [f"tenant.{slug}.migrations.{d}:apply" for d in desired.dependencies]
            created.append(
                self.add(
                    Action(
                        address,
                        "apply",
                        ActionKind.CREATE if not applied else ActionKind.UPDATE,
                        f"{len(pending)} pending migration{'s' * (len(pending) != 1)}",
                        before={"applied": [f"{a.version:04d}_{a.name}" for a in applied]}
                        if applied
                        else None,
                        after={
                            "applied": [
                                *(f"{a.version:04d}_{a.name}" for a in applied),
                                *(f"{v:04d}_{n}" for v, n, _ in pending),
                            ]
                        },
                        plugin=pid,
                        tenant=slug,
                        cause=Cause.GIT_CHANGE,
                    ),
                    deps,
                )
            )
            # A suspended tenant coming back is migrated before it serves again.
            self.extra_deps[f"tenant.{slug}:update"].append(created[-1])
        return created

    @cached_property
    def active_tenants(self) -> list[tuple[str, TenantEntry, LiveTenant | None]]:
        """Tenants git wants active, sorted, with their live record: every plugin's
        migrations walk them (suspended tenants catch up when they become active)."""
        return [
            (slug, tenant, self.live.tenants.get(slug))
            for slug, tenant in sorted(self.desired.tenants.items())
            if tenant.document.spec.status is TenantStatus.ACTIVE
        ]

    @cached_property
    def live_migrations(self) -> list[dict[str, list[Any]]]:
        """The live migrations of each of `active_tenants` ({} for a new tenant)."""
        return [live.migrations if live else {} for _, _, live in self.active_tenants]

    def pending_migrations(
        self,
        slug: str,
        tenant: TenantEntry,
        pid: str,
        applied: list[Any],
        by_version: dict[int, tuple[int, str, str]],
    ) -> list[tuple[int, str, str]]:
        entry = self.desired.plugins[pid]
        done = {a.version for a in applied}
        for record in applied:
            wanted = by_version.get(record.version)
            if wanted is None:
                self.warnings.append(
                    warning(
                        "PGP102",
                        f"migration {record.version:04d}_{record.name} of {pid!r} is applied in "
                        f"tenant {slug!r} but no longer in git",
                        "Migrations are append-only: restore the file (it is never re-run).",
                        entry.location("spec"),
                        (slug, pid),
                    )
                )
            elif wanted[2] != record.checksum:
                path = next(m.path for m in entry.migrations if m.number == record.version)
                self.errors.append(
                    error(
                        "PGP101",
                        f"migration {path} was changed after it was applied in tenant "
                        f"{slug!r} (checksum {record.checksum[:12]}… applied, "
                        f"{wanted[2][:12]}… in git)",
                        "Never edit an applied migration: revert the file and add a new "
                        "NNNN_*.sql with the change.",
                        Location(path),
                        (slug, pid),
                    )
                )
        pending = [m for v, m in sorted(by_version.items()) if v not in done]
        newest = max(done, default=0)
        late = [m for m in pending if m[0] < newest]
        if late:
            self.errors.append(
                error(
                    "PGP103",
                    f"migration {late[0][0]:04d}_{late[0][1]} of {pid!r} is older than "
                    f"{newest:04d}, already applied in tenant {slug!r}",
                    "Give new migrations a number above every applied one.",
                    tenant.location("metadata", "name"),
                    (slug, pid),
                )
            )
            return []
        return pending

    # --- topics --------------------------------------------------------------------------

    def plan_topics(self) -> None:
        defaults = (
            self.desired.platform.document.spec.events.defaults if self.desired.platform else None
        )
        wanted: dict[str, tuple[str, dict[str, Any]]] = {}
        for pid, plugin in self.plugins.items():
            if plugin.target not in DEPLOYED:
                continue
            overrides = self.desired.plugins[pid].document.spec.topics
            for event in plugin.publishes:
                wanted[event] = (pid, topic_settings(defaults, overrides.get(event)))
        if not self.live.topics_observed:
            # Topics matter whenever a plugin in git publishes: to create them, to compare
            # them, or to purge them with an uninstalled publisher.
            if any(p.publishes for p in self.plugins.values()):
                self.unobserved.add(ObservedPart.BROKER)
                self.warnings.append(
                    warning(
                        "PGP201",
                        "the event broker was not observed: topics are left out of this plan",
                        "Set KAFKA_BOOTSTRAP_SERVERS and make the broker reachable to plan "
                        "topics; nothing will be created or deleted for them now.",
                    )
                )
            return
        for event, (pid, want) in sorted(wanted.items()):
            self.plan_topic(event, pid, want, self.live.topics.get(event))
        for event, topic in sorted(self.live.topics.items()):
            if event in wanted:
                continue
            owner = topic.owner
            if owner is None or owner not in self.plugins:
                self.unmanaged.append(f"topic.{event}")
                continue
            plugin = self.plugins[owner]
            if plugin.target in DEPLOYED or not plugin.purge_data:
                continue  # kept: topics outlive their publisher unless purge was asked for
            self.add(
                Action(
                    f"topic.{event}",
                    "delete",
                    ActionKind.DELETE,
                    f"{owner} is uninstalled with purgeDataOnUninstall",
                    before=topic.model_dump(exclude={"owner"}),
                    plugin=owner,
                    cause=Cause.GIT_CHANGE,
                ),
                [f"plugin.{owner}:uninstall"],
            )

    def plan_topic(
        self, event: str, pid: str, want: dict[str, Any], current: LiveTopic | None
    ) -> None:
        address = f"topic.{event}"
        if current is None:
            cause, reason = self.why(
                address,
                want,
                f"published by {pid}",
                "drift: the topic was deleted outside plexica-gitops",
            )
            self.add(
                Action(
                    address,
                    "create",
                    ActionKind.CREATE,
                    reason,
                    after=want,
                    plugin=pid,
                    fingerprint=fingerprint_of(want),
                    cause=cause,
                ),
                [f"plugin.{pid}:install"],
            )
            # Topics exist before the publisher is marked installed (README, Plans: Order).
            self.extra_deps[f"plugin.{pid}:mark-installed"].append(f"{address}:create")
            return
        if current.owner not in (None, pid):
            self.warnings.append(
                warning(
                    "PGP202",
                    f"topic {event!r} is published by {pid!r} but was created for "
                    f"{current.owner!r}",
                    "Left as it is; ownership moves when the old owner is uninstalled.",
                    location=self.event_location(pid, event),
                    subjects=(pid, current.owner),
                )
            )
            return
        if current.owner is None:
            self.warnings.append(
                warning(
                    "PGP203",
                    f"topic {event!r} already exists and was not created by plexica-gitops",
                    "It is used as it is and never changed or deleted by plexica-gitops.",
                    location=self.event_location(pid, event),
                    subjects=(pid,),
                )
            )
            return
        if want["partitions"] < current.partitions:
            self.errors.append(
                error(
                    "PGP204",
                    f"topic {event!r} has {current.partitions} partitions; git asks for "
                    f"{want['partitions']}",
                    "Kafka partitions can only grow: raise the setting back to at least "
                    f"{current.partitions}.",
                    location=self.desired.platform.location("spec", "events", "defaults")
                    if self.desired.platform
                    else None,
                    subjects=(pid,),
                )
            )
            return
        drifted = {k: v for k, v in want["config"].items() if current.config.get(k) != v}
        if want["partitions"] == current.partitions and not drifted:
            return
        cause, reason = self.why(
            address,
            want,
            "topic settings changed in git",
            "drift: topic settings changed outside plexica-gitops",
        )
        self.add(
            Action(
                address,
                "update",
                ActionKind.UPDATE,
                reason,
                before={
                    "partitions": current.partitions,
                    "config": {k: current.config.get(k) for k in drifted},
                },
                after={"partitions": want["partitions"], "config": drifted},
                plugin=pid,
                fingerprint=fingerprint_of(want),
                cause=cause,
            ),
        )

    # --- tenants -------------------------------------------------------------------------

    def plan_tenants(self) -> None:
        for slug, tenant in sorted(self.desired.tenants.items()):
            live_tenant = self.live.tenants.get(slug)
            self.plan_tenant(slug, tenant, live_tenant)
            if tenant.document.spec.status is not TenantStatus.DELETED:
                self.plan_bindings(slug, tenant, live_tenant)
        self.note_held_bindings()
        for slug, live_tenant in sorted(self.live.tenants.items()):
            if slug in self.desired.tenants:
                continue
            self.plan_forced_binding_disables(slug, live_tenant, declared=set())
            if not self.prune or live_tenant.status is TenantStatus.DELETED:
                self.unmanaged.append(f"tenant.{slug}")
                continue
            self.add(
                Action(
                    f"tenant.{slug}",
                    "delete",
                    ActionKind.DELETE,
                    "not in git and platform.prune is true (schema and data are kept)",
                    before={"status": live_tenant.status},
                    after={"status": TenantStatus.DELETED.value},
                    tenant=slug,
                    cause=Cause.PRUNE,
                )
            )

    def plan_tenant(self, slug: str, tenant: TenantEntry, live: LiveTenant | None) -> None:
        spec = tenant.document.spec
        address = f"tenant.{slug}"
        want = {"id": spec.id, "schema": spec.schema_name, "status": spec.status.value}
        if live is None:
            if spec.status is TenantStatus.DELETED:
                return
            self.add(
                Action(
                    address,
                    "create",
                    ActionKind.CREATE,
                    "new tenant in git: create its schema and record",
                    after=want,
                    tenant=slug,
                    fingerprint=fingerprint_of(want),
                    cause=Cause.GIT_CHANGE,
                )
            )
            return
        if live.id != spec.id or live.schema_name != spec.schema_name:
            field_name = "id" if live.id != spec.id else "schema"
            self.errors.append(
                error(
                    "PGP105",
                    f"tenant {slug!r} exists with {field_name} "
                    f"{live.id if field_name == 'id' else live.schema_name!r}; git asks for "
                    f"{spec.id if field_name == 'id' else spec.schema_name!r}",
                    "A tenant's id and schema never change: restore the live value in git, or "
                    "create a new tenant and migrate its data.",
                    tenant.location("spec", field_name),
                    (slug,),
                )
            )
            return
        if live.status is spec.status:
            return
        deleting = spec.status is TenantStatus.DELETED
        self.add(
            Action(
                address,
                "delete" if deleting else "update",
                ActionKind.DELETE if deleting else ActionKind.UPDATE,
                "tenant deleted in git (schema and data are kept)"
                if deleting
                else f"tenant {live.status} → {spec.status.value} in git",
                before={"status": live.status},
                after={"status": spec.status.value},
                tenant=slug,
                fingerprint=fingerprint_of(want),
                cause=Cause.GIT_CHANGE,
            )
        )

    def plan_bindings(self, slug: str, tenant: TenantEntry, live: LiveTenant | None) -> None:
        bindings = tenant.document.spec.plugins
        live_bindings = live.plugins if live else {}
        get = live_bindings.get
        # The bindings that differ from the platform, in C: (enabled, configuration) of the
        # desired and the live binding; one missing on the platform never equals.
        changed = compress(
            bindings,
            map(
                ne,
                map(_BINDING_VALUES, bindings.values()),
                map(_BINDING_VALUES, map(get, bindings, repeat(_NO_BINDING))),
            ),
        )
        held = self.hold_bindings(slug, bindings, live_bindings) if self.not_serving else ()
        broken = self.unreadable_bindings.get(slug, {}) if self.live.unreadable else {}
        for pid in sorted({*changed, *(p for p in broken if p in bindings)}):
            if pid in held:
                continue
            binding = bindings[pid]
            self.plan_binding(
                slug, pid, binding.enabled, binding.configuration, get(pid), broken.get(pid)
            )
        if live is not None:
            self.plan_forced_binding_disables(slug, live, declared=bindings.keys())
            self.check_stranded_bindings(slug, tenant, live)

    @cached_property
    def unreadable_bindings(self) -> dict[str, dict[str, str]]:
        """tenant slug -> plugin id -> why its stored configuration was not read."""
        found: dict[str, dict[str, str]] = defaultdict(dict)
        for text, why in self.live.unreadable.items():
            address = Address.parse(text)
            if address.kind is ResourceKind.BINDING:
                assert address.tenant is not None and address.plugin is not None
                found[address.tenant][address.plugin] = why
        return found

    def note_unreadable(self) -> None:
        """PGP110: a value in the store out of bounds (nested too deep, too large) was not
        read; the plan restores it from git where git declares it."""
        for text, why in sorted(self.live.unreadable.items()):
            address = Address.parse(text)
            subjects: tuple[str | None, ...] = (address.plugin,)
            if address.tenant is None:  # a plugin's catalog row
                declared = address.plugin in self.plugins
            else:  # a tenant's binding
                tenant = self.desired.tenants.get(address.tenant)
                declared = tenant is not None and address.plugin in tenant.document.spec.plugins
                subjects = (address.tenant, address.plugin)
            self.warnings.append(
                warning(
                    "PGP110",
                    f"{text}: the {why} on the platform was not read",
                    "This plan writes what git says over it."
                    if declared
                    else "It is not in git: correct or remove it in the store by hand.",
                    subjects=tuple(p for p in subjects if p),
                )
            )

    @cached_property
    def not_serving(self) -> list[str]:
        """Plugins in git that are not to be ACTIVE: no tenant binding of theirs is on."""
        return sorted(pid for pid, p in self.plugins.items() if p.target is not S.ACTIVE)

    def hold_bindings(
        self, slug: str, bindings: dict[str, Any], live: dict[str, LiveTenantPlugin]
    ) -> list[str]:
        """The bindings git enables for plugins that are not to be ACTIVE (a plugin
        disabled for a while): held off, the tenant's intent kept in git. One on the
        platform is disabled; one not there yet is not created. Once the plugin is active
        again, the bindings are enabled as git says."""
        held = [pid for pid in self.not_serving if pid in bindings and bindings[pid].enabled]
        for pid in held:
            self.held_tenants[pid].append(slug)
            current = live.get(pid)
            if current is not None and current.enabled:
                state = self.desired.plugins[pid].document.spec.state.value
                self.add_forced_disable(
                    slug,
                    pid,
                    f"plugin {pid} is desired {state}: held off until it is active again",
                    Cause.DEPENDENCY,
                )
        return held

    def note_held_bindings(self) -> None:
        for pid, slugs in sorted(self.held_tenants.items()):
            entry = self.desired.plugins[pid]
            state = entry.document.spec.state.value
            shown = ", ".join(slugs[:HELD_NAMES_SHOWN])
            more = len(slugs) - HELD_NAMES_SHOWN
            named = f"{shown} and {more:,} more" if more > 0 else shown
            tenants = f"{len(slugs):,} tenant{'s' * (len(slugs) != 1)}"
            self.warnings.append(
                warning(
                    "PGP109",
                    f"plugin {pid!r} is desired {state}, and {tenants} enable it in git "
                    f"({named}): their bindings are held off until it is active again",
                    f"Set plugins/{pid} back to `state: active` to serve them again, or set "
                    "`enabled: false` in those tenants.",
                    entry.location("spec", "state"),
                    (pid, *slugs),
                )
            )

    def check_stranded_bindings(self, slug: str, tenant: TenantEntry, live: LiveTenant) -> None:
        """Spec 004 edge case 5 inside a tenant: git disables a plugin for the tenant while a
        binding git does not declare, and that stays enabled, depends on it."""
        bindings = tenant.document.spec.plugins
        for pid in sorted([pid for pid, binding in bindings.items() if not binding.enabled]):
            current = live.plugins.get(pid)
            if current is None or not current.enabled:
                continue
            for dependent in sorted(self.dependents.get(pid, [])):
                other = live.plugins.get(dependent)
                if dependent in bindings or other is None or not other.enabled:
                    continue
                if self.prune or self.targets.get(dependent) not in (S.ACTIVE, None):
                    continue  # that binding is disabled by this plan too
                self.errors.append(
                    error(
                        "PGP107",
                        f"tenant {slug!r}: disabling {pid!r} leaves {dependent!r} (enabled on "
                        "the platform, not in git) without its dependency",
                        f"Declare {dependent} for this tenant in git and disable it too, or "
                        f"keep {pid} enabled.",
                        tenant.location("spec", "plugins", pid),
                        (slug, pid, dependent),
                    )
                )

    def plan_binding(
        self,
        slug: str,
        pid: str,
        enabled: bool,
        configuration: dict[str, Any],
        current: Any,
        unreadable: str | None = None,
    ) -> None:
        """`unreadable`: why the live configuration could not be read (it is then restored
        from git, and never shown)."""
        address = f"tenant.{slug}.plugin.{pid}"
        want = {"enabled": enabled, "configuration": configuration}
        desired = self.plugins.get(pid)
        deps = [f"tenant.{slug}:create", f"tenant.{slug}:update"]
        if current is None or (enabled and not current.enabled):
            step = "enable" if enabled else "configure"
            deps += [f"plugin.{pid}:activate", f"tenant.{slug}.migrations.{pid}:apply"]
            deps += [
                f"tenant.{slug}.plugin.{d}:enable"
                for d in (desired.dependencies if desired else ())
            ]
        elif not enabled and current.enabled:
            step = "disable"
            deps += [f"tenant.{slug}.plugin.{d}:disable" for d in self.dependents.get(pid, [])]
            self.extra_deps[f"plugin.{pid}.routes:delete"].append(f"{address}:disable")
        else:
            step = "configure"
        cause, reason = self.why(
            address,
            want,
            {
                "enable": "enabled for the tenant in git",
                "disable": "disabled for the tenant in git",
                "configure": "configuration changed in git",
            }[step],
            "drift: changed outside plexica-gitops",
        )
        shown = current.configuration if current else None
        if unreadable is not None:
            cause = Cause.DRIFT
            reason = f"drift: the stored {unreadable}: write git's configuration over it"
            shown = not_read(unreadable)
        self.add(
            Action(
                address,
                step,
                ActionKind.CREATE if current is None else ActionKind.UPDATE,
                reason,
                before=mask({"enabled": current.enabled, "configuration": shown})
                if current
                else None,
                after=mask(want),
                plugin=pid,
                tenant=slug,
                fingerprint=fingerprint_of(want),
                cause=cause,
            ),
            deps,
        )

    def plan_forced_binding_disables(
        self, slug: str, live: LiveTenant, declared: AbstractSet[str]
    ) -> None:
        """A live binding git does not declare is left alone, unless its plugin is leaving
        ACTIVE (the tenant would be left with a dead plugin) or prune is on."""
        for pid in sorted(live.plugins.keys() - declared):
            current = live.plugins[pid]
            if not current.enabled:
                continue
            target = self.targets.get(pid)
            leaving = pid in self.targets and target is not None and target is not S.ACTIVE
            if not leaving and not self.prune:
                continue
            self.add_forced_disable(
                slug,
                pid,
                f"plugin {pid} is leaving ACTIVE"
                if leaving
                else "not in git and platform.prune is true",
                Cause.DEPENDENCY if leaving else Cause.PRUNE,
            )

    def add_forced_disable(self, slug: str, pid: str, reason: str, cause: Cause) -> None:
        """Disable a live binding whatever git says of it, dependents' bindings first, and
        before the plugin's routes go."""
        address = f"tenant.{slug}.plugin.{pid}"
        deps = [f"tenant.{slug}.plugin.{d}:disable" for d in self.dependents.get(pid, [])]
        self.add(
            Action(
                address,
                "disable",
                ActionKind.UPDATE,
                reason,
                before={"enabled": True},
                after={"enabled": False},
                plugin=pid,
                tenant=slug,
                cause=cause,
            ),
            deps,
        )
        self.extra_deps[f"plugin.{pid}.routes:delete"].append(f"{address}:disable")


def _workload_view(current: LiveWorkload) -> dict[str, Any]:
    view = {
        "image": current.image,
        "version": current.version,
        "replicas": current.replicas,
        "ready_replicas": current.ready_replicas,
        "cpu": current.resources.cpu,
        "memory": current.resources.memory,
        "running": current.running,
    }
    if len(current.builds()) > 1:
        view["versions"] = dict(sorted(_versions(current).items()))
    return view


def _versions(current: LiveWorkload) -> dict[str, int]:
    counts: dict[str, int] = {}
    for replica in current.instances:
        counts[replica.version] = counts.get(replica.version, 0) + 1
    return counts


def _mixture(current: LiveWorkload) -> str:
    """`replicas of 2 versions run (2 of 1.2.0 and 2 of 1.3.0)`, or, for one version built
    from several specs, `4 replicas of 1.3.0 built from 2 different specs run`."""
    versions = _versions(current)
    if len(versions) == 1:
        version, count = next(iter(versions.items()))
        return f"{count} replicas of {version} built from {len(current.builds())} specs run"
    listed = " and ".join(f"{n} of {v}" for v, n in sorted(versions.items()))
    return f"replicas of {len(versions)} versions run ({listed})"


def _workload_changes(current: LiveWorkload, want: dict[str, Any]) -> set[str]:
    changed = set()
    if current.image != want["image"]:
        changed.add("image")
    if current.version != want["version"]:
        changed.add("version")
    if current.resources.cpu != want["cpu"]:
        changed.add("cpu")
    if current.resources.memory != want["memory"]:
        changed.add("memory")
    if current.env_hash != env_hash(want["env"]):
        changed.add("env")
    if current.replicas != want["replicas"]:
        changed.add("replicas")
    if len(current.builds()) > 1:
        changed.add("builds")  # replicas of other versions or specs beside the newest
    if current.running != want["running"]:
        changed.add("running")
    elif want["running"] and (
        current.ready_replicas < current.replicas
        or current.stale_endpoints
        or current.unregistered_endpoints
    ):
        changed.add("health")
    return changed


def _workload_step(
    pid: str, current: LiveWorkload, want: dict[str, Any], changed: set[str], verbs: set[str]
) -> tuple[str, list[str], _Why]:
    """The in-place workload step: scale, start or stop, and why (a scale's cause is the
    caller's to decide from last-applied)."""
    if "running" in changed and not want["running"]:
        why: _Why = Cause.GIT_CHANGE, "disable: stop the containers, keep data"
        return "stop", [f"plugin.{pid}.routes:delete"], why
    if "running" in changed or "health" in changed:
        if "activate" in verbs or "start" in verbs:
            why = Cause.GIT_CHANGE, "start the stopped containers and wait until healthy"
        elif "running" in changed:
            why = Cause.DRIFT, "drift: containers were stopped outside plexica-gitops"
        elif current.ready_replicas >= current.replicas:
            # endpoints a cut-short rollout or a crash left behind
            why = Cause.CRASH_REPAIR, _registry_drift(current) + ": refresh the registry"
        else:
            why = (
                Cause.DRIFT,
                f"drift: {current.replicas - current.ready_replicas} of {current.replicas} "
                "replicas not ready: restart them",
            )
        return "start", [], why
    return (
        "scale",
        [],
        (Cause.GIT_CHANGE, f"replicas {current.replicas} → {want['replicas']}"),
    )


def _catalog_drift(desired: DesiredPlugin, live: LivePlugin) -> list[str]:
    """The catalog columns apply writes that differ from git (a column not observed, as in
    an older snapshot, is not compared)."""
    drifted = []
    if live.version != desired.version:
        drifted.append("version")
    if live.name is not None and live.name != desired.name:
        drifted.append("name")
    stored = live.stored_manifest_hash
    if stored is not None and stored != desired.stored_manifest_hash:
        drifted.append("manifest")
    if live.manifest_hash != desired.manifest_hash:
        drifted.append("manifest_hash")
    return drifted


def _registry_drift(current: LiveWorkload) -> str:
    stale, missing = current.stale_endpoints, current.unregistered_endpoints
    parts = []
    if stale:
        parts.append(
            f"{stale} registered endpoints point at replicas that no longer run"
            if stale != 1
            else "1 registered endpoint points at a replica that no longer runs"
        )
    if missing:
        parts.append(
            f"{missing} ready replicas are missing from the service registry"
            if missing != 1
            else "1 ready replica is missing from the service registry"
        )
    return "drift: " + "; ".join(parts)


def build_plan(
    desired: DesiredState, live: LiveState, replace: Mapping[str, Replacement] | None = None
) -> Plan:
    """`replace`: plugin id -> why its running workload must be replaced although its spec
    did not change (a secret value changed, `apply --replace`): the caller decides."""
    return Planner(desired, live, replace).plan()


def address_exists(address: str, desired: DesiredState, live: LiveState) -> bool:
    """Whether an address (or action id) names something in git or on the platform, so a
    mistyped --target is an error rather than an empty plan."""
    try:
        target = parse_target(address)
    except AddressError:
        return False
    if target.topic is not None:
        event = target.topic
        published = any(event in p.manifest.events.publishes for p in desired.plugins.values())
        return published or event in live.topics
    slug = target.tenant
    if slug is not None and slug not in desired.tenants and slug not in live.tenants:
        return False
    if target.plugin is not None:
        return target.plugin in desired.plugins or target.plugin in live.plugins
    return True
