"""The planner: desired state + live state -> an ordered plan. Pure: no I/O.

`PlanBuilder` is the core every resource kind plans through: the inputs and the views of
them the kinds share, `add(action, after=...)`, `before`, the cause helpers, the findings,
and the assembly of the plan. Each kind is a module of plain functions of the builder
(or a small class where it keeps state across plugins or tenants):

  lifecycle.py   per plugin: spec 004's lifecycle one edge at a time, never skipping one,
                 each edge after the resource steps that realise it; purge
  workload.py    the plugin's containers
  registry.py    its permissions, gateway routes and event subscriptions
  migrations.py  its schema migrations in each tenant
  catalog.py     its catalog row (a change in git, or drift)
  topics.py      the event topics
  tenants.py     tenants and their plugin bindings (held off, forced off)

Ordering edges are declared by id where a step is made: `add(action, after=ids)`.
`graph.order` keeps those that name planned steps, checks for cycles and assigns waves.
When the step being made must make ANOTHER step wait (a topic before its publisher's
`mark-installed`, a binding disabled before its plugin's routes go), it says so with
`before(waiting_id, *ids)`, right where it is made; nothing patches edges in afterwards.

A tenant's creation and its migrations are made with `contains_failure_to=<tenant>`: apply
then holds back only that tenant's steps when one fails (spec 004 edge case 2).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from plexica_gitops.addresses import Address, AddressError, parse_target
from plexica_gitops.desired.build import DesiredState
from plexica_gitops.desired.view import DesiredPlugin, desired_plugin
from plexica_gitops.findings import Finding, warning
from plexica_gitops.lifecycle import LifecycleStatus, S
from plexica_gitops.live.model import LivePlugin, LiveState, ObservedPart
from plexica_gitops.plan import lifecycle, tenants, topics
from plexica_gitops.plan.graph import order
from plexica_gitops.plan.model import Action, Cause, Plan, Replacement, fingerprint_of

__all__ = ["PlanBuilder", "Why", "address_exists", "build_plan", "fingerprint_of"]

Why = tuple[Cause, str]  # an action's cause and its reason in words


class PlanBuilder:
    """The steps of a plan being made, the edges between them, and what the kinds share."""

    def __init__(
        self,
        desired: DesiredState,
        live: LiveState,
        replace: Mapping[str, Replacement] | None = None,
    ) -> None:
        self.desired = desired
        self.live = live
        self.replace = dict(replace or {})  # plugin -> why its workload must be replaced
        # step id -> (action, the ids it waits for): the form `graph.order` takes
        self.steps: dict[str, tuple[Action, list[str]]] = {}
        self.waits: dict[str, list[str]] = defaultdict(list)  # declared by `before`
        self.errors: list[Finding] = []
        self.warnings: list[Finding] = []
        self.unmanaged: list[str] = []
        # In-sync addresses without a last-applied row (Plan.unrecorded).
        self.unrecorded: dict[str, str] = {}
        # Parts the live state lacks that this plan needed (Plan.unobserved).
        self.unobserved: set[ObservedPart] = set()
        platform = desired.platform.document.spec if desired.platform else None
        self.prune = platform.prune if platform else False
        self.plugins: dict[str, DesiredPlugin] = {
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

    # --- steps and edges -----------------------------------------------------------------

    def add(self, action: Action, after: Iterable[str] = ()) -> str:
        """Plan `action` after the steps named in `after` (ids; those not planned are
        dropped when the plan is ordered)."""
        self.steps[action.id] = (action, list(after))
        return action.id

    def before(self, step_id: str, *ids: str) -> None:
        """`step_id` must wait for `ids` too: the one way for the step being made (`ids`)
        to make another step wait, one made elsewhere, before or after it (a publisher's
        `mark-installed` waits for its topics). If `step_id` is never planned, nothing."""
        self.waits[step_id].extend(ids)

    def has(self, step_id: str) -> bool:
        return step_id in self.steps

    def action(self, step_id: str) -> Action:
        return self.steps[step_id][0]

    # --- causes --------------------------------------------------------------------------

    def why(self, address: str, after: Any, git_reason: str, drift_reason: str) -> Why:
        """Why a resource that differs from git is changed: drift when the reconciler last
        applied exactly this desired value here (so git did not change; the platform did),
        else a change in git. The one place drift is told from change by last-applied."""
        applied = self.live.last_applied.get(address)
        if applied is not None and applied == fingerprint_of(after):
            return Cause.DRIFT, drift_reason
        return Cause.GIT_CHANGE, git_reason

    def in_sync(self, address: str, want: Any) -> None:
        """`address` holds git's value `want` already. Without a last-applied row there (a
        crash after a step's effect lost its end, or the value was there before the
        reconciler), apply records one: else a later change out of band would be told as a
        change in git, not as drift (`why`)."""
        if address not in self.live.last_applied:
            self.unrecorded[address] = fingerprint_of(want)

    def removal_cause(self, pid: str) -> Cause:
        """Why a plugin leaves ACTIVE or goes away: git says so, or prune does."""
        return Cause.GIT_CHANGE if pid in self.plugins else Cause.PRUNE

    def removal_reason(self, pid: str) -> str:
        if pid in self.plugins:
            return "desired absent in git"
        return "not in git and platform.prune is true"

    def teardown_cause(self, pid: str, live: LivePlugin | None) -> Cause:
        """Why a plugin's resource is taken down: finishing an interrupted uninstall
        (then to install again, or not), else as the plugin leaves."""
        if live is not None and live.status is S.UNINSTALLING:
            return Cause.CRASH_REPAIR
        return self.removal_cause(pid)

    # --- the plan ------------------------------------------------------------------------

    def plan(self) -> Plan:
        lifecycle.plan_plugins(self)
        topics.plan_topics(self)
        tenants.plan_tenants(self)
        self.note_unreadable()
        for step_id, ids in self.waits.items():
            step = self.steps.get(step_id)
            if step is not None:
                step[1].extend(ids)
        acted = {action.address for action, _ in self.steps.values()}
        return Plan(
            desired_revision=self.desired.revision,
            live_fingerprint=self.live.fingerprint(),
            actions=order(self.steps),
            unrecorded={a: f for a, f in sorted(self.unrecorded.items()) if a not in acted},
            warnings=self.warnings,
            errors=self.errors,
            unmanaged=sorted(self.unmanaged),
            unobserved=sorted(self.unobserved),
            desired_dirty=self.desired.work_tree_dirty,
            desired_head=self.desired.work_tree_head,
        )

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


def build_plan(
    desired: DesiredState, live: LiveState, replace: Mapping[str, Replacement] | None = None
) -> Plan:
    """`replace`: plugin id -> why its running workload must be replaced although its spec
    did not change (a secret value changed, `apply --replace`): the caller decides."""
    return PlanBuilder(desired, live, replace).plan()


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
