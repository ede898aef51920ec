"""Framework-free tools and the OpenAI tool-calling surface (schemas + dispatch of JSON tool calls)."""

from __future__ import annotations

import json
import re

import pytest

from lumenrec.agent.recommender import Recommender
from lumenrec.tools.core import TOOL_NAMES, TOOL_SCHEMAS, LumenTools
from lumenrec.tools.openai_tools import dispatch, openai_tool_schemas

LINE = re.compile(r"^(\S+) \| (.+) \| (.+)$", re.M)


@pytest.fixture(scope="module")
def tools():
    return LumenTools(Recommender.from_dataset("synthetic"))


def ids_in(text: str) -> list[str]:
    return [m.group(1) for m in LINE.finditer(text)]


def test_docstrings_say_what_and_when(tools):
    for name in TOOL_NAMES:
        doc = getattr(LumenTools, name).__doc__
        assert doc and "Call this" in doc and "Returns" in doc, name
        assert set(TOOL_SCHEMAS[name]["required"]) <= set(TOOL_SCHEMAS[name]["properties"])


def test_recommend_refine_explain_summarize_details(tools):
    cat = tools.rec.catalog
    out = tools.recommend("c1", "blue ballpoint pens")
    ids = ids_in(out)
    assert len(ids) == tools.rec.config.top_k and all(i in cat for i in ids)
    for m in LINE.finditer(out):
        assert cat.get(m.group(1)).title == m.group(2)
    brand = cat.get(ids[0]).brand
    out2 = tools.refine_with_critique("c1", f"not {brand} again")
    ids2 = ids_in(out2)
    assert ids2 and all(cat.get(i).brand != brand for i in ids2)
    ex = tools.explain_item("c1", "2")
    assert ids_in(ex) == [ids2[1]]
    summary = tools.summarize_user("c1")
    assert "past orders" in summary and f"ruled out {brand}" in summary  # history and this chat, to the shopper
    det = tools.item_details(ids2[0])
    assert det.startswith(f"{ids2[0]} | {cat.get(ids2[0]).title}") and "category:" in det


@pytest.mark.parametrize("call,expect", [
    (lambda t: t.recommend("c2", ""), "non-empty string"),
    (lambda t: t.refine_with_critique("never-seen", "cheaper"), "call recommend first"),
    (lambda t: t.explain_item("never-seen", "2"), "call recommend first"),
    (lambda t: t.item_details("NOT-AN-ITEM"), "not an item of the catalogue"),
    (lambda t: t.recommend("c2", "x" * 5000), "at most"),
])
def test_bad_input_gets_a_sentence_not_a_traceback(tools, call, expect):
    out = call(tools)
    assert expect in out and "Traceback" not in out


def test_explain_unknown_reference(tools):
    tools.recommend("c3", "staplers")
    out = tools.explain_item("c3", "the purple elephant")
    assert "send a position between 1 and" in out


def test_openai_schemas_are_valid_function_tools():
    schemas = openai_tool_schemas()
    assert [s["function"]["name"] for s in schemas] == list(TOOL_NAMES)
    for s in schemas:
        assert s["type"] == "function" and s["function"]["description"]
        assert s["function"]["parameters"]["type"] == "object"
    json.dumps(schemas)  # serialisable as a request body


def test_openai_dispatch_of_json_tool_calls(tools):
    """A tool call as the OpenAI API returns it (arguments are a JSON string) -> catalogue items."""
    call = {"id": "call_1", "type": "function",
            "function": {"name": "recommend", "arguments": json.dumps({"session_id": "o1", "request": "sticky notes"})}}
    out = dispatch(call, tools)
    ids = ids_in(out)
    assert ids and all(i in tools.rec.catalog for i in ids)
    # the SDK's object form
    from openai.types.chat import ChatCompletionMessageToolCall

    sdk = ChatCompletionMessageToolCall.model_validate(
        {"id": "call_2", "type": "function", "function": {"name": "item_details", "arguments": json.dumps({"item_id": ids[0]})}})
    assert dispatch(sdk, tools).startswith(ids[0] + " | ")


@pytest.mark.parametrize("call,expect", [
    ({"function": {"name": "recommend", "arguments": "{not json"}}, "not valid JSON"),
    ({"function": {"name": "recommend", "arguments": "{}"}}, "missing session_id, request"),
    ({"function": {"name": "recommend", "arguments": '{"session_id": "s", "request": "pens", "x": 1}'}}, "unknown x"),
    ({"function": {"name": "launch_rocket", "arguments": "{}"}}, "There is no tool"),
    ({"function": {"arguments": "{}"}}, "no function name"),
    ({"function": {"name": "recommend", "arguments": "[1, 2]"}}, "must be a JSON object"),
])
def test_openai_dispatch_bad_calls(tools, call, expect):
    out = dispatch(call, tools)
    assert expect in out and "Traceback" not in out
