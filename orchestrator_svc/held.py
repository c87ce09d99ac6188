"""The group writer's own PostgreSQL connections, held from one transaction to the next.

Taken from the pool for each group, a transaction paid for round trips before its first write:
the pool's liveness check (BEGIN, SELECT 1) and, for a group that need not wait for the disk,
SET LOCAL synchronous_commit. Counted with strace over 500 one-statement transactions: 5 round
trips each without waiting for the disk, 4 with; on held connections both are 3 (BEGIN, the
statement, COMMIT). Every round trip is a wake-up of another process on a busy machine.

So the writer's thread (and only it) holds two: one as the pool gives it, one whose session
does not wait for the WAL flush. Liveness is checked only after a second unused, where the
pool checked every time; a connection that fails is dropped, and the next group gets a new
one. (A connection lost within that second, before the COMMIT, is ConnectionLost: the group runs
again, once, on a new connection: no COMMIT was sent, so nothing of it was applied.)
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

IDLE_CHECK_S = 1.0


class ConnectionLost(Exception):
    """The connection went away before the transaction's COMMIT was sent: nothing was applied."""


class HeldConnections:
    def __init__(self, engine: Engine, idle_check_s: float = IDLE_CHECK_S):
        self.engine = engine
        self.idle_check_s = idle_check_s
        self._held: dict[bool, tuple[Connection, float]] = {}  # durable -> (connection, last used)

    @contextmanager
    def transaction(self, durable: bool = True):
        conn = self._connection(durable)
        try:
            with conn.begin():
                try:
                    yield conn
                except DBAPIError as exc:
                    if exc.connection_invalidated:
                        raise ConnectionLost(str(exc)) from exc
                    raise
        except BaseException:
            self._drop(durable)  # its state is unknown: the next group starts on a new one
            raise
        self._held[durable] = (conn, time.monotonic())

    def close(self) -> None:
        for durable in list(self._held):
            self._drop(durable)

    def _connection(self, durable: bool) -> Connection:
        held = self._held.get(durable)
        if held is not None:
            conn, used = held
            if time.monotonic() - used < self.idle_check_s or _alive(conn):
                return conn
            self._drop(durable)
        conn = self.engine.connect()  # checked by the pool's pre-ping
        if not durable:
            try:
                conn.exec_driver_sql("SET synchronous_commit TO OFF")
                conn.commit()
            except BaseException:
                conn.invalidate()
                conn.close()
                raise
        self._held[durable] = (conn, time.monotonic())
        return conn

    def _drop(self, durable: bool) -> None:
        conn, _ = self._held.pop(durable)
        # Closed, not returned: a session that skips the WAL flush must not serve anyone else.
        conn.invalidate()
        conn.close()


def _alive(conn: Connection) -> bool:
    try:
        conn.exec_driver_sql("SELECT 1")
        conn.rollback()
        return True
    except DBAPIError:
        return False
