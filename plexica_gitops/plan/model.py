"""Plans and their actions: the value the planner produces and renderers, apply and saved
plan files consume."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from plexica_gitops.findings import Finding

PLAN_FORMAT_VERSION = "1.0"


class ActionKind(StrEnum):
    """What an action does to its resource, in Terraform's vocabulary."""

    CREATE = "create"  # +
    UPDATE = "update"  # ~  in place
    REPLACE = "replace"  # -/+ new instances replace the old ones (health-gated)
    DELETE = "delete"  # -
    TRANSITION = "transition"  # »  a lifecycle edge of spec 004


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
    last-applied so the next plan can tell drift from change."""

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

    @property
    def id(self) -> str:
        return f"{self.address}:{self.step}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "address": self.address,
            "action": self.kind.value,
            "step": self.step,
            "reason": self.reason,
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
        )


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
    format_version: str = PLAN_FORMAT_VERSION

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
