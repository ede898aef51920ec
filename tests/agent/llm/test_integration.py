"""Real HTTP: `lumenrec llm serve` with the real SmolLM2 model, and an OpenAI client against faulty servers.

The fault server is a plain http.server on 127.0.0.1 whose behaviour is picked by the URL path:
`/<mode>/v1/chat/completions`. Every failure must end in LLMError after bounded retries, in bounded time.
"""

import json
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lumenrec.agent.llm.backends import ContextOverflowError, OpenAILLM
from lumenrec.errors import LLMError

pytestmark = pytest.mark.integration

MSG = [{"role": "user", "content": "Name one thing found on an office desk."}]


from netutil import free_port as _free_port, llm_server  # noqa: E402


# ------------------------------------------------------------------------------ the real model server
@pytest.fixture(scope="module")
def smol_server():
    pytest.importorskip("gguf")
    from lumenrec.agent.llm.backends import find_smollm2_gguf

    find_smollm2_gguf()  # skips below via MissingExtraError if the model package is absent
    with llm_server() as base:
        yield base


def test_real_server_lists_the_model(smol_server):
    with urllib.request.urlopen(smol_server + "/v1/models", timeout=10) as r:
        ids = [m["id"] for m in json.load(r)["data"]]
    assert ids == ["SmolLM2-135M-Instruct"]


def test_real_model_generates_through_openai_client(smol_server):
    llm = OpenAILLM(smol_server + "/v1", "SmolLM2-135M-Instruct", timeout_s=120, max_retries=0)
    text = llm.generate(MSG, max_tokens=16)
    assert isinstance(text, str) and text.strip()
    again = llm.generate(MSG, max_tokens=16)
    assert again == text  # greedy decoding is deterministic


def test_real_model_streams_through_openai_client(smol_server):
    llm = OpenAILLM(smol_server + "/v1", "SmolLM2-135M-Instruct", timeout_s=120, max_retries=0)
    pieces = list(llm.stream(MSG, max_tokens=16))
    assert len(pieces) >= 2 and "".join(pieces).strip()
    assert "".join(pieces).strip() == llm.generate(MSG, max_tokens=16)


def test_real_server_reports_usage(smol_server):
    req = urllib.request.Request(smol_server + "/v1/chat/completions", method="POST",
                                 data=json.dumps({"messages": MSG, "max_tokens": 4}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        d = json.load(r)
    assert 1 <= d["usage"]["completion_tokens"] <= 4 and d["usage"]["prompt_tokens"] > 10


# -------------------------------------------------------------------------------------- fault server
class _Faulty(BaseHTTPRequestHandler):
    hits: Counter = Counter()

    def log_message(self, *a):  # keep test output clean
        pass

    def _json(self, status: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        mode = self.path.strip("/").split("/")[0]
        _Faulty.hits[mode] += 1
        ok = {"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}]}
        if mode == "err500":
            self._json(500, {"error": {"message": "internal trouble", "type": "server_error"}})
        elif mode == "slow":
            time.sleep(3)
            self._json(200, ok)
        elif mode == "close":
            self.close_connection = True  # no response at all
        elif mode == "empty":
            self._json(200, {**ok, "choices": []})
        elif mode == "blank":
            self._json(200, {**ok, "choices": [{**ok["choices"][0], "message": {"role": "assistant", "content": ""}}]})
        elif mode == "flaky":
            if _Faulty.hits[mode] <= 2:
                self._json(503, {"error": {"message": "busy"}})
            else:
                self._json(200, ok)
        elif mode == "ctx":
            self._json(400, {"error": {"message": "This model's maximum context length is 8192 tokens",
                                       "type": "invalid_request_error", "code": "context_length_exceeded"}})
        elif mode == "auth":
            self._json(401, {"error": {"message": "bad key", "type": "invalid_request_error"}})
        else:
            self._json(404, {"error": {"message": "no such mode"}})


@pytest.fixture(scope="module")
def faulty():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Faulty)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _client(base: str, mode: str, **kw) -> OpenAILLM:
    kw = {"timeout_s": 0.5, "max_retries": 2, "backoff_s": 0.05, **kw}
    return OpenAILLM(f"{base}/{mode}/v1", "m", **kw)


@pytest.mark.parametrize("mode,what", [("err500", "HTTP 500"), ("slow", "timed out"), ("close", "connect"),
                                       ("empty", "no choices"), ("blank", "empty completion")])
def test_faults_retry_then_raise_llm_error(faulty, mode, what):
    _Faulty.hits[mode] = 0
    t0 = time.monotonic()
    with pytest.raises(LLMError) as e:
        _client(faulty, mode).generate(MSG)
    elapsed = time.monotonic() - t0
    assert _Faulty.hits[mode] == 3, "max_retries=2 means exactly three attempts"
    assert what in str(e.value) and "3 attempts" in str(e.value)
    assert elapsed < 6.0, f"{mode}: took {elapsed:.1f} s"


@pytest.mark.parametrize("mode", ["err500", "empty"])
def test_stream_faults_raise_llm_error(faulty, mode):
    _Faulty.hits[mode] = 0
    with pytest.raises(LLMError):
        list(_client(faulty, mode, max_retries=1).stream(MSG))
    assert _Faulty.hits[mode] == 2


def test_transient_failures_are_retried_to_success(faulty):
    _Faulty.hits["flaky"] = 0
    assert _client(faulty, "flaky").generate(MSG) == "fine"
    assert _Faulty.hits["flaky"] == 3


@pytest.mark.parametrize("mode,exc", [("ctx", ContextOverflowError), ("auth", LLMError)])
def test_client_errors_are_not_retried(faulty, mode, exc):
    _Faulty.hits[mode] = 0
    with pytest.raises(exc):
        _client(faulty, mode).generate(MSG)
    assert _Faulty.hits[mode] == 1


def test_connection_refused_fails_quickly():
    port = _free_port()  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(LLMError, match="cannot connect"):
        OpenAILLM(f"http://127.0.0.1:{port}/v1", "m", timeout_s=2, max_retries=1, backoff_s=0.05).generate(MSG)
    assert time.monotonic() - t0 < 3.0
