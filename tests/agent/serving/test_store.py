"""The SQLite session store: protocol, persistence across instances, concurrency (threads and processes)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lumenrec.agent.session import Session, SessionStore
from lumenrec.agent.serving.store import SQLiteSessionStore
from lumenrec.errors import CheckpointError, ConfigError


def test_protocol_roundtrip_and_persistence(tmp_path):
    db = tmp_path / "sub" / "sessions.db"
    store = SQLiteSessionStore(db)
    assert isinstance(store, SessionStore)
    s = store.new(user_id="u1", history=["a", "b"])
    s.add_turn("user", "gel pens ✍️ 中文", "recommend")
    s.record_shown(["x", "y"])
    store.put(s)
    again = SQLiteSessionStore(db)  # a "restarted" process opens the same file
    got = again.get(s.session_id)
    assert got is not None and got.to_json() == s.to_json()
    assert len(again) == 1 and s.session_id in again
    again.delete(s.session_id)
    assert store.get(s.session_id) is None and again.get("missing") is None
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_refuses_memory_path():
    with pytest.raises(ConfigError, match="path"):
        SQLiteSessionStore(":memory:")


def test_optimistic_versions(tmp_path):
    store = SQLiteSessionStore(tmp_path / "s.db")
    s = Session(session_id="s1")
    assert store.put_if_version(s, 0) and not store.put_if_version(s, 0)  # create only once
    a, va = store.get_versioned("s1")
    b, vb = store.get_versioned("s1")
    a.reject("i1")
    assert store.put_if_version(a, va)
    b.reject("i2")
    assert not store.put_if_version(b, vb)  # stale: someone wrote in between
    assert store.get("s1").rejected == ["i1"]


def test_corrupt_row_is_reported_not_loaded(tmp_path):
    store = SQLiteSessionStore(tmp_path / "s.db")
    store.put(Session(session_id="s1"))
    con = sqlite3.connect(tmp_path / "s.db")
    con.execute("UPDATE sessions SET data = '{broken' WHERE session_id = 's1'")
    con.commit()
    with pytest.raises(CheckpointError, match="s1"):
        store.get("s1")


_WORKER = """
import sys
from lumenrec.agent.serving.store import SQLiteSessionStore
store = SQLiteSessionStore(sys.argv[1])
p = sys.argv[2]
for i in range(20):
    store.update("shared", lambda s: s.reject(f"p{p}-{i}"))
"""


def test_concurrent_updates_from_processes_lose_nothing(tmp_path):
    """Four fresh interpreters (not forks: a fork of a threaded test process may inherit held locks)."""
    db = str(tmp_path / "s.db")
    SQLiteSessionStore(db).put(Session(session_id="shared"))
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, db, str(p)]) for p in range(4)]
    for p in procs:
        assert p.wait(120) == 0
    assert len(SQLiteSessionStore(db).get("shared").rejected) == 80


def test_recommender_conversation_survives_a_new_store_instance(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from server_fakes import make_recommender

    rec = make_recommender(store=SQLiteSessionStore(tmp_path / "s.db"))
    first = rec.chat("c1", "gel pens")
    brand = first.items[0]["brand"]
    rec.chat("c1", f"not {brand}")
    rec2 = make_recommender(store=SQLiteSessionStore(tmp_path / "s.db"))  # "after a restart"
    third = rec2.chat("c1", "something else please")
    s = rec2.store.get("c1")
    assert len(s.turns) == 6 and brand in s.constraints.exclude_brands
    assert all(it["brand"] != brand for it in third.items)
