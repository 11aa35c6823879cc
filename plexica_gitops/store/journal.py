"""The apply journal: each apply's record and each step's start and end, as they happen.

Every write commits when it returns (a single autocommitted statement, or its own
transaction; a running apply's steps in batches, `write_batch`, one transaction each), so
the journal is accurate whatever happens to the process: after a kill -9, the steps that
were running are the ones still 'started' (`in_flight`), and the apply itself stays
'running' until the next apply, having taken the lock, calls `mark_interrupted`.
apply/session.py says when a batch is written relative to what its steps do.

Use a connection with no transaction open (the store's connections are autocommit); a
write inside a caller's open transaction would not be durable on its own, so it is
refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, LiteralString

import psycopg
from psycopg import pq
from psycopg.types.json import Jsonb

from plexica_gitops.store.lock import lock_application_name, lock_holder

StepStatus = Literal["succeeded", "failed", "skipped", "rolled-back"]
ApplyResult = Literal["succeeded", "failed", "interrupted"]
_STEP_STATUSES = frozenset({"succeeded", "failed", "skipped", "rolled-back"})
_APPLY_RESULTS = frozenset({"succeeded", "failed", "interrupted"})


@dataclass(frozen=True)
class ApplyRecord:
    id: int
    desired_revision: str
    plan_hash: str
    host: str
    pid: int
    started_at: dt.datetime
    finished_at: dt.datetime | None  # for 'interrupted': its last journal entry
    result: str  # running | succeeded | failed | interrupted
    counts: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)  # journal entries per status
    epoch: int | None = None  # the apply lock's fencing token it held (None before leases)

    @property
    def in_flight(self) -> int:
        """Steps started and never finished (only non-zero for running/interrupted)."""
        return self.steps.get("started", 0)

    @property
    def duration(self) -> dt.timedelta | None:
        return self.finished_at - self.started_at if self.finished_at else None


@dataclass(frozen=True)
class JournalStep:
    """One step of an apply as the journal holds it. `status` is 'started' while it runs
    (or for ever, if its apply died then); `detail` is the error (and hint) of a failed or
    rolled-back step, why a skipped one did not start."""

    step_id: str
    status: str  # started | succeeded | failed | skipped | rolled-back
    detail: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None

    @property
    def duration(self) -> dt.timedelta | None:
        """How long it ran; None for a step that never started (skipped) or never ended."""
        if self.status == "skipped" or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


def _write(
    conn: psycopg.Connection[Any], query: LiteralString, params: tuple[Any, ...]
) -> list[tuple[Any, ...]]:
    """Run one statement so that it is committed when this returns."""
    if conn.autocommit:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise ValueError(
            "journal writes must commit at once: use a connection with no transaction open "
            "(an autocommit connection)"
        )
    with conn.transaction():
        cur = conn.execute(query, params)
        rows = cur.fetchall() if cur.description else []
    return rows


def _read(
    conn: psycopg.Connection[Any], query: LiteralString, params: tuple[Any, ...]
) -> list[tuple[Any, ...]]:
    if conn.autocommit or conn.info.transaction_status != pq.TransactionStatus.IDLE:
        return conn.execute(query, params).fetchall()
    with conn.transaction():  # do not leave a transaction open behind the caller
        return conn.execute(query, params).fetchall()


def start_apply(
    conn: psycopg.Connection[Any],
    desired_revision: str,
    plan_hash: str,
    host: str,
    pid: int,
    epoch: int | None = None,
) -> int:
    """Record a new apply as 'running' (with the lease epoch it holds); return its id."""
    rows = _write(
        conn,
        "INSERT INTO plexica_gitops.applies (desired_revision, plan_hash, host, pid, epoch)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (desired_revision, plan_hash, host, pid, epoch),
    )
    return int(rows[0][0])


# statement_timestamp(), not now(): the statements of a batch (write_batch) share one
# transaction, and each row keeps the time its own statement came in, in the order written.
_STEP_STARTED: LiteralString = (
    "INSERT INTO plexica_gitops.journal (apply_id, step_id, status, started_at)"
    " VALUES (%s, %s, 'started', statement_timestamp())"
    " ON CONFLICT (apply_id, step_id) DO UPDATE"
    " SET status = 'started', detail = NULL, started_at = statement_timestamp(), finished_at = NULL"
)
_STEP_FINISHED: LiteralString = (
    "INSERT INTO plexica_gitops.journal"
    " (apply_id, step_id, status, detail, started_at, finished_at)"
    " VALUES (%s, %s, %s, %s, statement_timestamp(), statement_timestamp())"
    " ON CONFLICT (apply_id, step_id) DO UPDATE"
    " SET status = excluded.status, detail = excluded.detail, finished_at = statement_timestamp()"
)


def step_started(conn: psycopg.Connection[Any], apply_id: int, step_id: str) -> None:
    """Record that a step is starting (again, if it had been recorded before)."""
    _write(conn, _STEP_STARTED, (apply_id, step_id))


def _check_status(status: str) -> None:
    if status not in _STEP_STATUSES:
        raise ValueError(f"step status must be one of {sorted(_STEP_STATUSES)}, not {status!r}")


def step_finished(
    conn: psycopg.Connection[Any],
    apply_id: int,
    step_id: str,
    status: StepStatus,
    detail: str | None = None,
) -> None:
    """Record how a step ended. A step never started (e.g. skipped because a dependency
    failed) is recorded with the same start and end time."""
    _check_status(status)
    _write(conn, _STEP_FINISHED, (apply_id, step_id, status, detail))


# --- batches: the journal of a running apply -------------------------------------------------


@dataclass(frozen=True)
class AppliedRow:
    """A last-applied row as it was before a step at its address started."""

    fingerprint: str
    apply_id: int | None
    revision: str | None
    applied_at: dt.datetime | None  # None: written by this apply, at the time it commits


@dataclass(frozen=True)
class StepStart:
    step_id: str
    address: str
    fingerprint: str | None  # what the step records as last-applied when it succeeds


@dataclass(frozen=True)
class StepEnd:
    step_id: str
    address: str
    fingerprint: str | None
    status: StepStatus
    detail: str | None = None


JournalEntry = StepStart | StepEnd


def last_applied_rows(conn: psycopg.Connection[Any], addresses: list[str]) -> dict[str, AppliedRow]:
    """The last-applied rows at `addresses` (those that have one)."""
    rows = _read(
        conn,
        "SELECT address, fingerprint, apply_id, revision, applied_at"
        " FROM plexica_gitops.last_applied WHERE address = ANY(%s)",
        (addresses,),
    )
    return {str(r[0]): AppliedRow(str(r[1]), r[2], r[3], r[4]) for r in rows}


_RECORD_IN_SYNC: LiteralString = (
    "INSERT INTO plexica_gitops.last_applied (address, fingerprint, revision)"
    " SELECT address, fingerprint, %s FROM unnest(%s::varchar[], %s::varchar[])"
    " AS t(address, fingerprint) ON CONFLICT (address) DO NOTHING"
)
_RECORDED_PER_STATEMENT = 10_000


def record_in_sync(conn: psycopg.Connection[Any], rows: Mapping[str, str], revision: str) -> int:
    """Write last-applied rows (address -> fingerprint) where there are none, in one
    transaction: addresses the plan found in sync with git at `revision` (`Plan.unrecorded`),
    with no apply of their own. A row there already is kept. Returns how many were written."""
    items = sorted(rows.items())
    written = 0
    with conn.transaction(), conn.cursor() as cur:
        for start in range(0, len(items), _RECORDED_PER_STATEMENT):
            chunk = items[start : start + _RECORDED_PER_STATEMENT]
            addresses = [address for address, _ in chunk]
            fingerprints = [fingerprint for _, fingerprint in chunk]
            cur.execute(_RECORD_IN_SYNC, (revision, addresses, fingerprints))
            written += cur.rowcount
    return written


_FORGET_APPLIED: LiteralString = "DELETE FROM plexica_gitops.last_applied WHERE address = %s"
_RESTORE_APPLIED: LiteralString = (
    "INSERT INTO plexica_gitops.last_applied (address, fingerprint, apply_id, revision, applied_at)"
    " VALUES (%s, %s, %s, %s, COALESCE(%s, now()))"
    " ON CONFLICT (address) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,"
    " apply_id = EXCLUDED.apply_id, revision = EXCLUDED.revision, applied_at = EXCLUDED.applied_at"
)


def write_batch(
    conn: psycopg.Connection[Any],
    apply_id: int,
    entries: list[JournalEntry],
    applied: dict[str, AppliedRow],
    revision: str,
) -> None:
    """Write `entries` in their order in ONE transaction (committed when this returns), with
    the last-applied rows they imply. A step's start removes the last-applied row at its
    address and its success writes the new one; any other end (a skipped step too: it may
    have been recorded as starting) puts back the row it removed (`applied`: the rows as
    they stand, updated here). So while a step may be having its
    effect, no last-applied row claims what is there: a crash then leaves none, and the
    next plan calls a difference there a change in git, never drift (session.py).
    `revision`: the apply's desired revision, recorded with what it applied."""
    with conn.transaction(), conn.pipeline(), conn.cursor() as cur:
        for entry in entries:
            if isinstance(entry, StepStart):
                cur.execute(_STEP_STARTED, (apply_id, entry.step_id))
                if entry.fingerprint:
                    cur.execute(_FORGET_APPLIED, (entry.address,))
                continue
            _check_status(entry.status)
            cur.execute(_STEP_FINISHED, (apply_id, entry.step_id, entry.status, entry.detail))
            if not entry.fingerprint:
                continue
            if entry.status == "succeeded":
                applied[entry.address] = AppliedRow(entry.fingerprint, apply_id, revision, None)
            row = applied.get(entry.address)
            if row is not None:
                cur.execute(
                    _RESTORE_APPLIED,
                    (entry.address, row.fingerprint, row.apply_id, row.revision, row.applied_at),
                )


def finish_apply(
    conn: psycopg.Connection[Any],
    apply_id: int,
    result: ApplyResult,
    counts: Mapping[str, Any],
) -> None:
    """Record the end of an apply with its result and counts (e.g. steps per status)."""
    if result not in _APPLY_RESULTS:
        raise ValueError(f"apply result must be one of {sorted(_APPLY_RESULTS)}, not {result!r}")
    rows = _write(
        conn,
        "UPDATE plexica_gitops.applies SET result = %s, counts = %s, finished_at = now()"
        " WHERE id = %s RETURNING id",
        (result, Jsonb(dict(counts)), apply_id),
    )
    if not rows:
        raise ValueError(f"no apply with id {apply_id} in plexica_gitops.applies")


def mark_interrupted(conn: psycopg.Connection[Any]) -> list[int]:
    """Mark as 'interrupted' every apply left 'running' whose holder of the apply lock is
    gone; return their ids, oldest first. Call it after taking the apply lock: then only
    this process's own apply can still be live. Their finished_at becomes the time of
    their last journal entry (their last sign of life); their steps are left as they
    were, so `in_flight` shows what was running when they died."""
    running = _read(
        conn,
        "SELECT id, host, pid FROM plexica_gitops.applies WHERE result = 'running' ORDER BY id",
        (),
    )
    if not running:
        return []
    if conn.autocommit or conn.info.transaction_status != pq.TransactionStatus.IDLE:
        holder = lock_holder(conn)
    else:
        with conn.transaction():
            holder = lock_holder(conn)
    live = holder.application_name if holder is not None else None
    dead = [int(i) for i, host, pid in running if lock_application_name(host, pid) != live]
    if not dead:
        return []
    rows = _write(
        conn,
        "UPDATE plexica_gitops.applies a SET result = 'interrupted',"
        " finished_at = COALESCE((SELECT max(GREATEST(j.started_at, j.finished_at))"
        "   FROM plexica_gitops.journal j WHERE j.apply_id = a.id), a.started_at)"
        " WHERE a.result = 'running' AND a.id = ANY(%s) RETURNING a.id",
        (dead,),
    )
    return sorted(int(r[0]) for r in rows)


# Each apply with its journal's step counts; `history` and `apply_record` add the rest.
_APPLIES: LiteralString = (
    "SELECT a.id, a.desired_revision, a.plan_hash, a.host, a.pid, a.started_at,"
    " a.finished_at, a.result, a.counts,"
    " COALESCE((SELECT jsonb_object_agg(s.status, s.n) FROM"
    "   (SELECT j.status, count(*) AS n FROM plexica_gitops.journal j"
    "     WHERE j.apply_id = a.id GROUP BY j.status) s), '{}'::jsonb), a.epoch"
    " FROM plexica_gitops.applies a"
)


def _apply_record(row: tuple[Any, ...]) -> ApplyRecord:
    return ApplyRecord(
        id=int(row[0]),
        desired_revision=row[1],
        plan_hash=row[2],
        host=row[3],
        pid=int(row[4]),
        started_at=row[5],
        finished_at=row[6],
        result=row[7],
        counts=dict(row[8] or {}),
        steps={str(k): int(v) for k, v in (row[9] or {}).items()},
        epoch=None if row[10] is None else int(row[10]),
    )


def history(conn: psycopg.Connection[Any], limit: int = 20) -> list[ApplyRecord]:
    """The latest `limit` applies, newest first, with their journal's step counts."""
    rows = _read(conn, _APPLIES + " ORDER BY a.id DESC LIMIT %s", (max(0, limit),))
    return [_apply_record(r) for r in rows]


def apply_record(conn: psycopg.Connection[Any], apply_id: int) -> ApplyRecord | None:
    """One apply, as `history` lists it; None when no apply has that id."""
    rows = _read(conn, _APPLIES + " WHERE a.id = %s", (apply_id,))
    return _apply_record(rows[0]) if rows else None


def journal_steps(conn: psycopg.Connection[Any], apply_id: int) -> list[JournalStep]:
    """An apply's journal, in the order its steps started (a skipped step, never started,
    where it was skipped)."""
    rows = _read(
        conn,
        "SELECT step_id, status, detail, started_at, finished_at FROM plexica_gitops.journal"
        " WHERE apply_id = %s ORDER BY started_at, finished_at NULLS LAST, step_id",
        (apply_id,),
    )
    return [JournalStep(str(r[0]), str(r[1]), r[2], r[3], r[4]) for r in rows]


def in_flight(conn: psycopg.Connection[Any], apply_id: int) -> list[str]:
    """The steps of an apply that started and never finished, in the order they started."""
    rows = _read(
        conn,
        "SELECT step_id FROM plexica_gitops.journal"
        " WHERE apply_id = %s AND status = 'started' ORDER BY started_at, step_id",
        (apply_id,),
    )
    return [str(r[0]) for r in rows]
