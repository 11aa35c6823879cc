"""Tenant migrations, the apply lock and the apply journal, against a real PostgreSQL.

Every test gets a fresh database on the session's throwaway server (`postgres_database`),
with the store's DDL applied by `_init_store` here. Crashes are real: a child process takes
the lock or writes the journal and is killed with SIGKILL."""

from __future__ import annotations

import hashlib
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from plexica_gitops.desired.build import MigrationFile
from plexica_gitops.store.connection import StoreError
from plexica_gitops.store.ddl import DDL_VERSIONS
from plexica_gitops.store.journal import (
    finish_apply,
    history,
    in_flight,
    mark_interrupted,
    start_apply,
    step_finished,
    step_started,
)
from plexica_gitops.store.lock import (
    APPLY_LOCK_KEY,
    LEASE_ENV,
    LeaseHolder,
    LockHeldError,
    LockLostError,
    apply_lock,
    lock_application_name,
    parse_application_name,
)
from plexica_gitops.store.migrate import (
    FailureKind,
    MigrationStatus,
    TenantMigrationJob,
    TenantMigrationResult,
    run_migrations,
)

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "crm"

# --- helpers ---------------------------------------------------------------------------------


def _init_store(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _version, _description, ddl in DDL_VERSIONS:
            with conn.transaction():
                conn.execute(ddl)  # our own DDL, no placeholders


@pytest.fixture
def store(postgres_database: str) -> str:
    """A fresh database with the store schema; yields its DSN."""
    _init_store(postgres_database)
    return postgres_database


@dataclass(frozen=True)
class Tenant:
    slug: str
    id: uuid.UUID
    schema: str


def _tenants(
    dsn: str, count: int, *, prefix: str = "tenant", create_schema: bool = True
) -> list[Tenant]:
    tenants = [Tenant(f"{prefix}-{i:03d}", uuid.uuid4(), f"{prefix}_{i:03d}") for i in range(count)]
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        for t in tenants:
            conn.execute(
                "INSERT INTO plexica.tenants (id, slug, schema_name, status)"
                " VALUES (%s, %s, %s, 'active')",
                (t.id, t.slug, t.schema),
            )
            if create_schema:
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(t.schema)))
    return tenants


def _file(number: int, name: str, text: str, plugin: str = PLUGIN) -> MigrationFile:
    return MigrationFile(
        number=number,
        name=name,
        path=f"plugins/{plugin}/migrations/{number:04d}_{name}.sql",
        checksum=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        sql=text,
    )


def _jobs(
    tenants: list[Tenant], files: list[MigrationFile], plugin: str = PLUGIN
) -> list[TenantMigrationJob]:
    return [TenantMigrationJob(t.slug, t.id, t.schema, plugin, files) for t in tenants]


def _scalar(dsn: str, query: Any, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query, params or None).fetchone()
        assert row is not None
        return row[0]


def _history_rows(dsn: str, tenant: Tenant) -> list[tuple[int, str]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT version, checksum FROM plexica.tenant_migrations"
            " WHERE tenant_id = %s AND plugin_id = %s ORDER BY version",
            (tenant.id, PLUGIN),
        ).fetchall()
    return [(int(v), str(c)) for v, c in rows]


def _exists(dsn: str, qualified: str) -> bool:
    return bool(_scalar(dsn, "SELECT to_regclass(%s) IS NOT NULL", (qualified,)))


CONTACTS = _file(
    1,
    "create_contacts",
    textwrap.dedent(
        """\
        -- contacts of the tenant
        CREATE TABLE contacts (
            id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name       text NOT NULL,
            email      text,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX contacts_email ON contacts (lower(email));
        COMMENT ON TABLE contacts IS '100% tenant-owned; no %s placeholders here';
        """
    ),
)
DEALS = _file(
    2,
    "create_deals",
    textwrap.dedent(
        """\
        CREATE TABLE deals (
            id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            contact_id bigint NOT NULL REFERENCES contacts (id),
            amount     numeric(12, 2) NOT NULL CHECK (amount >= 0)
        );
        """
    ),
)
PHONE = _file(
    3,
    "contact_phone",
    textwrap.dedent(
        """\
        ALTER TABLE contacts ADD COLUMN phone text;
        CREATE FUNCTION contact_label(c contacts) RETURNS text LANGUAGE plpgsql AS $fn$
        BEGIN
            RETURN c.name || ' <' || coalesce(c.email, '?') || '>';
        END;
        $fn$;
        """
    ),
)
FILES = [CONTACTS, DEALS, PHONE]


# --- migrations --------------------------------------------------------------------------------


def test_one_failing_tenant_rolls_back_alone_and_rerun_is_idempotent(store: str) -> None:
    tenants = _tenants(store, 50)
    bad = tenants[17]
    with psycopg.connect(store, autocommit=True) as conn:  # a conflicting table in one schema
        conn.execute(sql.SQL("CREATE TABLE {}.deals (x int)").format(sql.Identifier(bad.schema)))
    seen: list[TenantMigrationResult] = []
    caller = threading.get_ident()
    threads: set[int] = set()

    def on_result(result: TenantMigrationResult) -> None:
        seen.append(result)
        threads.add(threading.get_ident())

    report = run_migrations(store, _jobs(tenants, FILES), parallelism=4, on_result=on_result)

    assert len(seen) == 50 and threads == {caller}  # called in the caller's thread
    assert [r.job.tenant_slug for r in report.results] == [t.slug for t in tenants]
    assert len(report.succeeded) == 49 and len(report.failed) == 1 and not report.skipped
    assert report.files_applied == 147 and not report.ok
    failed = report.failed[0]
    assert failed.job.tenant_slug == bad.slug
    failure = failed.failure
    assert failure is not None
    assert failure.kind is FailureKind.SQL_ERROR
    assert failure.sqlstate == "42P07"
    assert failure.path == DEALS.path and failure.version == 2
    for part in (bad.slug, bad.schema, PLUGIN, DEALS.path, 'relation "deals" already exists'):
        assert part in failure.message
    assert "rolled back" in failure.hint and "other tenants are not affected" in failure.hint

    for t in tenants:
        if t is bad:
            continue
        assert _exists(store, f"{t.schema}.contacts") and _exists(store, f"{t.schema}.deals")
        assert _history_rows(store, t) == [(f.number, f.checksum) for f in FILES]
    # the failing tenant: 0001 ran before 0002 failed, and was rolled back with it
    assert not _exists(store, f"{bad.schema}.contacts")
    assert _exists(store, f"{bad.schema}.deals")  # its own table is untouched
    assert _history_rows(store, bad) == []
    phone = _scalar(
        store,
        "SELECT count(*) FROM information_schema.columns"
        " WHERE table_name = 'contacts' AND column_name = 'phone'",
    )
    assert phone == 49
    durations = _scalar(store, "SELECT min(duration_ms) >= 0 FROM plexica.tenant_migrations")
    assert durations is True

    # a re-run changes nothing: the 49 are up to date, the bad one fails the same way
    again = run_migrations(store, _jobs(tenants, FILES), parallelism=3)
    assert len(again.skipped) == 49 and len(again.failed) == 1 and again.files_applied == 0
    assert all(r.already_applied == (1, 2, 3) for r in again.skipped)
    assert _scalar(store, "SELECT count(*) FROM plexica.tenant_migrations") == 147

    # fixed by hand, the bad tenant catches up; the others still skip
    with psycopg.connect(store, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE {}.deals").format(sql.Identifier(bad.schema)))
    fixed = run_migrations(store, _jobs(tenants, FILES), parallelism=4)
    assert [r.job.tenant_slug for r in fixed.succeeded] == [bad.slug]
    assert len(fixed.skipped) == 49 and fixed.ok
    assert _history_rows(store, bad) == [(f.number, f.checksum) for f in FILES]
    assert _scalar(store, "SELECT count(*) FROM plexica.tenant_migrations") == 150


def test_new_migration_applies_on_top_and_records_only_itself(store: str) -> None:
    tenants = _tenants(store, 3)
    first = run_migrations(store, _jobs(tenants, [CONTACTS, DEALS]))
    assert len(first.succeeded) == 3
    second = run_migrations(store, _jobs(tenants, FILES))
    assert all(r.status is MigrationStatus.SUCCEEDED for r in second.results)
    assert all([a.version for a in r.applied] == [3] for r in second.results)
    assert all(r.already_applied == (1, 2) for r in second.results)
    assert all(len(_history_rows(store, t)) == 3 for t in tenants)


def test_edited_applied_migration_is_refused(store: str) -> None:
    tenants = _tenants(store, 2)
    run_migrations(store, _jobs(tenants, [CONTACTS]))
    edited = _file(
        1, "create_contacts", CONTACTS.sql + "CREATE INDEX contacts_name ON contacts (name);\n"
    )

    report = run_migrations(store, _jobs(tenants, [edited, DEALS]))

    assert len(report.failed) == 2
    failure = report.results[0].failure
    assert failure is not None and failure.kind is FailureKind.CHECKSUM_MISMATCH
    for part in (
        tenants[0].slug,
        PLUGIN,
        CONTACTS.path,
        CONTACTS.checksum[:12],
        edited.checksum[:12],
    ):
        assert part in failure.message
    assert "new migration" in failure.hint
    # nothing of the job ran: 0002 was not applied, the edit was not run
    assert not _exists(store, f"{tenants[0].schema}.deals")
    assert not _exists(store, f"{tenants[0].schema}.contacts_name")
    assert _history_rows(store, tenants[0]) == [(1, CONTACTS.checksum)]


def test_out_of_order_migration_is_refused(store: str) -> None:
    (tenant,) = _tenants(store, 1)
    later = _file(3, "later", "CREATE TABLE later (id int);")
    run_migrations(store, _jobs([tenant], [CONTACTS, later]))
    assert [v for v, _ in _history_rows(store, tenant)] == [1, 3]

    report = run_migrations(store, _jobs([tenant], [CONTACTS, DEALS, later]))

    failure = report.results[0].failure
    assert failure is not None and failure.kind is FailureKind.OUT_OF_ORDER
    for part in (tenant.slug, PLUGIN, DEALS.path, "0003"):
        assert part in failure.message
    assert "0004_create_deals.sql" in failure.hint
    assert not _exists(store, f"{tenant.schema}.deals")


def test_statement_timeout_fails_that_tenant_fast(store: str) -> None:
    slow, quick = _tenants(store, 2)
    sleepy = _file(1, "sleepy", "CREATE TABLE t (id int);\nSELECT pg_sleep(5);\n")
    jobs = [
        TenantMigrationJob(slow.slug, slow.id, slow.schema, PLUGIN, [sleepy]),
        TenantMigrationJob(quick.slug, quick.id, quick.schema, PLUGIN, [CONTACTS]),
    ]
    started = time.monotonic()
    report = run_migrations(store, jobs, statement_timeout_ms=200)
    assert time.monotonic() - started < 3.0

    failure = report.results[0].failure
    assert failure is not None and failure.sqlstate == "57014"
    assert "statement timeout" in failure.message and "200 ms" in failure.hint
    assert failure.path == sleepy.path
    assert not _exists(store, f"{slow.schema}.t")
    assert report.results[1].status is MigrationStatus.SUCCEEDED


def test_lock_timeout_fails_that_tenant_and_hints_at_the_blocker(store: str) -> None:
    (tenant,) = _tenants(store, 1)
    run_migrations(store, _jobs([tenant], [CONTACTS]))
    alter = _file(2, "alter", "ALTER TABLE contacts ADD COLUMN nickname text;")
    with psycopg.connect(store) as blocker:  # holds a lock on the table, transaction open
        blocker.execute(
            sql.SQL("LOCK TABLE {}.contacts IN ACCESS SHARE MODE").format(
                sql.Identifier(tenant.schema)
            )
        )
        started = time.monotonic()
        report = run_migrations(store, _jobs([tenant], [CONTACTS, alter]), lock_timeout_ms=200)
        assert time.monotonic() - started < 3.0
    failure = report.results[0].failure
    assert failure is not None and failure.sqlstate == "55P03"
    assert "pg_locks" in failure.hint and "200 ms" in failure.hint
    assert [v for v, _ in _history_rows(store, tenant)] == [1]


def test_parallel_jobs_overlap(store: str) -> None:
    tenants = _tenants(store, 8)
    nap = _file(1, "nap", "SELECT pg_sleep(0.5);\nCREATE TABLE napped (id int);\n")
    started = time.monotonic()
    report = run_migrations(store, _jobs(tenants, [nap]), parallelism=4)
    wall = time.monotonic() - started
    assert len(report.succeeded) == 8
    assert 0.95 <= wall < 2.0, wall  # two waves of four, not eight sleeps in a row (4 s)
    assert report.total_job_ms >= 8 * 480


def test_error_in_on_result_cancels_running_jobs(store: str) -> None:
    tenants = _tenants(store, 4)
    quick = _file(1, "quick", "CREATE TABLE quick (id int);")
    slow = _file(1, "slow", "CREATE TABLE slow (id int);\nSELECT pg_sleep(30);\n")
    jobs = [TenantMigrationJob(tenants[0].slug, tenants[0].id, tenants[0].schema, PLUGIN, [quick])]
    jobs += [TenantMigrationJob(t.slug, t.id, t.schema, PLUGIN, [slow]) for t in tenants[1:]]

    def stop(result: TenantMigrationResult) -> None:
        raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_migrations(store, jobs, parallelism=4, on_result=stop)
    assert time.monotonic() - started < 10.0  # the 30 s sleeps were cancelled
    assert _history_rows(store, tenants[0]) == [(1, quick.checksum)]
    for t in tenants[1:]:  # cancelled mid-file: rolled back
        assert _history_rows(store, t) == [] and not _exists(store, f"{t.schema}.slow")
    busy = _scalar(
        store,
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%'"
        " AND pid <> pg_backend_pid()",
    )
    assert busy == 0


def test_missing_schema_and_unregistered_tenant_fail_alone(store: str) -> None:
    ok, no_schema = _tenants(store, 2)
    with psycopg.connect(store, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(no_schema.schema)))
    stranger = Tenant("stranger", uuid.uuid4(), "stranger")
    wrong = Tenant(ok.slug, ok.id, "not_its_schema")
    report = run_migrations(store, _jobs([ok, no_schema, stranger, wrong], [CONTACTS]))

    kinds = [r.failure.kind if r.failure else None for r in report.results]
    assert kinds == [
        None,
        FailureKind.SCHEMA_MISSING,
        FailureKind.TENANT_MISSING,
        FailureKind.TENANT_MISMATCH,
    ]
    schema_failure = report.results[1].failure
    assert schema_failure is not None
    assert no_schema.slug in schema_failure.message and no_schema.schema in schema_failure.message
    assert "does not exist" in schema_failure.message
    assert _history_rows(store, ok) == [(1, CONTACTS.checksum)]


def test_sql_error_reports_line_and_column_in_the_file(store: str) -> None:
    (tenant,) = _tenants(store, 1)
    text = "-- Käufer: café\nCREATE TABLE fine (id int);\nALTER TABLE fine\n  ADD COLUM x int;\n"
    broken = _file(1, "broken", text)  # positions count characters, not UTF-8 bytes
    report = run_migrations(store, _jobs([tenant], [broken]))
    failure = report.results[0].failure
    assert failure is not None and failure.sqlstate == "42601"
    assert (failure.line, failure.column) == (4, 15)  # at "int": COLUM x reads as name, type
    assert f"{broken.path}:4:15" in failure.message and 'near "int"' in failure.message
    assert failure.statement_line == "ADD COLUM x int;"
    assert not _exists(store, f"{tenant.schema}.fine")


def test_migration_that_commits_is_reported(store: str) -> None:
    (tenant,) = _tenants(store, 1)
    rogue = _file(1, "rogue", "CREATE TABLE rogue (id int);\nCOMMIT;\n")
    report = run_migrations(store, _jobs([tenant], [rogue, DEALS]))
    failure = report.results[0].failure
    assert failure is not None and failure.kind is FailureKind.TRANSACTION_ENDED
    assert rogue.path in failure.message and "COMMIT" in failure.message
    assert _history_rows(store, tenant) == []
    assert not _exists(store, f"{tenant.schema}.deals")


def test_store_without_schema_is_a_store_error(postgres_database: str) -> None:
    job = TenantMigrationJob("t", uuid.uuid4(), "t", PLUGIN, [CONTACTS])
    with pytest.raises(StoreError, match=r"plexica\.tenant_migrations") as caught:
        run_migrations(postgres_database, [job])
    assert "plexica-gitops init" in caught.value.hint


# --- apply lock -------------------------------------------------------------------------------


SHORT_LEASE = 2.0  # a killed child's lease is waited out: keep it short (the default is 10 s)


def _child(code: str, dsn: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DSN": dsn}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def _read_line(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"child printed nothing; stderr:\n{err}")
    return line.strip()


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_second_taker_is_refused_at_once_naming_the_holder(store: str) -> None:
    with apply_lock(store, host="ci-runner-1", pid=4242) as held:
        assert held.application_name == "plexica-gitops apply host=ci-runner-1 pid=4242"
        held.verify()
        started = time.monotonic()
        with pytest.raises(LockHeldError) as caught, apply_lock(store, host="ci-runner-2", pid=7):
            pass
        assert time.monotonic() - started < 1.0
    error = caught.value
    assert error.holder is not None and error.holder.apply == ("ci-runner-1", 4242)
    assert error.holder.backend_pid == held.backend_pid
    for part in ("host ci-runner-1", "pid 4242", "since", "UTC", "did not wait"):
        assert part in error.message
    assert "--lock-timeout SECONDS" in error.hint and "check that pipeline" in error.hint
    # released on leaving the block
    with apply_lock(store, host="ci-runner-2", pid=7):
        pass


def test_waiting_taker_gets_the_lock_when_it_is_released(store: str) -> None:
    first = apply_lock(store, host="first", pid=1)
    first.__enter__()
    releaser = threading.Timer(1.0, first.__exit__, args=(None, None, None))
    releaser.start()
    try:
        with (
            pytest.raises(LockHeldError, match=r"waited 0\.[3-9] s"),
            apply_lock(store, host="impatient", pid=3, wait_seconds=0.3),
        ):
            pass
        started = time.monotonic()
        with apply_lock(store, host="second", pid=2, wait_seconds=10) as second:
            waited = time.monotonic() - started
            assert 0.3 <= waited < 3.0, waited
            assert second.waited_seconds > 0.3
    finally:
        releaser.join()


def test_lock_held_by_another_kind_of_session(store: str) -> None:
    with psycopg.connect(store, autocommit=True, application_name="psql") as other:
        other.execute("SELECT pg_advisory_lock(%s)", (APPLY_LOCK_KEY,))
        with pytest.raises(LockHeldError) as caught, apply_lock(store, host="h", pid=1):
            pass
        assert "not a plexica-gitops apply" in caught.value.message
        assert "'psql'" in caught.value.message
        assert f"pg_terminate_backend({other.info.backend_pid})" in caught.value.hint


def test_lost_lock_session_is_detected(store: str) -> None:
    with apply_lock(store, host="h", pid=1) as held:
        with psycopg.connect(store, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (held.backend_pid,))
        with pytest.raises(LockLostError):
            held.verify()
    with apply_lock(store, host="h", pid=2):  # and it is free again
        pass


def test_application_name_keeps_the_pid_for_long_hosts() -> None:
    name = lock_application_name("runner-" + "x" * 100 + ".ci.example.com", 123456)
    assert len(name.encode()) <= 63
    parsed = parse_application_name(name)
    assert parsed is not None and parsed[1] == 123456 and parsed[0].startswith("runner-x")
    assert parse_application_name("psql") is None


def test_killed_apply_releases_the_lock(
    store: str, children: list[subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LEASE_ENV, str(SHORT_LEASE))  # the child's lease too
    child = _child(
        """
        import os, sys, time
        from plexica_gitops.store.lock import apply_lock
        with apply_lock(os.environ["DSN"], host="doomed-runner", pid=os.getpid()):
            print("locked", flush=True)
            time.sleep(600)
        """,
        store,
    )
    children.append(child)
    assert _read_line(child) == "locked"
    with pytest.raises(LockHeldError) as caught, apply_lock(store, host="next", pid=1):
        pass
    assert "doomed-runner" in caught.value.message and f"pid {child.pid}" in caught.value.message

    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    # The advisory lock comes free at once, but nobody can tell a killed holder from one
    # that lost its connection and runs on: its lease is waited out (never renewed), and
    # the wait names it.
    waits: list[LeaseHolder] = []
    started = time.monotonic()
    with apply_lock(store, host="next", pid=1, on_wait=waits.append) as held:
        waited = time.monotonic() - started
    assert waited <= SHORT_LEASE + 1.0
    assert [(w.host, w.pid) for w in waits] == [("doomed-runner", child.pid)]
    assert held.epoch == waits[0].epoch + 1
    assert "lost the apply lock" in waits[0].describe()


# --- journal ------------------------------------------------------------------------------------


def test_journal_records_steps_and_history(store: str) -> None:
    with psycopg.connect(store, autocommit=True) as conn:
        first = start_apply(conn, "abc123", "sha256:p1", "ci-1", 11)
        step_started(conn, first, "plugin.crm/install")
        step_finished(conn, first, "plugin.crm/install", "succeeded")
        step_finished(conn, first, "plugin.billing/install", "skipped", "dependency crm failed")
        finish_apply(conn, first, "succeeded", {"succeeded": 1, "skipped": 1})

        second = start_apply(conn, "def456", "sha256:p2", "ci-2", 22)
        step_started(conn, second, "tenant.acme/migrate")
        step_started(conn, second, "tenant.beta/migrate")
        step_finished(conn, second, "tenant.acme/migrate", "failed", "42P07 relation exists")
        assert in_flight(conn, second) == ["tenant.beta/migrate"]
        assert in_flight(conn, first) == []

        records = history(conn)
        assert [r.id for r in records] == [second, first]
        latest, older = records
        assert (latest.desired_revision, latest.plan_hash, latest.result) == (
            "def456",
            "sha256:p2",
            "running",
        )
        assert latest.finished_at is None and latest.in_flight == 1
        assert latest.steps == {"started": 1, "failed": 1}
        assert (older.host, older.pid, older.result) == ("ci-1", 11, "succeeded")
        assert older.counts == {"succeeded": 1, "skipped": 1}
        assert older.steps == {"succeeded": 1, "skipped": 1}
        assert older.finished_at is not None and older.duration is not None
        assert [r.id for r in history(conn, limit=1)] == [second]

    with psycopg.connect(store) as tx:  # a caller's open transaction: refused, not hidden
        tx.execute("SELECT 1")
        with pytest.raises(ValueError, match="commit at once"):
            step_started(tx, second, "x")
    with psycopg.connect(store) as plain:  # not autocommit, but idle: commits on its own
        step_started(plain, second, "y")
    with psycopg.connect(store, autocommit=True) as conn:
        assert in_flight(conn, second) == ["tenant.beta/migrate", "y"]


def test_killed_apply_leaves_in_flight_steps_and_is_marked_interrupted(
    store: str, children: list[subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LEASE_ENV, str(SHORT_LEASE))
    child = _child(
        """
        import os, time
        from plexica_gitops.store.connection import connect
        from plexica_gitops.store.journal import start_apply, step_finished, step_started
        from plexica_gitops.store.lock import apply_lock
        dsn = os.environ["DSN"]
        with apply_lock(dsn, host="doomed", pid=os.getpid()):
            conn = connect(dsn)
            apply_id = start_apply(conn, "rev1", "plan1", "doomed", os.getpid())
            for step in ("a/install", "b/install", "c/migrate"):
                step_started(conn, apply_id, step)
            step_finished(conn, apply_id, "a/install", "succeeded")
            print(apply_id, flush=True)
            time.sleep(600)
        """,
        store,
    )
    children.append(child)
    apply_id = int(_read_line(child))
    with psycopg.connect(store, autocommit=True) as conn:
        assert mark_interrupted(conn) == []  # its holder is alive: not interrupted
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert in_flight(conn, apply_id) == ["b/install", "c/migrate"]
        assert history(conn)[0].result == "running"

    with apply_lock(store, host="next", pid=os.getpid(), wait_seconds=10) as held:
        assert mark_interrupted(held.conn) == [apply_id]
        mine = start_apply(held.conn, "rev2", "plan2", "next", os.getpid())
        assert mark_interrupted(held.conn) == []  # our own running apply has a live holder
        records = {r.id: r for r in history(held.conn)}
        assert records[apply_id].result == "interrupted"
        assert records[apply_id].finished_at is not None
        assert records[apply_id].in_flight == 2
        assert records[mine].result == "running"
        assert in_flight(held.conn, apply_id) == ["b/install", "c/migrate"]
