"""Drift, decided from a plan: which actions mean the live platform moved away from what
was last applied (drift) and which are git changes not applied yet (pending), with the
rules in spec.drift.ignore applied. Pure: `service.drift_check` observes and plans, and
hands the plan here; render/drift.py and the reconcile loop read the report."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from plexica_gitops.desired.model import DriftIgnore
from plexica_gitops.findings import Finding
from plexica_gitops.live.model import LiveState, ObservedPart
from plexica_gitops.plan.model import Action, ActionKind, Cause, Plan

# The causes that mean the live platform moved away from what was last applied; every
# other cause (a git change, prune, a dependency, a secret rotation) is pending work.
DRIFT_CAUSES = frozenset({Cause.DRIFT, Cause.CRASH_REPAIR})


class FailOn(StrEnum):
    """What makes `drift` exit 2: drift only (the default), pending changes only, or any."""

    DRIFT = "drift"
    PENDING = "pending"
    ANY = "any"


class DriftStatus(StrEnum):
    IN_SYNC = "in_sync"
    DRIFT = "drift"  # drift found (pending changes may be there too)
    PENDING = "pending"  # only git changes not applied yet
    NOT_OBSERVED = "not_observed"  # a part the check needs was not seen: nothing is claimed
    PLAN_ERRORS = "plan_errors"  # git asks for what cannot be planned: nothing is claimed


@dataclass(frozen=True)
class DriftEntry:
    """One planned action, as `drift` reports it: `change` is the planner's reason (before →
    after where it knows both)."""

    address: str
    kind: str  # the resource kind (ResourceKind value): workload, binding, topic, ...
    step: str
    action: ActionKind
    cause: Cause
    change: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    # The attributes before and after both name, with their values: "replicas 1 → 2"
    changed: tuple[str, ...] = ()

    @classmethod
    def of(cls, action: Action) -> DriftEntry:
        return cls(
            address=action.address,
            kind=action.resource.kind.value,
            step=action.step,
            action=action.kind,
            cause=action.cause,
            change=action.reason,
            before=action.before,
            after=action.after,
            changed=_attribute_changes(action.before, action.after),
        )

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(change.split(" ", 1)[0] for change in self.changed)


def _attribute_changes(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> tuple[str, ...]:
    """Plain values (already masked when secret-looking) that differ between before and
    after; nested ones are in the entry's before/after."""
    if not before or not after:
        return ()
    plain = (str, int, float, bool)
    return tuple(
        f"{key} {before[key]} → {after[key]}"
        for key in sorted(before.keys() & after.keys())
        if before[key] != after[key]
        and isinstance(before[key], plain)
        and isinstance(after[key], plain)
    )


def _ignored(entry: DriftEntry, rules: Sequence[DriftIgnore]) -> bool:
    """A rule covers an entry whose address it matches, when it names no fields or the
    entry changed only fields it names (a change the planner does not break down into
    fields is never covered by a rule that names some)."""
    for rule in rules:
        if not fnmatch.fnmatchcase(entry.address, rule.address):
            continue
        if not rule.fields or (entry.fields and entry.fields <= set(rule.fields)):
            return True
    return False


@dataclass(frozen=True)
class DriftReport:
    """Live vs last applied (`drift`) kept apart from git vs live (`pending`). `not_observed`
    maps each part the check needed but could not see to why: what it holds was not
    compared, so the report never says in sync then. `unobserved` are the parts left out on
    request (`--unobserved`), which the report states."""

    desired_revision: str
    checked_at: datetime
    drift: tuple[DriftEntry, ...] = ()
    pending: tuple[DriftEntry, ...] = ()
    not_observed: Mapping[ObservedPart, str] | None = None
    unobserved: frozenset[ObservedPart] = frozenset()
    observed: Mapping[ObservedPart, bool] | None = None
    # Drift that spec.drift.ignore in platform.yaml leaves to other systems
    ignored: tuple[DriftEntry, ...] = ()
    # The planner's findings: warnings (PGP206: secret values not compared, ...) and errors
    # (git asks for what cannot be planned, such as an edited applied migration)
    findings: tuple[Finding, ...] = ()
    # How many in-sync addresses have no last-applied row (Plan.unrecorded): until an
    # apply records them, a change there by hand would be told as pending, not drift.
    unrecorded: int = 0

    @property
    def has_errors(self) -> bool:
        return any(f.is_error for f in self.findings)

    @property
    def status(self) -> DriftStatus:
        if self.not_observed:
            return DriftStatus.NOT_OBSERVED
        if self.has_errors:
            return DriftStatus.PLAN_ERRORS
        if self.drift:
            return DriftStatus.DRIFT
        return DriftStatus.PENDING if self.pending else DriftStatus.IN_SYNC

    def exit_code(self, fail_on: FailOn = FailOn.DRIFT) -> int:
        """1 when a needed part was not observed (whatever was found elsewhere: the check is
        incomplete) or the plan has errors, else 2 when what `fail_on` names was found, else
        0."""
        if self.not_observed or self.has_errors:
            return 1
        failing = {
            FailOn.DRIFT: bool(self.drift),
            FailOn.PENDING: bool(self.pending),
            FailOn.ANY: bool(self.drift or self.pending),
        }
        return 2 if failing[fail_on] else 0


def drift_report(
    made: Plan,
    live: LiveState,
    rules: Sequence[DriftIgnore],
    *,
    not_observed: Mapping[ObservedPart, str],
    unobserved: frozenset[ObservedPart],
    unsure: Sequence[Finding],
    checked_at: datetime,
) -> DriftReport:
    """The plan `made` against `live`, split by cause into drift (minus what `rules`
    ignore) and pending. `not_observed`: the parts the plan needed but could not see, with
    why; `unsure`: findings about values that could not be compared."""
    drifted = [DriftEntry.of(a) for a in made.actions if a.cause in DRIFT_CAUSES]
    return DriftReport(
        desired_revision=made.desired_revision,
        checked_at=checked_at,
        drift=tuple(e for e in drifted if not _ignored(e, rules)),
        ignored=tuple(e for e in drifted if _ignored(e, rules)),
        pending=tuple(DriftEntry.of(a) for a in made.actions if a.cause not in DRIFT_CAUSES),
        not_observed=not_observed,
        unobserved=unobserved,
        observed={
            ObservedPart.RUNTIME: live.workloads_observed,
            ObservedPart.BROKER: live.topics_observed,
        },
        findings=(*made.errors, *unsure, *made.warnings),
        unrecorded=len(made.unrecorded),
    )
