"""`plexica-gitops reconcile`: the long-running loop for a container or a Deployment.

Every `interval` seconds one reconcile: fetch the ref (or read the directory), observe the
platform and plan against it (`service.drift_check`), record the metrics, then

- report only (the default): log what drifted and what is pending, never apply;
- `auto_apply`: when the revision is not the last one applied (a new commit) and the plan
  has work, apply it (`service.apply`: the apply lock, the journal, rollbacks);
- `self_heal`: when the live platform drifted from what was last applied, apply the LAST
  APPLIED revision again (planned from git at its sha, not the new head — unless
  `auto_apply` applies the head anyway, whose plan heals as well).

Applies never overlap: `service.apply` takes the store's apply lock without waiting, and a
replica that finds it held skips the cycle (result `skipped`). A cycle that fails — git,
the store, the runtime or the broker unreachable, a part of the platform not observed, an
apply that failed — logs one line and waits longer each time (the interval doubled, up to
`max_backoff`; back to the interval after a success). SIGTERM or SIGINT lets the step in
flight finish (the apply's stop event) and exits 0; a second signal exits at once.

One log line per cycle (text `key=value`, or JSON), with the revision and what it did. The
CLI's `reconcile` command parses the flags and calls `run`; nothing here knows typer.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from plexica_gitops import service
from plexica_gitops.apply.engine import ApplyReport, SilentReporter, StepStatus
from plexica_gitops.errors import PlexicaError, UsageError
from plexica_gitops.findings import Finding
from plexica_gitops.gitops.metrics import (
    DriftSummary,
    MetricsServer,
    ReconcileMetrics,
    ReconcileResult,
    ReconcileRun,
    Resource,
    SyncPhase,
    parse_address,
)
from plexica_gitops.lifecycle import LifecycleStatus
from plexica_gitops.live.model import LiveState, ObservedPart
from plexica_gitops.plan.drift import DriftEntry, DriftReport, FailOn
from plexica_gitops.reconcile_defaults import (
    DEFAULT_INTERVAL,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_METRICS_ADDRESS,
    LogFormat,
)
from plexica_gitops.source.select import SourceChoice, choose_source
from plexica_gitops.store import catalog
from plexica_gitops.store.connection import connect
from plexica_gitops.store.connection import database_url as store_database_url
from plexica_gitops.store.lock import LeaseHolder, LockHeldError


class Did(StrEnum):
    """What one reconcile did."""

    IN_SYNC = "in_sync"  # nothing drifted, nothing pending
    REPORTED = "reported"  # drift or pending changes logged, not applied
    APPLIED = "applied"  # a new revision applied
    HEALED = "healed"  # drift applied back to the last applied revision
    NOTHING_TO_APPLY = "nothing_to_apply"  # the apply found no changes (another replica)
    SKIPPED = "skipped"  # another apply held the lock
    FAILED = "failed"


@dataclass(frozen=True)
class ReconcileOptions:
    """What to reconcile (a directory, or `repo` at `ref` under `path`), against which
    store, how often, and what a cycle may apply."""

    directory: Path | None = None
    repo: str | None = None
    ref: str | None = None
    path: str | None = None
    database_url: str | None = None
    interval: float = DEFAULT_INTERVAL
    max_backoff: float = DEFAULT_MAX_BACKOFF
    auto_apply: bool = False
    self_heal: bool = False
    parallelism: int = 4
    unobserved: frozenset[ObservedPart] = frozenset()

    @property
    def mode(self) -> str:
        modes = (("auto-apply", self.auto_apply), ("self-heal", self.self_heal))
        return "+".join(name for name, on in modes if on) or "report-only"

    def check(self) -> None:
        """Usage errors, before the loop starts (an unreachable source is a failed cycle)."""
        if self.repo is None or self.directory is not None or not self.ref:
            choose_source(self.directory, self.repo, self.ref, self.path)  # raises, or cheap
        if self.interval <= 0:
            raise UsageError("--interval must be more than 0 seconds", "E.g. --interval 60.")
        applies = self.auto_apply or self.self_heal
        if applies and ObservedPart.RUNTIME in self.unobserved:
            raise UsageError(
                "--unobserved runtime: an apply cannot run without the runtime provider",
                "Only the broker can be left out when reconcile applies (--unobserved broker).",
            )


@dataclass(frozen=True)
class Cycle:
    """One reconcile as it is logged and counted. `drift`/`pending` are resource counts,
    None when the cycle failed before it could tell."""

    result: ReconcileResult
    did: Did
    detail: str
    revision: str = ""
    drift: int | None = None
    pending: int | None = None
    apply_id: int | None = None
    sync: SyncPhase | None = None
    summary: DriftSummary | None = None
    exit_code: int = 0


# --------------------------------------------------------------------------- logging


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


class CycleLog:
    """One line per event, text (`key=value`, the detail quoted) or JSON."""

    def __init__(self, log_format: LogFormat, stream: IO[str]) -> None:
        self.log_format = log_format
        self.stream = stream
        self._lock = threading.Lock()

    def event(self, event: str, **fields: Any) -> None:
        shown = {k: v for k, v in fields.items() if v is not None}
        if self.log_format is LogFormat.JSON:
            line = json.dumps({"ts": _now(), "event": event, **shown})
        else:
            line = " ".join([_now(), event, *(f"{k}={_text_value(v)}" for k, v in shown.items())])
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def cycle(self, cycle: Cycle, seconds: float, next_in: float | None) -> None:
        self.event(
            "reconcile",
            result=cycle.result.value,
            did=cycle.did.value,
            revision=cycle.revision or None,
            drift=cycle.drift,
            pending=cycle.pending,
            apply_id=cycle.apply_id,
            sync=cycle.sync.value if cycle.sync else None,
            duration_seconds=round(seconds, 3),
            next_in_seconds=None if next_in is None else round(next_in, 3),
            detail=cycle.detail,
        )


def _text_value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if not text or any(c in text for c in ' "=\n') else text


def _one_line(error: BaseException) -> str:
    if isinstance(error, service.DesiredStateInvalid):
        errors = [f for f in error.result.findings if f.is_error]
        text = f"{error.message}: {len(errors)} error(s), first {_finding(errors[0])}"
    elif isinstance(error, PlexicaError):
        text = f"{error.message} (hint: {error.hint})" if error.hint else error.message
    else:
        text = f"{type(error).__name__}: {error}"
    return " ".join(text.split())


def _finding(finding: Finding) -> str:
    where = f"{finding.location} " if finding.location else ""
    return f"{where}{finding.code} {finding.message}"


# --------------------------------------------------------------------------- one cycle


def _commit(revision: str | None) -> str | None:
    """The commit of `<ref>@sha1:<sha>` or `sha1:<sha>`; a directory's hash as it is."""
    if revision is None:
        return None
    _, at, sha = revision.rpartition("@sha1:")
    return sha if at else revision.removeprefix("sha1:")


def _addresses(entries: Sequence[DriftEntry], most: int = 3) -> str:
    unique = sorted({e.address for e in entries})
    shown = ", ".join(unique[:most])
    return shown + (f" and {len(unique) - most} more" if len(unique) > most else "")


@dataclass(frozen=True)
class _Target:
    """What a cycle applies, and why."""

    choice: SourceChoice
    did: Did
    why: str


class Reconciler:
    """Runs reconciles (`cycle`) and the loop around them (`run`)."""

    def __init__(
        self,
        options: ReconcileOptions,
        log: CycleLog,
        metrics: ReconcileMetrics,
        stop: threading.Event,
    ) -> None:
        self.options = options
        self.log = log
        self.metrics = metrics
        self.stop = stop

    # --- the loop ---------------------------------------------------------------------

    def run(self, *, once: bool = False, first_done: Callable[[], None] = lambda: None) -> int:
        """Reconcile every interval until `stop` is set (0), or once (the cycle's exit)."""
        failures = 0
        first = True
        while True:
            started = time.monotonic()
            cycle = self.cycle()
            seconds = time.monotonic() - started
            self.metrics.record_reconcile(
                ReconcileRun(cycle.result, seconds, cycle.summary, cycle.sync)
            )
            failures = failures + 1 if cycle.result is ReconcileResult.FAILURE else 0
            wait = self.next_wait(failures)
            self.log.cycle(cycle, seconds, None if once or self.stop.is_set() else wait)
            if first:
                first_done()
                first = False
            if once:
                return cycle.exit_code
            if self.stop.wait(wait):
                return 0

    def next_wait(self, failures: int) -> float:
        """The interval; after `failures` failed cycles in a row, doubled that many times,
        at most `max_backoff` (never below the interval)."""
        interval = self.options.interval
        if failures == 0:
            return interval
        cap = max(self.options.max_backoff, interval)
        return float(min(interval * 2 ** min(failures, 32), cap))

    # --- one reconcile ----------------------------------------------------------------

    def cycle(self) -> Cycle:
        """One reconcile; every error is a failed cycle (logged, counted), never raised."""
        seen: dict[str, str] = {}
        try:
            return self._reconcile(seen)
        except Exception as error:  # the loop outlives any one failure
            return Cycle(
                ReconcileResult.FAILURE,
                Did.FAILED,
                _one_line(error),
                revision=seen.get("revision", ""),
                exit_code=1,
            )

    def _reconcile(self, seen: dict[str, str]) -> Cycle:
        o = self.options
        head = choose_source(o.directory, o.repo, o.ref, o.path)
        try:
            # read before observing: an apply finishing meanwhile makes `last` older than
            # what is observed (the apply then finds nothing to do), never newer
            revisions, last = self._applied_revisions()
            check = service.drift_check(head, o.database_url, service.DriftOptions(o.unobserved))
            report = check.report
            seen["revision"] = report.desired_revision
            summary = replace(
                service.drift_summary(report),
                resources=list(_resources(check.live, report, revisions)),
            )
            seen_now = Cycle(
                ReconcileResult.SUCCESS,
                Did.IN_SYNC,
                "in sync",
                revision=report.desired_revision,
                drift=len({e.address for e in report.drift}),
                pending=len({e.address for e in report.pending}),
                summary=summary,
            )
            unseen = _not_seen(report)
            if unseen:
                return _failed(seen_now, unseen)
            target, why = self._target(report, head, last)
            if target is None:
                did = Did.IN_SYNC if not (report.drift or report.pending) else Did.REPORTED
                code = report.exit_code(FailOn.DRIFT)
                if did is Did.IN_SYNC and report.unrecorded and (o.auto_apply or o.self_heal):
                    why = "; ".join(filter(None, (why, self._record(head))))
                return replace(seen_now, did=did, detail=why, exit_code=code)
            try:
                return self._apply(target, seen_now)
            finally:
                if target.choice is not head:
                    target.choice.close()
        finally:
            head.close()

    def _applied_revisions(self) -> tuple[dict[str, str], str | None]:
        """Each last-applied address's revision, and the latest succeeded apply's."""
        with connect(store_database_url(self.options.database_url)) as conn:
            return catalog.last_applied_revisions(conn), catalog.last_succeeded_revision(conn)

    def _target(
        self, report: DriftReport, head: SourceChoice, last: str | None
    ) -> tuple[_Target | None, str]:
        """What this cycle applies (None: nothing), and why in words."""
        o = self.options
        new = _commit(report.desired_revision) != _commit(last)
        work = bool(report.drift or report.pending)
        if o.auto_apply and new and work:
            return _Target(head, Did.APPLIED, f"applying new revision (last applied: {last})"), ""
        if o.self_heal and report.drift:
            healing = f"healing drift in {_addresses(report.drift)}"
            if not new:
                return _Target(head, Did.HEALED, healing), ""
            previous = self._at(last)
            if previous is not None:
                return _Target(previous, Did.HEALED, f"{healing} back to {last}"), ""
            return None, (
                f"drift in {_addresses(report.drift)} not healed: the last applied revision "
                f"{last} is not a commit of --repo, and --auto-apply is off"
            )
        return None, self._report_only(report, new, last)

    def _at(self, last: str | None) -> SourceChoice | None:
        """The desired state at the last applied commit, when the source is git."""
        sha = _commit(last)
        if self.options.repo is None or last is None or sha is None or "sha1:" not in last:
            return None
        return choose_source(None, self.options.repo, sha, self.options.path)

    def _report_only(self, report: DriftReport, new: bool, last: str | None) -> str:
        if not (report.drift or report.pending):
            return "in sync"
        parts = []
        if report.drift:
            parts.append(f"drift in {_addresses(report.drift)}")
        if report.pending:
            parts.append(f"pending {_addresses(report.pending)}")
        if new and not self.options.auto_apply:
            parts.append(f"not applied (report only; last applied: {last})")
        elif report.drift and not self.options.self_heal:
            parts.append("drift not healed (no --self-heal)")
        else:
            parts.append("not applied (no new revision)")
        return "; ".join(parts)

    def _apply(self, target: _Target, seen: Cycle) -> Cycle:
        if self.stop.is_set():
            return replace(seen, did=Did.REPORTED, detail=f"stopping: not {target.why}")
        try:
            result = self._service_apply(target.choice)
        except LockHeldError as error:
            skipped = f"skipped {target.why}: {_one_line(error)}"
            return replace(seen, result=ReconcileResult.SKIPPED, did=Did.SKIPPED, detail=skipped)
        except PlexicaError as error:
            return _failed(seen, f"{target.why}: {_one_line(error)}", sync=SyncPhase.ERROR)
        if result.report is None:
            detail = f"{target.why}: no changes under the lock (applied meanwhile)"
            return replace(seen, did=Did.NOTHING_TO_APPLY, detail=detail)
        return _applied(target, result.apply_id, result.report, seen)

    def _record(self, head: SourceChoice) -> str:
        """In sync, but some values have no last-applied row (a crash lost it between a
        step's effect and its end): record them, or a later change there by hand would be
        pending, which neither --self-heal nor --auto-apply acts on, instead of drift. No
        step runs. A failure here leaves the cycle in sync: the next one tries again."""
        try:
            recorded = self._service_apply(head, record_only=True).recorded
        except PlexicaError as error:  # the lock held by another replica, too
            return f"last-applied rows not recorded: {_one_line(error)}"
        resources = f"{recorded:,} in-sync resource{'s' * (recorded != 1)}"
        return f"recorded what was last applied at {resources}"

    def _service_apply(
        self, choice: SourceChoice, *, record_only: bool = False
    ) -> service.ApplyResult:
        o = self.options
        options = service.ApplyOptions(
            database_url=o.database_url,
            parallelism=o.parallelism,
            lock_timeout=0,  # a replica that finds the lock held skips this cycle
            unobserved=o.unobserved,
            record_only=record_only,
        )
        hooks = service.ApplyHooks(
            reporter=SilentReporter(),  # the journal (`history`) has the steps
            stop=lambda: self.stop,
            waiting=self._waiting,
            lease_expired=self._lease_expired,
        )
        return service.apply(choice, options, hooks)

    def _waiting(self, holder: LeaseHolder) -> None:
        self.log.event("waiting", detail=holder.describe())

    def _lease_expired(self) -> None:
        self.log.event(
            "exiting",
            detail="the apply lock was lost and work was still running when its lease ran "
            "out: exiting at once, so that it cannot overlap the next apply",
        )
        os._exit(1)


def _failed(seen: Cycle, detail: str, sync: SyncPhase | None = None) -> Cycle:
    return replace(
        seen, result=ReconcileResult.FAILURE, did=Did.FAILED, detail=detail, sync=sync, exit_code=1
    )


def _applied(target: _Target, apply_id: int | None, report: ApplyReport, seen: Cycle) -> Cycle:
    steps = ", ".join(f"{n} {status}" for status, n in sorted(report.counts().items()) if n)
    detail = f"{target.why}: apply {apply_id} {report.result} ({steps or 'no steps'})"
    failed = [
        r
        for r in report.results.values()
        if r.status in (StepStatus.FAILED, StepStatus.ROLLED_BACK)
    ]
    if failed:
        detail += f"; {failed[0].action.id}: {' '.join(failed[0].detail.split())}"
    if report.lock_lost:
        detail += f"; the apply lock was lost: {report.lock_lost}"
    if report.ok:
        phase, result = SyncPhase.SUCCEEDED, ReconcileResult.SUCCESS
    elif report.interrupted and not report.lock_lost and not failed:
        phase, result = SyncPhase.TERMINATED, ReconcileResult.SUCCESS
    else:
        phase, result = SyncPhase.FAILED, ReconcileResult.FAILURE
    code = 0 if result is ReconcileResult.SUCCESS else 1
    return replace(
        seen,
        result=result,
        did=target.did,
        detail=detail,
        apply_id=apply_id,
        sync=phase,
        exit_code=code,
    )


def _not_seen(report: DriftReport) -> str:
    """Why the check is incomplete ("" when it is not): never "in sync" for what was not
    observed, nor for a plan with errors."""
    if report.not_observed:
        return "not observed: " + "; ".join(
            f"{part.label} ({why})" for part, why in sorted(report.not_observed.items())
        )
    errors = [f for f in report.findings if f.is_error]
    if errors:
        return f"the plan has errors: {len(errors)}, first {' '.join(_finding(errors[0]).split())}"
    return ""


def _resources(
    live: LiveState, report: DriftReport, revisions: dict[str, str]
) -> Iterator[Resource]:
    """`plexica_resource_info`: each resource seen, ready False when it drifted (or its
    workload is not fully ready), Unknown when its part was not observed."""
    drifted = {e.address for e in report.drift}

    def resource(
        kind: str, name: str, address: str, ready: bool | None, tenant: str = ""
    ) -> Resource:
        if ready is not None and address in drifted:
            ready = False
        return Resource(kind, name, tenant, ready, revisions.get(address, ""))

    for pid, plugin in sorted(live.plugins.items()):
        address = f"plugin.{pid}"
        yield resource("plugin", pid, address, plugin.error is None)
        if not live.workloads_observed:
            yield resource("workload", pid, f"{address}.workload", None)
            continue
        workload = plugin.workload
        if workload is not None:
            ready = workload.running and 0 < workload.replicas <= workload.ready_replicas
            if plugin.status is not LifecycleStatus.ACTIVE:
                ready = workload.replicas == 0 or ready
            yield resource("workload", pid, f"{address}.workload", ready)
    if live.topics_observed:
        for name in sorted(live.topics):
            yield resource("topic", name, f"topic.{name}", True)
    for slug, tenant in sorted(live.tenants.items()):
        yield resource("tenant", slug, f"tenant.{slug}", True, tenant=slug)
        for pid in sorted(tenant.plugins):
            yield resource("binding", pid, f"tenant.{slug}.plugin.{pid}", True, tenant=slug)


# --------------------------------------------------------------------------- the process


_Handler = Callable[[int, Any], Any] | int | None


def _stop_on_signals(stop: threading.Event, stopped_by: list[str]) -> dict[int, _Handler]:
    """The first SIGTERM/SIGINT sets `stop` (the step in flight finishes); a second one
    exits at once. Returns the handlers it replaced."""

    def handler(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            os.write(2, f"{name} again: exiting at once\n".encode())
            os._exit(128 + signum)
        stopped_by.append(name)
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)}


def run(
    options: ReconcileOptions,
    *,
    once: bool = False,
    metrics_address: str = DEFAULT_METRICS_ADDRESS,
    log_format: LogFormat = LogFormat.TEXT,
    stream: IO[str] | None = None,
) -> int:
    """The `reconcile` command: serve /metrics, /healthz and /readyz on `metrics_address`
    and reconcile until SIGTERM (exit 0), or once (exit 0 in sync or applied, 2 drift left,
    1 failed)."""
    options.check()
    host, port = parse_address(metrics_address)
    log = CycleLog(log_format, stream or sys.stdout)
    metrics = ReconcileMetrics()
    stop = threading.Event()
    looping = threading.Event()
    looping.set()
    server = MetricsServer(metrics, host=host, port=port, alive=looping.is_set)
    server.start()
    stopped_by: list[str] = []
    previous = _stop_on_signals(stop, stopped_by)
    bound_host, bound_port = server.address
    log.event(
        "started",
        source=choose_label(options),
        mode=options.mode,
        interval_seconds=options.interval,
        metrics=f"http://{bound_host}:{bound_port}/metrics",
    )
    try:
        code = Reconciler(options, log, metrics, stop).run(once=once, first_done=server.mark_ready)
    finally:
        looping.clear()
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if stopped_by:
        log.event("stopped", signal=stopped_by[0], detail="the step in flight finished")
    return code


def choose_label(options: ReconcileOptions) -> str:
    """How the log names the source, before anything was fetched."""
    if options.repo is None:
        return (options.directory or Path("desired-state")).as_posix()
    from plexica_gitops.source.git import scrub_url

    where = f":{options.path.strip('/')}" if options.path else ""
    return f"{scrub_url(options.repo)}@{options.ref}{where}"
