"""The apply lease and its fencing token, against a real PostgreSQL: a holder that loses its
lock session is fenced at once, the next taker waits out its lease, and the store refuses
every write of a stale epoch (store/lock.py, the `check_fence` trigger of ddl.py v3)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from plexica_gitops.store.connection import StoreError, connect
from plexica_gitops.store.ddl import DDL_VERSIONS
from plexica_gitops.store.lock import (
    LEASE_ENV,
    LeaseHolder,
    LockLostError,
    apply_lock,
    read_lease,
)
from plexica_gitops.store.schema import LATEST_VERSION, init_store, store_version

LEASE = 2.0  # short leases keep the tests quick; the protocol is the same at 10 s
RENEW = 0.2
FAST = {"lease_seconds": LEASE, "renew_seconds": RENEW}
FENCED_TABLES = {
    "plexica.plugins": "INSERT INTO plexica.plugins (id, name, version, manifest, manifest_hash,"
    " status) VALUES ('p', 'P', '1.0.0', '{}', 'h', 'REGISTERED')",
    "plexica.tenants": "INSERT INTO plexica.tenants (id, slug, schema_name, status)"
    " VALUES ('6f1c2d3e-4b5a-4c6d-8e7f-901234567890', 'acme', 'tenant_acme', 'active')",
    "plexica.tenant_plugins": "DELETE FROM plexica.tenant_plugins",
    "plexica.permissions": "DELETE FROM plexica.permissions",
    "plexica.routes": "DELETE FROM plexica.routes",
    "plexica.route_endpoints": "DELETE FROM plexica.route_endpoints",
    "plexica.event_subscriptions": "DELETE FROM plexica.event_subscriptions",
    "plexica.tenant_migrations": "DELETE FROM plexica.tenant_migrations",
    "plexica_gitops.applies": "INSERT INTO plexica_gitops.applies (desired_revision, plan_hash,"
    " host, pid) VALUES ('r', 'p', 'h', 1)",
    "plexica_gitops.journal": "DELETE FROM plexica_gitops.journal",
    "plexica_gitops.last_applied": "DELETE FROM plexica_gitops.last_applied",
    "plexica_gitops.topics": "INSERT INTO plexica_gitops.topics (name, plugin_id)"
    " VALUES ('t', 'p')",
}


@pytest.fixture
def store(postgres_database: str) -> Iterator[str]:
    with connect(postgres_database) as conn:
        init_store(conn)
    yield postgres_database


def _terminate(dsn: str, backend_pid: int) -> None:
    """What a PostgreSQL restart does to the lock's session (the restart itself is in
    test_apply_lock_loss.py)."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))


def _sqlstate(dsn: str, epoch: int | None, statement: Any) -> str | None:
    with connect(dsn, epoch=epoch) as conn:
        try:
            with conn.transaction():
                conn.execute(statement)
                raise _Undo
        except _Undo:
            return None
        except psycopg.Error as error:
            return error.sqlstate


class _Undo(Exception):
    """Roll back a write that was let through: the test only wants to know it was."""


def test_losing_the_lock_session_fences_the_holder_at_once(store: str) -> None:
    lost: list[tuple[float, str]] = []
    with apply_lock(store, host="ci-1", pid=11, **FAST) as held:
        held.on_lost(lambda reason: lost.append((time.monotonic(), reason)))
        cut = time.monotonic()
        _terminate(store, held.backend_pid)
        assert held.lost.wait(timeout=RENEW * 3)
        with pytest.raises(LockLostError) as caught:
            held.verify()
    assert len(lost) == 1 and lost[0][0] - cut <= RENEW * 2 + 0.3
    assert "connection holding it failed" in lost[0][1]
    assert "apply lock was lost" in caught.value.message
    assert "no new step started" in caught.value.hint


def test_the_next_taker_waits_out_the_lease_of_a_holder_that_lost_the_lock(store: str) -> None:
    first = apply_lock(store, host="ci-1", pid=11, **FAST)
    held = first.__enter__()
    try:
        _terminate(store, held.backend_pid)  # the advisory lock is free at once
        lease_end = read_lease(psycopg.connect(store, autocommit=True))
        assert lease_end is not None and lease_end.epoch == held.epoch
        waits: list[LeaseHolder] = []
        started = time.monotonic()
        with apply_lock(store, host="ci-2", pid=22, on_wait=waits.append, **FAST) as second:
            waited = time.monotonic() - started
            assert second.epoch == held.epoch + 1
        # the whole rest of the lease, and not much more
        assert lease_end.seconds_left - 0.3 <= waited <= lease_end.seconds_left + 1.0
        assert [(w.epoch, w.host, w.pid) for w in waits] == [(held.epoch, "ci-1", 11)]
        described = waits[0].describe()
        assert "host ci-1, pid 11" in described and "lease runs until" in described
        assert "UTC" in described
    finally:
        first.__exit__(None, None, None)


def test_the_lease_is_the_operators_setting_and_a_bad_one_is_refused(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LEASE_ENV, "3")
    with apply_lock(store, host="ci-1", pid=11) as held:
        assert held.lease_seconds == 3 and held.renew_seconds == pytest.approx(0.3)
        lease = read_lease(psycopg.connect(store, autocommit=True))
        assert lease is not None and 2.0 < lease.seconds_left <= 3.0
    for bad in ("0.5", "ten", "nan", "1e9"):
        monkeypatch.setenv(LEASE_ENV, bad)
        with pytest.raises(StoreError, match=f"{LEASE_ENV} must be a number of seconds"):
            apply_lock(store, host="ci-1", pid=11).__enter__()


def test_every_table_of_the_store_is_fenced(store: str) -> None:
    """A table nobody listed would be a hole in the fence. Not fenced: the lease itself,
    the schema versions and the digest key (`init` writes those, no apply)."""
    with psycopg.connect(store) as conn:
        tables = conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname IN ('plexica', 'plexica_gitops') AND c.relkind = 'r'"
            " AND NOT EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = c.oid"
            "                 AND g.tgname = 'fence')"
        ).fetchall()
    assert sorted(t for (t,) in tables) == [
        "plexica_gitops.apply_lease",
        "plexica_gitops.env_digest_key",
        "plexica_gitops.schema_version",
    ]


def test_every_write_of_a_stale_epoch_is_refused(store: str) -> None:
    with apply_lock(store, host="ci-1", pid=11, **FAST) as first:
        for table, statement in FENCED_TABLES.items():
            assert _sqlstate(store, first.epoch, statement) is None, table  # the holder writes
        _terminate(store, first.backend_pid)
        with apply_lock(store, host="ci-2", pid=22, **FAST) as second:
            for table, statement in FENCED_TABLES.items():
                assert _sqlstate(store, first.epoch, statement) == "PX001", table
                assert _sqlstate(store, second.epoch, statement) is None, table
                assert _sqlstate(store, None, statement) is None, table  # not an apply's
        # released: nobody's lease runs, so no epoch may write
        assert _sqlstate(store, second.epoch, FENCED_TABLES["plexica.plugins"]) == "PX001"


def test_a_holder_that_stopped_gives_its_lease_up_so_the_next_need_not_wait(store: str) -> None:
    first = apply_lock(store, host="ci-1", pid=11, lease_seconds=30, renew_seconds=RENEW)
    held = first.__enter__()
    _terminate(store, held.backend_pid)
    assert held.lost.wait(timeout=RENEW * 3)
    first.__exit__(None, None, None)  # its work stopped: the lease is given up elsewhere
    started = time.monotonic()
    with apply_lock(store, host="ci-2", pid=22, **FAST) as second:
        assert time.monotonic() - started < 2.0
        assert second.epoch == held.epoch + 1


def test_the_takeover_waits_for_the_old_holders_write_in_flight(store: str) -> None:
    first = apply_lock(store, host="ci-1", pid=11, **FAST)
    held = first.__enter__()
    writer = connect(store, epoch=held.epoch)
    writer.execute("BEGIN")
    writer.execute(FENCED_TABLES["plexica_gitops.topics"])  # holds the lease row's key share
    _terminate(store, held.backend_pid)
    taken = threading.Event()

    def take() -> None:
        with apply_lock(store, host="ci-2", pid=22, **FAST):
            taken.set()

    taker = threading.Thread(target=take)
    taker.start()
    try:
        assert not taken.wait(timeout=LEASE + 1.0)  # the lease ran out, the write still runs
        writer.execute("COMMIT")  # serialised before the takeover: kept
        assert taken.wait(timeout=10)
    finally:
        taker.join(timeout=15)
        writer.close()
        first.__exit__(None, None, None)
    with psycopg.connect(store) as conn:
        assert conn.execute("SELECT name FROM plexica_gitops.topics").fetchall() == [("t",)]


def test_work_still_running_at_the_stop_deadline_is_told_to_stop(store: str) -> None:
    told: list[float] = []
    with apply_lock(store, host="ci-1", pid=11, **FAST) as held:
        held.on_deadline(lambda: told.append(time.monotonic()))
        _terminate(store, held.backend_pid)
        assert held.lost.wait(timeout=RENEW * 3)
        deadline = held.stop_deadline()
        time.sleep(LEASE)
    assert len(told) == 1 and deadline <= told[0] <= deadline + 0.3
    # before the lease can have run out on the server
    assert deadline <= time.monotonic()


def test_a_store_without_the_lease_upgrades_keeping_its_history(postgres_database: str) -> None:
    lease_version = next(v for v, _, ddl in DDL_VERSIONS if "apply_lease (" in ddl)
    with connect(postgres_database) as conn:
        for version, description, ddl in DDL_VERSIONS:
            if version >= lease_version:
                break
            with conn.transaction():
                conn.execute(ddl)  # type: ignore[arg-type]
                conn.execute(
                    "INSERT INTO plexica_gitops.schema_version (version, description)"
                    " VALUES (%s, %s)",
                    (version, description),
                )
        conn.execute(FENCED_TABLES["plexica_gitops.applies"])
        assert store_version(conn) == lease_version - 1
        assert init_store(conn) == list(range(lease_version, LATEST_VERSION + 1))
        assert init_store(conn) == []
        assert conn.execute("SELECT host, epoch FROM plexica_gitops.applies").fetchall() == [
            ("h", None)
        ]
        lease = read_lease(conn)
        assert lease is not None and (lease.epoch, lease.lease_until) == (0, None)
        (key,) = conn.execute("SELECT key FROM plexica_gitops.env_digest_key").fetchone() or ()
        assert len(key) == 32
        grants = conn.execute(
            "SELECT count(*) FROM information_schema.role_table_grants"
            " WHERE table_name = 'env_digest_key' AND grantee = 'PUBLIC'"
        ).fetchone()
        assert grants == (0,)
