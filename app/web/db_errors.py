"""Which database errors are an outage (503 + Retry-After: a retry can succeed) and which are a fault (500).

A DB-API `OperationalError` is a wide class: besides a server that went away it covers statements the
database refuses for good (psycopg's "number of parameters must be between 0 and 65535", SQLite's "too many
SQL variables"). Answering those with 503 + Retry-After sends clients into a retry loop on a request that
can never pass, and hides a bug behind an outage warning. So only these count as transient:

* the connection was lost or never made: SQLAlchemy marked it invalidated, or psycopg failed without a
  SQLSTATE while connecting or talking to the server (the message names the connection or the server);
* Postgres SQLSTATEs of a server that is unreachable, going down or starting, or out of connection slots
  or locks: class 08 (connection exception), 57P01 admin_shutdown, 57P02 crash_shutdown,
  57P03 cannot_connect_now, 57P05 idle_session_timeout, 53300 too_many_connections,
  40001 serialization_failure, 40P01 deadlock_detected, 55P03 lock_not_available;
* SQLite busy or locked (SQLITE_BUSY, SQLITE_LOCKED: another writer holds the file past the busy timeout)
  and a database file that cannot be opened (SQLITE_CANTOPEN: the volume is gone).

Everything else, a statement timeout (57014, it would time out again) included, is a fault.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DBAPIError

_PG_TRANSIENT_STATES = frozenset({"57P01", "57P02", "57P03", "57P05", "53300", "40001", "40P01", "55P03"})
_PG_TRANSIENT_CLASSES = frozenset({"08"})
# sqlite3 error codes (the primary code is the low byte of the extended code).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CANTOPEN = 5, 6, 14
_SQLITE_TRANSIENT_MESSAGES = ("database is locked", "database table is locked", "unable to open database file")
# psycopg without a SQLSTATE: a failed connect or a broken socket says so in its message.
_PG_CONNECTION_WORDS = ("connection", "server closed", "could not connect", "could not receive",
                        "could not send", "terminating", "timeout expired")


def is_transient(exc: DBAPIError) -> bool:
    """True when the database is (for now) unreachable or busy, so that the same request may pass later."""
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        if isinstance(code, int):
            return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CANTOPEN)
        return str(orig).lower().startswith(_SQLITE_TRANSIENT_MESSAGES)
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str) and state:
        return state in _PG_TRANSIENT_STATES or state[:2] in _PG_TRANSIENT_CLASSES
    if state is None and type(orig).__module__.startswith("psycopg"):
        message = str(orig).lower()
        return any(word in message for word in _PG_CONNECTION_WORDS)
    return False
