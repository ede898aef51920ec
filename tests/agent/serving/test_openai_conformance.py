"""`lumenrec serve`'s /v1 surface driven by the official `openai` client (and LangChain's ChatOpenAI):
conversations carried as message history, usage in streams, /v1/models/{id}, max_tokens/stop honoured,
parameters it cannot honour refused with 400 instead of being silently ignored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from server_fakes import free_port, wait_http  # noqa: E402

from lumenrec.agent.serving.server import MODEL_ID  # noqa: E402


@pytest.fixture
def oai(client):
    return openai.OpenAI(base_url="http://127.0.0.1/v1", api_key="unused", http_client=client, max_retries=0)


def _items(reply) -> list[dict]:
    return reply.model_extra["lumenrec"]["items"]


def test_models_list_and_retrieve(oai):
    assert [m.id for m in oai.models.list()] == [MODEL_ID]
    m = oai.models.retrieve(MODEL_ID)
    assert m.id == MODEL_ID and m.object == "model" and m.owned_by == "lumenrec"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("gpt-4o")


def test_conversation_carried_as_message_history(oai, rec):
    """'not <brand> again, something cheaper' continues the conversation that the messages carry."""
    msgs = [{"role": "system", "content": "You help shoppers."}, {"role": "user", "content": "I need gel pens"}]
    first = oai.chat.completions.create(model=MODEL_ID, messages=msgs)
    items1 = _items(first)
    assert {"p2", "p3"} <= {it["id"] for it in items1}
    brand = items1[0]["brand"]
    msgs += [{"role": "assistant", "content": first.choices[0].message.content},
             {"role": "user", "content": f"not {brand} again, something cheaper"}]
    second = oai.chat.completions.create(model=MODEL_ID, messages=msgs)
    items2 = _items(second)
    assert items2 and all(it["brand"] != brand for it in items2)
    # still pens, and cheaper than the middle of what was shown (the agent's "cheaper", issue #17)
    assert "Pens" in rec.catalog.get(items2[0]["id"]).categories, "the retrieval still means pens (first)"
    shown_prices = sorted(rec.catalog.get(it["id"]).price for it in items1)
    assert all(rec.catalog.get(it["id"]).price < shown_prices[len(shown_prices) // 2] for it in items2)
    # the stored state of that conversation: two turns (4 records) and the brand excluded
    s = rec.store.get(second.model_extra["lumenrec"]["session_id"])
    assert len(s.turns) == 4 and brand in s.constraints.exclude_brands
    # a third turn that refers to what was shown
    msgs += [{"role": "assistant", "content": second.choices[0].message.content},
             {"role": "user", "content": "tell me about the first one"}]
    third = oai.chat.completions.create(model=MODEL_ID, messages=msgs)
    assert [it["id"] for it in _items(third)] == [items2[0]["id"]]


def test_history_is_replayed_when_its_stored_state_is_gone(oai, rec):
    msgs = [{"role": "user", "content": "I need gel pens"}]
    first = oai.chat.completions.create(model=MODEL_ID, messages=msgs)
    brand = _items(first)[0]["brand"]
    rec.store.delete(first.model_extra["lumenrec"]["session_id"])  # e.g. expired, or another server's memory
    msgs += [{"role": "assistant", "content": first.choices[0].message.content},
             {"role": "user", "content": f"not {brand} again"}]
    second = oai.chat.completions.create(model=MODEL_ID, messages=msgs)
    assert _items(second) and all(it["brand"] != brand for it in _items(second))
    assert len(rec.store.get(second.model_extra["lumenrec"]["session_id"]).turns) == 4  # replayed + this one


def test_explicit_session_header_and_principal_scoped_derivation(client, oai):
    a = oai.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "binders"}],
                                    extra_headers={"X-Session-Id": "mine"})
    assert a.model_extra["lumenrec"]["session_id"] == "mine"
    assert client.get("/v1/sessions/mine").json()["turns"][0]["text"] == "binders"
    r = client.post("/v1/chat/completions", json={"model": MODEL_ID, "messages": [{"role": "user", "content": "x"}]},
                  headers={"X-Session-Id": "victim\n"})
    assert r.status_code == 400 and "session id" in r.json()["error"]["message"]


def test_stream_with_usage(oai):
    stream = oai.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "sticky notes"}],
                                         stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "n1 | Yellow sticky notes" in content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == len(content.split()) and last.usage.prompt_tokens == 2
    assert all(c.usage is None for c in chunks[:-1])


@pytest.mark.parametrize("stream", [False, True])
def test_max_tokens_and_stop_are_honoured(oai, stream):
    def run(**kw) -> tuple[str, str]:
        out = oai.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "gel pens"}],
                                          stream=stream, **kw)
        if not stream:
            return out.choices[0].message.content, out.choices[0].finish_reason
        chunks = [c for c in out if c.choices]
        return "".join(c.choices[0].delta.content or "" for c in chunks), chunks[-1].choices[0].finish_reason

    full, finish = run()
    assert finish == "stop" and len(full.split()) > 8
    text, finish = run(max_tokens=5)
    assert finish == "length" and text.split() == full.split()[:5]
    text, finish = run(max_completion_tokens=3)
    assert finish == "length" and len(text.split()) == 3
    text, finish = run(stop=["Items:"])
    assert finish == "stop" and "Items:" not in text and text.strip() and full.startswith(text.rstrip()[:20])


@pytest.mark.parametrize("kwargs,expect", [
    ({"n": 2}, "n=2"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]},
     "tools are not supported"),
    ({"logprobs": True}, "logprobs"),
    ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
    ({"stream_options": {"include_usage": True}}, "only allowed with stream"),
    ({"max_tokens": 0}, "max_tokens"),
])
def test_parameters_it_cannot_honour_are_400_not_ignored(oai, kwargs, expect):
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "pens"}], **kwargs)
    assert expect in str(e.value)


def test_sampling_knobs_are_accepted_and_change_nothing(oai):
    a = oai.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "pens"}])
    b = oai.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "pens"}],
                                    temperature=1.7, top_p=0.3, seed=5, n=1, response_format={"type": "text"})
    assert a.choices[0].message.content == b.choices[0].message.content


@pytest.mark.parametrize("messages,expect", [
    ([{"role": "user", "content": [{"type": "text", "text": 5}]}], "content[0].text must be a string"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}], "only text parts"),
    ([{"role": "user", "content": 42}], "string or a list of text parts"),
    ([{"role": "user", "content": "pens"}, {"role": "tool", "content": "x", "tool_call_id": "1"}], "role 'tool'"),
    ([{"role": "user", "content": "pens"}, {"role": "assistant", "content": "ok"}], "last message"),
])
def test_bad_messages_are_400_with_the_place(client, messages, expect):
    r = client.post("/v1/chat/completions", json={"model": MODEL_ID, "messages": messages})
    assert r.status_code == 400, r.text
    assert expect in r.json()["error"]["message"]


def test_text_parts_are_read(oai):
    out = oai.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": [
        {"type": "text", "text": "heavy duty"}, {"type": "text", "text": "binder"}]}])
    assert _items(out)[0]["id"] == "b2"


def test_langchain_chat_openai_carries_the_conversation(client):
    lc = pytest.importorskip("langchain_openai")
    from langchain_core.messages import AIMessage, HumanMessage

    llm = lc.ChatOpenAI(model=MODEL_ID, base_url="http://127.0.0.1/v1", api_key="unused", http_client=client,
                        max_retries=0)
    first = llm.invoke([HumanMessage("I need gel pens")])
    brand = "Pilot" if "Pilot" in first.content.split("Items:")[-1].splitlines()[1] else "Zebra"
    second = llm.invoke([HumanMessage("I need gel pens"), AIMessage(first.content), HumanMessage(f"not {brand} again")])
    lines = second.content.split("Items:")[-1].strip().splitlines()
    assert lines and all(not line.endswith(f"| {brand}") for line in lines)


@pytest.mark.integration
def test_official_client_against_a_real_server(tmp_path):
    """A real `lumenrec serve` process on 127.0.0.1, the official client over real HTTP."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1"}
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "lumenrec", "serve", "--factory", "server_fakes:make_recommender",
                             "--port", str(port), "--rate-limit", "0", "--db", str(tmp_path / "s.db")],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 90, proc)
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        assert c.models.retrieve(MODEL_ID).id == MODEL_ID
        msgs = [{"role": "user", "content": "I need gel pens"}]
        first = c.chat.completions.create(model=MODEL_ID, messages=msgs)
        brand = _items(first)[0]["brand"]
        msgs += [{"role": "assistant", "content": first.choices[0].message.content},
                 {"role": "user", "content": f"not {brand} again"}]
        chunks = list(c.chat.completions.create(model=MODEL_ID, messages=msgs, stream=True,
                                                stream_options={"include_usage": True}))
        content = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        listed = [line.split(" | ") for line in content.split("Items:")[-1].strip().splitlines()]
        assert listed and all(row[2] != brand for row in listed)
        assert chunks[-1].usage.total_tokens > 0
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model=MODEL_ID, messages=msgs, n=3)
    finally:
        proc.terminate()
        proc.wait(15)
        print(json.dumps({"serve_log_tail": (tmp_path / "serve.log").read_text()[-500:]}))
