"""Plugin migrations in tenant schemas: one transaction per (tenant, plugin), many at once.

`run_migrations` takes jobs — a tenant (slug, id, schema) and a plugin's migration files —
and runs each job in its own transaction on one of `parallelism` connections (a worker
thread per connection; psycopg releases the GIL while it waits for the server). Inside
that transaction it

1. sets `search_path` to the tenant's schema, `lock_timeout` and `statement_timeout`
   (all `SET LOCAL`, so nothing outlives the transaction);
2. checks that the tenant is registered in `plexica.tenants` with that schema and that the
   schema exists;
3. reads the tenant's migration history for the plugin and
   - skips files already applied with the same checksum (a re-run after a crash is a
     no-op for them),
   - refuses the job when an applied file's checksum differs (an applied migration was
     edited: it is never run again — add a new migration instead),
   - refuses the job when a pending version is lower than the highest applied one
     (out of order);
4. runs each pending file — the whole file as ONE simple-protocol query, so a file may hold
   many statements — and records it in `plexica.tenant_migrations` with its checksum and
   duration; then commits.

Anything that fails rolls back that tenant's transaction only (spec 004, edge case 2): its
schema and history are as they were, and the other jobs go on. The failure names the
tenant, the plugin, the file and PostgreSQL's error (SQLSTATE, message, and line/column in
the file when the server reports a position).

Migration files must not contain `BEGIN`/`COMMIT`/`ROLLBACK`: the runner owns the
transaction. A file that ends it is reported as a failure (whatever it committed stays).
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import psycopg
from psycopg import pq, sql

from plexica_gitops.desired.build import MigrationFile
from plexica_gitops.store.connection import StoreError, connect

MIGRATE_APPLICATION_NAME = "plexica-gitops migrate"

_QUERY_CANCELED = "57014"
_LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True)
class TenantMigrationJob:
    """The migrations of one plugin to bring one tenant schema up to, in version order."""

    tenant_slug: str
    tenant_id: uuid.UUID | str
    schema_name: str
    plugin_id: str
    migrations: Sequence[MigrationFile]

    @property
    def label(self) -> str:
        return (
            f"tenant {self.tenant_slug!r} (schema {self.schema_name!r}), plugin {self.plugin_id!r}"
        )


class MigrationStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"  # at least one file ran and was committed
    FAILED = "failed"  # rolled back: nothing of this job was committed
    SKIPPED = "skipped"  # every file had been applied already (same checksum)


class FailureKind(enum.StrEnum):
    SQL_ERROR = "sql-error"  # a migration's SQL failed (incl. statement/lock timeouts)
    CHECKSUM_MISMATCH = "checksum-mismatch"  # an applied file was edited since
    OUT_OF_ORDER = "out-of-order"  # a pending version below the highest applied one
    DUPLICATE_VERSION = "duplicate-version"  # two files of the job share a number
    SCHEMA_MISSING = "schema-missing"  # the tenant schema does not exist
    TENANT_MISSING = "tenant-missing"  # the tenant is not in plexica.tenants
    TENANT_MISMATCH = "tenant-mismatch"  # plexica.tenants names another schema
    TRANSACTION_ENDED = "transaction-ended"  # the file ran COMMIT/ROLLBACK itself
    CONNECTION = "connection"  # the connection failed or could not be opened


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    name: str
    path: str
    checksum: str
    duration_ms: int


@dataclass(frozen=True)
class MigrationFailure:
    kind: FailureKind
    message: str  # names the tenant, the plugin and (when there is one) the file
    hint: str  # what to do about it
    path: str | None = None  # the migration file, relative to the desired-state root
    version: int | None = None
    sqlstate: str | None = None
    position: int | None = None  # 1-based character offset in the file (server-reported)
    line: int | None = None
    column: int | None = None
    statement_line: str | None = None  # the text of that line
    detail: str | None = None  # PostgreSQL's DETAIL / HINT / CONTEXT, when given

    def __str__(self) -> str:
        text = self.message
        if self.detail:
            text += f"\n  {self.detail}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text


@dataclass(frozen=True)
class TenantMigrationResult:
    job: TenantMigrationJob
    status: MigrationStatus
    applied: tuple[AppliedMigration, ...] = ()  # committed by this run
    already_applied: tuple[int, ...] = ()  # versions found applied (same checksum)
    duration_ms: float = 0.0  # the whole job: transaction, checks and files
    failure: MigrationFailure | None = None


@dataclass(frozen=True)
class MigrationReport:
    results: tuple[TenantMigrationResult, ...]  # in the order of the jobs given
    wall_seconds: float
    parallelism: int

    @property
    def succeeded(self) -> list[TenantMigrationResult]:
        return [r for r in self.results if r.status is MigrationStatus.SUCCEEDED]

    @property
    def failed(self) -> list[TenantMigrationResult]:
        return [r for r in self.results if r.status is MigrationStatus.FAILED]

    @property
    def skipped(self) -> list[TenantMigrationResult]:
        return [r for r in self.results if r.status is MigrationStatus.SKIPPED]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def files_applied(self) -> int:
        return sum(len(r.applied) for r in self.results)

    @property
    def total_job_ms(self) -> float:
        """Sum of the jobs' own durations (more than wall time when they overlap)."""
        return sum(r.duration_ms for r in self.results)

    def summary(self) -> str:
        return (
            f"{len(self.results)} tenant migration job(s) in {self.wall_seconds:.2f} s "
            f"(parallelism {self.parallelism}): {len(self.succeeded)} succeeded "
            f"({self.files_applied} file(s) applied), {len(self.skipped)} already up to date, "
            f"{len(self.failed)} failed"
        )


class _JobFailed(Exception):
    def __init__(self, failure: MigrationFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


@dataclass
class _Settings:
    dsn: str
    application_name: str
    lock_timeout_ms: int
    statement_timeout_ms: int
    epoch: int | None = None  # the apply's fencing token (store/lock.py)


@dataclass
class _Worker:
    conn: psycopg.Connection[Any] | None
    thread: threading.Thread | None = None
    busy: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


_EXIT = object()  # a worker's last message


def run_migrations(
    dsn: str,
    jobs: Sequence[TenantMigrationJob],
    *,
    parallelism: int = 4,
    lock_timeout_ms: int = 5000,
    statement_timeout_ms: int = 300000,
    on_result: Callable[[TenantMigrationResult], None] | None = None,
    application_name: str = MIGRATE_APPLICATION_NAME,
    epoch: int | None = None,
) -> MigrationReport:
    """Run every job, each in its own transaction, at most `parallelism` at a time.

    A failing job never stops the others; its failure is in the report. `on_result` is
    called in the caller's thread as each job finishes (in completion order); the report
    lists the results in job order. Raises StoreError only when the store cannot be used
    at all (cannot connect, or it has no plexica.tenant_migrations). On an exception in
    `on_result` or KeyboardInterrupt, the running jobs are cancelled (rolled back) and the
    exception propagates.

    `lock_timeout_ms` / `statement_timeout_ms` apply to every statement of a job (0: no
    limit). With `epoch` (an apply's fencing token) a job whose apply lost its lease
    fails and rolls back."""
    if parallelism < 1:
        raise ValueError("parallelism must be at least 1")
    if lock_timeout_ms < 0 or statement_timeout_ms < 0:
        raise ValueError("timeouts must be 0 (no limit) or positive")
    job_list = list(jobs)
    started = time.perf_counter()
    if not job_list:
        return MigrationReport((), 0.0, parallelism)
    settings = _Settings(dsn, application_name, lock_timeout_ms, statement_timeout_ms, epoch)

    first = _connect(settings)  # StoreError when the store cannot be reached
    try:
        _require_history_table(first)
    except BaseException:
        first.close()
        raise

    todo: queue.SimpleQueue[tuple[int, TenantMigrationJob]] = queue.SimpleQueue()
    for item in enumerate(job_list):
        todo.put(item)
    done: queue.SimpleQueue[tuple[int, TenantMigrationResult] | BaseException | object] = (
        queue.SimpleQueue()
    )
    stop = threading.Event()
    workers = [_Worker(first if i == 0 else None) for i in range(min(parallelism, len(job_list)))]
    for worker in workers:
        worker.thread = threading.Thread(
            target=_work,
            args=(worker, settings, todo, done, stop),
            name="plexica-migrate",
            daemon=True,
        )
        worker.thread.start()

    results: list[TenantMigrationResult | None] = [None] * len(job_list)
    crash: BaseException | None = None
    running = len(workers)
    try:
        while running:
            message = done.get()
            if message is _EXIT:
                running -= 1
            elif isinstance(message, BaseException):
                crash = crash or message
                stop.set()
            else:
                index, result = cast(tuple[int, TenantMigrationResult], message)
                results[index] = result
                if on_result is not None:
                    on_result(result)
    except BaseException:
        stop.set()
        _cancel_and_join(workers)
        raise
    _join(workers)
    if crash is not None:
        raise crash
    return MigrationReport(
        tuple(r for r in results if r is not None),
        time.perf_counter() - started,
        parallelism,
    )


def run_job(
    conn: psycopg.Connection[Any],
    job: TenantMigrationJob,
    *,
    lock_timeout_ms: int = 5000,
    statement_timeout_ms: int = 300000,
) -> TenantMigrationResult:
    """One job in its own transaction on the caller's connection (an apply's pooled one,
    idle, with no transaction open), as run_migrations runs each job; a failure is in the
    result. The connection's automatic prepared statements are off meanwhile (see
    `_connect`)."""
    settings = _Settings("", "", lock_timeout_ms, statement_timeout_ms)
    threshold = conn.prepare_threshold
    conn.prepare_threshold = None
    try:
        return _run_job(conn, job, settings)
    finally:
        conn.prepare_threshold = threshold


def _connect(settings: _Settings) -> psycopg.Connection[Any]:
    conn = connect(settings.dsn, application_name=settings.application_name, epoch=settings.epoch)
    # No automatic prepared statements: migration files run once per tenant with another
    # search_path each time, and their DDL would make psycopg discard its cache anyway.
    conn.prepare_threshold = None
    return conn


def _require_history_table(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("SELECT to_regclass('plexica.tenant_migrations') IS NOT NULL").fetchone()
    if not row or not row[0]:
        info = conn.info
        raise StoreError(
            f"database {info.dbname!r} at {info.host}:{info.port} has no "
            "plexica.tenant_migrations table",
            "run `plexica-gitops init` with the same --database-url / PLEXICA_DATABASE_URL "
            "to create the store schema",
        )


def _work(
    worker: _Worker,
    settings: _Settings,
    todo: queue.SimpleQueue[tuple[int, TenantMigrationJob]],
    done: queue.SimpleQueue[tuple[int, TenantMigrationResult] | BaseException | object],
    stop: threading.Event,
) -> None:
    try:
        while not stop.is_set():
            try:
                index, job = todo.get_nowait()
            except queue.Empty:
                return
            conn = worker.conn
            if conn is None or conn.closed or conn.broken:
                if conn is not None:
                    conn.close()
                try:
                    conn = _connect(settings)
                except StoreError as error:
                    worker.conn = None
                    done.put((index, _connection_failure(job, error.message, error.hint)))
                    continue
                with worker.lock:
                    worker.conn = conn
            with worker.lock:  # checked under the lock _cancel takes: run, or see stop
                if stop.is_set():
                    return
                worker.busy = True
            try:
                result = _run_job(conn, job, settings)
            finally:
                with worker.lock:
                    worker.busy = False
            done.put((index, result))
    except BaseException as error:  # a bug: report it to the caller's thread
        done.put(error)
    finally:
        with worker.lock:
            if worker.conn is not None:
                worker.conn.close()
        done.put(_EXIT)


def _cancel_and_join(workers: list[_Worker]) -> None:
    """Cancel the running jobs (their transactions roll back) and wait for the workers.
    Cancelling again every half second covers a query sent just after a cancel request."""
    while any(w.thread is not None and w.thread.is_alive() for w in workers):
        for worker in workers:
            with worker.lock:
                conn = worker.conn if worker.busy else None
            if conn is not None:
                with contextlib.suppress(psycopg.Error, OSError):
                    conn.cancel_safe(timeout=5.0)
        deadline = time.monotonic() + 0.5
        for worker in workers:
            if worker.thread is not None:
                worker.thread.join(max(0.0, deadline - time.monotonic()))


def _join(workers: list[_Worker]) -> None:
    for worker in workers:
        if worker.thread is not None:
            worker.thread.join()


def _connection_failure(job: TenantMigrationJob, reason: str, hint: str) -> TenantMigrationResult:
    failure = MigrationFailure(
        FailureKind.CONNECTION,
        f"{job.label}: no connection to the store: {reason}",
        hint or "check that the database is reachable, then run apply again",
    )
    return TenantMigrationResult(job, MigrationStatus.FAILED, failure=failure)


# --- one job -------------------------------------------------------------------------------

_PRECHECK = """
SELECT (SELECT schema_name FROM plexica.tenants WHERE id = %(tenant)s),
       EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = %(schema)s),
       (SELECT COALESCE(json_agg(json_build_array(version, name, checksum) ORDER BY version),
                        '[]'::json)
          FROM plexica.tenant_migrations
         WHERE tenant_id = %(tenant)s AND plugin_id = %(plugin)s)
"""

_RECORD = """
INSERT INTO plexica.tenant_migrations
    (tenant_id, plugin_id, version, name, checksum, duration_ms)
VALUES (%s, %s, %s, %s, %s, %s)
"""


def _run_job(
    conn: psycopg.Connection[Any], job: TenantMigrationJob, settings: _Settings
) -> TenantMigrationResult:
    started = time.perf_counter()

    def elapsed() -> float:
        return (time.perf_counter() - started) * 1000.0

    current: MigrationFile | None = None  # the file being run, for error reports
    try:
        tenant_id, files = _prepare(job)
        with conn.transaction():
            conn.execute(
                sql.SQL(
                    "SET LOCAL search_path TO {}; SET LOCAL lock_timeout = {}; "
                    "SET LOCAL statement_timeout = {}"
                ).format(
                    sql.Identifier(job.schema_name),
                    sql.Literal(settings.lock_timeout_ms),
                    sql.Literal(settings.statement_timeout_ms),
                )
            )
            row = conn.execute(
                _PRECHECK,
                {"tenant": tenant_id, "schema": job.schema_name, "plugin": job.plugin_id},
            ).fetchone()
            assert row is not None
            registered_schema, schema_exists, history = row
            _check_tenant(job, tenant_id, registered_schema, schema_exists)
            applied = {int(v): (str(n), str(c).strip().lower()) for v, n, c in history}
            pending = _pending(job, files, applied)
            done: list[AppliedMigration] = []
            for migration in pending:
                current = migration
                began = time.perf_counter()
                # The whole file as one simple-protocol query (no parameters, so psycopg
                # neither parses placeholders nor refuses several statements).
                conn.execute(migration.sql)
                duration_ms = round((time.perf_counter() - began) * 1000.0)
                if conn.info.transaction_status != pq.TransactionStatus.INTRANS:
                    raise _JobFailed(_transaction_ended(job, migration))
                done.append(
                    AppliedMigration(
                        migration.number,
                        migration.name,
                        migration.path,
                        migration.checksum,
                        duration_ms,
                    )
                )
            current = None
            if done:
                with conn.cursor() as cur:
                    cur.executemany(
                        _RECORD,
                        [
                            (tenant_id, job.plugin_id, a.version, a.name, a.checksum, a.duration_ms)
                            for a in done
                        ],
                    )
        already = tuple(sorted(v for v in applied if v in {f.number for f in files}))
        status = MigrationStatus.SUCCEEDED if done else MigrationStatus.SKIPPED
        return TenantMigrationResult(job, status, tuple(done), already, elapsed())
    except _JobFailed as failed:
        return TenantMigrationResult(
            job, MigrationStatus.FAILED, duration_ms=elapsed(), failure=failed.failure
        )
    except psycopg.Error as error:
        failure = _sql_failure(conn, job, current, error, settings)
        return TenantMigrationResult(
            job, MigrationStatus.FAILED, duration_ms=elapsed(), failure=failure
        )


def _prepare(job: TenantMigrationJob) -> tuple[uuid.UUID, list[MigrationFile]]:
    try:
        tenant_id = (
            job.tenant_id if isinstance(job.tenant_id, uuid.UUID) else uuid.UUID(job.tenant_id)
        )
    except ValueError:
        raise _JobFailed(
            MigrationFailure(
                FailureKind.TENANT_MISSING,
                f"{job.label}: tenant id {job.tenant_id!r} is not a UUID",
                "tenant ids in plexica.tenants are UUIDs; pass the tenant's id from the store",
            )
        ) from None
    files = sorted(job.migrations, key=lambda m: m.number)
    for before, after in itertools.pairwise(files):
        if before.number == after.number:
            raise _JobFailed(
                MigrationFailure(
                    FailureKind.DUPLICATE_VERSION,
                    f"{job.label}: {before.path} and {after.path} are both migration "
                    f"{after.version}",
                    "renumber one of them; numbers order migrations and must be unique",
                    path=after.path,
                    version=after.number,
                )
            )
    return tenant_id, files


def _check_tenant(
    job: TenantMigrationJob,
    tenant_id: uuid.UUID,
    registered_schema: str | None,
    schema_exists: bool,
) -> None:
    if registered_schema is None:
        raise _JobFailed(
            MigrationFailure(
                FailureKind.TENANT_MISSING,
                f"{job.label}: tenant {tenant_id} is not registered in plexica.tenants",
                "provision the tenant first (its plan step registers it and creates its "
                "schema), then run apply again",
            )
        )
    if registered_schema != job.schema_name:
        raise _JobFailed(
            MigrationFailure(
                FailureKind.TENANT_MISMATCH,
                f"{job.label}: plexica.tenants gives tenant {tenant_id} the schema "
                f"{registered_schema!r}, not {job.schema_name!r}",
                "re-plan against the current store: the plan was made for another schema",
            )
        )
    if not schema_exists:
        raise _JobFailed(
            MigrationFailure(
                FailureKind.SCHEMA_MISSING,
                f"{job.label}: the tenant schema {job.schema_name!r} does not exist",
                "create the tenant's schema (tenant provisioning does) or fix its "
                "schema_name in plexica.tenants, then run apply again",
            )
        )


def _pending(
    job: TenantMigrationJob,
    files: list[MigrationFile],
    applied: dict[int, tuple[str, str]],
) -> list[MigrationFile]:
    for migration in files:
        recorded = applied.get(migration.number)
        if recorded is not None and recorded[1] != migration.checksum.lower():
            raise _JobFailed(
                MigrationFailure(
                    FailureKind.CHECKSUM_MISMATCH,
                    f"{job.label}: migration {migration.path} (version {migration.version}) "
                    f"was applied with checksum {recorded[1][:12]}…, but the file now has "
                    f"{migration.checksum[:12]}…: an applied migration was edited",
                    "never edit an applied migration: restore the file as it was applied and "
                    "put the change in a new migration with the next number",
                    path=migration.path,
                    version=migration.number,
                )
            )
    pending = [m for m in files if m.number not in applied]
    if applied and pending:
        highest = max(applied)
        early = [m for m in pending if m.number < highest]
        if early:
            first = early[0]
            raise _JobFailed(
                MigrationFailure(
                    FailureKind.OUT_OF_ORDER,
                    f"{job.label}: migration {first.path} (version {first.version}) is not "
                    f"applied, but version {highest:04d} ({applied[highest][0]}) already is: "
                    "migrations must run in order",
                    "give the new migration a number above every applied one (rename it to "
                    f"{highest + 1:04d}_{first.name}.sql)",
                    path=first.path,
                    version=first.number,
                )
            )
    return pending


def _transaction_ended(job: TenantMigrationJob, migration: MigrationFile) -> MigrationFailure:
    return MigrationFailure(
        FailureKind.TRANSACTION_ENDED,
        f"{job.label}: migration {migration.path} ended the runner's transaction "
        "(it contains COMMIT, ROLLBACK or END); what it committed stays, the rest of the job "
        "was not run and nothing was recorded",
        "remove transaction control from the migration file: each tenant's migrations run "
        "in one transaction the runner opens and commits; check the tenant schema by hand",
        path=migration.path,
        version=migration.number,
    )


def _location(text: str, position: int) -> tuple[int, int, str]:
    """1-based line and column of the 1-based character `position`, and that line."""
    index = max(0, min(position - 1, len(text)))
    line_start = text.rfind("\n", 0, index) + 1
    line_end = text.find("\n", index)
    line_text = text[line_start : line_end if line_end >= 0 else len(text)]
    return text.count("\n", 0, index) + 1, index - line_start + 1, line_text.strip()[:200]


def _sql_failure(
    conn: psycopg.Connection[Any],
    job: TenantMigrationJob,
    migration: MigrationFile | None,
    error: psycopg.Error,
    settings: _Settings,
) -> MigrationFailure:
    diag = error.diag
    sqlstate = error.sqlstate
    reason = (diag.message_primary or str(error) or type(error).__name__).strip()
    reason = " ".join(reason.split())
    if conn.broken or (sqlstate is None and isinstance(error, psycopg.OperationalError)):
        what = f"while running {migration.path}" if migration else "before any migration ran"
        return MigrationFailure(
            FailureKind.CONNECTION,
            f"{job.label}: the connection to the store failed {what}: {reason}",
            "the transaction was rolled back by the server; check the database, then run "
            "apply again (applied migrations are skipped)",
            path=migration.path if migration else None,
            version=migration.number if migration else None,
        )
    line = column = position = None
    statement_line = None
    if migration is not None and diag.statement_position:
        try:
            position = int(diag.statement_position)
        except ValueError:
            position = None
        if position is not None:
            line, column, statement_line = _location(migration.sql, position)
    extra = [
        f"{label}: {' '.join(value.split())}"
        for label, value in (
            ("DETAIL", diag.message_detail),
            ("HINT", diag.message_hint),
            ("CONTEXT", diag.context),
        )
        if value
    ]
    where = f"{migration.path}:{line}:{column}" if line is not None and migration else None
    where = where or (migration.path if migration else "reading or writing the migration history")
    code = f" (SQLSTATE {sqlstate})" if sqlstate else ""
    message = f"{job.label}: {where}: {reason}{code}"
    if statement_line:
        message += f" — at: {statement_line}"
    rolled_back = (
        "the tenant's transaction was rolled back: none of this job's migrations were "
        "applied to it; the other tenants are not affected"
    )
    if sqlstate == _QUERY_CANCELED and "statement timeout" in reason:
        hint = (
            f"the statement ran longer than the statement timeout "
            f"({settings.statement_timeout_ms} ms): make the migration faster or allow it "
            f"more time; {rolled_back}"
        )
    elif sqlstate == _LOCK_NOT_AVAILABLE:
        hint = (
            f"another session held a lock the migration needed for more than "
            f"{settings.lock_timeout_ms} ms (see pg_locks / pg_stat_activity): run apply "
            f"again when it is gone; {rolled_back}"
        )
    elif migration is not None:
        hint = f"fix the migration or the tenant schema it conflicts with; {rolled_back}"
    else:
        hint = f"check the store (plexica.tenant_migrations); {rolled_back}"
    return MigrationFailure(
        FailureKind.SQL_ERROR,
        message,
        hint,
        path=migration.path if migration else None,
        version=migration.number if migration else None,
        sqlstate=sqlstate,
        position=position,
        line=line,
        column=column,
        statement_line=statement_line,
        detail="; ".join(extra) or None,
    )
