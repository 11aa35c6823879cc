"""How an apply shows its progress: a live display on a terminal, one timestamped line
per step in CI logs, or JSON lines (with plugin, tenant, step and trace id) for log
pipelines. All three end with the same summary: what was done, what failed and why, what
was skipped and because of what."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Sequence
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from plexica_gitops.apply.engine import ApplyReport, StepResult, StepStatus
from plexica_gitops.plan.model import Action

MARKS = {
    StepStatus.SUCCEEDED: "[green]✓[/green]",
    StepStatus.FAILED: "[bold red]✗[/bold red]",
    StepStatus.ROLLED_BACK: "[bold yellow]↺[/bold yellow]",
    StepStatus.SKIPPED: "[dim]-[/dim]",
}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# The marks without markup, for logs that are not a terminal.
PLAIN_MARKS = {
    StepStatus.SUCCEEDED: "✓",
    StepStatus.FAILED: "✗",
    StepStatus.ROLLED_BACK: "↺",
    StepStatus.SKIPPED: "-",
}


class LineReporter:
    """One timestamped line per step start and end: greppable CI logs.

    When the console is not a terminal (a CI log, a pipe), where rich would print no
    colours anyway, the step lines are written straight to its stream as plain text:
    rich's markup and layout cost about a millisecond a line, on the engine's thread, which
    at tens of thousands of steps is minutes."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        with self._lock:
            self.console.print(f"[dim]{_now()}[/dim] {text}")

    def _plain(self, text: str) -> bool:
        """Write `text` as a plain timestamped line, if the console is not a terminal."""
        if self.console.is_terminal:
            return False
        stream = self.console.file
        with self._lock:
            stream.write(f"{_now()} {text}\n")
            stream.flush()
        return True

    def begin(self, actions: Sequence[Action]) -> None:
        self._line(f"apply: {len(actions)} steps")

    def step_started(self, action: Action) -> None:
        if not self._plain(f"  start  {action.id}"):
            self._line(f"  start  {escape(action.id)}")

    def step_finished(self, result: StepResult) -> None:
        if result.status is StepStatus.SKIPPED:
            return  # listed once in the summary, not one line each
        took = f" ({result.seconds:.1f} s)"
        status = result.status
        detail = f": {result.detail}" if result.detail else ""
        if self._plain(
            f"{PLAIN_MARKS[status]} {status.value:<11} {result.action.id}{took}{detail}"
        ):
            return
        detail = f": {escape(result.detail)}" if result.detail else ""
        self._line(f"{MARKS[status]} {status.value:<11} {escape(result.action.id)}{took}{detail}")

    def interrupting(self, in_flight: int) -> None:
        self._line(
            f"[bold yellow]interrupted:[/bold yellow] no new steps start; waiting for "
            f"{in_flight} in flight to finish"
        )

    def end(self, report: ApplyReport) -> None:
        print_summary(report, self.console)


class JsonReporter:
    """JSON lines: one object per event, each with the apply's trace id and a span id per
    step, so a log pipeline can stitch an apply together."""

    def __init__(self, stream: IO[str], trace_id: str | None = None) -> None:
        self.stream = stream
        self.trace_id = trace_id or uuid.uuid4().hex
        self._spans: dict[str, str] = {}
        self._lock = threading.Lock()

    def _emit(self, event: str, **fields: Any) -> None:
        record = {"ts": _now(), "event": event, "trace_id": self.trace_id, **fields}
        with self._lock:
            self.stream.write(json.dumps(record, sort_keys=False) + "\n")
            self.stream.flush()

    def _step_fields(self, action: Action) -> dict[str, Any]:
        span = self._spans.setdefault(action.id, uuid.uuid4().hex[:16])
        return {
            "span_id": span,
            "step": action.id,
            "address": action.address,
            "action": action.kind.value,
            "plugin": action.plugin,
            "tenant": action.tenant,
        }

    def begin(self, actions: Sequence[Action]) -> None:
        self._emit("apply.started", level="info", steps=len(actions))

    def step_started(self, action: Action) -> None:
        self._emit("step.started", level="info", **self._step_fields(action))

    def step_finished(self, result: StepResult) -> None:
        level = "info" if result.status is StepStatus.SUCCEEDED else "error"
        if result.status is StepStatus.SKIPPED:
            level = "warning"
        self._emit(
            "step.finished",
            level=level,
            status=result.status.value,
            seconds=round(result.seconds, 3),
            attempts=result.attempts,
            detail=result.detail,
            hint=result.hint or None,
            blocked_by=result.blocked_by,
            **self._step_fields(result.action),
        )

    def interrupting(self, in_flight: int) -> None:
        self._emit("apply.interrupting", level="warning", in_flight=in_flight)

    def no_changes(self) -> None:
        """The plan was empty: nothing applied, nothing recorded."""
        self._emit("apply.finished", level="info", result="no-changes", seconds=0, counts={})

    def end(self, report: ApplyReport) -> None:
        self._emit(
            "apply.finished",
            level="info" if report.ok else "error",
            result=report.result,
            seconds=round(report.seconds, 3),
            counts=report.counts(),
        )


class LiveReporter(LineReporter):
    """A terminal: a progress bar with the steps in flight, finished steps above it.

    Steps only queue what changed; the display is redrawn, and the finished steps' lines
    printed (in one go), at most REFRESH_PER_SECOND times a second by a thread of its
    own: each redraw re-renders the bar, far too costly to do for every step."""

    REFRESH_PER_SECOND = 10

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.progress = Progress(
            TextColumn("[bold]Applying"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=True,
            auto_refresh=False,
        )
        self.task = self.progress.add_task("", total=0)
        self.in_flight: dict[str, None] = {}  # in the order they started
        self._lines: list[str] = []  # finished steps' lines not printed yet
        self._done = 0
        self._shown = -1  # the count last drawn
        self._stop = threading.Event()
        self._painter: threading.Thread | None = None

    def _line(self, text: str) -> None:
        with self._lock:
            self._lines.append(text)

    def _plain(self, text: str) -> bool:
        return False  # a terminal: the display draws it

    def _describe(self) -> str:
        shown = ", ".join(list(self.in_flight)[:3])
        more = len(self.in_flight) - 3
        return escape(shown + (f" +{more}" if more > 0 else ""))

    def begin(self, actions: Sequence[Action]) -> None:
        self.progress.update(self.task, total=len(actions))
        self.progress.start()
        self._painter = threading.Thread(target=self._paint_often, name="apply-display")
        self._painter.daemon = True
        self._painter.start()

    def step_started(self, action: Action) -> None:
        with self._lock:
            self.in_flight[action.id] = None
            self._shown = -1

    def step_finished(self, result: StepResult) -> None:
        with self._lock:
            self.in_flight.pop(result.action.id, None)
            self._done += 1
        if result.status is not StepStatus.SKIPPED:
            detail = f" [dim]{escape(result.detail)}[/dim]" if result.detail else ""
            self._line(
                f"{MARKS[result.status]} {escape(result.action.id)} "
                f"[dim]({result.seconds:.1f} s)[/dim]{detail}"
            )

    def _paint_often(self) -> None:
        while not self._stop.wait(1 / self.REFRESH_PER_SECOND):
            self._paint()

    def _paint(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
            changed = self._shown != self._done
            self._shown = self._done
            described = self._describe() if changed else ""
            done = self._done
        if lines:
            self.progress.console.print("\n".join(lines))
        if changed:
            self.progress.update(self.task, completed=done, description=described)
        if lines or changed:
            self.progress.refresh()

    def end(self, report: ApplyReport) -> None:
        self._stop.set()
        if self._painter is not None:
            self._painter.join()
        self._paint()
        self.progress.stop()
        print_summary(report, self.console)


def print_summary(report: ApplyReport, console: Console) -> None:
    """What the apply did, in the order a reader needs it: the verdict, then failures with
    their cause and what to do, then what did not run and why."""
    counts = report.counts()
    verdict = {
        "succeeded": "[bold green]Apply complete![/bold green]",
        "failed": "[bold red]Apply failed.[/bold red]",
        "interrupted": "[bold yellow]Apply interrupted.[/bold yellow]",
    }[report.result]
    console.print()
    console.print(
        f"{verdict} {counts['succeeded']} succeeded, {counts['failed']} failed, "
        f"{counts['rolled-back']} rolled back, {counts['skipped']} skipped "
        f"({report.seconds:.1f} s)."
    )
    problems = report.with_status(StepStatus.FAILED) + report.with_status(StepStatus.ROLLED_BACK)
    if problems:
        console.print("\n[bold]Failed:[/bold]")
    for result in problems:
        label = "rolled back" if result.status is StepStatus.ROLLED_BACK else "failed"
        console.print(
            f"  {MARKS[result.status]} {escape(result.action.id)} {label}: {escape(result.detail)}"
        )
        if result.hint:
            console.print(f"      [dim]hint:[/dim] {escape(result.hint)}")
    skipped = report.with_status(StepStatus.SKIPPED)
    if not skipped:
        return
    console.print("\n[bold]Not started:[/bold]")
    by_cause: dict[str, list[str]] = {}
    for result in skipped:
        cause = f"waits for {result.blocked_by}" if result.blocked_by else "apply interrupted"
        by_cause.setdefault(cause, []).append(result.action.id)
    for cause, steps in by_cause.items():
        shown = ", ".join(steps[:6]) + (f" and {len(steps) - 6} more" if len(steps) > 6 else "")
        console.print(f"  - {escape(shown)} [dim]({escape(cause)})[/dim]")
