"""The server holds: a client that leaves releases its session and its turn is not applied, bodies
past the limit are refused while they stream in, a full server sheds with 503 + Retry-After, turns
have a deadline, rate limits follow the client's identity, /health stays cheap and /ready honest,
the Host header is checked, sessions belong to their principal, DELETE wins over a running turn, the
store reconnects and fails loudly, sessions expire and are capped, turns are appended not rewritten.

Real `lumenrec serve` subprocesses where the network matters (dropped streams, chunked uploads,
malformed HTTP), the ASGI app in process elsewhere. Turns are slowed on purpose with
server_fakes.SlowNarrator (``LUMENREC_TEST_SLOW``) so that a test can act while one runs.
"""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from server_fakes import ServeProcess, SlowNarrator, local_client, make_recommender, rss_mib  # noqa: E402

from lumenrec.agent.serving.server import MODEL_ID, ServeConfig, create_app  # noqa: E402
from lumenrec.agent.serving.store import MemorySessionStore, SQLiteSessionStore  # noqa: E402


def _session(base: str, **body) -> str:
    r = httpx.post(f"{base}/v1/sessions", json=body, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["session_id"]


def _turns(base: str, sid: str) -> int:
    return len(httpx.get(f"{base}/v1/sessions/{sid}", timeout=10).json()["turns"])


def _raw_request(port: int, head: bytes, body_chunks=(), read_timeout: float = 10.0) -> tuple[bytes, int]:
    """Send a raw HTTP request (head + chunks, stops sending once the server answers or closes);
    returns (response bytes, body bytes sent)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    sent = 0
    try:
        s.sendall(head)
        s.setblocking(False)
        resp = b""
        for chunk in body_chunks:
            try:
                got = s.recv(65536)
                if got == b"":
                    break
                resp += got
                break  # the server answered before the body was complete
            except BlockingIOError:
                pass
            try:
                s.setblocking(True)
                s.settimeout(2.0)
                s.sendall(chunk)
                sent += len(chunk)
                s.setblocking(False)
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                break
        s.setblocking(True)
        s.settimeout(read_timeout)
        try:
            while True:
                got = s.recv(65536)
                if not got:
                    break
                resp += got
                if b"\r\n\r\n" in resp and (b"content-length" in resp.lower()):
                    head_end = resp.index(b"\r\n\r\n") + 4
                    n = int(resp.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    if len(resp) >= head_end + n:
                        break
        except (ConnectionResetError, socket.timeout):
            pass
        return resp, sent
    finally:
        s.close()


# =============================================================================== 2. clients that leave
@pytest.mark.integration
def test_a_dropped_stream_releases_its_session_and_is_not_applied(tmp_path):
    """The shopper closes the SSE stream mid-turn: the next turn of that session starts at once (the
    dropped one stops at its next step) and the dropped turn leaves no trace in the session."""
    with ServeProcess(tmp_path, env={"LUMENREC_TEST_SLOW": "0.8"}) as srv:
        # one undisturbed "sticky notes" turn (narratives at 0.8 s each) on its own session
        t0 = time.perf_counter()
        assert httpx.post(f"{srv.base}/v1/sessions/{_session(srv.base)}/messages", json={"message": "sticky notes"},
                          timeout=30).status_code == 200
        alone = time.perf_counter() - t0
        waits = []
        for trial in range(3):
            sid = _session(srv.base)
            with httpx.Client(timeout=30) as c:
                with c.stream("POST", f"{srv.base}/v1/sessions/{sid}/messages:stream", json={"message": "gel pens"}) as r:
                    assert r.status_code == 200
                    first = next(r.iter_text())  # the intro arrives; narration (0.8 s per item) has begun
                    assert "delta" in first
                # leaving the block closes the connection mid-turn
            t0 = time.perf_counter()
            nxt = httpx.post(f"{srv.base}/v1/sessions/{sid}/messages", json={"message": "sticky notes"}, timeout=30)
            waits.append(time.perf_counter() - t0)
            assert nxt.status_code == 200, nxt.text
            s = httpx.get(f"{srv.base}/v1/sessions/{sid}").json()
            assert [t["text"] for t in s["turns"] if t["role"] == "user"] == ["sticky notes"], s["turns"]
        # waiting for the dropped "gel pens" turn to finish would add its narratives (0.8 s each) on top
        assert max(waits) < alone + 1.2, (alone, waits)


@pytest.mark.integration
def test_a_queued_turn_whose_client_left_never_runs(tmp_path):
    with ServeProcess(tmp_path, env={"LUMENREC_TEST_SLOW": "0.6"}) as srv:
        sid = _session(srv.base)
        results = {}

        def first():
            results["a"] = httpx.post(f"{srv.base}/v1/sessions/{sid}/messages", json={"message": "gel pens"}, timeout=30)

        th = threading.Thread(target=first)
        th.start()
        time.sleep(0.3)  # turn A holds the session
        try:  # turn B queues behind it; its client gives up after 0.5 s
            httpx.post(f"{srv.base}/v1/sessions/{sid}/messages", json={"message": "binders"}, timeout=0.5)
        except httpx.TimeoutException:
            pass
        th.join(30)
        assert results["a"].status_code == 200
        time.sleep(1.5)  # were B still going to run, it would have by now
        users = [t["text"] for t in httpx.get(f"{srv.base}/v1/sessions/{sid}").json()["turns"] if t["role"] == "user"]
        assert users == ["gel pens"], users


@pytest.mark.integration
def test_a_huge_chunked_body_is_refused_while_it_streams_in(tmp_path):
    """8 MiB of a would-be 100 MB chunked upload at most: the 413 comes after the limit, the server
    does not buffer the rest (RSS stays flat)."""
    with ServeProcess(tmp_path) as srv:
        sid = _session(srv.base)
        before = rss_mib(srv.pid)
        mb = b"x" * (1 << 20)
        chunk = f"{len(mb):x}\r\n".encode() + mb + b"\r\n"
        head = (f"POST /v1/sessions/{sid}/messages HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
        first = b'{"message": "'
        body = [f"{len(first):x}\r\n".encode() + first + b"\r\n"] + [chunk] * 100
        resp, sent = _raw_request(srv.port, head, body)
        assert resp.startswith(b"HTTP/1.1 413"), resp[:200]
        payload = json.loads(resp.split(b"\r\n\r\n", 1)[1])
        assert "over 65536 bytes" in payload["error"]["message"]
        assert sent < 8 * (1 << 20), f"the server kept reading: {sent} bytes went in"
        assert rss_mib(srv.pid) - before < 30, (before, rss_mib(srv.pid))
        # a declared Content-Length past the limit is refused before a byte of the body is read
        resp, _ = _raw_request(srv.port, (f"POST /v1/sessions/{sid}/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                          "Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n").encode())
        assert resp.startswith(b"HTTP/1.1 413")
        assert httpx.get(f"{srv.base}/health").status_code == 200


@pytest.mark.integration
def test_malformed_http_is_answered_in_json(tmp_path):
    with ServeProcess(tmp_path, db=None) as srv:
        resp, _ = _raw_request(srv.port, b"THIS IS NOT HTTP\r\n\r\n")
        assert resp.startswith(b"HTTP/1.1 400"), resp[:100]
        head, body = resp.split(b"\r\n\r\n", 1)
        assert b"application/json" in head.lower()
        assert json.loads(body)["error"]["type"] == "invalid_request_error"


# ============================================================================ 3. backpressure, limits
def _slow_app(tmp_path, delay_s: float = 0.5, **cfg):
    rec = make_recommender(store=SQLiteSessionStore(tmp_path / "s.db"), narrator=SlowNarrator(delay_s))
    return rec, create_app(rec, ServeConfig(**{"rate_limit_per_min": 0, **cfg}))


def test_a_full_server_sheds_with_503_and_retry_after_while_lookups_stay_fast(tmp_path):
    rec, app = _slow_app(tmp_path, 0.3, max_concurrent_turns=1, max_queue=2, queue_timeout_s=30)
    client = local_client(app)
    sids = [client.post("/v1/sessions", json={}).json()["session_id"] for _ in range(8)]

    def turn(sid):
        t0 = time.perf_counter()
        r = client.post(f"/v1/sessions/{sid}/messages", json={"message": "gel pens"})
        return r, time.perf_counter() - t0

    with ThreadPoolExecutor(8) as pool:
        futs = [pool.submit(turn, s) for s in sids]
        time.sleep(0.3)
        t0 = time.perf_counter()
        lookups = [client.get("/v1/items/p1").status_code for _ in range(5)] + [client.get("/health").status_code]
        lookup_s = time.perf_counter() - t0
        out = [f.result() for f in futs]
    codes = sorted(r.status_code for r, _ in out)
    assert codes.count(200) == 3 and codes.count(503) == 5, codes  # 1 running + 2 queued, the rest shed
    shed = [r for r, _ in out if r.status_code == 503]
    assert all(int(r.headers["Retry-After"]) >= 1 and r.json()["error"]["type"] == "overloaded" for r in shed)
    assert max(t for r, t in out if r.status_code == 503) < 1.0  # shed at once, not after waiting
    assert lookups == [200] * 6 and lookup_s < 1.0, lookup_s  # lookups never queue behind turns
    assert app.state.admission.shed == 5


def test_a_turn_waiting_too_long_for_a_slot_is_shed(tmp_path):
    rec, app = _slow_app(tmp_path, 0.5, max_concurrent_turns=1, max_queue=10, queue_timeout_s=0.5)
    client = local_client(app)
    a, b = (client.post("/v1/sessions", json={}).json()["session_id"] for _ in range(2))
    with ThreadPoolExecutor(2) as pool:
        fa = pool.submit(client.post, f"/v1/sessions/{a}/messages", json={"message": "gel pens"})
        time.sleep(0.1)
        rb = client.post(f"/v1/sessions/{b}/messages", json={"message": "gel pens"})
        assert fa.result().status_code == 200
    assert rb.status_code == 503 and "within 0.5 s" in rb.json()["error"]["message"]
    assert client.get(f"/v1/sessions/{b}").json()["turns"] == []


def test_a_turn_past_its_deadline_is_504_and_not_applied(tmp_path):
    rec, app = _slow_app(tmp_path, 0.6, request_timeout_s=0.8)
    client = local_client(app)
    sid = client.post("/v1/sessions", json={}).json()["session_id"]
    r = client.post(f"/v1/sessions/{sid}/messages", json={"message": "gel pens"})
    assert r.status_code == 504 and "not applied" in r.json()["error"]["message"]
    time.sleep(1.5)  # the worker stops at its next step and writes nothing
    assert client.get(f"/v1/sessions/{sid}").json()["turns"] == []
    # the stream flavour reports the deadline in-band
    r = client.post(f"/v1/sessions/{sid}/messages:stream", json={"message": "gel pens"})
    assert '"type": "timeout"' in r.text and "event: reply" not in r.text


def test_rate_limits_follow_the_client_identity(tmp_path):
    rec = make_recommender(store=MemorySessionStore())
    keys = {"k-alice-0123456789abcdef": "alice", "k-bob-0123456789abcdefgh": "bob"}
    app = create_app(rec, ServeConfig(rate_limit_per_min=3, api_keys=keys))
    c = local_client(app)
    alice = {"Authorization": "Bearer k-alice-0123456789abcdef"}
    bob = {"Authorization": "Bearer k-bob-0123456789abcdefgh"}
    assert [c.get("/v1/models", headers=alice).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert c.get("/v1/models", headers=bob).status_code == 200  # bob has his own bucket
    assert c.get("/v1/models", headers={"Authorization": "Bearer made-up-key-000000"}).status_code == 401
    # tokenless: random Authorization headers do not open new buckets (the address is the identity)
    open_app = create_app(make_recommender(), ServeConfig(rate_limit_per_min=3))
    c1 = local_client(open_app)
    codes = [c1.get("/v1/models", headers={"Authorization": f"Bearer random-{i:012d}"}).status_code for i in range(5)]
    assert codes[:3] == [200] * 3 and codes[3:] == [429, 429]
    c2 = local_client(open_app, client=("10.0.0.7", 5000))  # another address, another bucket
    assert c2.get("/v1/models").status_code == 200
    # shared token: one principal, but each client address has its own bucket
    tok_app = create_app(make_recommender(), ServeConfig(rate_limit_per_min=2, token="shared-token-1"))
    h = {"Authorization": "Bearer shared-token-1"}
    ca, cb = local_client(tok_app, client=("10.0.0.1", 1)), local_client(tok_app, client=("10.0.0.2", 1))
    assert [ca.get("/v1/models", headers=h).status_code for _ in range(3)] == [200, 200, 429]
    assert cb.get("/v1/models", headers=h).status_code == 200


def test_health_is_cheap_and_ready_is_cached(tmp_path):
    rec = make_recommender(store=SQLiteSessionStore(tmp_path / "s.db"))
    calls = []
    real = rec.retriever.retrieve

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    rec.retriever.retrieve = counting
    c = local_client(create_app(rec, ServeConfig(rate_limit_per_min=5, ready_cache_s=60)))
    for _ in range(100):
        assert c.get("/health").status_code == 200  # open, unlimited: no rate limit, no I/O
    assert calls == []
    for _ in range(20):
        assert c.get("/ready").status_code == 200
    assert len(calls) == 1  # one probe, then the cached verdict


def test_host_header_is_checked_on_the_tokenless_loopback_default():
    app = create_app(make_recommender(), ServeConfig(rate_limit_per_min=0, allowed_hosts=("shop.internal",)))
    for base, code in (("http://127.0.0.1:8080", 200), ("http://localhost", 200), ("http://[::1]:8080", 200),
                       ("http://shop.internal", 200), ("http://evil.example", 400), ("http://127.0.0.1.evil.example", 400)):
        r = local_client(app, base_url=base).get("/v1/models")
        assert r.status_code == code, (base, r.text)
    r = local_client(app, base_url="http://attacker.example:8080").post("/v1/sessions", json={})
    assert r.status_code == 400 and "DNS rebinding" in r.json()["error"]["message"]
    tok = create_app(make_recommender(), ServeConfig(rate_limit_per_min=0, token="a-long-token"))
    assert local_client(tok, base_url="http://api.example").get(
        "/v1/models", headers={"Authorization": "Bearer a-long-token"}).status_code == 200


# ============================================================================================ 4. store
def test_sessions_belong_to_their_principal(tmp_path):
    rec = make_recommender(store=SQLiteSessionStore(tmp_path / "s.db"))
    keys = {"k-alice-0123456789abcdef": "alice", "k-bob-0123456789abcdefgh": "bob"}
    c = local_client(create_app(rec, ServeConfig(rate_limit_per_min=0, api_keys=keys)))
    alice = {"Authorization": "Bearer k-alice-0123456789abcdef"}
    bob = {"Authorization": "Bearer k-bob-0123456789abcdefgh"}
    assert c.post("/v1/sessions", json={"session_id": "s1"}, headers=alice).status_code == 201
    assert c.post("/v1/sessions/s1/messages", json={"message": "gel pens"}, headers=alice).status_code == 200
    assert c.get("/v1/sessions/s1", headers=bob).status_code == 404  # not 403/409: it does not exist for bob
    assert c.delete("/v1/sessions/s1", headers=bob).status_code == 404
    assert c.post("/v1/sessions/s1/messages", json={"message": "x"}, headers=bob).status_code == 404
    assert c.post("/v1/sessions", json={"session_id": "s1"}, headers=bob).status_code == 201  # his own s1
    assert c.post("/v1/sessions", json={"session_id": "s1"}, headers=alice).status_code == 409  # her own again
    assert len(c.get("/v1/sessions/s1", headers=alice).json()["turns"]) == 2
    assert c.get("/v1/sessions/s1", headers=bob).json()["turns"] == []
    # the OpenAI `user` field is not a session id anyone can read
    body = {"model": MODEL_ID, "user": "alice", "messages": [{"role": "user", "content": "gel pens"}]}
    assert c.post("/v1/chat/completions", json=body, headers=alice).status_code == 200
    assert c.get("/v1/sessions/alice", headers=bob).status_code == 404
    assert c.get("/v1/sessions/alice", headers=alice).status_code == 404


def test_bad_session_ids_are_400():
    c = local_client(create_app(make_recommender(), ServeConfig(rate_limit_per_min=0)))
    for bad in ("victim%0A", "a%20b", "x" * 129, "%00"):
        r = c.get(f"/v1/sessions/{bad}")
        assert r.status_code == 400 and "session id" in r.json()["error"]["message"], bad
    assert c.post("/v1/sessions", json={"session_id": "victim\n"}).status_code == 400


def test_delete_wins_over_a_running_turn(tmp_path):
    rec, app = _slow_app(tmp_path, 0.3)
    c = local_client(app)
    for _ in range(5):
        sid = c.post("/v1/sessions", json={}).json()["session_id"]
        with ThreadPoolExecutor(1) as pool:
            fut = pool.submit(c.post, f"/v1/sessions/{sid}/messages", json={"message": "gel pens"})
            time.sleep(0.3)  # the turn is narrating
            assert c.delete(f"/v1/sessions/{sid}").status_code == 204
            r = fut.result()
        assert r.status_code == 404 and "deleted while this turn ran" in r.json()["error"]["message"]
        assert c.get(f"/v1/sessions/{sid}").status_code == 404  # not resurrected by the turn's write


def test_store_reconnects_after_an_error_and_health_tells(tmp_path):
    db = tmp_path / "s.db"
    rec = make_recommender(store=SQLiteSessionStore(db, busy_timeout_s=0.2))
    c = local_client(create_app(rec, ServeConfig(rate_limit_per_min=0, ready_cache_s=0)))
    sid = c.post("/v1/sessions", json={}).json()["session_id"]
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    r = c.post(f"/v1/sessions/{sid}/messages", json={"message": "gel pens"})
    assert r.status_code == 503 and r.json()["error"]["type"] == "store_unavailable" and r.headers["Retry-After"]
    assert c.get("/health").status_code == 503 and c.get("/ready").status_code == 503
    blocker.execute("ROLLBACK")
    blocker.close()
    r = c.post(f"/v1/sessions/{sid}/messages", json={"message": "gel pens"})  # the fault is gone: it works again
    assert r.status_code == 200, r.text
    assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200
    assert len(c.get(f"/v1/sessions/{sid}").json()["turns"]) == 2  # the failed turn wrote nothing


def test_writes_fail_loudly_after_the_store_directory_is_deleted(tmp_path):
    d = tmp_path / "store"
    rec = make_recommender(store=SQLiteSessionStore(d / "s.db"))
    c = local_client(create_app(rec, ServeConfig(rate_limit_per_min=0, ready_cache_s=0)))
    sid = c.post("/v1/sessions", json={}).json()["session_id"]
    assert c.post(f"/v1/sessions/{sid}/messages", json={"message": "gel pens"}).status_code == 200
    shutil.rmtree(d)
    codes = [c.post(f"/v1/sessions/{sid}/messages", json={"message": "binders"}).status_code for _ in range(8)]
    codes.append(c.post("/v1/sessions", json={}).status_code)
    assert codes == [503] * 9, codes  # nothing acknowledged that would land in a deleted file
    assert c.get("/ready").status_code == 503 and c.get("/health").status_code == 503
    d.mkdir()  # someone puts a file back: still refused (it is not the database the sessions were in)
    sqlite3.connect(d / "s.db").close()
    assert c.post("/v1/sessions", json={}).status_code == 503


def test_sessions_expire_and_are_capped(tmp_path):
    rec = make_recommender(store=SQLiteSessionStore(tmp_path / "s.db"))
    c = local_client(create_app(rec, ServeConfig(rate_limit_per_min=0, session_ttl_s=0.5, max_turns=2)))
    sid = c.post("/v1/sessions", json={}).json()["session_id"]
    assert c.post(f"/v1/sessions/{sid}/messages", json={"message": "gel pens"}).status_code == 200
    assert c.post(f"/v1/sessions/{sid}/messages", json={"message": "binders"}).status_code == 200
    r = c.post(f"/v1/sessions/{sid}/messages", json={"message": "ink"})
    assert r.status_code == 409 and "limit of 2 turns" in r.json()["error"]["message"]
    time.sleep(0.7)
    assert c.get(f"/v1/sessions/{sid}").status_code == 404  # expired
    assert rec.store.inner.purge_expired() == 1


def test_turns_are_appended_not_rewritten(tmp_path):
    store = SQLiteSessionStore(tmp_path / "s.db")
    rec = make_recommender(store=store)
    c = local_client(create_app(rec, ServeConfig(rate_limit_per_min=0)))
    sid = c.post("/v1/sessions", json={}).json()["session_id"]
    con = sqlite3.connect(tmp_path / "s.db")
    sizes = []
    for i in range(40):
        assert c.post(f"/v1/sessions/{sid}/messages", json={"message": ["gel pens", "binders"][i % 2]}).status_code == 200
        sizes.append(con.execute("SELECT length(data) FROM sessions WHERE session_id = ?", (sid,)).fetchone()[0])
        # the rows of earlier turns are untouched: their rowids stay, one new pair per turn
    rows = con.execute("SELECT seq, rowid FROM session_turns WHERE session_id = ? ORDER BY seq", (sid,)).fetchall()
    assert [s for s, _ in rows] == list(range(80)) and store.turn_rows(sid) == 80
    assert [r for _, r in rows] == sorted(r for _, r in rows)
    assert sizes[-1] < 6000 and sizes[-1] < sizes[0] + 40 * 120, sizes[::10]  # the state row stays small
    assert len(c.get(f"/v1/sessions/{sid}").json()["turns"]) == 80


def test_input_error_mid_stream_is_an_input_error(tmp_path, caplog):
    rec = make_recommender(store=SQLiteSessionStore(tmp_path / "s.db"))
    c = local_client(create_app(rec, ServeConfig(rate_limit_per_min=0)))
    sid = c.post("/v1/sessions", json={}).json()["session_id"]

    def bad_turn(*a, **k):
        yield "Looking"
        raise ValueError("price bound overflows")

    rec.chat_stream = bad_turn
    with caplog.at_level("WARNING"):
        r = c.post(f"/v1/sessions/{sid}/messages:stream", json={"message": "pens"})
    err = [json.loads(b.split("data: ", 1)[1]) for b in r.text.split("\n\n") if b.startswith("event: error")]
    assert err and err[0]["type"] == "invalid_request_error" and "could not be processed" in err[0]["message"]
    assert not any(rec_.exc_info for rec_ in caplog.records), "an input error is not a server error with a traceback"
    r = c.post("/v1/chat/completions", json={"model": MODEL_ID, "stream": True, "messages": [{"role": "user", "content": "p"}]})
    assert '"type": "invalid_request_error"' in r.text


def test_delete_wins_over_an_llm_router_turn_whose_tools_write_from_another_thread(tmp_path):
    """The LLM router runs its agent (and the tools' writes) in a thread of its own: the guard follows
    the session, not the thread."""
    pytest.importorskip("langchain")
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    from lumenrec.agent.llm_router import LLMRouter

    class Scripted(BaseChatModel):
        calls: int = 0

        @property
        def _llm_type(self) -> str:
            return "scripted"

        def bind_tools(self, tools, **kwargs):
            return self

        def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
            self.calls += 1
            if self.calls % 2 == 1:
                msg = AIMessage(content="", tool_calls=[{"name": "recommend", "args": {"request": "gel pens"},
                                                          "id": f"c{self.calls}", "type": "tool_call"}])
            else:
                msg = AIMessage(content="Here you go.")
            return ChatResult(generations=[ChatGeneration(message=msg)])

    rec = make_recommender(store=SQLiteSessionStore(tmp_path / "s.db"), narrator=SlowNarrator(0.3),
                           router=LLMRouter(Scripted(), timeout_s=30, max_steps=4))
    c = local_client(create_app(rec, ServeConfig(rate_limit_per_min=0)))
    sid = c.post("/v1/sessions", json={}).json()["session_id"]
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(c.post, f"/v1/sessions/{sid}/messages", json={"message": "I need gel pens"})
        time.sleep(0.4)  # the tool is narrating in the router's thread
        assert c.delete(f"/v1/sessions/{sid}").status_code == 204
        fut.result()
    time.sleep(0.5)
    assert c.get(f"/v1/sessions/{sid}").status_code == 404  # the tool's write did not bring it back
