"""`drift` reports as text, JSON and Markdown (an issue body).

The JSON form (`--format json`, and the body `--notify` POSTs), two-space indented, keys in
this order:

    {
      "format_version": "1.0",
      "status": "in_sync" | "drift" | "pending" | "not_observed" | "plan_errors",
      "desired_revision": "main@sha1:<40 hex>" | "sha256:<hex>",
      "checked_at": "2026-12-01T15:00:00Z",
      "summary": {"drift": <resources>, "pending": <resources>},
      "drift": [<entry>, ...],      # the live platform moved away from what was last applied
      "pending": [<entry>, ...],    # git changed, not applied yet
      "not_observed": [{"part": "runtime" | "broker", "problem": "<why>"}, ...],
      "unobserved": ["broker", ...], # left out on request (--unobserved): not compared
      "observed": {"runtime": true, "broker": false},  # what was seen at all
      "findings": [<finding>, ...],  # the planner's, as in `plan --format json`
      "ignored": [<entry>, ...]  # drift spec.drift.ignore in platform.yaml leaves out
    }

    <entry> = {"address": "plugin.crm.workload", "kind": "workload", "step": "...",
               "action": "create" | "update" | "replace" | "delete" | "transition",
               "cause": "drift" | "crash_repair" | "git_change" | "prune" | ...,
               "change": "<the planner's reason: before → after where it knows both>",
               "changed": ["replicas 1 → 2", ...],  # plain attributes before/after differ in
               "before": {...} | null, "after": {...} | null}

`status` is `not_observed` whenever a part the check needs could not be observed (what was
observed is still listed); else `plan_errors` when the planner found errors (in `findings`:
git asks for what cannot be planned); else `drift` when anything drifted, `pending` when
only git is ahead, `in_sync` otherwise. A part that was not seen (`observed` false)
although the plan did not need it (no plugin publishes events, say) is neither
`not_observed` nor `unobserved`. `summary` counts resources (addresses), the lists actions.
The exit code: 1 for `not_observed` and `plan_errors`, else 2 when what `--fail-on` names
(drift, pending or any) was found, else 0.
Values under secret-looking keys are masked in `before`/`after` as in plans. A new field
may be added within format 1.x; a field is never removed or changes meaning without a new
major version.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from plexica_gitops.plan.drift import DriftEntry, DriftReport, DriftStatus
from plexica_gitops.plan.model import SYMBOLS
from plexica_gitops.source.select import short_revision

DRIFT_FORMAT_VERSION = "1.0"

_HEADLINES = {
    DriftStatus.IN_SYNC: "In sync: the live platform matches what was last applied, and git "
    "has nothing pending.",
    DriftStatus.DRIFT: "Drift: the live platform moved away from what was last applied.",
    DriftStatus.PENDING: "No drift. Git has changes not applied yet.",
    DriftStatus.NOT_OBSERVED: "Not checked in full: part of the platform was not observed, "
    "so nothing is claimed in sync.",
    DriftStatus.PLAN_ERRORS: "Not checked in full: the plan has errors (below), so nothing "
    "is claimed in sync.",
}
_DRIFT_TITLE = "Drift (changed out of band, live vs last applied)"
_PENDING_TITLE = "Pending (changed in git, not applied yet)"


def _resources(entries: Sequence[DriftEntry]) -> int:
    return len({e.address for e in entries})


def _entry_json(entry: DriftEntry) -> dict[str, Any]:
    return {
        "address": entry.address,
        "kind": entry.kind,
        "step": entry.step,
        "action": entry.action.value,
        "cause": entry.cause.value,
        "change": entry.change,
        "changed": list(entry.changed),
        "before": entry.before,
        "after": entry.after,
    }


def drift_to_json(report: DriftReport) -> dict[str, Any]:
    return {
        "format_version": DRIFT_FORMAT_VERSION,
        "status": report.status.value,
        "desired_revision": report.desired_revision,
        "checked_at": report.checked_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "summary": {"drift": _resources(report.drift), "pending": _resources(report.pending)},
        "drift": [_entry_json(e) for e in report.drift],
        "pending": [_entry_json(e) for e in report.pending],
        "not_observed": [
            {"part": part.value, "problem": problem}
            for part, problem in sorted((report.not_observed or {}).items())
        ],
        "unobserved": sorted(p.value for p in report.unobserved),
        "observed": {p.value: seen for p, seen in sorted((report.observed or {}).items())},
        "findings": [f.to_json() for f in report.findings],
        "ignored": [_entry_json(e) for e in report.ignored],
    }


def render_drift_json(report: DriftReport) -> str:
    return json.dumps(drift_to_json(report), indent=2, ensure_ascii=True) + "\n"


def _change(entry: DriftEntry) -> str:
    """The reason, and the attribute changes it does not already say."""
    extra = [c for c in entry.changed if c not in entry.change]
    return f"{entry.change} ({', '.join(extra)})" if extra else entry.change


def _entry_line(entry: DriftEntry) -> str:
    return f"{SYMBOLS[entry.action]} {entry.address} ({entry.kind}): {_change(entry)}"


def _notes(report: DriftReport) -> list[str]:
    lines = [
        f"Not observed: {part.label} ({problem}): {part.holds} were not compared."
        for part, problem in sorted((report.not_observed or {}).items())
    ]
    lines += [
        f"Left out on request (--unobserved {part.value}): {part.holds} were not compared."
        for part in sorted(report.unobserved)
    ]
    unneeded = sorted(
        part
        for part, seen in (report.observed or {}).items()
        if not seen and part not in (report.not_observed or {}) and part not in report.unobserved
    )
    lines += [
        f"Not observed: {part.label}; the desired state needs no {part.holds}, so none were "
        "compared."
        for part in unneeded
    ]
    if report.ignored:
        lines.append(
            f"Ignored (spec.drift.ignore): {_resources(report.ignored)} resource(s) drifted "
            f"in what other systems own: {', '.join(sorted({e.address for e in report.ignored}))}."
        )
    lines += [f"{f.severity.value} {f.code}: {f.message}" for f in report.findings]
    return lines


def render_drift_text(report: DriftReport) -> str:
    lines = [f"Desired state {short_revision(report.desired_revision)}", ""]
    lines.append(_HEADLINES[report.status])
    for title, entries in ((_DRIFT_TITLE, report.drift), (_PENDING_TITLE, report.pending)):
        if entries:
            lines += ["", f"{title}: {_resources(entries)} resource(s)"]
            lines += [f"  {_entry_line(e)}" for e in entries]
    extra = _notes(report)
    if extra:
        lines += ["", *extra]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    """Inline text that Markdown and GitHub's HTML cannot mistake for markup."""
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def render_drift_markdown(report: DriftReport) -> str:
    lines = ["## plexica-gitops drift", ""]
    lines.append(f"Desired state `{report.desired_revision}`, checked {_checked(report)}.")
    lines += ["", f"**{_HEADLINES[report.status]}**"]
    for title, entries in ((_DRIFT_TITLE, report.drift), (_PENDING_TITLE, report.pending)):
        if not entries:
            continue
        lines += ["", f"### {title}: {_resources(entries)} resource(s)", ""]
        lines += ["| | address | kind | what changed |", "|---|---|---|---|"]
        lines += [
            f"| `{SYMBOLS[e.action]}` | `{e.address}` | {e.kind} | {_md(_change(e))} |"
            for e in entries
        ]
    extra = _notes(report)
    if extra:
        lines += ["", *(f"- {_md(line)}" for line in extra)]
    return "\n".join(lines) + "\n"


def _checked(report: DriftReport) -> str:
    return report.checked_at.strftime("%Y-%m-%d %H:%M:%SZ")
