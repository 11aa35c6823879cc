"""Saved plan files: what was reviewed is what applies.

A plan file holds the plan (with the desired-state revision and the live fingerprint it was
made from) and a checksum of it. Loading refuses a file whose checksum does not match
(altered, truncated, or hand-edited). When `PLEXICA_PLAN_SIGNING_KEY` is set, the file also
carries an HMAC-SHA256 signature, so an alteration cannot be hidden by recomputing the
checksum; loading with the key set refuses an unsigned or wrongly signed file.
Before applying, `check_current` refuses a plan whose desired state or live state has
changed since it was made, and says which; then `check_justified` refuses a plan that is
not exactly what planning that desired state against that live state gives (the planner
is deterministic): a checksum proves a file unaltered, not that its actions were planned.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from plexica_gitops.errors import PlanFileError as PlanFileError
from plexica_gitops.errors import StalePlanError as StalePlanError
from plexica_gitops.errors import UnjustifiedPlanError as UnjustifiedPlanError
from plexica_gitops.plan.model import Cause, Plan
from plexica_gitops.plan.wire import plan_from_json, plan_to_json

FILE_KIND = "plexica-gitops-plan"
SIGNING_KEY_ENV = "PLEXICA_PLAN_SIGNING_KEY"


def _canonical(plan_json: dict[str, Any]) -> bytes:
    return json.dumps(plan_json, sort_keys=True, separators=(",", ":")).encode()


def _signature(body: bytes, key: str) -> str:
    return "hmac-sha256:" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def plan_hash(plan: Plan) -> str:
    """The hash of a plan's JSON form: the same as a saved plan's checksum."""
    return "sha256:" + hashlib.sha256(_canonical(plan_to_json(plan))).hexdigest()


def save_plan(plan: Plan, path: Path) -> None:
    body = plan_to_json(plan)
    canonical = _canonical(body)
    document: dict[str, Any] = {
        "kind": FILE_KIND,
        "checksum": "sha256:" + hashlib.sha256(canonical).hexdigest(),
        "plan": body,
    }
    key = os.environ.get(SIGNING_KEY_ENV)
    if key:
        document["signature"] = _signature(canonical, key)
    # Write beside the target and rename: never leave a half-written plan behind.
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as temporary:
        temporary.write(json.dumps(document, indent=2) + "\n")
    try:
        os.replace(temporary.name, path)
    except OSError:
        os.unlink(temporary.name)
        raise


def load_plan(path: Path) -> Plan:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanFileError(f"{path}: no such plan file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanFileError(
            f"{path}: not a readable plan file ({exc}); make a new one with `plan --out`"
        ) from None
    if not isinstance(document, dict) or document.get("kind") != FILE_KIND:
        raise PlanFileError(f"{path}: not a plexica-gitops plan file (no kind {FILE_KIND!r})")
    body = document.get("plan")
    if not isinstance(body, dict):
        raise PlanFileError(f"{path}: the plan is missing; make a new one with `plan --out`")
    canonical = _canonical(body)
    actual = "sha256:" + hashlib.sha256(canonical).hexdigest()
    if document.get("checksum") != actual:
        raise PlanFileError(
            f"{path}: the plan was altered after it was saved (checksum mismatch); "
            "make and review a new plan"
        )
    key = os.environ.get(SIGNING_KEY_ENV)
    if key:
        signature = document.get("signature")
        if not isinstance(signature, str) or not hmac.compare_digest(
            signature, _signature(canonical, key)
        ):
            raise PlanFileError(
                f"{path}: the plan's signature does not match {SIGNING_KEY_ENV} (unsigned, "
                "altered, or signed with another key); make and review a new plan"
            )
    try:
        return plan_from_json(body)
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanFileError(f"{path}: malformed plan ({exc}); make a new one") from None


def check_current(plan: Plan, desired_revision: str, live_fingerprint: str) -> None:
    """Refuse a stale plan: apply only what was reviewed, against the world it was made for."""
    stale = []
    if plan.desired_revision != desired_revision:
        stale.append(
            f"the desired state changed since the plan was made ({plan.desired_revision[:19]}… "
            f"then, {desired_revision[:19]}… now)"
        )
    if plan.live_fingerprint != live_fingerprint:
        stale.append(
            "the live platform changed since the plan was made "
            f"({plan.live_fingerprint[:19]}… then, {live_fingerprint[:19]}… now)"
        )
    if stale:
        raise StalePlanError("stale plan: " + "; ".join(stale) + ". Run plan again and review it.")


_SHOWN = 5  # differing action ids named per kind of difference


def check_justified(saved: Plan, replanned: Plan) -> None:
    """Refuse a saved plan that is not exactly `replanned` (the same desired revision and
    live state, planned again): every action, with its steps, attributes and order, must
    be the planner's. Warnings are not compared: they inform, they are not carried out."""
    ours = {a.id: a.to_json() for a in saved.actions}
    theirs = {a.id: a.to_json() for a in replanned.actions}
    for action_id, saved_json in ours.items():
        if saved_json["cause"] == Cause.UNKNOWN and action_id in theirs:
            theirs[action_id] = {**theirs[action_id], "cause": Cause.UNKNOWN.value}  # format 1.0
    differences = [
        ("in the saved plan only", [i for i in ours if i not in theirs]),
        ("missing from it", [i for i in theirs if i not in ours]),
        ("changed", [i for i in ours if i in theirs and ours[i] != theirs[i]]),
    ]
    named = [f"{what}: {_first(ids)}" for what, ids in differences if ids]
    if not named and list(ours) != list(theirs):
        named.append("the same actions in another order")
    if saved.errors != replanned.errors:
        named.append("different plan errors")
    if named:
        raise UnjustifiedPlanError(
            "the saved plan is not what its desired state gives: planned again from revision "
            f"{saved.desired_revision[:19]}… and the live platform, it differs — "
            + "; ".join(named)
            + ". Nothing was applied; make and review a new plan."
        )


def _first(ids: list[str]) -> str:
    more = f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else ""
    return ", ".join(ids[:_SHOWN]) + more
