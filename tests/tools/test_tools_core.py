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


def _strict_ok(schema: dict, where: str) -> None:
    """OpenAI Structured Outputs rules for a function's parameters (object schemas all the way down)."""
    assert schema["type"] == "object", where
    assert schema.get("additionalProperties") is False, f"{where}: additionalProperties must be false"
    assert sorted(schema["required"]) == sorted(schema["properties"]), f"{where}: every property must be required"
    for arg, spec in schema["properties"].items():
        assert spec.get("description", "").strip(), f"{where}.{arg} has no description"
        assert spec["type"] in ("string", "number", "integer", "boolean", "object", "array"), f"{where}.{arg}"
        unsupported = {"minLength", "maxLength", "default", "title"} & set(spec)
        assert not unsupported, f"{where}.{arg}: {unsupported} are not allowed in strict mode"
        if spec["type"] == "object":
            _strict_ok(spec, f"{where}.{arg}")


def test_openai_schemas_are_strict_function_tools():
    from openai import pydantic_function_tool
    from openai.types.shared import FunctionDefinition

    from lumenrec.tools.core import tool_args_model

    schemas = openai_tool_schemas()
    assert [s["function"]["name"] for s in schemas] == list(TOOL_NAMES)
    for s in schemas:
        fn = s["function"]
        assert s["type"] == "function" and fn["strict"] is True and "Call this" in fn["description"]
        FunctionDefinition.model_validate(fn)  # the SDK's own type accepts it
        _strict_ok(fn["parameters"], fn["name"])
        # the SDK's strict conversion of the same pydantic model (what LangChain/LlamaIndex get) agrees
        sdk = pydantic_function_tool(tool_args_model(fn["name"]))["function"]["parameters"]
        assert sdk["required"] == fn["parameters"]["required"] and sdk["additionalProperties"] is False
        assert {k: v["description"] for k, v in sdk["properties"].items()} == \
            {k: v["description"] for k, v in fn["parameters"]["properties"].items()}
    assert "strict" not in openai_tool_schemas(strict=False)[0]["function"]
    json.dumps(schemas)  # serialisable as a request body


def test_the_strict_check_can_fail():
    with pytest.raises(AssertionError, match="additionalProperties"):
        _strict_ok({"type": "object", "properties": {"a": {"type": "string", "description": "x"}}, "required": ["a"]}, "t")
    with pytest.raises(AssertionError, match="required"):
        _strict_ok({"type": "object", "additionalProperties": False,
                    "properties": {"a": {"type": "string", "description": "x"}}, "required": []}, "t")


def test_positions_resolve_only_against_shown_items(tools):
    """'99' after 5 shown items is an error, never catalogue item 99; an unshown catalogue id too."""
    ids = ids_in(tools.recommend("pos-1", "staplers"))
    assert len(ids) == 5
    unshown = next(i for i in tools.rec.catalog.ids if i not in ids)
    for ref in ("99", "6", "0", unshown, tools.rec.catalog.get(unshown).title):
        res = tools.explain_result("pos-1", ref)
        assert not res.ok and "between 1 and 5" in res.text, ref
    assert ids_in(tools.explain_item("pos-1", "5")) == [ids[4]]
    assert ids_in(tools.explain_item("pos-1", ids[2])) == [ids[2]]


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
    ({"function": {"name": "recommend", "arguments": '{"session_id": "s", "request": 5}'}}, "request must be a string"),
])
def test_openai_dispatch_bad_calls(tools, call, expect):
    out = dispatch(call, tools)
    assert expect in out and "Traceback" not in out
