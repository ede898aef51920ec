"""Scale past one process: two `lumenrec serve` replicas share one PostgreSQL session store and one
Chroma server; shoppers alternate between them; one replica is SIGKILLed mid-load and its requests
are retried on the other. No acknowledged turn is lost: every turn that got a 200 is in its session.

Real parts only: a throw-away PostgreSQL cluster (initdb/pg_ctl), a `chroma run` server, two serve
subprocesses. Skipped with a reason when PostgreSQL or the chroma CLI is absent."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not installed")
import httpx  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from server_fakes import HashEncoder, ServeProcess, free_port, tiny_catalog, wait_http  # noqa: E402


@pytest.fixture
def chroma(tmp_path):
    exe = shutil.which("chroma")
    if exe is None:
        pytest.skip("the `chroma` CLI (installed with chromadb) is not on PATH")
    port = free_port()
    proc = subprocess.Popen([exe, "run", "--path", str(tmp_path / "chroma"), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=open(tmp_path / "chroma.log", "wb"), stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", 60, proc)
        from lumenrec.retriever.index import IndexConfig, ItemIndex

        cat, enc = tiny_catalog(), HashEncoder()
        ItemIndex(IndexConfig(backend="http", host="127.0.0.1", port=port, collection_prefix="rep")).build(
            cat, enc.encode([it.text() for it in cat]), "hash-v1", progress=False)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def pg():
    from lumenrec.agent.serving.pgtemp import find_pg_bin, temporary_postgres

    if not find_pg_bin("initdb"):
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql): initdb not found")
    with temporary_postgres() as cluster:
        yield cluster


class Shopper(threading.Thread):
    """One conversation, turn after turn, alternating replicas; a failed request is retried on the other."""

    def __init__(self, n: int, bases: list[str], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.n, self.bases, self.stop = n, bases, stop
        self.sid = f"shopper-{n}"
        self.acked: list[str] = []
        self.failed_attempts = 0
        self.rng = random.Random(n)

    def run(self) -> None:
        with httpx.Client(timeout=10) as c:
            for attempt in range(len(self.bases) * 2):
                try:
                    r = c.post(f"{self.bases[attempt % len(self.bases)]}/v1/sessions", json={"session_id": self.sid})
                    if r.status_code in (201, 409):
                        break
                except httpx.HTTPError:
                    self.failed_attempts += 1
            i = 0
            while not self.stop.is_set():
                text = f"{self.rng.choice(['gel pens', 'sticky notes', 'binders', 'ink'])} turn {i}"
                for attempt in range(4):
                    base = self.bases[(i + attempt) % len(self.bases)]
                    try:
                        r = c.post(f"{base}/v1/sessions/{self.sid}/messages", json={"message": text})
                    except httpx.HTTPError:
                        self.failed_attempts += 1
                        continue
                    if r.status_code == 200:
                        self.acked.append(text)
                        break
                    self.failed_attempts += 1
                    time.sleep(0.05)
                i += 1


@pytest.mark.integration
def test_two_replicas_share_postgres_and_one_dies_mid_load(tmp_path, pg, chroma):
    env = {"LUMENREC_TEST_CHROMA": chroma, "LUMENREC_TEST_SLOW": "0.01"}
    a = ServeProcess(tmp_path, db=pg.url, env=env, factory="server_fakes:make_chroma_recommender").__enter__()
    b = ServeProcess(tmp_path, db=pg.url, env=env, factory="server_fakes:make_chroma_recommender").__enter__()
    try:
        stop = threading.Event()
        shoppers = [Shopper(n, [a.base, b.base], stop) for n in range(6)]
        for s in shoppers:
            s.start()
        time.sleep(3.0)
        before_kill = sum(len(s.acked) for s in shoppers)
        os.kill(a.pid, signal.SIGKILL)  # mid-load: requests are in flight on it
        a.proc.wait(10)
        time.sleep(3.0)
        stop.set()
        for s in shoppers:
            s.join(30)
        acked = sum(len(s.acked) for s in shoppers)
        assert before_kill >= 12 and acked > before_kill, (before_kill, acked)
        lost = []
        for s in shoppers:
            r = httpx.get(f"{b.base}/v1/sessions/{s.sid}", timeout=10)
            assert r.status_code == 200, r.text
            stored = [t["text"] for t in r.json()["turns"] if t["role"] == "user"]
            for text in s.acked:
                if text not in stored:
                    lost.append((s.sid, text))
            # in order: the acknowledged turns appear in the order they were acknowledged
            positions = [stored.index(t) for t in s.acked if t in stored]
            assert positions == sorted(positions), s.sid
        print(f"\nreplicas: {acked} acknowledged turns ({before_kill} before the kill), "
              f"{sum(s.failed_attempts for s in shoppers)} failed attempts retried, {len(lost)} lost")
        assert lost == [], lost[:5]
        # the survivor still serves the items through the shared Chroma server
        assert httpx.get(f"{b.base}/ready", timeout=10).status_code == 200
    finally:
        for p in (a, b):
            p.stop()
