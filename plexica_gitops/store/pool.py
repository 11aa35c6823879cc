"""The apply's connection pool: a bounded set of autocommit connections to the store that
the worker threads share, each opened with the step's timeouts and the apply's fencing
token (its lease epoch, lock.py), so a stale apply's writes are refused."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Any

import psycopg

from plexica_gitops.store.connection import connect

STEP_APPLICATION_NAME = "plexica-gitops apply"


class ConnectionPool:
    """At most `size` autocommit connections to the store, opened on first use and reused
    by the apply's worker threads. A connection that broke is dropped, not reused."""

    def __init__(
        self,
        dsn: str,
        size: int,
        *,
        lock_timeout_ms: int = 5000,
        statement_timeout_ms: int = 60000,
        epoch: int | None = None,
    ) -> None:
        self.dsn = dsn
        self.epoch = epoch  # the apply's fencing token: its writes are refused once it is stale
        self.lock_timeout_ms = lock_timeout_ms
        self.statement_timeout_ms = statement_timeout_ms
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._all: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection for one use (a step's statements); back to the pool afterwards,
        unless it broke: then it is closed and the next use opens a fresh one."""
        with self._slots:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._open()
                with self._lock:
                    self._all.append(conn)
            try:
                yield conn
            finally:
                self._give_back(conn)

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        if not (conn.broken or conn.closed):
            try:
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.rollback()
                self._idle.put(conn)
                return
            except psycopg.Error:
                pass  # it broke as it was rolled back: discarded below
        conn.close()
        with self._lock:
            self._all.remove(conn)

    @property
    def open_connections(self) -> int:
        """How many connections the pool holds open (in use or idle)."""
        with self._lock:
            return len(self._all)

    def _open(self) -> psycopg.Connection[Any]:
        """A step's catalog writes are short: bounded, so a lock held elsewhere or a stuck
        server fails the step instead of hanging the apply."""
        conn = connect(self.dsn, application_name=STEP_APPLICATION_NAME, epoch=self.epoch)
        conn.execute(
            "SELECT set_config('lock_timeout', %s, false),"
            " set_config('statement_timeout', %s, false)",
            (f"{self.lock_timeout_ms}ms", f"{self.statement_timeout_ms}ms"),
        )
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
