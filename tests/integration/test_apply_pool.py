"""The apply's connection pool against a real PostgreSQL: migration steps run on the
pool's connections (as many backends as the pool's size, not one a step), and a
connection that breaks during a step is dropped, never handed to the next step."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from plexica_gitops.apply.engine import SilentReporter, StepStatus, execute
from plexica_gitops.apply.steps import StepContext, run_step
from plexica_gitops.desired.build import DesiredState
from plexica_gitops.desired.validate import validate_directory
from plexica_gitops.plan.model import Action, ActionKind
from plexica_gitops.store import catalog
from plexica_gitops.store.connection import connect
from plexica_gitops.store.pool import ConnectionPool
from plexica_gitops.store.schema import init_store

TENANTS = 6
# Each tenant's migration records the backend that ran it.
MIGRATION = "CREATE TABLE ran_by AS SELECT pg_backend_pid() AS pid;\n"


class _NoJournal:
    """A journal that keeps nothing."""

    def started(self, action: Action) -> None: ...
    def finished(self, result: object) -> None: ...


def _write_state(root: Path) -> DesiredState:
    (root / "plugins" / "notes" / "migrations").mkdir(parents=True)
    (root / "tenants").mkdir()
    (root / "platform.yaml").write_text(
        "apiVersion: plexica.io/v1alpha1\nkind: Platform\nmetadata: {name: test}\n"
        "spec:\n  version: 2.4.0\n  runtime: {provider: docker}\n",
        encoding="utf-8",
    )
    (root / "plugins" / "notes" / "plugin.yaml").write_text(
        textwrap.dedent("""\
            apiVersion: plexica.io/v1alpha1
            kind: Plugin
            metadata: {name: notes}
            spec:
              state: active
              manifest:
                id: notes
                name: Notes
                version: 1.0.0
                runtime: {type: typescript, image: localhost/plexica-test/notes:1.0.0}
                compat: {core: ^2.0.0}
                api: {basePath: /api/plugins/notes, port: 8080}
                migrations: {path: migrations}
            """),
        encoding="utf-8",
    )
    (root / "plugins" / "notes" / "migrations" / "0001_ran_by.sql").write_text(
        MIGRATION, encoding="utf-8"
    )
    for number in range(TENANTS):
        (root / "tenants" / f"t{number}.yaml").write_text(
            "apiVersion: plexica.io/v1alpha1\nkind: Tenant\n"
            f"metadata: {{name: t{number}}}\n"
            f"spec:\n  id: {uuid.uuid4()}\n  schema: tenant_t{number}\n  status: active\n"
            "  plugins:\n    notes: {enabled: true}\n",
            encoding="utf-8",
        )
    report = validate_directory(root)
    assert report.valid, report.errors
    return report.desired


@pytest.fixture
def store(postgres_database: str, tmp_path: Path) -> Iterator[tuple[str, DesiredState]]:
    desired = _write_state(tmp_path / "state")
    with connect(postgres_database) as conn:
        init_store(conn)
        for slug, tenant in desired.tenants.items():
            spec = tenant.document.spec
            catalog.create_tenant(conn, spec.id, slug, spec.schema_name, "active")
    yield postgres_database, desired


def _migration_step(slug: str) -> Action:
    return Action(
        f"tenant.{slug}.migrations.notes",
        "apply",
        ActionKind.CREATE,
        "test",
        plugin="notes",
        tenant=slug,
        contains_failure_to=slug,
    )


def _backends_that_ran(dsn: str) -> set[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {
            int(conn.execute(f"SELECT pid FROM tenant_t{n}.ran_by").fetchone()[0])  # type: ignore[index]
            for n in range(TENANTS)
        }


def test_migration_steps_run_on_the_pools_connections(store: tuple[str, DesiredState]) -> None:
    dsn, desired = store
    pool = ConnectionPool(dsn, 2)
    context = StepContext(desired, pool, None, {})
    try:
        actions = [_migration_step(f"t{n}") for n in range(TENANTS)]
        report = execute(
            actions, lambda a: run_step(a, context), _NoJournal(), SilentReporter(), parallelism=2
        )
        assert [r.status for r in report.results.values()] == [StepStatus.SUCCEEDED] * TENANTS
        assert pool.open_connections <= 2
    finally:
        pool.close()
    assert len(_backends_that_ran(dsn)) <= 2  # one connection a step opened 6


def _terminate(dsn: str, pid: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))


def test_a_connection_killed_during_a_step_is_dropped_and_the_steps_error_kept(
    store: tuple[str, DesiredState],
) -> None:
    dsn, _ = store
    pool = ConnectionPool(dsn, 1)
    try:
        with (
            pytest.raises(RuntimeError, match="the step's own error"),
            pool.connection() as conn,
        ):
            conn.execute("BEGIN")
            killed = conn.info.backend_pid
            _terminate(dsn, killed)
            raise RuntimeError("the step's own error")
        assert pool.open_connections == 0
        with pool.connection() as conn:
            assert conn.info.backend_pid != killed
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        pool.close()


def test_a_migration_on_a_pooled_connection_the_server_dropped_is_retried(
    store: tuple[str, DesiredState],
) -> None:
    """A connection idle in the pool whose backend went away (a restart, a failover): the
    migration step fails over to a fresh connection instead of failing."""
    dsn, desired = store
    pool = ConnectionPool(dsn, 1)
    context = StepContext(desired, pool, None, {})
    try:
        with pool.connection() as conn:
            stale = conn.info.backend_pid
        _terminate(dsn, stale)
        report = execute(
            [_migration_step("t0")], lambda a: run_step(a, context), _NoJournal(), SilentReporter()
        )
        result = report.results["tenant.t0.migrations.notes:apply"]
        assert result.status is StepStatus.SUCCEEDED, result.detail
    finally:
        pool.close()
