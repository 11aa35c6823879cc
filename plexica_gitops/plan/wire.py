"""The plan's JSON form: what `plan --format json` prints (render/json.py) and what a saved
plan file carries (plan/planfile.py).

`plan_to_json(plan)` gives the document below (keys in this order); `plan_from_json` of it
gives back an equal plan.

The document (format_version "1.1"; 1.1 added `actions[].cause`):

============================  ===============  ===================================================
key                           type             meaning
============================  ===============  ===================================================
format_version                string           version of this format; a reader accepts the same
                                               major version ("1.x")
desired_revision              string           what the plan was made from: "sha256:<hex>" over
                                               every file of a desired-state directory, or
                                               "<ref>@sha1:<40 hex>" (Flux's form; "sha1:<40
                                               hex>" for a bare sha) for a git revision
                                               (`--repo`/`--ref`)
desired_work_tree             object           ONLY when made from a directory inside a git
                                               work tree (absent otherwise: for a git
                                               revision, and outside any work tree). Added in
                                               1.0 without a version change
desired_work_tree.head        string | null    the work tree's HEAD, "<ref>@sha1:<40 hex>";
                                               null before its first commit
desired_work_tree.dirty       boolean          the directory differs from HEAD (modified,
                                               added or deleted files; warning PGL013)
live_fingerprint              string           "sha256:<hex>" of the live state it was made from
summary                       object           counts, derived from `actions`:
summary.add                   integer          create actions
summary.change                integer          update and replace actions
summary.destroy               integer          delete actions
summary.transition            integer          lifecycle transitions
actions                       array of object  in executable order: each after all of its
                                               `depends_on`; one object per action:
actions[].id                  string           "<address>:<step>", what `depends_on` refers to
actions[].address             string           resource address, e.g. "plugin.crm.workload",
                                               "tenant.acme.migrations.crm", "topic.crm.deal.won"
actions[].action              string           "create" | "update" | "replace" | "delete" |
                                               "transition"
actions[].step                string           the operation, e.g. "register", "install",
                                               "apply", "enable", "scale", "purge"
actions[].reason              string           why the action is in the plan, for people
actions[].cause               string           why, as data: "git_change" (new, changed or
                                               removed in git) | "drift" (changed on the
                                               platform out of band) | "crash_repair"
                                               (finishes an interrupted apply or rollout) |
                                               "dependency" (forced by another resource) |
                                               "prune" (not in git, platform.prune) |
                                               "replace_requested" (`apply --replace`) |
                                               "secret_rotation" (a secret value changed) |
                                               "unknown" (read from a 1.0 plan, see below)
actions[].before              object | null    current attributes (secret values masked as
                                               "(sensitive)"); null when nothing exists yet
actions[].after               object | null    desired attributes (masked the same way); null
                                               when the resource goes away
actions[].depends_on          array of string  ids of the actions that must complete first
actions[].wave                integer          longest dependency chain before the action;
                                               actions of one wave are independent
actions[].plugin              string | null    plugin id the action belongs to
actions[].tenant              string | null    tenant slug the action belongs to
actions[].fingerprint         string | null    hash of the real desired attributes, recorded as
                                               last-applied after apply
warnings                      array of object  findings that do not stop the plan:
warnings[].code               string           stable code, e.g. "PGP201" (see the README)
warnings[].severity           string           "warning" (or "error" in `errors`)
warnings[].file               string | null    desired-state file, relative to its root
warnings[].line               integer | null   1-based line in `file`
warnings[].column             integer | null   1-based column in `file`
warnings[].message            string           what is wrong
warnings[].hint               string           how to fix it
warnings[].subjects           array of string  plugin ids and tenant slugs involved
errors                        array of object  findings that make the plan unusable, same shape
                                               as `warnings`; a plan with errors is never applied
unmanaged                     array of string  addresses on the platform that git does not
                                               manage (left alone), sorted
targets                       array of string  the `--target` addresses the plan was limited to;
                                               empty for a full plan
unobserved                    array of string  parts of the platform the plan was made without
                                               (`plan --unobserved`), sorted: "broker" (topics
                                               not compared), "runtime" (workloads not
                                               compared); empty when everything was observed.
                                               Added in 1.0 without a version change: a plan
                                               saved before it reads as empty
============================  ===============  ===================================================

Reading format 1.0 (written before causes were recorded): every action's cause reads as
"unknown" — it is not guessed from the words of `reason`, which stay as they were, so such a
plan shows as it did. `check_justified` compares a 1.0 plan's actions without their cause.
A plan read from 1.0 is written (`plan_to_json`) in the current format.
"""

from __future__ import annotations

from typing import Any

from plexica_gitops.findings import Finding, Location, Severity
from plexica_gitops.live.model import ObservedPart
from plexica_gitops.plan.model import PLAN_FORMAT_VERSION, Action, Plan


def plan_to_json(plan: Plan) -> dict[str, Any]:
    document: dict[str, Any] = {
        "format_version": PLAN_FORMAT_VERSION,
        "desired_revision": plan.desired_revision,
    }
    if plan.desired_dirty is not None:
        document["desired_work_tree"] = {"head": plan.desired_head, "dirty": plan.desired_dirty}
    return document | {
        "live_fingerprint": plan.live_fingerprint,
        "summary": plan.summary.to_json(),
        "actions": [action.to_json() for action in plan.actions],
        "warnings": [finding.to_json() for finding in plan.warnings],
        "errors": [finding.to_json() for finding in plan.errors],
        "unmanaged": list(plan.unmanaged),
        "targets": list(plan.targets),
        "unobserved": list(plan.unobserved),
    }


def _major(version: str) -> str:
    return version.split(".", 1)[0]


def _optional_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer or null, not {value!r}")
    return value


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    return value


def _list(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"{name} must be an array, not {type(value).__name__}")
    return value


def finding_from_json(data: dict[str, Any]) -> Finding:
    """The inverse of `Finding.to_json`."""
    if not isinstance(data, dict):
        raise TypeError(f"a finding must be an object, not {type(data).__name__}")
    file = data.get("file")
    location = None
    if file is not None:
        location = Location(
            _string(file, "file"),
            _optional_int(data.get("line"), "line"),
            _optional_int(data.get("column"), "column"),
        )
    return Finding(
        code=_string(data["code"], "code"),
        severity=Severity(data["severity"]),
        message=_string(data["message"], "message"),
        hint=_string(data.get("hint", ""), "hint"),
        location=location,
        subjects=tuple(_string(s, "subject") for s in _list(data.get("subjects", []), "subjects")),
    )


def plan_from_json(data: dict[str, Any]) -> Plan:
    """The inverse of `plan_to_json`. Raises KeyError, TypeError or ValueError on a
    document that is not a plan of a supported format version (or whose summary does not
    match its actions)."""
    if not isinstance(data, dict):
        raise TypeError(f"a plan must be an object, not {type(data).__name__}")
    version = _string(data.get("format_version", PLAN_FORMAT_VERSION), "format_version")
    if _major(version) != _major(PLAN_FORMAT_VERSION):
        raise ValueError(
            f"plan format {version} is not supported (this version reads {PLAN_FORMAT_VERSION})"
        )
    actions = []
    for item in _list(data["actions"], "actions"):
        if not isinstance(item, dict):
            raise TypeError(f"an action must be an object, not {type(item).__name__}")
        action = Action.from_json(item)
        if "id" in item and item["id"] != action.id:
            raise ValueError(f"action id {item['id']!r} does not match {action.id!r}")
        actions.append(action)
    plan = Plan(
        desired_revision=_string(data["desired_revision"], "desired_revision"),
        live_fingerprint=_string(data["live_fingerprint"], "live_fingerprint"),
        actions=actions,
        warnings=[finding_from_json(f) for f in _list(data.get("warnings", []), "warnings")],
        errors=[finding_from_json(f) for f in _list(data.get("errors", []), "errors")],
        unmanaged=[_string(u, "unmanaged") for u in _list(data.get("unmanaged", []), "unmanaged")],
        targets=[_string(t, "targets") for t in _list(data.get("targets", []), "targets")],
        unobserved=[
            ObservedPart(_string(p, "unobserved")).value
            for p in _list(data.get("unobserved", []), "unobserved")
        ],
        format_version=version,
    )
    work_tree = data.get("desired_work_tree")
    if work_tree is not None:
        if not isinstance(work_tree, dict) or not isinstance(work_tree.get("dirty"), bool):
            raise TypeError(f"desired_work_tree must be an object with dirty, not {work_tree!r}")
        head = work_tree.get("head")
        plan.desired_head = None if head is None else _string(head, "desired_work_tree.head")
        plan.desired_dirty = work_tree["dirty"]
    summary = data.get("summary")
    if summary is not None and summary != plan.summary.to_json():
        raise ValueError(f"the summary {summary} does not match the plan's actions")
    return plan
