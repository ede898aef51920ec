"""Session stores for `lumenrec serve`: in memory, SQLite (one machine) and PostgreSQL (several replicas).

All three keep the :class:`~lumenrec.agent.session.SessionStore` protocol (``get/put/delete/new``)
and add what a server needs:

- :meth:`create` inserts only when the id is free, :meth:`replace` writes only when the session
  still exists *and* nobody wrote it since it was read (a turn commits with ``replace``: a DELETE that
  lands during the turn wins, and two replicas running turns of one session never lose each other's
  work; the loser gets :class:`SessionConflict`);
- ``ttl_s``: a session nobody touched for that long is gone (reads miss it; expired rows are purged
  at most once a minute);
- turns are **append-only rows** (``session_turns``): a write stores the session's small state
  (history, shown, constraints) and only the turns it has not stored yet, so the 500th turn writes
  one row, not the 499 before it;
- failures are loud: a database error closes the connection (the next call reconnects) and raises
  :class:`~lumenrec.errors.StoreError`; the SQLite store also notices when its file was deleted or
  replaced underneath it and refuses to write into the orphaned file. ``healthy`` is the outcome of
  the last operation, so a liveness probe can report a broken store without touching it.

A row whose JSON does not parse is reported (CheckpointError naming the session), never half-loaded.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable

from lumenrec.agent.session import Session, TurnRecord
from lumenrec.errors import CheckpointError, ConfigError, MissingExtraError, StoreError

__all__ = ["SessionConflict", "MemorySessionStore", "SQLiteSessionStore", "PostgresSessionStore", "open_store"]

log = logging.getLogger(__name__)

_PURGE_EVERY_S = 60.0


class SessionConflict(StoreError):
    """Another writer changed the session between this turn's read and its write (resend the turn)."""


def _state_json(s: Session) -> str:
    d = s.to_dict()
    d.pop("turns", None)
    return json.dumps(d, ensure_ascii=False, sort_keys=True)


def _turn_json(t: TurnRecord) -> str:
    return json.dumps({"role": t.role, "text": t.text, "intent": t.intent, "item_ids": list(t.item_ids),
                       "timestamp": t.timestamp}, ensure_ascii=False)


def _decode(session_id: str, state: str, turns: list[str]) -> Session:
    try:
        d = json.loads(state)
        legacy = d.pop("turns", None) or []  # rows written before turns had their own table
        d["turns"] = list(legacy) + [json.loads(t) for t in turns]
        return Session.from_dict(d)
    except ValueError as e:  # json.JSONDecodeError is a ValueError too
        raise CheckpointError(f"session {session_id!r} in the session store is corrupt: {e}") from e


def _version_of(s: Session) -> int | None:
    return s.__dict__.get("_store_version")


def _set_version(s: Session, v: int) -> Session:
    s.__dict__["_store_version"] = int(v)
    return s


# ------------------------------------------------------------------------------------------ memory
class MemorySessionStore:
    """Sessions in a dict behind a lock (lost on restart), with the server's semantics: create /
    replace, TTL, versions. Copies go in and out, so callers never share state."""

    def __init__(self, *, ttl_s: float = 0.0, clock: Callable[[], float] = time.time) -> None:
        if ttl_s < 0:
            raise ConfigError("ttl_s", ttl_s, "must be >= 0 (0: sessions never expire)")
        self.ttl_s, self.clock = float(ttl_s), clock
        self._data: dict[str, tuple[str, int, float]] = {}  # id -> (json, version, updated)
        self._lock = threading.Lock()
        self.healthy = True

    def _live(self, session_id: str):
        row = self._data.get(session_id)
        if row is not None and self.ttl_s and row[2] < self.clock() - self.ttl_s:
            del self._data[session_id]
            return None
        return row

    def get(self, session_id: str) -> Session | None:
        with self._lock:
            row = self._live(session_id)
        return None if row is None else _set_version(Session.from_json(row[0]), row[1])

    def put(self, session: Session) -> None:
        with self._lock:
            row = self._live(session.session_id)
            v = (row[1] if row else 0) + 1
            self._data[session.session_id] = (session.to_json(), v, self.clock())
        _set_version(session, v)

    def create(self, session: Session, *, overwrite: bool = False) -> bool:
        with self._lock:
            if not overwrite and self._live(session.session_id) is not None:
                return False
            self._data[session.session_id] = (session.to_json(), 1, self.clock())
        _set_version(session, 1)
        return True

    def replace(self, session: Session) -> bool:
        with self._lock:
            row = self._live(session.session_id)
            if row is None:
                return False
            seen = _version_of(session)
            if seen is not None and seen != row[1]:
                raise SessionConflict(f"session {session.session_id!r} was changed by another turn; resend this one")
            self._data[session.session_id] = (session.to_json(), row[1] + 1, self.clock())
        _set_version(session, row[1] + 1)
        return True

    def delete(self, session_id: str) -> bool:
        with self._lock:
            return self._data.pop(session_id, None) is not None

    def new(self, user_id: str | None = None, history: list[str] | None = None) -> Session:
        s = Session(user_id=user_id, history=list(history or []))
        self.create(s)
        return s

    def update(self, session_id: str, fn: Callable[[Session], None]) -> Session:
        with self._lock:
            row = self._live(session_id)
            if row is None:
                raise KeyError(f"no session {session_id!r}")
            s = Session.from_json(row[0])
            fn(s)
            self._data[session_id] = (s.to_json(), row[1] + 1, self.clock())
        return _set_version(s, row[1] + 1)

    def purge_expired(self) -> int:
        with self._lock:
            before = len(self._data)
            for k in list(self._data):
                self._live(k)
            return before - len(self._data)

    def ping(self) -> None:
        return None

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def __contains__(self, session_id: object) -> bool:
        with self._lock:
            return self._live(str(session_id)) is not None


# ------------------------------------------------------------------------------------------- SQL
_TABLES = [
    """CREATE TABLE IF NOT EXISTS sessions (
        session_id TEXT PRIMARY KEY,
        user_id    TEXT,
        data       TEXT NOT NULL,
        version    INTEGER NOT NULL DEFAULT 1,
        updated    DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS session_turns (
        session_id TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        data       TEXT NOT NULL,
        PRIMARY KEY (session_id, seq)
    )""",
]


class _SQLStore:
    """The SQL shared by SQLite and PostgreSQL: a state row per session plus one row per turn.

    Subclasses give ``_connect()``, ``_errors`` (the driver's error classes), ``_begin(con)`` (a write
    transaction that locks before reading) and ``_sql(q)`` (placeholder style)."""

    _errors: tuple[type[BaseException], ...] = ()

    def __init__(self, ttl_s: float) -> None:
        if ttl_s < 0:
            raise ConfigError("ttl_s", ttl_s, "must be >= 0 (0: sessions never expire)")
        self.ttl_s = float(ttl_s)
        self._local = threading.local()
        self._last_purge = 0.0
        self.healthy = True

    # -- plumbing ------------------------------------------------------------------------------------
    def _sql(self, q: str) -> str:
        return q

    def _drop(self) -> None:
        con = getattr(self._local, "con", None)
        self._local.con = None
        if con is not None:
            try:
                con.close()
            except Exception:  # already broken: nothing more to release
                pass

    def _op(self, what: str, fn: Callable[[Any], Any]) -> Any:
        """Run `fn(connection)`; a driver error drops the connection (the next call reconnects) and
        becomes a StoreError; our own exceptions pass through untouched."""
        con = None
        try:
            con = self._acquire()
            out = fn(con)
        except StoreError:
            self.healthy = False
            self._release(con, broken=True)
            raise
        except self._errors as e:
            self._release(con, broken=True)
            self.healthy = False
            log.error("session store: %s failed: %s: %s", what, type(e).__name__, e)
            raise StoreError(f"the session store could not {what}: {type(e).__name__}: {e}"[:400]) from e
        except BaseException:
            self._release(con)
            raise
        self._release(con)
        self.healthy = True
        return out

    # connections: one per thread by default (sqlite3 connections must not cross threads)
    def _acquire(self):
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            self._local.con = con
        return con

    def _release(self, con, broken: bool = False) -> None:
        if broken:
            self._drop()

    def _execute(self, con, q: str, args: tuple = ()):
        return con.execute(self._sql(q), args)

    def _alive_clause(self) -> tuple[str, tuple]:
        if not self.ttl_s:
            return "", ()
        return " AND updated >= ?", (time.time() - self.ttl_s,)

    # -- reads ---------------------------------------------------------------------------------------
    def get(self, session_id: str) -> Session | None:
        alive, args = self._alive_clause()

        def go(con):
            row = self._execute(con, "SELECT data, version FROM sessions WHERE session_id = ?" + alive,
                                (str(session_id), *args)).fetchone()
            if row is None:
                return None
            turns = [r[0] for r in self._execute(con, "SELECT data FROM session_turns WHERE session_id = ? ORDER BY seq",
                                                 (str(session_id),)).fetchall()]
            return row, turns

        got = self._op("read a session", go)
        if got is None:
            return None
        (state, version), turns = got
        return _set_version(_decode(session_id, state, turns), version)

    def get_versioned(self, session_id: str) -> tuple[Session, int] | None:
        s = self.get(session_id)
        return None if s is None else (s, int(_version_of(s)))

    # -- writes --------------------------------------------------------------------------------------
    def _write(self, session: Session, mode: str) -> bool:
        """mode: 'put' (upsert), 'create' (only if absent), 'overwrite' (create, replacing any), 'replace'
        (only if present, at the version read). One transaction; only the turns not yet stored are written."""
        sid = session.session_id
        state, now = _state_json(session), time.time()
        alive, alive_args = self._alive_clause()

        def go(con):
            with self._begin(con):
                row = self._execute(con, "SELECT version FROM sessions WHERE session_id = ?" + alive + self._lock_clause(),
                                    (sid, *alive_args)).fetchone()
                stored = 0
                if row is not None and mode != "overwrite":
                    stored = int(self._execute(con, "SELECT COUNT(*) FROM session_turns WHERE session_id = ?",
                                               (sid,)).fetchone()[0])
                if mode == "create" and row is not None:
                    return None
                if mode == "replace":
                    if row is None:
                        return None
                    seen = _version_of(session)
                    if seen is not None and int(row[0]) != seen:
                        raise SessionConflict(f"session {sid!r} was changed by another turn; resend this one")
                if row is None or mode == "overwrite":  # a new session, or an expired row to reuse
                    self._execute(con, "DELETE FROM sessions WHERE session_id = ?", (sid,))
                    self._execute(con, "DELETE FROM session_turns WHERE session_id = ?", (sid,))
                    self._execute(con, "INSERT INTO sessions (session_id, user_id, data, version, updated) "
                                       "VALUES (?, ?, ?, 1, ?)", (sid, session.user_id, state, now))
                    version, stored = 1, 0
                else:
                    version = int(row[0]) + 1
                    self._execute(con, "UPDATE sessions SET user_id = ?, data = ?, version = ?, updated = ? "
                                       "WHERE session_id = ?", (session.user_id, state, version, now, sid))
                if len(session.turns) < stored:  # the caller dropped turns: keep the rows in step
                    self._execute(con, "DELETE FROM session_turns WHERE session_id = ? AND seq >= ?",
                                  (sid, len(session.turns)))
                    stored = len(session.turns)
                for seq in range(stored, len(session.turns)):
                    self._execute(con, "INSERT INTO session_turns (session_id, seq, data) VALUES (?, ?, ?)",
                                  (sid, seq, _turn_json(session.turns[seq])))
                return version

        version = self._op("write a session", go)
        self._maybe_purge()
        if version is None:
            return False
        _set_version(session, version)
        return True

    def put(self, session: Session) -> None:
        """Insert or update the session (last writer wins; appends the turns not stored yet)."""
        self._write(session, "put")

    def create(self, session: Session, *, overwrite: bool = False) -> bool:
        """Insert a new session; False when the id is taken (``overwrite``: replace whatever is there)."""
        return self._write(session, "overwrite" if overwrite else "create")

    def replace(self, session: Session) -> bool:
        """Update a session that still exists, at the version it was read with; False when it was
        deleted (or expired) meanwhile, SessionConflict when another writer got there first."""
        return self._write(session, "replace")

    def put_if_version(self, session: Session, version: int) -> bool:
        """Write only if the row still has `version` (0: only if it does not exist yet). True if written."""
        if version == 0:
            return self.create(session)
        _set_version(session, version)
        try:
            return self.replace(session)
        except SessionConflict:
            return False

    def delete(self, session_id: str) -> bool:
        def go(con):
            with self._begin(con):
                n = self._execute(con, "DELETE FROM sessions WHERE session_id = ?", (str(session_id),)).rowcount
                self._execute(con, "DELETE FROM session_turns WHERE session_id = ?", (str(session_id),))
            return n > 0

        return bool(self._op("delete a session", go))

    def new(self, user_id: str | None = None, history: list[str] | None = None) -> Session:
        s = Session(user_id=user_id, history=list(history or []))
        self.create(s)
        return s

    def update(self, session_id: str, fn: Callable[[Session], None]) -> Session:
        """Read-modify-write one session until it sticks (optimistic); KeyError if absent."""
        for _ in range(1000):
            s = self.get(session_id)
            if s is None:
                raise KeyError(f"no session {session_id!r}")
            fn(s)
            try:
                if self.replace(s):
                    return s
            except SessionConflict:
                time.sleep(0.001)
                continue
            raise KeyError(f"no session {session_id!r}")
        raise SessionConflict(f"session {session_id!r}: too many concurrent writers")

    def purge_expired(self) -> int:
        """Delete sessions (and their turns) idle for longer than ttl_s; returns how many."""
        if not self.ttl_s:
            return 0
        cutoff = time.time() - self.ttl_s

        def go(con):
            with self._begin(con):
                n = self._execute(con, "DELETE FROM sessions WHERE updated < ?", (cutoff,)).rowcount
                self._execute(con, "DELETE FROM session_turns WHERE session_id NOT IN (SELECT session_id FROM sessions)")
            return n

        self._last_purge = time.time()
        return int(self._op("purge expired sessions", go))

    def _maybe_purge(self) -> None:
        if self.ttl_s and time.time() - self._last_purge > _PURGE_EVERY_S:
            try:
                n = self.purge_expired()
                if n:
                    log.info("session store: purged %d expired session(s)", n)
            except StoreError:
                pass  # reported by the next operation

    def __len__(self) -> int:
        alive, args = self._alive_clause()
        return int(self._op("count sessions", lambda con: self._execute(
            con, "SELECT COUNT(*) FROM sessions WHERE 1 = 1" + alive, args).fetchone()[0]))

    def __contains__(self, session_id: object) -> bool:
        return self.get(str(session_id)) is not None

    def ping(self) -> None:
        """Raise StoreError unless the database can be read and its write lock taken (the server's
        /ready calls it; nothing is written)."""
        def go(con):
            self._execute(con, "SELECT COUNT(*) FROM sessions").fetchone()
            self._write_probe(con)

        self._op("read and lock", go)

    def _write_probe(self, con) -> None:
        return None

    def turn_rows(self, session_id: str) -> int:
        """How many turn rows the session has (tests: turns are appended, never rewritten)."""
        return int(self._op("count turns", lambda con: self._execute(
            con, "SELECT COUNT(*) FROM session_turns WHERE session_id = ?", (str(session_id),)).fetchone()[0]))

    def _lock_clause(self) -> str:
        return ""


class _SQLiteTx:
    """BEGIN IMMEDIATE ... COMMIT/ROLLBACK on an autocommit sqlite3 connection."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con

    def __enter__(self):
        self.con.execute("BEGIN IMMEDIATE")  # take the write lock before reading: no lost update
        return self.con

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.con.execute("COMMIT")
        else:
            try:
                self.con.execute("ROLLBACK")
            except sqlite3.Error:
                pass


class SQLiteSessionStore(_SQLStore):
    """Sessions in one SQLite file (WAL mode: readers never block the writer; a busy timeout for
    writers), shared safely by several threads *and* processes on one machine.

    `path` is created (with its parent folder) when missing; ``":memory:"`` is refused because a
    per-thread connection would each see a different empty database. After that, connections open
    the file read-write *without* creating it: if the file (or its folder) is deleted while the
    server runs, every call fails with StoreError instead of writing into a file nobody will read.
    """

    _errors = (sqlite3.Error,)

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0, ttl_s: float = 0.0) -> None:
        if str(path) in ("", ":memory:"):
            raise ConfigError("path", str(path), "needs a file path (sessions must survive a restart)")
        if not busy_timeout_s > 0:
            raise ConfigError("busy_timeout_s", busy_timeout_s, "must be > 0")
        super().__init__(ttl_s)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_s = float(busy_timeout_s)
        con = sqlite3.connect(str(self.path), timeout=self.busy_timeout_s, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            for t in _TABLES:
                con.execute(t)
        finally:
            con.close()
        self._ident = self._file_id()

    def _file_id(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _acquire(self):
        ident = self._file_id()
        if ident != self._ident:  # deleted or replaced underneath us: never write into the orphan
            self._drop()
            raise StoreError(f"the session database {self.path} was deleted or replaced while the server ran; "
                             "restore it (or restart the server to start a new one)")
        return super()._acquire()

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit; transactions are explicit (BEGIN IMMEDIATE) where needed.
        con = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True, timeout=self.busy_timeout_s,
                              isolation_level=None, check_same_thread=False)
        con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
        con.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash
        return con

    def _begin(self, con) -> _SQLiteTx:
        return _SQLiteTx(con)

    def _write_probe(self, con) -> None:
        con.execute("BEGIN IMMEDIATE")  # waits at most busy_timeout_s for another writer
        con.execute("ROLLBACK")

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        self._drop()


class PostgresSessionStore(_SQLStore):
    """Sessions in PostgreSQL, so that several `lumenrec serve` replicas (on one machine or many)
    share them: a turn committed by one replica is there for the next request, whichever replica
    answers it, and a replica killed mid-turn loses only the turn it had not acknowledged.

    `url` is a libpq connection string (``postgresql://user@host:5432/db``). Each thread keeps one
    autocommit connection; writes run in a transaction that locks the session row (``FOR UPDATE``).
    Requires the ``postgres`` extra (psycopg 3)."""

    def __init__(self, url: str, *, ttl_s: float = 0.0, connect_timeout_s: float = 5.0, pool_size: int = 8) -> None:
        try:
            import psycopg
        except ImportError as e:
            raise MissingExtraError(e.name or "psycopg", "postgres", "the PostgreSQL session store") from e
        if not str(url).startswith(("postgresql://", "postgres://")) and "=" not in str(url):
            raise ConfigError("url", url, "must be a PostgreSQL URL such as postgresql://user@127.0.0.1:5432/lumenrec")
        if int(pool_size) < 1:
            raise ConfigError("pool_size", pool_size, "must be >= 1")
        super().__init__(ttl_s)
        self._psycopg = psycopg
        self._errors = (psycopg.Error,)
        self.url, self.connect_timeout_s = str(url), float(connect_timeout_s)
        # a bounded pool: replicas x threads must stay under the server's max_connections
        self.pool_size = int(pool_size)
        self._idle: list = []
        self._slots = threading.BoundedSemaphore(self.pool_size)
        self._pool_lock = threading.Lock()
        self._op("create its tables", self._create_tables)

    def _acquire(self):
        if not self._slots.acquire(timeout=max(1.0, self.connect_timeout_s * 2)):
            raise StoreError(f"all {self.pool_size} connections to the session store are busy")
        try:
            with self._pool_lock:
                con = self._idle.pop() if self._idle else None
            if con is None or con.closed:
                con = self._connect()
            return con
        except BaseException:
            self._slots.release()
            raise

    def _release(self, con, broken: bool = False) -> None:
        if con is None:
            return
        if broken or con.closed:
            try:
                con.close()
            except Exception:  # already broken
                pass
        else:
            with self._pool_lock:
                self._idle.append(con)
        self._slots.release()

    def _drop(self) -> None:  # close the idle connections (the next call reconnects)
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for con in idle:
            try:
                con.close()
            except Exception:
                pass

    def _create_tables(self, con) -> None:
        with con.transaction():
            con.execute("SELECT pg_advisory_xact_lock(727274)")  # replicas starting together
            for t in _TABLES:
                con.execute(t)

    def _connect(self):
        return self._psycopg.connect(self.url, autocommit=True, connect_timeout=int(max(1, self.connect_timeout_s)))

    def _sql(self, q: str) -> str:
        return q.replace("?", "%s")

    def _begin(self, con):
        return con.transaction()

    def _lock_clause(self) -> str:
        return " FOR UPDATE"

    def close(self) -> None:
        """Close the idle connections."""
        self._drop()


def open_store(spec: str | None, *, ttl_s: float = 0.0, timeout_s: float = 5.0):
    """The store a ``--db`` value names: None -> memory, ``postgresql://...`` -> PostgreSQL, else a
    SQLite file path. `timeout_s`: how long a write waits for a lock or a connection before it fails
    (503) instead of stalling the turn."""
    if not spec:
        return MemorySessionStore(ttl_s=ttl_s)
    if str(spec).startswith(("postgresql://", "postgres://")):
        return PostgresSessionStore(spec, ttl_s=ttl_s, connect_timeout_s=timeout_s)
    return SQLiteSessionStore(spec, ttl_s=ttl_s, busy_timeout_s=timeout_s)


def copy_session(s: Session, new_id: str) -> Session:
    """A deep copy of `s` under another id (no store version: it is a new session)."""
    out = copy.deepcopy(s)
    out.session_id = new_id
    out.__dict__.pop("_store_version", None)
    return out
