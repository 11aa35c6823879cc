"""The apply lock: at most one `apply` per store at a time.

It is a SESSION-level PostgreSQL advisory lock (`pg_try_advisory_lock` on a fixed 64-bit
key) held by a dedicated connection for the whole apply. Because it belongs to the
session, it cannot outlive the process: when an apply dies — even by SIGKILL — its
connection closes and the server drops the lock at once. A host that vanishes without
closing its TCP connection is noticed by the server's TCP keepalives, which this module
sets on the lock's session (about a minute), so a dead runner never blocks the next one
for long.

The lock connection's `application_name` is `plexica-gitops apply host=<host> pid=<pid>`,
so whoever finds the lock taken can tell who holds it (`pg_locks` joined with
`pg_stat_activity`), and `journal.mark_interrupted` can tell which recorded apply still has
a live holder.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from plexica_gitops.store.connection import StoreError, connect

# pg_advisory_lock key of the apply lock (int64; "plex" + "aply" in ASCII, next to
# schema.INIT_LOCK_KEY = "plex" + "init").
APPLY_LOCK_KEY = 0x706C6578_61706C79
APPLICATION_NAME_PREFIX = "plexica-gitops apply"
_MAX_APPLICATION_NAME = 63  # bytes: PostgreSQL truncates application_name to NAMEDATALEN - 1
_APPLICATION_NAME = re.compile(r"^plexica-gitops apply host=(?P<host>\S*) pid=(?P<pid>\d+)$")

# Server-side TCP keepalives for the lock's session: a vanished client is detected after
# about idle + interval * count seconds, and its lock released.
_KEEPALIVE_IDLE_S = 30
_KEEPALIVE_INTERVAL_S = 10
_KEEPALIVE_COUNT = 3

ConnectionFactory = Callable[[], psycopg.Connection[Any]]


def lock_application_name(host: str, pid: int) -> str:
    """`plexica-gitops apply host=<host> pid=<pid>`, the host shortened (never the pid) to
    fit PostgreSQL's 63-byte application_name; spaces in the host become '_'."""
    host = "_".join(host.split()) or "unknown"
    tail = f" pid={pid}"
    room = _MAX_APPLICATION_NAME - len(f"{APPLICATION_NAME_PREFIX} host=") - len(tail)
    encoded = host.encode("utf-8")
    if len(encoded) > room:
        host = encoded[:room].decode("utf-8", errors="ignore")
    return f"{APPLICATION_NAME_PREFIX} host={host}{tail}"


def parse_application_name(name: str | None) -> tuple[str, int] | None:
    """(host, pid) from a lock session's application_name; None for other sessions."""
    match = _APPLICATION_NAME.match(name or "")
    return (match["host"], int(match["pid"])) if match else None


@dataclass(frozen=True)
class LockHolder:
    """The session holding the apply lock, as pg_stat_activity shows it. Columns the
    current role may not see (another role's session, without pg_read_all_stats) are
    None."""

    backend_pid: int
    application_name: str | None
    user: str | None
    client_addr: str | None
    backend_start: dt.datetime | None
    xact_start: dt.datetime | None
    now: dt.datetime  # the server's clock when it was looked up

    @property
    def apply(self) -> tuple[str, int] | None:
        """(host, pid) of the plexica-gitops apply holding it; None when another kind of
        session holds the key."""
        return parse_application_name(self.application_name)

    def since(self) -> str:
        if self.backend_start is None:
            return "an unknown time (the session is not visible to this database role)"
        started = self.backend_start.astimezone(dt.UTC)
        return f"{started:%Y-%m-%d %H:%M:%S} UTC ({_ago(self.now - self.backend_start)} ago)"

    def describe(self) -> str:
        client = f", client {self.client_addr}" if self.client_addr else ""
        apply = self.apply
        if apply is not None:
            host, pid = apply
            return (
                f"the apply on host {host}, pid {pid} (PostgreSQL backend "
                f"{self.backend_pid}{client}), connected since {self.since()}"
            )
        app = self.application_name or "(no application_name)"
        return (
            f"a session that is not a plexica-gitops apply: application {app!r}, "
            f"user {self.user or '?'}, PostgreSQL backend {self.backend_pid}{client}, "
            f"connected since {self.since()}"
        )


def _ago(delta: dt.timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


class LockHeldError(StoreError):
    """The apply lock is held by another session (and did not come free in time)."""

    def __init__(self, holder: LockHolder | None, waited_seconds: float) -> None:
        who = holder.describe() if holder else "a session that has since gone"
        waited = f" (waited {waited_seconds:.1f} s)" if waited_seconds > 0 else " (did not wait)"
        message = f"another apply is running: the apply lock is held by {who}{waited}"
        if holder is not None and holder.apply is None:
            hint = (
                "find out what that session is doing; if it is stale, end it with "
                f"`SELECT pg_terminate_backend({holder.backend_pid})`, then run apply again"
            )
        else:
            hint = (
                "wait for it to finish — run apply with `--lock-timeout SECONDS` to wait up "
                "to that long — or check that pipeline; a killed apply releases the lock by "
                "itself as soon as its database connection closes"
            )
        super().__init__(message, hint)
        self.holder = holder
        self.waited_seconds = waited_seconds


class LockLostError(StoreError):
    """The session holding the apply lock is gone (or no longer holds it)."""


_HOLDER = """
SELECT a.pid, a.application_name, a.usename, host(a.client_addr), a.backend_start,
       a.xact_start, now()
  FROM pg_catalog.pg_locks l
  JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted
   AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
   AND l.classid = %(classid)s AND l.objid = %(objid)s AND l.objsubid = 1
"""
_HELD_BY_ME = """
SELECT EXISTS (
  SELECT FROM pg_catalog.pg_locks l
   WHERE l.locktype = 'advisory' AND l.granted AND l.pid = pg_backend_pid()
     AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
     AND l.classid = %(classid)s AND l.objid = %(objid)s AND l.objsubid = 1)
"""
# how pg_locks shows a bigint advisory key: high and low 32 bits, objsubid 1
_KEY_PARTS = {"classid": APPLY_LOCK_KEY >> 32, "objid": APPLY_LOCK_KEY & 0xFFFFFFFF}


def lock_holder(conn: psycopg.Connection[Any]) -> LockHolder | None:
    """Who holds the apply lock of this database now; None when nobody does."""
    row = conn.execute(_HOLDER, _KEY_PARTS).fetchone()
    if row is None:
        return None
    pid, name, user, client, backend_start, xact_start, now = row
    return LockHolder(int(pid), name, user, client, backend_start, xact_start, now)


class ApplyLock:
    """The held apply lock. `conn` is the lock's own autocommit session: closing it
    releases the lock, so use it for nothing that could close or break it."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        host: str,
        pid: int,
        application_name: str,
        acquired_at: dt.datetime,
        waited_seconds: float,
    ) -> None:
        self.conn = conn
        self.host = host
        self.pid = pid
        self.application_name = application_name
        self.acquired_at = acquired_at
        self.waited_seconds = waited_seconds
        self.backend_pid = conn.info.backend_pid

    def verify(self) -> None:
        """Raise LockLostError unless this session still holds the lock (call it between
        apply phases: if the lock connection died, another apply may have started)."""
        try:
            row = self.conn.execute(_HELD_BY_ME, _KEY_PARTS).fetchone()
        except psycopg.Error as error:
            raise LockLostError(
                f"the connection holding the apply lock failed: {' '.join(str(error).split())}",
                "another apply may have started since: stop this one and run plan again",
            ) from None
        if not row or not row[0]:
            raise LockLostError(
                "this apply no longer holds the apply lock",
                "another apply may have started since: stop this one and run plan again",
            )

    def release(self) -> None:
        """Release the lock and close its connection (idempotent)."""
        if self.conn.closed:
            return
        try:
            if not self.conn.broken:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (APPLY_LOCK_KEY,))
        except psycopg.Error:
            pass  # closing the session below releases it anyway
        finally:
            self.conn.close()


def _open(target: str | ConnectionFactory, application_name: str) -> psycopg.Connection[Any]:
    if isinstance(target, str):
        return connect(target, application_name=application_name)
    conn = target()
    if not conn.autocommit:
        conn.rollback()
        conn.autocommit = True
    return conn


def _prepare_session(conn: psycopg.Connection[Any], application_name: str) -> None:
    conn.execute(
        "SELECT set_config('application_name', %s, false),"
        " set_config('idle_in_transaction_session_timeout', '0', false),"
        " set_config('tcp_keepalives_idle', %s, false),"
        " set_config('tcp_keepalives_interval', %s, false),"
        " set_config('tcp_keepalives_count', %s, false)",
        (
            application_name,
            str(_KEEPALIVE_IDLE_S),
            str(_KEEPALIVE_INTERVAL_S),
            str(_KEEPALIVE_COUNT),
        ),
    )
    if conn.info.server_version >= 140000:  # an idle lock session must never time out
        conn.execute("SELECT set_config('idle_session_timeout', '0', false)")


def acquire_apply_lock(
    conn_factory_or_dsn: str | ConnectionFactory,
    *,
    wait_seconds: float = 0,
    host: str,
    pid: int,
    poll_seconds: float = 0.5,
) -> ApplyLock:
    """Take the apply lock on a new dedicated connection, waiting up to `wait_seconds`
    (0: not at all); LockHeldError naming the holder when it stays taken. Prefer the
    `apply_lock` context manager; with this, call `release()` yourself."""
    if wait_seconds < 0:
        raise ValueError("wait_seconds must be 0 or positive")
    name = lock_application_name(host, pid)
    conn = _open(conn_factory_or_dsn, name)
    try:
        _prepare_session(conn, name)
        started = time.monotonic()
        deadline = started + wait_seconds
        delay = min(0.1, poll_seconds)
        last_chance = False
        while True:
            row = conn.execute(
                "SELECT pg_try_advisory_lock(%s), now()", (APPLY_LOCK_KEY,)
            ).fetchone()
            assert row is not None
            if row[0]:
                return ApplyLock(conn, host, pid, name, row[1], time.monotonic() - started)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                holder = lock_holder(conn)
                if holder is None and not last_chance:
                    last_chance = True  # released between the two queries: try once more
                    continue
                raise LockHeldError(holder, time.monotonic() - started if wait_seconds else 0.0)
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, poll_seconds)
    except BaseException:
        conn.close()
        raise


@contextmanager
def apply_lock(
    conn_factory_or_dsn: str | ConnectionFactory,
    *,
    wait_seconds: float = 0,
    host: str,
    pid: int,
    poll_seconds: float = 0.5,
) -> Iterator[ApplyLock]:
    """Hold the apply lock for the `with` block (see `acquire_apply_lock`).

    `conn_factory_or_dsn` is the store's URL, or a callable returning a new connection (it
    is made autocommit, and its application_name is set to the lock's)."""
    lock = acquire_apply_lock(
        conn_factory_or_dsn,
        wait_seconds=wait_seconds,
        host=host,
        pid=pid,
        poll_seconds=poll_seconds,
    )
    try:
        yield lock
    finally:
        lock.release()
