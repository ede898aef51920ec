"""Fault injection: the LLM endpoint refuses / times out / dies mid-answer, the Chroma server stops and
comes back, and SIGKILL lands mid-conversation, mid index build, mid checkpoint write and mid inpainting.

Each fault uses the REAL part where it matters: a real TCP endpoint that misbehaves (server_fakes'
FakeOpenAIServer), a real `chroma run` server, a real `lumenrec serve` subprocess, real child
processes killed with SIGKILL. What must hold: a reply still arrives (marked as a fallback), errors
are clear 503s that heal by themselves, and after a restart the work resumes and no corrupt
artefact is ever loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from server_fakes import FakeOpenAIServer, HashEncoder, free_port, local_client, make_recommender, tiny_catalog, wait_http  # noqa: E402

from lumenrec.agent.recommender import RecommenderConfig  # noqa: E402
from lumenrec.agent.serving.server import IndexRetriever, ServeConfig, create_app  # noqa: E402
from lumenrec.agent.serving.store import SQLiteSessionStore  # noqa: E402
from lumenrec.errors import LLMError  # noqa: E402

REPO = HERE.parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["HF_HUB_OFFLINE"] = "1"
    return env


# ------------------------------------------------------------------------------------ LLM faults
def _llm_client(base_url: str, tmp_path) -> tuple[TestClient, object]:
    pytest.importorskip("langchain_openai")
    cfg = RecommenderConfig(router="llm", llm_base_url=base_url, llm_model="fake", llm_timeout_s=1.5)
    rec = make_recommender(store=SQLiteSessionStore(tmp_path / "s.db"), config=cfg)
    return local_client(create_app(rec, ServeConfig(rate_limit_per_min=0, ready_cache_s=0))), rec


def _turn_with_fallback(client: TestClient, rec) -> dict:
    sid = client.post("/v1/sessions", json={}).json()["session_id"]
    t0 = time.perf_counter()
    r = client.post(f"/v1/sessions/{sid}/messages", json={"message": "I need gel pens", "trace": True})
    took = time.perf_counter() - t0
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fallback_used"] is True, "the offline router must answer and the reply say so"
    assert body["intent"] == "recommend" and body["items"] and all(it["id"] in rec.catalog for it in body["items"])
    assert any(s["name"] == "route_llm_failed" for s in body["trace"])
    assert took < 15, f"the fallback took {took:.1f} s"
    return body


def test_llm_endpoint_refuses_connections(tmp_path):
    client, rec = _llm_client(f"http://127.0.0.1:{free_port()}/v1", tmp_path)  # nothing listens there
    _turn_with_fallback(client, rec)
    h = client.get("/ready")  # the LLM's loss degrades the service, it does not take it down
    assert h.status_code == 200 and h.json()["status"] == "degraded" and h.json()["checks"]["llm"].startswith("error")


def test_llm_endpoint_times_out(tmp_path):
    with FakeOpenAIServer("timeout", delay_s=6.0) as fake:
        client, rec = _llm_client(fake.base_url, tmp_path)
        body = _turn_with_fallback(client, rec)
        assert fake.requests >= 1
    assert "1.5 s" in json.dumps(body["trace"])  # the trace names the timeout


@pytest.mark.parametrize("mode", ["die", "error"])
def test_llm_endpoint_dies_mid_answer_or_errors(tmp_path, mode):
    with FakeOpenAIServer(mode) as fake:
        client, rec = _llm_client(fake.base_url, tmp_path)
        _turn_with_fallback(client, rec)
        assert fake.requests >= 1
        # the SSE endpoint too: the stream completes with a reply event flagged as a fallback
        sid = client.post("/v1/sessions", json={}).json()["session_id"]
        r = client.post(f"/v1/sessions/{sid}/messages:stream", json={"message": "sticky notes"})
        reply = [json.loads(b.split("data: ", 1)[1]) for b in r.text.split("\n\n") if b.startswith("event: reply")]
        assert reply and reply[0]["fallback_used"] and reply[0]["items"]


def test_llm_stream_dying_mid_stream_is_a_clear_llm_error_and_narratives_fall_back():
    from lumenrec.agent.llm.backends import OpenAILLM
    from lumenrec.agent.narrative import NarrativeGenerator

    cat = tiny_catalog()
    with FakeOpenAIServer("die") as fake:
        llm = OpenAILLM(fake.base_url, "fake", timeout_s=3.0, max_retries=0)
        got = []
        with pytest.raises(LLMError):
            for piece in llm.stream([{"role": "user", "content": "hi"}], 20):
                got.append(piece)
        gen = NarrativeGenerator(llm, cat)
        res = gen.generate("endorsement", cat.get("p2"), [cat.get("p1")])
        assert res.generator == "offline" and res.text and "LLMError" in (res.fallback_reason or "")


# --------------------------------------------------------------------------------- Chroma faults
def _start_chroma(path: Path, port: int) -> subprocess.Popen:
    exe = shutil.which("chroma")
    if exe is None:
        pytest.skip("the `chroma` CLI (installed with chromadb) is not on PATH")
    log = open(path.parent / f"chroma-{port}.log", "ab")
    proc = subprocess.Popen([exe, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", 60, proc)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


@pytest.mark.integration
def test_chroma_server_stops_and_comes_back_without_restarting_lumenrec(tmp_path):
    from lumenrec.agent.recommender import Recommender
    from lumenrec.retriever.index import IndexConfig, ItemIndex

    port, data = free_port(), tmp_path / "chroma"
    proc = _start_chroma(data, port)
    try:
        cat, enc = tiny_catalog(), HashEncoder()
        index = ItemIndex(IndexConfig(backend="http", host="127.0.0.1", port=port, collection_prefix="rel"))
        index.build(cat, enc.encode([it.text() for it in cat]), "hash-v1", progress=False)
        rec = Recommender(cat, IndexRetriever(cat, index, enc), store=SQLiteSessionStore(tmp_path / "s.db"))
        client = local_client(create_app(rec, ServeConfig(rate_limit_per_min=0, health_timeout_s=20, ready_cache_s=0)))
        sid = client.post("/v1/sessions", json={}).json()["session_id"]
        ok = client.post(f"/v1/sessions/{sid}/messages", json={"message": "gel pen"})
        assert ok.status_code == 200 and {"p2", "p3"} & {it["id"] for it in ok.json()["items"]}
        assert client.get("/ready").status_code == 200

        _stop(proc)  # the Chroma server dies
        down = client.post(f"/v1/sessions/{sid}/messages", json={"message": "sticky notes"})
        assert down.status_code == 503, down.text
        err = down.json()["error"]
        assert err["type"] == "index_unavailable" and "item index" in err["message"] and down.headers["Retry-After"]
        h = client.get("/ready")
        assert h.status_code == 503 and h.json()["checks"]["retriever"].startswith("error")
        assert client.get("/health").status_code == 200  # alive: it answers 503s and heals by itself

        proc = _start_chroma(data, port)  # ... and comes back, same data, same port
        deadline = time.time() + 30
        while True:
            back = client.post(f"/v1/sessions/{sid}/messages", json={"message": "sticky notes"})
            if back.status_code == 200 or time.time() > deadline:
                break
            time.sleep(0.5)
        assert back.status_code == 200, back.text
        assert {"n1", "n2"} <= {it["id"] for it in back.json()["items"]}
        assert client.get("/ready").status_code == 200
        # the failed turn did not half-write the session: 2 turns (ok + back) = 4 records
        assert len(client.get(f"/v1/sessions/{sid}").json()["turns"]) == 4
    finally:
        _stop(proc)


# ---------------------------------------------------------------------------- SIGKILL of serve
def _start_serve(db: Path, port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "lumenrec", "serve", "--factory", "server_fakes:make_recommender",
                             "--db", str(db), "--port", str(port), "--rate-limit", "0"],
                            env=_env(), stdout=open(log, "ab"), stderr=subprocess.STDOUT, cwd=str(tmp_cwd(db)))
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 90, proc)
    except Exception:
        proc.kill()
        raise RuntimeError(f"serve did not start: {log.read_text()[-2000:]}")
    return proc


def tmp_cwd(db: Path) -> Path:
    return db.parent


@pytest.mark.integration
def test_serve_sigkilled_mid_conversation_continues_from_sqlite(tmp_path):
    db, port, log = tmp_path / "sessions.db", free_port(), tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    proc = _start_serve(db, port, log)
    try:
        sid = httpx.post(f"{base}/v1/sessions", json={"history": ["p1"]}).json()["session_id"]
        first = httpx.post(f"{base}/v1/sessions/{sid}/messages", json={"message": "I need gel pens"}).json()
        brand = first["items"][0]["brand"]
        second = httpx.post(f"{base}/v1/sessions/{sid}/messages", json={"message": f"not {brand} again"}).json()
        assert all(it["brand"] != brand for it in second["items"])
        # a third turn is in flight when the process is SIGKILLed
        errors: list[Exception] = []

        def inflight():
            try:
                httpx.post(f"{base}/v1/sessions/{sid}/messages", json={"message": "cheaper ones"}, timeout=10)
            except Exception as e:  # the connection dies with the server
                errors.append(e)

        th = threading.Thread(target=inflight)
        th.start()
        time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        th.join(15)
        assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"

        proc = _start_serve(db, port, log)  # restart on the same database
        s = httpx.get(f"{base}/v1/sessions/{sid}").json()
        assert s["history"] == ["p1"] and len(s["turns"]) in (4, 6)  # the in-flight turn is all or nothing
        assert brand in s["constraints"]["exclude_brands"]
        nxt = httpx.post(f"{base}/v1/sessions/{sid}/messages", json={"message": "show me more pens"})
        assert nxt.status_code == 200 and all(it["brand"] != brand for it in nxt.json()["items"])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


# ----------------------------------------------------------------------- SIGKILL of artefact writers
def _run_child_and_kill(code: str, marker: str, tmp_path: Path, extra_delay_s: float = 0.0) -> str:
    """Run `code` in a fresh interpreter, SIGKILL it once it printed `marker`; returns its output."""
    out = tmp_path / "child.out"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=_env(),
                            stdout=open(out, "wb"), stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while marker not in out.read_text(errors="replace"):
        if proc.poll() is not None:
            raise AssertionError(f"child exited early ({proc.returncode}): {out.read_text()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"child never printed {marker!r}")
        time.sleep(0.05)
    time.sleep(extra_delay_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    return out.read_text(errors="replace")


@pytest.mark.integration
def test_sigkill_during_index_build_keeps_the_old_index_and_rebuild_resumes(tmp_path):
    from lumenrec.retriever.index import IndexConfig, ItemIndex

    path = tmp_path / "idx"
    _run_child_and_kill(f"""
        import sys, time
        sys.path.insert(0, {str(HERE)!r})
        import numpy as np
        from lumenrec.retriever import index as ix
        from server_fakes import tiny_catalog
        cat = tiny_catalog()
        idx = ix.ItemIndex(ix.IndexConfig(backend="persistent", path={str(path)!r}, collection_prefix="rel", batch_size=2))
        idx.build(cat, np.eye(len(cat), 16, dtype=np.float32) + 0.01, "model-v1", progress=False)
        real = ix._write_batch
        def slow(*a, **k):
            real(*a, **k)
            print("BATCH", flush=True)
            time.sleep(1.0)
        ix._write_batch = slow
        idx.build(cat, np.eye(len(cat), 16, dtype=np.float32)[::-1].copy() + 0.01, "model-v2", progress=False)
        print("DONE", flush=True)
    """, "BATCH", tmp_path)
    idx = ItemIndex(IndexConfig(backend="persistent", path=str(path), collection_prefix="rel"))
    info = idx.info()
    assert info["model_version"] == "model-v1" and info["count"] == 10  # the old index still serves, whole
    ids, _ = idx.query(np.eye(10, 16, dtype=np.float32)[3] + 0.01, 1)
    assert ids == [tiny_catalog()[3].id]
    # the restart rebuilds and switches the alias
    idx.build(tiny_catalog(), np.eye(10, 16, dtype=np.float32)[::-1].copy() + 0.01, "model-v2", progress=False)
    assert idx.info()["model_version"] == "model-v2" and idx.info()["count"] == 10


@pytest.mark.integration
def test_sigkill_during_checkpoint_writes_never_leaves_a_corrupt_checkpoint(tmp_path):
    from safetensors.torch import load_file

    from lumenrec.retriever.checkpoint import read_json, verify_checkpoint

    ck = tmp_path / "ckpt"
    for delay in (0.0, 0.13, 0.37):  # land the kill at different points of a write
        _run_child_and_kill(f"""
            import torch
            from lumenrec.retriever.checkpoint import save_checkpoint
            i = 0
            while True:
                w = torch.full((512, 512), float(i))  # 1 MiB: a write takes a while
                save_checkpoint({str(ck)!r}, model_state={{"w": w}}, config={{"step": i}}, item_ids=["a"],
                                resume_tensors={{"model.w": w}}, resume_info={{"step": i}})
                print("SAVED", i, flush=True)
                i += 1
        """, "SAVED", tmp_path, extra_delay_s=delay)
        # a kill between moving the old directory aside and moving the new one in is undone by
        # verify_checkpoint (recover_interrupted_swap): the previous complete checkpoint comes back
        verify_checkpoint(ck)  # checksums match: whole, never torn
        step = read_json(ck / "config.json")["step"]
        assert float(load_file(str(ck / "model.safetensors"))["w"][0, 0]) == float(step)


@pytest.mark.integration
def test_sigkill_during_inpainting_resumes_to_the_same_users(tmp_path):
    pytest.importorskip("lumenrec.data.inpaint")
    out = tmp_path / "inpaint.jsonl"
    code = f"""
        import time
        from lumenrec.data import inpaint as ip
        from lumenrec.data.registry import load_dataset
        ds = load_dataset("synthetic:num_users=40,num_items=300")
        inp = ip.Inpainter(ds.catalog)
        real = inp.record
        def slow(seq):
            r = real(seq)
            print("REC", flush=True)
            time.sleep(0.05)
            return r
        inp.record = slow
        ip.inpaint_to_file(inp, inp.eligible(ds), {str(out)!r}, progress=False)
        print("FINISHED", flush=True)
    """
    _run_child_and_kill(code, "REC", tmp_path, extra_delay_s=0.2)
    from lumenrec.data.inpaint import Inpainter, inpaint_to_file, scan_done_users
    from lumenrec.data.registry import load_dataset

    partial, _, _ = scan_done_users(out)  # a torn last line is detected, never raised on
    ds = load_dataset("synthetic:num_users=40,num_items=300")
    inp = Inpainter(ds.catalog)
    summary = inpaint_to_file(inp, inp.eligible(ds), out, progress=False)
    users = [json.loads(line)["user_id"] for line in out.read_text(encoding="utf-8").splitlines()]
    expected = [s.user_id for s in inp.eligible(ds)]
    assert sorted(users) == sorted(expected) and len(users) == len(set(users))  # each user exactly once
    assert summary.written == len(expected) - len(partial)


@pytest.mark.integration
def test_stream_closed_without_finish_reason_is_an_error_not_a_complete_answer():
    """A stream that ends cleanly but never says it finished was cut off: LLMError, not silent truncation."""
    from lumenrec.agent.llm.backends import OpenAILLM
    from lumenrec.errors import LLMError

    for mode, ok in (("ok", True), ("no_finish", False)):
        with FakeOpenAIServer(mode) as srv:
            llm = OpenAILLM(srv.base_url, "fake", api_key="x", timeout_s=5, max_retries=0)
            if ok:
                assert "".join(llm.stream([{"role": "user", "content": "hi"}])) == "A fine "
            else:
                with pytest.raises(LLMError, match="finish_reason"):
                    list(llm.stream([{"role": "user", "content": "hi"}]))
