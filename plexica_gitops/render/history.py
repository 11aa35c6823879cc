"""`history`: the list of applies, and one apply's journal (`history --apply ID`).

Text is plain columns, whole lines (CI logs are greppable). The JSON form of one apply
(`history --apply ID --format json`), two-space indented, keys in this order:

    {
      "format_version": "1.0",
      "id": 7,
      "revision": "main@sha1:<40 hex>" | "sha256:<hex>",  # the desired state applied
      "plan_hash": "sha256:<hex>",                        # a saved plan's checksum
      "host": "ci-runner-3", "pid": 4242,                 # where it ran
      "epoch": 9 | null,                                  # the apply lock's fencing token
      "result": "running" | "succeeded" | "failed" | "interrupted",
      "started_at": "2026-12-01T15:00:00.123456Z",
      "finished_at": "2026-12-01T15:00:04.5Z" | null,
      "duration_seconds": 4.38 | null,
      "step_counts": {"succeeded": 5, "failed": 1, ...},  # journal entries per status
      "steps": [<step>, ...],          # in the order they started
      "rolled_back": ["plugin.echo.workload:update", ...],  # failed, and undone
      "in_flight": ["..."]             # started, never finished (the apply died meanwhile)
    }

    <step> = {"position": 1, "id": "plugin.echo.workload:create",
              "status": "started" | "succeeded" | "failed" | "skipped" | "rolled-back",
              "started_at": "..." | null,       # null: skipped, never started
              "finished_at": "..." | null,      # null: in flight
              "duration_seconds": 0.52 | null,  # null: skipped or in flight
              "error": "<message (hint: …)>" | null,  # failed and rolled-back steps
              "detail": "<why it was skipped>" | null}

`interrupted` applies keep their in-flight steps as `started`: what was running when the
process died. Times are UTC. A new field may be added within format 1.x; a field is never
removed or changes meaning without a new major version.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from plexica_gitops.source.select import short_revision
from plexica_gitops.store.journal import ApplyRecord, JournalStep

HISTORY_FORMAT_VERSION = "1.0"
_FAILURES = frozenset({"failed", "rolled-back"})


@dataclass(frozen=True)
class ApplyJournal:
    """One apply: its record and its journal's steps, in the order they started."""

    record: ApplyRecord
    steps: Sequence[JournalStep]

    @property
    def rolled_back(self) -> list[str]:
        return [step.step_id for step in self.steps if step.status == "rolled-back"]

    @property
    def in_flight(self) -> list[str]:
        return [step.step_id for step in self.steps if step.status == "started"]


def _seconds(span: dt.timedelta | None) -> float | None:
    return None if span is None else round(span.total_seconds(), 3)


def _utc(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _step_json(position: int, step: JournalStep) -> dict[str, Any]:
    failed = step.status in _FAILURES
    return {
        "position": position,
        "id": step.step_id,
        "status": step.status,
        "started_at": None if step.status == "skipped" else _utc(step.started_at),
        "finished_at": _utc(step.finished_at),
        "duration_seconds": _seconds(step.duration),
        "error": step.detail if failed else None,
        "detail": None if failed else step.detail,
    }


def apply_journal_to_json(journal: ApplyJournal) -> dict[str, Any]:
    record = journal.record
    return {
        "format_version": HISTORY_FORMAT_VERSION,
        "id": record.id,
        "revision": record.desired_revision,
        "plan_hash": record.plan_hash,
        "host": record.host,
        "pid": record.pid,
        "epoch": record.epoch,
        "result": record.result,
        "started_at": _utc(record.started_at),
        "finished_at": _utc(record.finished_at),
        "duration_seconds": _seconds(record.duration),
        "step_counts": dict(sorted(record.steps.items())),
        "steps": [_step_json(i, step) for i, step in enumerate(journal.steps, 1)],
        "rolled_back": journal.rolled_back,
        "in_flight": journal.in_flight,
    }


def render_apply_json(journal: ApplyJournal) -> str:
    return json.dumps(apply_journal_to_json(journal), indent=2, ensure_ascii=True) + "\n"


def _when(moment: dt.datetime) -> str:
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S.%f}"[:-3] + " UTC"


def _span(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f} s"


def _counts(steps: dict[str, int]) -> str:
    return ", ".join(f"{count} {status}" for status, count in sorted(steps.items())) or "-"


def _header(record: ApplyRecord) -> list[str]:
    where = f"host {record.host}, pid {record.pid}"
    if record.epoch is not None:
        where += f", lease epoch {record.epoch}"
    finished = "-"
    if record.finished_at is not None:
        finished = f"{_when(record.finished_at)} ({_span(_seconds(record.duration))})"
    return [
        f"apply {record.id}: {record.result}",
        f"revision  {record.desired_revision}",
        f"plan      {record.plan_hash}",
        f"ran on    {where}",
        f"started   {_when(record.started_at)}",
        f"finished  {finished}",
        f"steps     {_counts(record.steps)}",
    ]


def _step_lines(journal: ApplyJournal) -> list[str]:
    if not journal.steps:
        return ["", "No steps were journaled."]
    begun = journal.record.started_at
    width = max(len(step.step_id) for step in journal.steps)
    lines = ["", f"{'#':>3}  {'step':<{width}}  {'status':<11}  {'start':>10}  duration"]
    for position, step in enumerate(journal.steps, 1):
        start = (
            "-"
            if step.status == "skipped"
            else f"+{(step.started_at - begun).total_seconds():.2f} s"
        )
        status = "in flight" if step.status == "started" else step.status
        lines.append(
            f"{position:>3}  {step.step_id:<{width}}  {status:<11}  {start:>10}  "
            f"{_span(_seconds(step.duration))}"
        )
        if step.detail:
            label = "error" if step.status in _FAILURES else "note"
            lines.append(f"{'':>3}  {label}: {' '.join(step.detail.split())}")
    return lines


def _notes(journal: ApplyJournal) -> list[str]:
    notes: list[str] = []
    if journal.rolled_back:
        notes.append(f"Rolled back: {', '.join(journal.rolled_back)}.")
    if journal.in_flight:
        still = "running" if journal.record.result == "running" else "when the apply died"
        notes.append(f"In flight ({still}): {', '.join(journal.in_flight)}.")
    return ["", *notes] if notes else []


def render_apply_text(journal: ApplyJournal) -> str:
    lines = [*_header(journal.record), *_step_lines(journal), *_notes(journal)]
    return "\n".join(lines) + "\n"


def render_history_text(records: Sequence[ApplyRecord]) -> str:
    """The latest applies, one line each; `history --apply ID` shows one in full."""
    if not records:
        return "No applies recorded yet.\n"
    lines = [
        f"{'apply':>6}  {'revision':<12}  {'plan':<12}  {'started':<19}  {'finished':<19}  "
        f"{'result':<11}  steps"
    ]
    for record in records:
        finished = f"{record.finished_at:%Y-%m-%d %H:%M:%S}" if record.finished_at else "-"
        lines.append(
            f"{record.id:>6}  {short_revision(record.desired_revision):<12}  "
            f"{record.plan_hash.removeprefix('sha256:')[:12]:<12}  "
            f"{record.started_at:%Y-%m-%d %H:%M:%S}  {finished:<19}  {record.result:<11}  "
            f"{_counts(record.steps)}"
        )
    return "\n".join(lines) + "\n"
