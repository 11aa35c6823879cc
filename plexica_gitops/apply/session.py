"""One apply against the real platform: the journal in the store, the step executors, and
the engine, wired together. The caller holds the apply lock (store/lock.py) around it and
hands it in: its epoch fences every write, and losing it stops the apply.

**The journal is written in batches, off the engine's thread.** The engine hands each
step's start and end to `StoreJournal`, which queues them; one writer thread commits
what is queued, in order, in one transaction a batch (store/journal.write_batch), while
the steps go on. Three rules make that as safe as writing each row on its own:

1. *A step starts only once its start is committed*: the worker that runs it waits for
   that (`durable`), so the steps in flight after a kill -9 are exactly the ones the
   journal shows 'started' (and concurrent starts share one commit).
2. *Batches commit in the order they were queued*, and a step is queued to start only
   after every step it depends on was queued as finished; so once a step has started,
   the ends of everything it depends on, and their last-applied rows, are committed.
3. *While a step may be having its effect, no last-applied row is there to vouch for the
   old value*: the batch that records a step's start removes the last-applied row at its
   address, its success writes the new fingerprint, and any other end puts the old row
   back. The apply ends (and releases the lock, for the next plan) only after the last
   batch committed.

So a crash between a step's effect and its journal row (the process killed after the
store, the runtime or the broker did what the step asked, before the batch with its end
committed) loses at most that step's end, and leaves no last-applied row at its address.
The next apply marks this one interrupted and the step 'started' (in flight). The next
plan does not read the journal: it observes the live state, so what the step did is
seen and nothing it left half-done is called in sync; and last-applied rows only tell a
planned action's cause (drift when the platform moved away from the value last applied
there, else a change in git). With no row, a difference there is called a change in git,
never drift: a lost row cannot make a plan say "no changes" (what is planned comes from
live vs git alone), nor make `drift` or `reconcile --self-heal` take a git change for
drift and put an older value back. When the step's effect did take place, the address is
in sync and has no row: the plan lists it (`Plan.unrecorded`, PlanBuilder.in_sync) and the
next apply, even one with nothing to do, writes its row before any step
(service._record_in_sync), so a later change there by hand is drift again.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from plexica_gitops.apply.engine import ApplyReport, Reporter, StepResult, execute
from plexica_gitops.apply.steps import StepContext, run_step
from plexica_gitops.broker.kafka import EventBroker
from plexica_gitops.desired.build import DesiredState
from plexica_gitops.plan.model import Action, Plan
from plexica_gitops.plan.planfile import plan_hash
from plexica_gitops.runtime.provider import Provider
from plexica_gitops.store import journal
from plexica_gitops.store.connection import StoreError, connect
from plexica_gitops.store.lock import ApplyLock
from plexica_gitops.store.pool import ConnectionPool

JOURNAL_APPLICATION_NAME = "plexica-gitops journal"
# How long a journal write waits for the store to come back (a restart, a failover) before
# the apply stops: the lease (store/lock.py) bounds what runs meanwhile.
JOURNAL_PATIENCE_SECONDS = 5.0
# At most this many entries a transaction: a batch's commit stays short.
BATCH_LIMIT = 2000


class StoreJournal:
    """Journal entries and last-applied fingerprints, queued by the engine's thread as
    each step starts and ends and committed in batches by a writer thread (see the module
    docstring), fenced by the apply's lease epoch. A dropped connection is reopened for up
    to JOURNAL_PATIENCE_SECONDS; a journal that cannot be written stops the apply
    (StoreError, from the next call): applying without a record is what the journal
    exists to prevent."""

    def __init__(
        self,
        database_url: str,
        conn: psycopg.Connection[Any],
        apply_id: int,
        epoch: int | None = None,
    ) -> None:
        self.database_url = database_url
        self.conn = conn
        self.apply_id = apply_id
        self.epoch = epoch
        self.revision = ""
        self.applied: dict[str, journal.AppliedRow] = {}
        self._queue: list[journal.JournalEntry] = []
        self._queued = 0  # entries ever queued; the n-th is committed once _written >= n
        self._written = 0
        self._start_of: dict[str, int] = {}  # step id -> the number of its start entry
        self._error: StoreError | None = None
        self._closing = False
        self._changed = threading.Condition()
        self._writer: threading.Thread | None = None

    def begin(self, apply_id: int, revision: str, actions: list[Action]) -> None:
        """Start writing for apply `apply_id`, knowing the last-applied rows its steps may
        replace."""
        self.apply_id, self.revision = apply_id, revision
        addresses = sorted({a.address for a in actions if a.fingerprint})
        self.applied = journal.last_applied_rows(self.conn, addresses)
        self._writer = threading.Thread(target=self._write_all, name="apply-journal", daemon=True)
        self._writer.start()

    def started(self, action: Action) -> None:
        self._put(journal.StepStart(action.id, action.address, action.fingerprint))
        self._start_of[action.id] = self._queued

    def finished(self, result: StepResult) -> None:
        detail = result.detail + (f" (hint: {result.hint})" if result.hint else "")
        action = result.action
        self._put(
            journal.StepEnd(
                action.id,
                action.address,
                action.fingerprint,
                result.status.value,
                detail or None,
            )
        )

    def durable(self, step_id: str) -> None:
        """Wait until the start of `step_id` is committed (rule 1)."""
        self._wait(self._start_of[step_id])

    def close(self) -> None:
        """Commit what is queued and stop the writer; raises StoreError if it could not."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        if self._writer is not None:
            self._writer.join()
        if self._error is not None:
            raise self._error

    def _put(self, entry: journal.JournalEntry) -> None:
        with self._changed:
            if self._error is not None:
                raise self._error
            self._queue.append(entry)
            self._queued += 1
            self._changed.notify_all()

    def _wait(self, number: int) -> None:
        with self._changed:
            while self._written < number and self._error is None:
                self._changed.wait()
            if self._written < number and self._error is not None:
                raise self._error

    def _write_all(self) -> None:
        while True:
            with self._changed:
                while not self._queue and not self._closing:
                    self._changed.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue[:BATCH_LIMIT], self._queue[BATCH_LIMIT:]
            try:
                self._commit(batch)
            except StoreError as error:
                with self._changed:
                    self._error = error
                    self._changed.notify_all()
                return
            with self._changed:
                self._written += len(batch)
                self._changed.notify_all()

    def _commit(self, batch: list[journal.JournalEntry]) -> None:
        applied: dict[str, journal.AppliedRow] = {}

        def write(conn: psycopg.Connection[Any]) -> None:
            nonlocal applied
            applied = dict(self.applied)  # as it was: a batch written again starts over
            journal.write_batch(conn, self.apply_id, batch, applied, self.revision)

        self._write(write)
        self.applied = applied

    def _write(self, write: Callable[[psycopg.Connection[Any]], None]) -> None:
        deadline = time.monotonic() + JOURNAL_PATIENCE_SECONDS
        while True:
            try:
                write(self.conn)
                return
            except psycopg.OperationalError as error:
                if time.monotonic() >= deadline:
                    raise _journal_error(error) from None
            except psycopg.Error as error:
                raise _journal_error(error) from None
            self._reconnect(deadline)

    def _reconnect(self, deadline: float) -> None:
        self.conn.close()
        while True:
            try:
                self.conn = connect(
                    self.database_url, application_name=JOURNAL_APPLICATION_NAME, epoch=self.epoch
                )
                return
            except StoreError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.25)


def _journal_error(error: psycopg.Error) -> StoreError:
    return StoreError(
        f"the apply journal could not be written: {' '.join(str(error).split())}",
        "no new step was started after this; the steps in flight finished. Check the "
        "database, then run plan: it shows what is left",
    )


def run_apply(
    plan: Plan,
    desired: DesiredState,
    database_url: str,
    provider: Provider | None,
    reporter: Reporter,
    *,
    parallelism: int = 4,
    stop: threading.Event | None = None,
    environ: Mapping[str, str] | None = None,
    broker: EventBroker | None = None,
    lease: ApplyLock | None = None,
    digest_key: bytes | None = None,
) -> tuple[int, ApplyReport]:
    """Journal an apply of `plan` and carry it out, fenced by `lease` (the held apply
    lock: every write carries its epoch, and nothing starts once it is lost), labelling
    replicas with the digest of their env values under `digest_key`; (apply id,
    report)."""
    epoch = lease.epoch if lease is not None else None
    conn = connect(database_url, application_name=JOURNAL_APPLICATION_NAME, epoch=epoch)
    recorder = StoreJournal(database_url, conn, 0, epoch)
    try:
        recorder.apply_id = journal.start_apply(
            conn,
            plan.desired_revision,
            plan_hash(plan),
            socket.gethostname(),
            os.getpid(),
            epoch,
        )
        if lease is not None:
            lease.attach_apply(recorder.apply_id)
        recorder.begin(recorder.apply_id, plan.desired_revision, plan.actions)
        pool = ConnectionPool(database_url, parallelism, epoch=epoch)
        context = StepContext(
            desired,
            pool,
            provider,
            os.environ if environ is None else environ,
            broker,
            digest_key=digest_key,
            replace_id=f"apply-{recorder.apply_id}",
        )
        if lease is not None:
            context.lost = lease.lost

        def run(action: Action) -> str:
            recorder.durable(action.id)
            return run_step(action, context)

        try:
            report = execute(
                plan.actions,
                run,
                recorder,
                reporter,
                parallelism=parallelism,
                stop=stop,
                lease=lease,
            )
        except BaseException:
            with contextlib.suppress(Exception):  # best effort: the journal may be the cause
                recorder.close()
            with contextlib.suppress(Exception):
                journal.finish_apply(recorder.conn, recorder.apply_id, "failed", {})
            raise
        finally:
            pool.close()
        recorder.close()  # every step's record committed before the apply's end
        journal.finish_apply(recorder.conn, recorder.apply_id, report.result, report.counts())  # type: ignore[arg-type]
    finally:
        recorder.conn.close()
    return recorder.apply_id, report
