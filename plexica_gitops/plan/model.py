"""Plans and their actions: the value the planner produces and renderers, apply and saved
plan files consume."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from plexica_gitops.addresses import Address, ResourceKind
from plexica_gitops.findings import Finding
from plexica_gitops.hashing import stable_hash
from plexica_gitops.sensitive import mask

PLAN_FORMAT_VERSION = "1.1"


class ActionKind(StrEnum):
    """What an action does to its resource, in Terraform's vocabulary."""

    CREATE = "create"  # +
    UPDATE = "update"  # ~  in place
    REPLACE = "replace"  # -/+ new instances replace the old ones (health-gated)
    DELETE = "delete"  # -
    TRANSITION = "transition"  # »  a lifecycle edge of spec 004


class Cause(StrEnum):
    """Why an action is in the plan, as data (Terraform's ActionReason): for filtering (the
    `drift` command keeps DRIFT) and for people; `Action.reason` says it in words."""

    GIT_CHANGE = "git_change"  # new, changed or removed in git
    DRIFT = "drift"  # the platform changed out of band from what git says (or was applied)
    CRASH_REPAIR = "crash_repair"  # finish what an interrupted apply or rollout left
    DEPENDENCY = "dependency"  # forced by another resource (a plugin leaving ACTIVE)
    PRUNE = "prune"  # not in git, and platform.prune is true
    REPLACE_REQUESTED = "replace_requested"  # `apply --replace`
    SECRET_ROTATION = "secret_rotation"  # a secret the workload reads changed value
    UNKNOWN = "unknown"  # read from a plan of format 1.0, which did not record it


def fingerprint_of(value: Any) -> str:
    """What apply records as last-applied at an address. Secret-looking values are masked
    first: a short unsalted hash of a short secret could be brute-forced from a plan."""
    return stable_hash(mask(value))


@dataclass(frozen=True, slots=True)
class Replacement:
    """Why a workload whose spec did not change must be replaced anyway (planner input)."""

    why: str  # in words, e.g. "secret value changed"
    cause: Cause  # SECRET_ROTATION or REPLACE_REQUESTED


def secret_replacements(changed: Mapping[str, str]) -> dict[str, Replacement]:
    """Plugin id -> why (`runtime.spec.secret_rotations`) as planner input."""
    return {pid: Replacement(why, Cause.SECRET_ROTATION) for pid, why in changed.items()}


SYMBOLS = {
    ActionKind.CREATE: "+",
    ActionKind.UPDATE: "~",
    ActionKind.REPLACE: "-/+",
    ActionKind.DELETE: "-",
    ActionKind.TRANSITION: "»",
}


@dataclass(frozen=True, slots=True)
class Action:
    """One step of a plan. `id` (address + step) is what `depends_on` refers to.

    `before`/`after` are for people: values under secret-looking keys are already masked as
    "(sensitive)". `fingerprint` hashes the real desired attributes; apply records it as
    last-applied so the next plan can tell drift from change.

    `contains_failure_to`: a tenant slug when a failure of this step concerns that tenant
    alone (its creation, its schema migrations: spec 004 edge case 2), so apply holds back
    only that tenant's steps and the rest of the plan goes on; None: a failure holds back
    everything after the step. The planner sets it; a saved plan does not carry it (it is
    derived when the plan is read, see `from_json`)."""

    address: str
    step: str
    kind: ActionKind
    reason: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    depends_on: tuple[str, ...] = ()
    wave: int = 0
    plugin: str | None = None
    tenant: str | None = None
    fingerprint: str | None = None
    cause: Cause = Cause.UNKNOWN
    contains_failure_to: str | None = None

    @property
    def id(self) -> str:
        return f"{self.address}:{self.step}"

    @property
    def resource(self) -> Address:
        """The address, parsed (the wire string is what a plan holds a million of)."""
        return Address.parse(self.address)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "address": self.address,
            "action": self.kind.value,
            "step": self.step,
            "reason": self.reason,
            "cause": self.cause.value,
            "before": self.before,
            "after": self.after,
            "depends_on": list(self.depends_on),
            "wave": self.wave,
            "plugin": self.plugin,
            "tenant": self.tenant,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Action:
        return cls(
            address=data["address"],
            step=data["step"],
            kind=ActionKind(data["action"]),
            reason=data["reason"],
            before=data.get("before"),
            after=data.get("after"),
            depends_on=tuple(data.get("depends_on", ())),
            wave=int(data.get("wave", 0)),
            plugin=data.get("plugin"),
            tenant=data.get("tenant"),
            fingerprint=data.get("fingerprint"),
            # format 1.0 did not record why; its words (`reason`) are kept
            cause=Cause(data.get("cause", Cause.UNKNOWN)),
            contains_failure_to=_contained(data["address"], data["step"], data.get("tenant")),
        )


def _contained(address: str, step: str, tenant: str | None) -> str | None:
    """`Action.contains_failure_to` of a saved action, as the planner sets it: a tenant's
    `create` and its migrations' `apply` (the plan file does not carry it, in 1.0 or 1.1)."""
    if tenant is None or step not in ("create", "apply"):
        return None  # most saved actions: no address parsed
    kind = Address.parse(address).kind
    if (kind, step) in ((ResourceKind.TENANT, "create"), (ResourceKind.MIGRATIONS, "apply")):
        return tenant
    return None


@dataclass(frozen=True)
class Summary:
    add: int = 0
    change: int = 0
    destroy: int = 0
    transition: int = 0

    def to_json(self) -> dict[str, int]:
        return {
            "add": self.add,
            "change": self.change,
            "destroy": self.destroy,
            "transition": self.transition,
        }


@dataclass
class Plan:
    """Actions in an executable order (each after all of its `depends_on`), ties broken by
    address so the same inputs always give the same plan."""

    desired_revision: str
    live_fingerprint: str
    actions: list[Action] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    errors: list[Finding] = field(default_factory=list)
    unmanaged: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    # Parts of the platform the plan was made without (`ObservedPart` values, sorted): what
    # lives there was not compared, so "no changes" never covers it.
    unobserved: list[str] = field(default_factory=list)
    # Addresses in sync with git that have no last-applied row -> the fingerprint apply
    # records there (`PlanBuilder.in_sync`). Bookkeeping, not a change: it is never in a
    # plan file (the apply of a saved plan takes it from the plan it makes again).
    unrecorded: dict[str, str] = field(default_factory=dict)
    # The format the plan was read in (a plan is always written in the current one).
    format_version: str = PLAN_FORMAT_VERSION
    # A desired-state directory inside a git work tree: whether it differed from HEAD, and
    # HEAD ("<ref>@sha1:<hex>", None before the first commit). None: not inside one, or
    # the plan was made from a git revision (`desired_revision` names the commit).
    desired_dirty: bool | None = None
    desired_head: str | None = None

    @property
    def summary(self) -> Summary:
        counts = Counter(action.kind for action in self.actions)
        return Summary(
            add=counts[ActionKind.CREATE],
            change=counts[ActionKind.UPDATE] + counts[ActionKind.REPLACE],
            destroy=counts[ActionKind.DELETE],
            transition=counts[ActionKind.TRANSITION],
        )

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    @property
    def has_errors(self) -> bool:
        return bool(self.errors)
