"""The apply engine: walk a plan's graph and carry out its steps.

Independent steps run concurrently on up to `parallelism` threads (the work is I/O: the
store, the container engine, health probes). A step starts once every step it depends on
succeeded; a step that fails stops its dependents only (they are reported as skipped,
with the failure that blocked them) and everything else goes on. Transient errors (a
dropped database connection, an engine that answered 5xx) are retried with exponential
backoff. Every step is journaled before it starts and when it ends.

Ctrl-C (or SIGTERM) stops new steps from starting, lets the ones in flight finish (a
half-done rolling update is worse than a finished one), records them, and ends the apply
as interrupted. Losing the apply lock (the `lease` is lost) also stops new steps at once;
the steps in flight are cancelled by the lease's own callbacks (steps.py, the provider),
and the apply ends interrupted with the reason.

The engine knows nothing of what a step does: it is handed `run(action) -> detail`, which
raises `StepFailed` (errors.py; the executors in steps.py raise it). That keeps it testable
and keeps one job per module."""

from __future__ import annotations

import heapq
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import psycopg

from plexica_gitops.errors import PlexicaError, StepFailed
from plexica_gitops.plan.model import Action


class StepStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled-back"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class StepResult:
    action: Action
    status: StepStatus
    detail: str = ""
    hint: str = ""
    seconds: float = 0.0
    attempts: int = 0
    blocked_by: str | None = None  # for a skipped step: the failure that stopped it


@dataclass
class ApplyReport:
    results: dict[str, StepResult] = field(default_factory=dict)
    interrupted: bool = False
    seconds: float = 0.0
    lock_lost: str = ""  # why, when the apply stopped because it lost the apply lock

    def with_status(self, status: StepStatus) -> list[StepResult]:
        return [r for r in self.results.values() if r.status is status]

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(
            r.status is StepStatus.SUCCEEDED for r in self.results.values()
        )

    @property
    def result(self) -> str:
        """What the journal records: succeeded, failed or interrupted."""
        if self.interrupted:
            return "interrupted"
        return "succeeded" if self.ok else "failed"

    def counts(self) -> dict[str, int]:
        return {status.value: len(self.with_status(status)) for status in StepStatus}


class Lease(Protocol):
    """What the engine needs of the apply lock: whether (and why) it was lost."""

    @property
    def lost(self) -> threading.Event: ...

    @property
    def lost_reason(self) -> str: ...


class Journal(Protocol):
    def started(self, action: Action) -> None: ...

    def finished(self, result: StepResult) -> None: ...


class Reporter(Protocol):
    def begin(self, actions: Sequence[Action]) -> None: ...

    def step_started(self, action: Action) -> None: ...

    def step_finished(self, result: StepResult) -> None: ...

    def interrupting(self, in_flight: int) -> None: ...

    def end(self, report: ApplyReport) -> None: ...


class SilentReporter:
    """A reporter that shows nothing: where the journal (`history`) has the steps."""

    def begin(self, actions: Sequence[Action]) -> None:
        pass

    def step_started(self, action: Action) -> None:
        pass

    def step_finished(self, result: StepResult) -> None:
        pass

    def interrupting(self, in_flight: int) -> None:
        pass

    def end(self, report: ApplyReport) -> None:
        pass


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    backoff_seconds: float = 0.5


def is_transient(error: BaseException) -> bool:
    """Errors worth retrying: the step did not happen because something was briefly away."""
    if isinstance(error, PlexicaError):  # the runtime's, the broker's, a git server's
        return error.transient
    return isinstance(error, psycopg.OperationalError)


def _attempt(action: Action, run: Callable[[Action], str], retry: RetryPolicy) -> StepResult:
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            detail = run(action)
        except StepFailed as error:
            status = StepStatus.ROLLED_BACK if error.rolled_back else StepStatus.FAILED
            return StepResult(
                action, status, error.message, error.hint, time.monotonic() - started, attempt
            )
        except Exception as error:  # an engine must outlive any one step
            if is_transient(error) and attempt < retry.attempts:
                time.sleep(retry.backoff_seconds * 2 ** (attempt - 1))
                continue
            message = " ".join(str(error).split()) or type(error).__name__
            hint = getattr(error, "hint", "") or (
                "a transient error persisted: check the service, then apply again"
                if is_transient(error)
                else "an unexpected error: please report it with the journal entry"
            )
            return StepResult(
                action, StepStatus.FAILED, message, hint, time.monotonic() - started, attempt
            )
        return StepResult(
            action, StepStatus.SUCCEEDED, detail, "", time.monotonic() - started, attempt
        )


class _Walk:
    """The bookkeeping of one apply: what may start, what is blocked, what is done.

    The steps ready to start are a heap of plan positions: the lowest first, as the plan
    orders them, at O(log n) a step (a list sorted after every step made a 70,000-step
    walk quadratic)."""

    def __init__(self, actions: Sequence[Action]) -> None:
        self.actions = {a.id: a for a in actions}
        self.order = [a.id for a in actions]
        self.position = {a.id: i for i, a in enumerate(actions)}
        self.waiting = {a.id: {d for d in a.depends_on if d in self.actions} for a in actions}
        self.dependents: dict[str, list[str]] = defaultdict(list)
        for action in actions:
            for dependency in self.waiting[action.id]:
                self.dependents[dependency].append(action.id)
        self.ready = [i for i, a in enumerate(actions) if not self.waiting[a.id]]  # a heap
        self.done: set[str] = set()

    def next_ready(self) -> Action:
        return self.actions[self.order[heapq.heappop(self.ready)]]

    def make_ready(self, step_id: str) -> None:
        """Ready to start, in its plan place (also a step taken that never started)."""
        heapq.heappush(self.ready, self.position[step_id])

    def succeeded(self, step_id: str) -> None:
        self.done.add(step_id)
        for dependent in self.dependents[step_id]:
            self.waiting[dependent].discard(step_id)
            if not self.waiting[dependent] and dependent not in self.done:
                self.make_ready(dependent)

    def failed(self, step_id: str) -> list[str]:
        """The steps a failure holds back, in plan order. A step whose failure the planner
        contained to a tenant (`Action.contains_failure_to`: its creation, its migrations)
        holds back only that tenant's steps: spec 004 edge case 2, a migration failing in
        one tenant schema leaves the other tenants unaffected. The plugin still activates;
        that tenant's binding waits for the next apply."""
        tenant = self.actions[step_id].contains_failure_to
        if tenant is None:
            # Anything else (a binding being disabled, say) guards what comes after it:
            # never tear a plugin down under a tenant that still has it enabled.
            return self.blocked_by(step_id)
        self.done.add(step_id)
        blocked: list[str] = []
        stack = [step_id]
        while stack:
            current = stack.pop()
            for dependent in self.dependents[current]:
                if dependent in self.done:
                    continue
                if self.actions[dependent].tenant == tenant:
                    self.done.add(dependent)
                    blocked.append(dependent)
                    stack.append(dependent)
                    continue
                self.waiting[dependent].discard(current)  # not that tenant's: it goes on
                if not self.waiting[dependent]:
                    self.make_ready(dependent)
        return sorted(blocked, key=self.position.__getitem__)

    def blocked_by(self, step_id: str) -> list[str]:
        """Every step that waits, directly or not, for `step_id`, in plan order."""
        self.done.add(step_id)
        blocked: list[str] = []
        stack = list(self.dependents[step_id])
        while stack:
            current = stack.pop()
            if current in self.done:
                continue
            self.done.add(current)
            blocked.append(current)
            stack.extend(self.dependents[current])
        return sorted(blocked, key=self.position.__getitem__)

    def not_started(self) -> list[str]:
        return [sid for sid in self.actions if sid not in self.done]


def execute(
    actions: Sequence[Action],
    run: Callable[[Action], str],
    journal: Journal,
    reporter: Reporter,
    *,
    parallelism: int = 4,
    retry: RetryPolicy | None = None,
    stop: threading.Event | None = None,
    lease: Lease | None = None,
) -> ApplyReport:
    """Run `actions` (a plan's, in its order) honouring their `depends_on`. Setting `stop`
    (the CLI's SIGINT/SIGTERM handler does) interrupts the apply as Ctrl-C does; a lost
    `lease` interrupts it too, and no step starts after it was lost."""
    if parallelism < 1:
        raise ValueError("parallelism must be at least 1")
    retry = retry or RetryPolicy()
    report = ApplyReport()
    walk = _Walk(actions)
    started = time.monotonic()
    reporter.begin(actions)

    def finish(result: StepResult) -> None:
        report.results[result.action.id] = result
        journal.finished(result)
        reporter.step_finished(result)

    running: dict[Future[StepResult], Action] = {}
    halt = stop or threading.Event()

    def halted() -> bool:
        """No step may start any more; the first time, say so."""
        if lease is not None and lease.lost.is_set() and not report.lock_lost:
            report.lock_lost = lease.lost_reason or "the apply lock was lost"
            halt.set()
        if halt.is_set() and not report.interrupted:
            report.interrupted = True
            reporter.interrupting(len(running))
        return report.interrupted

    with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="apply") as pool:
        while walk.ready or running:
            while walk.ready and len(running) < parallelism and not halted():
                action = walk.next_ready()
                journal.started(action)
                if halted():  # lost while the start was recorded: it never runs
                    walk.make_ready(action.id)
                    break
                reporter.step_started(action)
                running[pool.submit(_attempt, action, run, retry)] = action
            if not running:
                break
            try:
                finished, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                finished = set()
                halt.set()
            halted()
            for future in sorted(finished, key=lambda f: walk.position[running[f].id]):
                action = running.pop(future)
                result = future.result()
                finish(result)
                if result.status is StepStatus.SUCCEEDED:
                    walk.succeeded(action.id)
                    continue
                for blocked in walk.failed(action.id):
                    finish(
                        StepResult(
                            walk.actions[blocked],
                            StepStatus.SKIPPED,
                            f"not started: {action.id} {result.status.value}",
                            blocked_by=action.id,
                        )
                    )
    why = "the apply lost its lock" if report.lock_lost else "the apply was interrupted"
    for step_id in walk.not_started():
        finish(StepResult(walk.actions[step_id], StepStatus.SKIPPED, f"not started: {why}"))
    report.seconds = time.monotonic() - started
    reporter.end(report)
    return report
