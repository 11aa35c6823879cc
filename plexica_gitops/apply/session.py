"""One apply against the real platform: the journal in the store, the step executors, and
the engine, wired together. The caller holds the apply lock (store/lock.py) around it and
hands it in: its epoch fences every write, and losing it stops the apply."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from plexica_gitops.apply.engine import ApplyReport, Reporter, StepResult, StepStatus, execute
from plexica_gitops.apply.steps import StepContext, run_step
from plexica_gitops.broker.kafka import EventBroker
from plexica_gitops.desired.build import DesiredState
from plexica_gitops.plan.model import Action, Plan
from plexica_gitops.plan.planfile import plan_hash
from plexica_gitops.runtime.provider import Provider
from plexica_gitops.store import catalog, journal
from plexica_gitops.store.connection import StoreError, connect
from plexica_gitops.store.lock import ApplyLock
from plexica_gitops.store.pool import ConnectionPool

JOURNAL_APPLICATION_NAME = "plexica-gitops journal"
# How long a journal write waits for the store to come back (a restart, a failover) before
# the apply stops: the lease (store/lock.py) bounds what runs meanwhile.
JOURNAL_PATIENCE_SECONDS = 5.0


class StoreJournal:
    """Journal entries and last-applied fingerprints, written (and committed) by the
    engine's thread as each step starts and ends, fenced by the apply's lease epoch. A
    dropped connection is reopened for up to JOURNAL_PATIENCE_SECONDS; a journal that
    cannot be written stops the apply (StoreError): applying without a record is what the
    journal exists to prevent."""

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

    def started(self, action: Action) -> None:
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
        try:
            report = execute(
                plan.actions,
                lambda action: run_step(action, context),
                recorder,
                reporter,
                parallelism=parallelism,
                stop=stop,
                lease=lease,
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
