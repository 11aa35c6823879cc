"""The apply journal written in batches off the engine's thread (apply/session.py), against
a real PostgreSQL: a step starts only once its start is committed, the ends of what it
depends on are committed before it starts, and while it runs no last-applied row vouches
for the value it is changing (so a crash then can never make the next plan call a change
in git drift)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from plexica_gitops.apply.engine import SilentReporter, StepStatus, execute
from plexica_gitops.apply.session import JOURNAL_APPLICATION_NAME, StoreJournal
from plexica_gitops.errors import StepFailed
from plexica_gitops.plan.model import Action, ActionKind
from plexica_gitops.store import catalog, journal
from plexica_gitops.store.connection import connect
from plexica_gitops.store.schema import init_store


@pytest.fixture
def store(postgres_database: str) -> Iterator[str]:
    with connect(postgres_database) as conn:
        init_store(conn)
    yield postgres_database


def _action(address: str, fingerprint: str, *depends_on: str) -> Action:
    return Action(
        address,
        "update",
        ActionKind.UPDATE,
        "test",
        depends_on=depends_on,
        fingerprint=fingerprint,
    )


def _apply(
    dsn: str, actions: list[Action], run: Callable[[Action], str], parallelism: int = 2
) -> tuple[int, dict[str, StepStatus]]:
    """Journal and run `actions` as run_apply does: each step waits for its start."""
    conn = connect(dsn, application_name=JOURNAL_APPLICATION_NAME)
    recorder = StoreJournal(dsn, conn, 0)
    try:
        apply_id = journal.start_apply(conn, "sha256:test", "plan", "host", 1)
        recorder.begin(apply_id, "sha256:test", actions)

        def durable_run(action: Action) -> str:
            recorder.durable(action.id)
            return run(action)

        report = execute(actions, durable_run, recorder, SilentReporter(), parallelism=parallelism)
        recorder.close()
        journal.finish_apply(recorder.conn, apply_id, report.result, report.counts())  # type: ignore[arg-type]
    finally:
        recorder.conn.close()
    return apply_id, {sid: r.status for sid, r in report.results.items()}


def _one(dsn: str, query: Any, *params: Any) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def _fingerprint(dsn: str, address: str) -> str | None:
    return _one(  # type: ignore[no-any-return]
        dsn, "SELECT fingerprint FROM plexica_gitops.last_applied WHERE address = %s", address
    )


def _status(dsn: str, step_id: str) -> str | None:
    return _one(  # type: ignore[no-any-return]
        dsn, "SELECT status FROM plexica_gitops.journal WHERE step_id = %s", step_id
    )


def _applied_before(dsn: str, address: str, fingerprint: str) -> None:
    with connect(dsn) as conn:
        catalog.record_last_applied(conn, address, fingerprint, None)


def test_while_a_step_runs_no_last_applied_row_vouches_for_its_address(store: str) -> None:
    """Killed at that moment, the next plan finds no last-applied row there: a difference
    is a change in git, never drift (before, the old fingerprint stayed while the step
    changed the value)."""
    _applied_before(store, "tenant.a.plugin.crm", "old")
    seen: dict[str, Any] = {}

    def run(action: Action) -> str:
        seen["started"] = _status(store, action.id)
        seen["last-applied"] = _fingerprint(store, action.address)
        return "done"

    _, statuses = _apply(store, [_action("tenant.a.plugin.crm", "new")], run)
    assert statuses == {"tenant.a.plugin.crm:update": StepStatus.SUCCEEDED}
    assert seen == {"started": "started", "last-applied": None}
    assert _fingerprint(store, "tenant.a.plugin.crm") == "new"
    revision = _one(
        store,
        "SELECT revision FROM plexica_gitops.last_applied WHERE address = %s",
        "tenant.a.plugin.crm",
    )
    assert revision == "sha256:test"


def test_a_step_that_fails_puts_the_last_applied_row_back(store: str) -> None:
    _applied_before(store, "tenant.a.plugin.crm", "old")

    def run(action: Action) -> str:
        raise StepFailed("refused")

    _, statuses = _apply(store, [_action("tenant.a.plugin.crm", "new")], run)
    assert statuses == {"tenant.a.plugin.crm:update": StepStatus.FAILED}
    assert _fingerprint(store, "tenant.a.plugin.crm") == "old"


def test_what_a_step_depends_on_is_committed_before_it_starts(store: str) -> None:
    actions = [
        _action("plugin.crm", "fp-1"),
        _action("tenant.a.plugin.crm", "fp-2", "plugin.crm:update"),
        _action("tenant.b.plugin.crm", "fp-3", "plugin.crm:update"),
    ]
    seen: dict[str, tuple[str | None, str | None]] = {}

    def run(action: Action) -> str:
        if action.depends_on:
            seen[action.id] = (
                _status(store, "plugin.crm:update"),
                _fingerprint(store, "plugin.crm"),
            )
        return "done"

    apply_id, statuses = _apply(store, actions, run)
    assert set(statuses.values()) == {StepStatus.SUCCEEDED}
    assert seen == {
        "tenant.a.plugin.crm:update": ("succeeded", "fp-1"),
        "tenant.b.plugin.crm:update": ("succeeded", "fp-1"),
    }
    with connect(store) as conn:
        steps = journal.journal_steps(conn, apply_id)
    assert steps[0].step_id == "plugin.crm:update"  # in the order they started
    assert {s.status for s in steps} == {"succeeded"}


def test_many_steps_share_commits_and_all_are_recorded(store: str) -> None:
    actions = [_action(f"tenant.t{n}.plugin.crm", f"fp-{n}") for n in range(300)]
    apply_id, statuses = _apply(store, actions, lambda a: "done", parallelism=4)
    assert set(statuses.values()) == {StepStatus.SUCCEEDED}
    with connect(store) as conn:
        record = journal.apply_record(conn, apply_id)
    assert record is not None and record.steps == {"succeeded": 300}
    count = _one(store, "SELECT count(*) FROM plexica_gitops.last_applied")
    assert count == 300
