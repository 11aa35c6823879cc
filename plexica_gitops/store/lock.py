"""The apply lock: at most one `apply` drives the platform at a time, whatever PostgreSQL does.

Two layers:

1. A SESSION-level PostgreSQL advisory lock (`pg_try_advisory_lock` on a fixed 64-bit key)
   held by a dedicated connection for the whole apply. It cannot outlive the process: when
   an apply dies (even by SIGKILL) its connection closes and the server drops the lock. A
   host that vanishes without closing its TCP connection is noticed by the server's TCP
   keepalives, set on the lock's session (about a minute).
2. A LEASE with a fencing token, because the advisory lock alone is lost while its holder
   runs on (a PostgreSQL restart drops every session, and with it the lock, while a rolling
   update is half done). The holder of the advisory lock takes the lease (the one row of
   `plexica_gitops.apply_lease`): it waits until the previous holder's lease has run out,
   then moves the lease to the next `epoch`, valid for `LEASE_SECONDS`. A heartbeat renews
   it every `RENEW_SECONDS`, on the lock's own session and only while that session still
   holds the advisory lock, so a holder that lost the lock can never renew. The holder is
   *fenced* — `ApplyLock.lost` is set and its `on_lost` callbacks run — at once when a
   renewal fails, or when none has been acknowledged for four `RENEW_SECONDS`. From then on
   it must start nothing and stop what runs; by `stop_deadline()` (the lease's end minus a
   margin, on this process's clock) everything must have stopped: `on_deadline` runs then
   (the CLI exits the process). Every connection of an apply carries its epoch
   (`connect(..., epoch=)`), and the store's trigger `plexica_gitops.check_fence` refuses any
   write from a session whose epoch no longer holds an unexpired lease.

The lock connection's `application_name` is `plexica-gitops apply host=<host> pid=<pid>`,
so whoever finds the lock taken can tell who holds it (`pg_locks` joined with
`pg_stat_activity`), and `journal.mark_interrupted` can tell which recorded apply still has
a live holder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
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

# The lease (see the module docstring). A takeover waits at most one lease: nobody can
# renew a lease without the advisory lock, which the waiting apply holds.
LEASE_SECONDS = 10.0
RENEW_SECONDS = 1.0
# PLEXICA_APPLY_LEASE_SECONDS sets the lease of an apply (renewed every tenth of it, at most
# every RENEW_SECONDS): shorter, a killed apply holds the next one back for less time; longer,
# a holder survives a longer store outage before it fences itself. The waiting side reads
# the holder's own `lease_until`, so applies with different leases stay safe together.
LEASE_ENV = "PLEXICA_APPLY_LEASE_SECONDS"
_LEASE_RANGE = (2.0, 600.0)
_FENCE_AFTER_RENEWALS = 4  # renewals missed in a row before the holder fences itself
_STOP_MARGIN = 0.2  # of the lease: the holder stops this long before its lease ends
_TAKEOVER_LOCK_TIMEOUT = "5s"  # waiting for the old holder's writes in flight
_LONGEST_LEASE_WAIT = 10 * LEASE_SECONDS  # beyond this a lease row was edited by hand

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

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the apply lock was lost: {reason}",
            "this apply stopped: no new step started, the steps in flight were cancelled. "
            "Another apply may run now: run plan (or apply) again once it is done",
        )
        self.reason = reason


@dataclass(frozen=True)
class LeaseHolder:
    """The lease as the store records it: who had it last and until when."""

    epoch: int
    host: str | None
    pid: int | None
    apply_id: int | None
    heartbeat_at: dt.datetime | None
    lease_until: dt.datetime | None
    now: dt.datetime  # the server's clock when it was read

    @property
    def seconds_left(self) -> float:
        if self.lease_until is None:
            return 0.0
        return max(0.0, (self.lease_until - self.now).total_seconds())

    def describe(self) -> str:
        apply = f"apply {self.apply_id}, " if self.apply_id is not None else ""
        until = f"{self.lease_until.astimezone(dt.UTC):%H:%M:%S} UTC" if self.lease_until else "?"
        return (
            f"the previous apply ({apply}lease epoch {self.epoch}, host {self.host or '?'}, "
            f"pid {self.pid if self.pid is not None else '?'}) lost the apply lock and may "
            f"still be stopping: its lease runs until {until} ({self.seconds_left:.1f} s)"
        )


_HOLDER = """
SELECT a.pid, a.application_name, a.usename, host(a.client_addr), a.backend_start,
       a.xact_start, now()
  FROM pg_catalog.pg_locks l
  JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted
   AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
   AND l.classid = %(classid)s AND l.objid = %(objid)s AND l.objsubid = 1
"""
_HELD_BY_ME_CONDITION = """EXISTS (
  SELECT FROM pg_catalog.pg_locks l
   WHERE l.locktype = 'advisory' AND l.granted AND l.pid = pg_backend_pid()
     AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
     AND l.classid = %(classid)s AND l.objid = %(objid)s AND l.objsubid = 1)"""
_HELD_BY_ME = "SELECT " + _HELD_BY_ME_CONDITION
_LEASE = """
SELECT epoch, host, pid, apply_id, heartbeat_at, lease_until, clock_timestamp()
  FROM plexica_gitops.apply_lease"""
# how pg_locks shows a bigint advisory key: high and low 32 bits, objsubid 1
_KEY_PARTS = {"classid": APPLY_LOCK_KEY >> 32, "objid": APPLY_LOCK_KEY & 0xFFFFFFFF}


def lock_holder(conn: psycopg.Connection[Any]) -> LockHolder | None:
    """Who holds the apply lock of this database now; None when nobody does."""
    row = conn.execute(_HOLDER, _KEY_PARTS).fetchone()
    if row is None:
        return None
    pid, name, user, client, backend_start, xact_start, now = row
    return LockHolder(int(pid), name, user, client, backend_start, xact_start, now)


class _LeaseLost(threading.Event):
    """Set once the lease is lost — and reads as set as soon as no renewal was acknowledged
    in time, before the watchdog has noticed: a process that was frozen (SIGSTOP, a paused
    VM) past its lease must not act on its first instant back."""

    def __init__(self, lock: ApplyLock) -> None:
        super().__init__()
        self._lock = lock

    def is_set(self) -> bool:
        if not self.flag() and self._lock.overdue():
            self._lock.lose(self._lock.overdue_reason())
        return self.flag()

    def flag(self) -> bool:
        """Set already, without looking at the clock."""
        return super().is_set()


class ApplyLock:
    """The held apply lock and lease. `conn` is the lock's own autocommit session: closing
    it releases the lock, so use it for nothing that could close or break it. `epoch` is
    the fencing token; `lost` is set once this apply may drive nothing any more."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        host: str,
        pid: int,
        application_name: str,
        acquired_at: dt.datetime,
        waited_seconds: float,
        *,
        epoch: int = 0,
        renewed: float | None = None,
        lease_seconds: float = LEASE_SECONDS,
        renew_seconds: float = RENEW_SECONDS,
        reconnect: Callable[[], psycopg.Connection[Any]] | None = None,
    ) -> None:
        self.conn = conn
        self.host = host
        self.pid = pid
        self.application_name = application_name
        self.acquired_at = acquired_at
        self.waited_seconds = waited_seconds
        self.backend_pid = conn.info.backend_pid
        self.epoch = epoch
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self._lost = _LeaseLost(self)
        self.lost: threading.Event = self._lost
        self.lost_reason = ""
        self._renewed = time.monotonic() if renewed is None else renewed
        self._reconnect = reconnect
        self._on_lost: list[Callable[[str], None]] = []
        self._on_deadline: Callable[[], None] | None = None
        self._closing = threading.Event()
        self._guard = threading.Lock()
        self._threads: list[threading.Thread] = []

    # --- the lease ------------------------------------------------------------------------

    def start_heartbeat(self) -> None:
        """Renew the lease every `renew_seconds`, and watch that renewals keep coming."""
        for target, name in ((self._heartbeat, "lease-renew"), (self._watch, "lease-watch")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def on_lost(self, callback: Callable[[str], None]) -> None:
        """Run `callback(reason)` once when the lease is lost (at once if it is)."""
        with self._guard:
            if not self._lost.flag():
                self._on_lost.append(callback)
                return
        callback(self.lost_reason)

    def on_deadline(self, callback: Callable[[], None]) -> None:
        """Run `callback` if the lock is still held (not released) at `stop_deadline()`
        after it was lost: work still running then would overlap the next holder."""
        self._on_deadline = callback

    def stop_deadline(self) -> float:
        """The monotonic time by which everything must have stopped once the lease is
        lost: the lease's end as this process can be sure of it, minus a margin."""
        return self._renewed + self.lease_seconds * (1 - _STOP_MARGIN)

    def attach_apply(self, apply_id: int) -> None:
        """Name the apply record in the lease, so a waiting apply can say whose it is."""
        with contextlib.suppress(psycopg.Error):
            self.conn.execute(
                "UPDATE plexica_gitops.apply_lease SET apply_id = %s WHERE epoch = %s",
                (apply_id, self.epoch),
            )

    def _renew(self) -> bool:
        row = self.conn.execute(
            "UPDATE plexica_gitops.apply_lease SET heartbeat_at = clock_timestamp(),"
            " lease_until = clock_timestamp() + make_interval(secs => %(lease)s)"
            " WHERE epoch = %(epoch)s AND lease_until IS NOT NULL AND "
            + _HELD_BY_ME_CONDITION
            + " RETURNING epoch",
            {"lease": self.lease_seconds, "epoch": self.epoch, **_KEY_PARTS},
        ).fetchone()
        return row is not None

    def _heartbeat(self) -> None:
        while not self._closing.wait(self.renew_seconds):
            sent = time.monotonic()
            try:
                renewed = self._renew()
            except psycopg.Error as error:
                reason = " ".join(str(error).split()) or type(error).__name__
                self.lose(f"the connection holding it failed ({reason})")
                return
            if not renewed:
                self.lose("its session no longer holds the lock, or another apply took the lease")
                return
            self._renewed = sent  # the server set the lease from a moment after this one

    def overdue(self) -> bool:
        """No renewal acknowledged for too long: the lease may be running out unseen."""
        return time.monotonic() - self._renewed > self.renew_seconds * _FENCE_AFTER_RENEWALS

    def overdue_reason(self) -> str:
        patience = self.renew_seconds * _FENCE_AFTER_RENEWALS
        return f"no renewal of its lease was acknowledged for {patience:g} s"

    def _watch(self) -> None:
        tick = min(0.1, self.renew_seconds / 2)
        while not self._closing.wait(tick):
            if self.lost.is_set() and time.monotonic() >= self.stop_deadline():
                if self._on_deadline is not None:
                    self._on_deadline()
                return

    def lose(self, reason: str) -> None:
        """Fence this holder (idempotent): `lost` is set and the callbacks run."""
        with self._guard:
            if self._lost.flag():
                return
            self.lost_reason = reason
            self.lost.set()
            callbacks, self._on_lost = self._on_lost, []
        for callback in callbacks:
            with contextlib.suppress(Exception):  # each must run, whatever another does
                callback(reason)

    def verify(self) -> None:
        """Raise LockLostError unless this apply still holds the lock and its lease (call
        it between apply phases: if the lock connection died, another apply may start)."""
        if self.lost.is_set():
            raise LockLostError(self.lost_reason)
        try:
            row = self.conn.execute(_HELD_BY_ME, _KEY_PARTS).fetchone()
        except psycopg.Error as error:
            self.lose(f"the connection holding it failed ({' '.join(str(error).split())})")
            raise LockLostError(self.lost_reason) from None
        if not row or not row[0]:
            self.lose("its session no longer holds the lock")
            raise LockLostError(self.lost_reason)

    def release(self) -> None:
        """Give up the lease, release the lock and close its connection (idempotent). Call
        it once every step has stopped: a lost lease is given up on a new connection, so
        a waiting apply need not wait it out."""
        if self._closing.is_set():
            return
        self._closing.set()
        try:
            if not self.lost.is_set() and not self.conn.broken:
                self.conn.execute(_GIVE_UP, (self.epoch,))
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (APPLY_LOCK_KEY,))
            else:
                self._give_up_elsewhere()
        except psycopg.Error:
            pass  # closing the session below releases the lock; the lease runs out alone
        finally:
            self.conn.close()

    def _give_up_elsewhere(self) -> None:
        if self._reconnect is None:
            return
        with contextlib.suppress(psycopg.Error, StoreError), self._reconnect() as conn:
            conn.execute(_GIVE_UP, (self.epoch,))


_GIVE_UP = (
    "UPDATE plexica_gitops.apply_lease SET lease_until = NULL, heartbeat_at = clock_timestamp()"
    " WHERE epoch = %s"
)


def read_lease(conn: psycopg.Connection[Any]) -> LeaseHolder | None:
    """The lease row; None on a store without one (older than schema version 3)."""
    try:
        with conn.transaction():
            row = conn.execute(_LEASE + ";").fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return LeaseHolder(*row) if row else None


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


def lease_from_environment(environ: Mapping[str, str]) -> tuple[float, float]:
    """(lease, renewal interval) in seconds: PLEXICA_APPLY_LEASE_SECONDS, else the defaults."""
    text = environ.get(LEASE_ENV, "").strip()
    if not text:
        return LEASE_SECONDS, RENEW_SECONDS
    low, high = _LEASE_RANGE
    try:
        lease = float(text)
    except ValueError:
        lease = -1.0
    if not low <= lease <= high:  # also NaN
        raise StoreError(
            f"{LEASE_ENV} must be a number of seconds from {low:g} to {high:g}",
            f"Unset it for the default ({LEASE_SECONDS:g} s), or set e.g. {LEASE_ENV}=30.",
        )
    return lease, min(RENEW_SECONDS, lease / 10)


def acquire_apply_lock(
    conn_factory_or_dsn: str | ConnectionFactory,
    *,
    wait_seconds: float = 0,
    host: str,
    pid: int,
    poll_seconds: float = 0.5,
    lease_seconds: float | None = None,
    renew_seconds: float | None = None,
    on_wait: Callable[[LeaseHolder], None] | None = None,
) -> ApplyLock:
    """Take the apply lock on a new dedicated connection, waiting up to `wait_seconds`
    (0: not at all) for the advisory lock — LockHeldError naming the holder when it stays
    taken — then the lease, waiting out (whatever `wait_seconds` says: at most one lease)
    a previous holder that lost the lock; `on_wait` is told whom it waits for. The
    heartbeat runs from then on. The lease is `lease_seconds`, else PLEXICA_APPLY_LEASE_SECONDS,
    else LEASE_SECONDS. Prefer the `apply_lock` context manager; with this, call
    `release()` yourself."""
    if wait_seconds < 0:
        raise ValueError("wait_seconds must be 0 or positive")
    if lease_seconds is None:  # the operator's setting, with a renewal interval to match
        lease_seconds, default_renew = lease_from_environment(os.environ)
        renew_seconds = default_renew if renew_seconds is None else renew_seconds
    renew_seconds = RENEW_SECONDS if renew_seconds is None else renew_seconds
    if renew_seconds * _FENCE_AFTER_RENEWALS >= lease_seconds * (1 - _STOP_MARGIN):
        raise ValueError("the lease must outlast several renewals")
    name = lock_application_name(host, pid)
    conn = _open(conn_factory_or_dsn, name)
    try:
        _prepare_session(conn, name)
        started = time.monotonic()
        acquired_at = _advisory_lock(conn, started + wait_seconds, poll_seconds, wait_seconds)
        epoch, renewed = _take_lease(conn, host, pid, lease_seconds, poll_seconds, on_wait)
        lock = ApplyLock(
            conn,
            host,
            pid,
            name,
            acquired_at,
            time.monotonic() - started,
            epoch=epoch,
            renewed=renewed,
            lease_seconds=lease_seconds,
            renew_seconds=renew_seconds,
            reconnect=lambda: _open(conn_factory_or_dsn, name),
        )
    except BaseException:
        conn.close()
        raise
    lock.start_heartbeat()
    return lock


def _advisory_lock(
    conn: psycopg.Connection[Any], deadline: float, poll_seconds: float, wait_seconds: float
) -> dt.datetime:
    started = time.monotonic()
    delay = min(0.1, poll_seconds)
    last_chance = False
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s), now()", (APPLY_LOCK_KEY,)).fetchone()
        assert row is not None
        if row[0]:
            return row[1]  # type: ignore[no-any-return]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            holder = lock_holder(conn)
            if holder is None and not last_chance:
                last_chance = True  # released between the two queries: try once more
                continue
            raise LockHeldError(holder, time.monotonic() - started if wait_seconds else 0.0)
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, poll_seconds)


def _take_lease(
    conn: psycopg.Connection[Any],
    host: str,
    pid: int,
    lease_seconds: float,
    poll_seconds: float,
    on_wait: Callable[[LeaseHolder], None] | None,
) -> tuple[int, float]:
    """Move the lease to the next epoch once nobody's lease runs; (epoch, the monotonic
    time the lease was granted from)."""
    told = False
    while True:
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL lock_timeout = '{_TAKEOVER_LOCK_TIMEOUT}'")
                row = conn.execute(_LEASE + " FOR UPDATE").fetchone()
                if row is None:
                    raise StoreError(
                        "the store has no apply lease row", "run `plexica-gitops init`"
                    )
                holder = LeaseHolder(*row)
                if holder.seconds_left <= 0:
                    sent = time.monotonic()
                    taken = conn.execute(
                        "UPDATE plexica_gitops.apply_lease SET epoch = epoch + 1, host = %s,"
                        " pid = %s, apply_id = NULL, acquired_at = clock_timestamp(),"
                        " heartbeat_at = clock_timestamp(),"
                        " lease_until = clock_timestamp() + make_interval(secs => %s)"
                        " RETURNING epoch",
                        (host, pid, lease_seconds),
                    ).fetchone()
                    assert taken is not None
                    return int(taken[0]), sent
        except psycopg.errors.LockNotAvailable:
            continue  # the previous holder's writes in flight: they end, or time out
        except psycopg.errors.UndefinedTable:
            raise StoreError(
                "the store has no apply lease (its schema is older than this plexica-gitops)",
                "run `plexica-gitops init` to upgrade the store",
            ) from None
        if holder.seconds_left > _LONGEST_LEASE_WAIT:
            raise StoreError(
                f"{holder.describe()}, longer than any lease this plexica-gitops grants",
                "if no apply is running, clear it: UPDATE plexica_gitops.apply_lease SET "
                "lease_until = NULL",
            )
        if on_wait is not None and not told:
            on_wait(holder)
            told = True
        time.sleep(min(poll_seconds, max(0.05, holder.seconds_left)))


@contextmanager
def apply_lock(
    conn_factory_or_dsn: str | ConnectionFactory,
    *,
    wait_seconds: float = 0,
    host: str,
    pid: int,
    poll_seconds: float = 0.5,
    lease_seconds: float | None = None,
    renew_seconds: float | None = None,
    on_wait: Callable[[LeaseHolder], None] | None = None,
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
        lease_seconds=lease_seconds,
        renew_seconds=renew_seconds,
        on_wait=on_wait,
    )
    try:
        yield lock
    finally:
        lock.release()
