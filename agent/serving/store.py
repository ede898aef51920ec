"""Sessions in SQLite, so that a restarted `lumenrec serve` loses no conversation.

One row per session: ``(session_id, user_id, data JSON, version, updated)``. The database runs in
WAL mode (readers never block the writer) with a busy timeout, and every write is one short
transaction, so several threads *and* processes can share one file:

- :meth:`SQLiteSessionStore.put` replaces the row and bumps ``version`` (last writer wins, like
  :class:`~lumenrec.agent.session.InMemorySessionStore`);
- :meth:`SQLiteSessionStore.update` is the safe read-modify-write: ``BEGIN IMMEDIATE`` takes the
  write lock before reading, so two concurrent updates of one session never lose each other's work;
- :meth:`SQLiteSessionStore.put_if_version` is optimistic concurrency for callers that keep the
  version they read (:meth:`get_versioned`): it refuses (returns False) when someone wrote in between.

A row whose JSON does not parse is reported (CheckpointError naming the session), never half-loaded.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable

from lumenrec.agent.session import Session
from lumenrec.errors import CheckpointError, ConfigError

__all__ = ["SQLiteSessionStore"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    user_id    TEXT,
    data       TEXT NOT NULL,
    version    INTEGER NOT NULL DEFAULT 1,
    updated    REAL NOT NULL
)
"""


class SQLiteSessionStore:
    """The :class:`~lumenrec.agent.session.SessionStore` protocol over one SQLite file.

    `path` is created (with its parent folder) when missing; ``":memory:"`` is refused because a
    per-thread connection would each see a different empty database. `busy_timeout_s` is how long a
    writer waits for another process's write lock before failing.
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        if str(path) in ("", ":memory:"):
            raise ConfigError("path", str(path), "needs a file path (sessions must survive a restart)")
        if not busy_timeout_s > 0:
            raise ConfigError("busy_timeout_s", busy_timeout_s, "must be > 0")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_s = float(busy_timeout_s)
        self._local = threading.local()
        with self._conn() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(_SCHEMA)

    # -- connections: one per thread (sqlite3 connections must not cross threads) ----------------
    def _conn(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            # isolation_level=None: autocommit; transactions are explicit (BEGIN IMMEDIATE) where needed.
            con = sqlite3.connect(str(self.path), timeout=self.busy_timeout_s, isolation_level=None,
                                  check_same_thread=False)
            con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            con.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash
            self._local.con = con
        return con

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    @staticmethod
    def _decode(session_id: str, blob: str) -> Session:
        try:
            return Session.from_json(blob)
        except ValueError as e:  # json.JSONDecodeError is a ValueError too
            raise CheckpointError(f"session {session_id!r} in the session store is corrupt: {e}") from e

    # -- the SessionStore protocol ---------------------------------------------------------------
    def get(self, session_id: str) -> Session | None:
        got = self.get_versioned(session_id)
        return None if got is None else got[0]

    def get_versioned(self, session_id: str) -> tuple[Session, int] | None:
        """The session and its row version (for :meth:`put_if_version`), or None."""
        row = self._conn().execute("SELECT data, version FROM sessions WHERE session_id = ?",
                                   (str(session_id),)).fetchone()
        if row is None:
            return None
        return self._decode(session_id, row[0]), int(row[1])

    def put(self, session: Session) -> None:
        """Insert or replace the session (bumps its version)."""
        self._conn().execute(
            "INSERT INTO sessions (session_id, user_id, data, version, updated) VALUES (?, ?, ?, 1, ?) "
            "ON CONFLICT(session_id) DO UPDATE SET user_id = excluded.user_id, data = excluded.data, "
            "version = sessions.version + 1, updated = excluded.updated",
            (session.session_id, session.user_id, session.to_json(), time.time()))

    def put_if_version(self, session: Session, version: int) -> bool:
        """Write only if the row still has `version` (0: only if it does not exist yet). True if written."""
        con = self._conn()
        if version == 0:
            cur = con.execute("INSERT OR IGNORE INTO sessions (session_id, user_id, data, version, updated) "
                              "VALUES (?, ?, ?, 1, ?)", (session.session_id, session.user_id, session.to_json(), time.time()))
        else:
            cur = con.execute("UPDATE sessions SET user_id = ?, data = ?, version = version + 1, updated = ? "
                              "WHERE session_id = ? AND version = ?",
                              (session.user_id, session.to_json(), time.time(), session.session_id, int(version)))
        return cur.rowcount == 1

    def delete(self, session_id: str) -> None:
        self._conn().execute("DELETE FROM sessions WHERE session_id = ?", (str(session_id),))

    def new(self, user_id: str | None = None, history: list[str] | None = None) -> Session:
        s = Session(user_id=user_id, history=list(history or []))
        self.put(s)
        return s

    def update(self, session_id: str, fn: Callable[[Session], None]) -> Session:
        """Atomically read-modify-write one session across threads and processes; KeyError if absent."""
        con = self._conn()
        con.execute("BEGIN IMMEDIATE")  # take the write lock before reading: no lost update
        try:
            row = con.execute("SELECT data FROM sessions WHERE session_id = ?", (str(session_id),)).fetchone()
            if row is None:
                raise KeyError(f"no session {session_id!r}")
            s = self._decode(session_id, row[0])
            fn(s)
            con.execute("UPDATE sessions SET user_id = ?, data = ?, version = version + 1, updated = ? "
                        "WHERE session_id = ?", (s.user_id, s.to_json(), time.time(), str(session_id)))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return s

    def __len__(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM sessions").fetchone()[0])

    def __contains__(self, session_id: object) -> bool:
        return self._conn().execute("SELECT 1 FROM sessions WHERE session_id = ?", (str(session_id),)).fetchone() is not None

    def ping(self) -> None:
        """Raise if the database cannot be read (the server's /health calls it)."""
        self._conn().execute("SELECT COUNT(*) FROM sessions").fetchone()
