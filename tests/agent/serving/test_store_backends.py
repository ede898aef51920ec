"""The server's session-store semantics, the same on every backend: memory, SQLite and a REAL
PostgreSQL server (a throw-away cluster started with initdb/pg_ctl; skipped with a reason when the
PostgreSQL binaries are absent).

create / replace / delete (DELETE wins over a turn that read before it), optimistic versions (two
writers of one session: the second gets SessionConflict), TTL and purge, append-only turn rows,
concurrent writers from threads, and recovery from a database outage (PostgreSQL stopped and
started again: StoreError while it is down, the same store object works again after).
"""

from __future__ import annotations

import threading
import time

import pytest

from lumenrec.agent.serving.store import MemorySessionStore, SessionConflict, SQLiteSessionStore
from lumenrec.agent.session import Session
from lumenrec.errors import StoreError


@pytest.fixture(scope="module")
def pg():
    pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not installed")
    from lumenrec.agent.serving.pgtemp import find_pg_bin, temporary_postgres

    if not find_pg_bin("initdb"):
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql): initdb not found")
    with temporary_postgres() as cluster:
        yield cluster


_N = [0]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def make_store(request, tmp_path):
    """A factory of fresh stores of one backend (each call: an empty store, optionally with a TTL)."""
    def make(ttl_s: float = 0.0):
        _N[0] += 1
        if request.param == "memory":
            return MemorySessionStore(ttl_s=ttl_s)
        if request.param == "sqlite":
            return SQLiteSessionStore(tmp_path / f"s{_N[0]}.db", ttl_s=ttl_s)
        from lumenrec.agent.serving.store import PostgresSessionStore

        cluster = request.getfixturevalue("pg")
        store = PostgresSessionStore(cluster.url, ttl_s=ttl_s)
        store._op("reset", lambda con: (con.execute("DELETE FROM sessions"), con.execute("DELETE FROM session_turns")))
        return store

    make.backend = request.param
    return make


def _turns(s: Session, n: int, tag: str = "t") -> Session:
    for i in range(n):
        s.add_turn("user", f"{tag}{i}", "recommend")
    return s


def test_create_replace_delete(make_store):
    store = make_store()
    s = _turns(Session(session_id="a", user_id="u", history=["p1"]), 2)
    assert store.create(s) and not store.create(Session(session_id="a"))  # the id is taken
    got = store.get("a")
    assert got.to_json() == s.to_json()
    _turns(got, 1, "more")
    assert store.replace(got)
    assert [t.text for t in store.get("a").turns] == ["t0", "t1", "more0"]
    stale = store.get("a")
    assert store.delete("a") and not store.delete("a")
    _turns(stale, 1, "late")
    assert store.replace(stale) is False  # DELETE wins: a turn that read before it writes nothing
    assert store.get("a") is None
    assert not store.replace(Session(session_id="never"))
    assert store.create(Session(session_id="a")) and store.create(_turns(Session(session_id="a"), 1), overwrite=True)
    assert [t.text for t in store.get("a").turns] == ["t0"]


def test_two_writers_of_one_session_conflict_instead_of_losing_work(make_store):
    store = make_store()
    store.create(Session(session_id="s"))
    a, b = store.get("s"), store.get("s")
    a.reject("i1")
    assert store.replace(a)
    b.reject("i2")
    with pytest.raises(SessionConflict):
        store.replace(b)
    assert store.get("s").rejected == ["i1"]


def test_sessions_expire_and_are_purged(make_store):
    store = make_store(ttl_s=0.4)
    store.create(Session(session_id="old"))
    time.sleep(0.25)
    store.create(Session(session_id="young"))
    time.sleep(0.25)
    assert store.get("old") is None and store.get("young") is not None
    assert "old" not in store and len(store) == 1
    assert store.create(Session(session_id="old"))  # an expired id is free again
    time.sleep(0.45)
    assert store.purge_expired() >= 1 and len(store) == 0


def test_turns_are_appended_not_rewritten(make_store):
    store = make_store()
    if not hasattr(store, "turn_rows"):
        pytest.skip("the memory store has no rows")
    s = Session(session_id="long")
    store.create(s)
    for i in range(60):
        s = store.get("long")
        s.add_turn("user", f"msg {i}", "recommend")
        s.add_turn("assistant", "x" * 500, "recommend")
        assert store.replace(s)
        assert store.turn_rows("long") == 2 * (i + 1)
    state = store._op("read", lambda con: store._execute(con, "SELECT data FROM sessions WHERE session_id = ?",
                                                           ("long",)).fetchone()[0])
    assert '"turns"' not in state and len(state) < 1000  # 60 turns x 500 chars live in their own rows
    assert [t.text for t in store.get("long").turns][-2:] == ["msg 59", "x" * 500]


def test_concurrent_writers_from_threads_lose_nothing(make_store):
    store = make_store()
    store.create(Session(session_id="shared"))
    n_threads, per = 6, 15

    def work(t: int) -> None:
        for i in range(per):
            store.update("shared", lambda s: s.reject(f"t{t}-{i}"))
            store.create(Session(session_id=f"own-{t}-{i}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(store.get("shared").rejected) == n_threads * per
    assert len(store) == 1 + n_threads * per


def test_postgres_outage_is_a_store_error_and_the_store_recovers(pg):
    from lumenrec.agent.serving.store import PostgresSessionStore

    store = PostgresSessionStore(pg.url, connect_timeout_s=2)
    store.create(Session(session_id="before"))
    pg.stop()
    try:
        with pytest.raises(StoreError):
            store.get("before")
        with pytest.raises(StoreError):
            store.create(Session(session_id="during"))
        assert store.healthy is False
    finally:
        pg.start()
    assert store.get("before") is not None  # the same object reconnects
    assert store.create(Session(session_id="after")) and store.healthy
    assert store.get("during") is None  # nothing was half-written while it was down
