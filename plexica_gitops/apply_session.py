"""One apply against the real platform: the journal in the store, the step executors, and
the engine, wired together. The caller holds the apply lock (store/lock.py) around it."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping
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
from plexica_gitops.store.connection import connect

JOURNAL_APPLICATION_NAME = "plexica-gitops journal"


class StoreJournal:
    """Journal entries and last-applied fingerprints, written (and committed) by the
    engine's thread as each step starts and ends."""

    def __init__(self, conn: psycopg.Connection[Any], apply_id: int) -> None:
        self.conn = conn
        self.apply_id = apply_id

    def started(self, action: Action) -> None:
        journal.step_started(self.conn, self.apply_id, action.id)

    def finished(self, result: StepResult) -> None:
        detail = result.detail + (f" (hint: {result.hint})" if result.hint else "")
        journal.step_finished(
            self.conn, self.apply_id, result.action.id, result.status.value, detail or None
        )
        action = result.action
        if result.status is StepStatus.SUCCEEDED and action.fingerprint:
            catalog.record_last_applied(
                self.conn, action.address, action.fingerprint, self.apply_id
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
) -> tuple[int, ApplyReport]:
    """Journal an apply of `plan` and carry it out; (apply id, report)."""
    with connect(database_url, application_name=JOURNAL_APPLICATION_NAME) as conn:
        apply_id = journal.start_apply(
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
                StoreJournal(conn, apply_id),
                reporter,
                parallelism=parallelism,
                stop=stop,
            )
        finally:
            pool.close()
        journal.finish_apply(conn, apply_id, report.result, report.counts())  # type: ignore[arg-type]
    return apply_id, report
