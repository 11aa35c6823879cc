"""One apply against the real platform: the journal in the store, the step executors, and
the engine, wired together. The caller holds the apply lock (store/lock.py) around it."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from plexica_gitops.actions import Action, Plan
from plexica_gitops.apply import ApplyReport, Reporter, StepResult, StepStatus, execute
from plexica_gitops.desired import DesiredState
from plexica_gitops.events import EventBroker
from plexica_gitops.planfile import plan_hash
from plexica_gitops.provider import Provider
from plexica_gitops.steps import ConnectionPool, StepContext, run_step
from plexica_gitops.store import catalog, journal
from plexica_gitops.store.connection import StoreError, connect

JOURNAL_APPLICATION_NAME = "plexica-gitops journal"
LOCK_CHECK_SECONDS = 5.0


class StoreJournal:
    """Journal entries and last-applied fingerprints, written (and committed) by the
    engine's thread as each step starts and ends. A dropped connection is reopened once;
    a journal that cannot be written stops the apply (StoreError): applying without a
    record is what the journal exists to prevent. `check_lock` (the apply lock's
    `verify`) runs every few seconds as steps start, so an apply whose lock is gone stops
    before starting more."""

    def __init__(
        self,
        database_url: str,
        conn: psycopg.Connection[Any],
        apply_id: int,
        check_lock: Callable[[], None] | None = None,
    ) -> None:
        self.database_url = database_url
        self.conn = conn
        self.apply_id = apply_id
        self.check_lock = check_lock
        self._lock_checked = time.monotonic()

    def started(self, action: Action) -> None:
        if self.check_lock and time.monotonic() - self._lock_checked > LOCK_CHECK_SECONDS:
            self.check_lock()
            self._lock_checked = time.monotonic()
        self._write(lambda conn: journal.step_started(conn, self.apply_id, action.id))

    def finished(self, result: StepResult) -> None:
        detail = result.detail + (f" (hint: {result.hint})" if result.hint else "")
        action = result.action

        def write(conn: psycopg.Connection[Any]) -> None:
            journal.step_finished(
                conn, self.apply_id, action.id, result.status.value, detail or None
            )
            if result.status is StepStatus.SUCCEEDED and action.fingerprint:
                catalog.record_last_applied(conn, action.address, action.fingerprint, self.apply_id)

        self._write(write)

    def _write(self, write: Callable[[psycopg.Connection[Any]], None]) -> None:
        try:
            write(self.conn)
            return
        except psycopg.OperationalError:
            pass  # the connection dropped: once more on a new one
        except psycopg.Error as error:
            raise _journal_error(error) from None
        try:
            self.conn.close()
            self.conn = connect(self.database_url, application_name=JOURNAL_APPLICATION_NAME)
            write(self.conn)
        except psycopg.Error as error:
            raise _journal_error(error) from None


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
    check_lock: Callable[[], None] | None = None,
) -> tuple[int, ApplyReport]:
    """Journal an apply of `plan` and carry it out; (apply id, report)."""
    conn = connect(database_url, application_name=JOURNAL_APPLICATION_NAME)
    recorder = StoreJournal(database_url, conn, 0, check_lock)
    try:
        recorder.apply_id = journal.start_apply(
            conn, plan.desired_revision, plan_hash(plan), socket.gethostname(), os.getpid()
        )
        pool = ConnectionPool(database_url, parallelism)
        context = StepContext(
            desired, pool, provider, os.environ if environ is None else environ, broker
        )
        try:
            report = execute(
                plan.actions,
                lambda action: run_step(action, context),
                recorder,
                reporter,
                parallelism=parallelism,
                stop=stop,
            )
        except BaseException:
            with contextlib.suppress(Exception):  # best effort: the journal may be the cause
                journal.finish_apply(recorder.conn, recorder.apply_id, "failed", {})
            raise
        finally:
            pool.close()
        journal.finish_apply(recorder.conn, recorder.apply_id, report.result, report.counts())  # type: ignore[arg-type]
    finally:
        recorder.conn.close()
    return recorder.apply_id, report
