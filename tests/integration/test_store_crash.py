"""kill -9 in the middle of tenant migrations, then a re-run: nothing lost, nothing twice.

A child process migrates many tenant schemas (each migration sleeps a little so the kill
lands mid-run) and is killed with SIGKILL. The transactions it had open die with it; the
re-run applies exactly what is missing, and every tenant ends with each file applied once.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from plexica_gitops.desired.build import MigrationFile
from plexica_gitops.store.ddl import DDL_VERSIONS
from plexica_gitops.store.migrate import TenantMigrationJob, run_migrations

TENANTS = 40
SQL = [
    "CREATE TABLE crm_deals (id bigint PRIMARY KEY, amount numeric NOT NULL);\n"
    "SELECT pg_sleep(0.05);\n",
    "ALTER TABLE crm_deals ADD COLUMN stage text NOT NULL DEFAULT 'lead';\n"
    "INSERT INTO crm_deals (id, amount) VALUES (1, 100);\n"
    "SELECT pg_sleep(0.05);\n",
]

CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_store_crash import jobs
    from plexica_gitops.store.migrate import run_migrations
    print("started", flush=True)
    run_migrations({dsn!r}, jobs({dsn!r}), parallelism=2)
    print("finished", flush=True)
    """
)


def files() -> list[MigrationFile]:
    return [
        MigrationFile(
            number=number,
            name=f"step_{number}",
            path=f"plugins/crm/migrations/{number:04d}_step_{number}.sql",
            checksum=hashlib.sha256(text.encode()).hexdigest(),
            sql=text,
        )
        for number, text in enumerate(SQL, start=1)
    ]


def jobs(dsn: str) -> list[TenantMigrationJob]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT id, slug, schema_name FROM plexica.tenants ORDER BY slug")
        tenants = rows.fetchall()
    return [TenantMigrationJob(slug, tid, schema, "crm", files()) for tid, slug, schema in tenants]


def _prepare(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _version, _description, ddl in DDL_VERSIONS:
            conn.execute(ddl)  # type: ignore[call-overload]
        for index in range(TENANTS):
            slug, schema = f"t{index:03d}", f"tenant_t{index:03d}"
            conn.execute(
                "INSERT INTO plexica.tenants (id, slug, schema_name, status)"
                " VALUES (%s, %s, %s, 'active')",
                (uuid.uuid4(), slug, schema),
            )
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))


def _applied(dsn: str) -> dict[str, list[int]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT t.slug, m.version FROM plexica.tenant_migrations m"
            " JOIN plexica.tenants t ON t.id = m.tenant_id ORDER BY t.slug, m.version"
        ).fetchall()
    applied: dict[str, list[int]] = {}
    for slug, version in rows:
        applied.setdefault(slug, []).append(version)
    return applied


def test_kill_9_mid_migration_then_rerun_converges(postgres_database: str) -> None:
    dsn = postgres_database
    _prepare(dsn)
    tests = str(Path(__file__).parent)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(tests=tests, dsn=dsn)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([tests, *sys.path])},
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(_applied(dsn)) < TENANTS // 4:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)

    partial = _applied(dsn)
    assert 0 < len(partial) < TENANTS, "the kill must land mid-run"
    assert all(versions == [1, 2] for versions in partial.values()), (
        "a tenant's migrations commit together or not at all"
    )

    report = run_migrations(dsn, jobs(dsn), parallelism=4)
    assert not report.failed, [r.failure for r in report.failed]
    final = _applied(dsn)
    assert final == {f"t{i:03d}": [1, 2] for i in range(TENANTS)}
    with psycopg.connect(dsn) as conn:
        for index in range(TENANTS):
            table = sql.Identifier(f"tenant_t{index:03d}", "crm_deals")
            (rows,) = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()  # type: ignore[misc]
            assert rows == 1, f"tenant t{index:03d} has {rows} seed rows"
