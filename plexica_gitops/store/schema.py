"""Creating and upgrading the store's schema (`plexica-gitops init`), and checking it.

`init_store` applies the versions of `ddl.DDL_VERSIONS` a database lacks, in order, each in
its own transaction. Each of those transactions first takes a transaction-level advisory
lock, then reads which versions exist, so two `init`s running at once are safe: the second
waits for the first and then finds nothing left to do. A store written by a newer
plexica-gitops (a version this code does not know) is never touched."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import pq, sql

from plexica_gitops.store.connection import StoreError
from plexica_gitops.store.ddl import DDL_VERSIONS, RECONCILER_SCHEMA

LATEST_VERSION = max(version for version, _, _ in DDL_VERSIONS)
# pg_advisory_xact_lock key serialising `init` (int64; "plexica" + "init" in ASCII, so it
# does not collide with other users of advisory locks by accident).
INIT_LOCK_KEY = 0x706C6578_696E6974

_VERSION_TABLE = f"{RECONCILER_SCHEMA}.schema_version"


def _where(conn: psycopg.Connection[Any]) -> str:
    info = conn.info
    host = info.host if not info.host.startswith("/") else f"{info.host} (socket)"
    return f"database {info.dbname!r} at {host}:{info.port}"


def recorded_versions(conn: psycopg.Connection[Any]) -> list[int] | None:
    """The versions recorded in the store, ascending; None when it has no schema_version."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (_VERSION_TABLE,)).fetchone()
    if not row or not row[0]:
        return None
    rows = conn.execute("SELECT version FROM plexica_gitops.schema_version ORDER BY version")
    return [int(r[0]) for r in rows.fetchall()]


def _refuse_newer(conn: psycopg.Connection[Any], versions: list[int]) -> None:
    if versions and versions[-1] > LATEST_VERSION:
        raise StoreError(
            f"the store in {_where(conn)} is at schema version {versions[-1]}, newer than this "
            f"plexica-gitops understands (up to version {LATEST_VERSION})",
            "upgrade plexica-gitops: the store was written by a newer release, and this one "
            "would misread it",
        )


def store_version(conn: psycopg.Connection[Any]) -> int | None:
    """The store's schema version (the highest applied), or None for a database without
    the store schema."""
    with conn.transaction():
        versions = recorded_versions(conn)
    return versions[-1] if versions else None


def check_store(conn: psycopg.Connection[Any]) -> int:
    """The store's version when this code can read it; a StoreError saying what to run
    otherwise (no schema or an older one: `init`; a newer one: upgrade plexica-gitops)."""
    with conn.transaction():
        versions = recorded_versions(conn)
    return require_current(conn, versions)


def require_current(conn: psycopg.Connection[Any], versions: list[int] | None) -> int:
    if not versions:
        raise StoreError(
            f"{_where(conn)} has no plexica-gitops store schema",
            "run `plexica-gitops init` with the same --database-url / PLEXICA_DATABASE_URL "
            "to create it",
        )
    _refuse_newer(conn, versions)
    missing = sorted({v for v, _, _ in DDL_VERSIONS} - set(versions))
    if missing:
        raise StoreError(
            f"the store in {_where(conn)} is at schema version {versions[-1]}; this "
            f"plexica-gitops needs version {LATEST_VERSION}",
            "run `plexica-gitops init` to upgrade the store",
        )
    return versions[-1]


def init_store(conn: psycopg.Connection[Any]) -> list[int]:
    """Apply the DDL versions the database lacks, in order, each in its own transaction;
    return the versions applied ([] when the store was up to date).

    Needs a connection with no transaction open (each version commits on its own)."""
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise ValueError("init_store needs a connection with no transaction open")
    applied: list[int] = []
    for version, description, ddl in sorted(DDL_VERSIONS):
        with conn.transaction():
            # READ COMMITTED so that, once the lock is ours, the next statement sees what a
            # concurrent init committed while we waited.
            conn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (INIT_LOCK_KEY,))
            versions = recorded_versions(conn) or []
            _refuse_newer(conn, versions)
            if version in versions:
                continue
            try:
                conn.execute(sql.SQL(ddl))  # our own DDL (ddl.py), no placeholders
            except (psycopg.errors.DuplicateTable, psycopg.errors.DuplicateObject) as error:
                raise StoreError(
                    f"cannot create store schema version {version} in {_where(conn)}: "
                    f"{' '.join(str(error).split())}",
                    "the database already holds plexica tables that `plexica-gitops init` did "
                    "not create (plexica_gitops.schema_version does not list them): point "
                    "--database-url at the platform's store, or at an empty database",
                ) from None
            conn.execute(
                "INSERT INTO plexica_gitops.schema_version (version, description) VALUES (%s, %s)",
                (version, description),
            )
        applied.append(version)
    return applied
