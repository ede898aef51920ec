"""LangChain surface: StructuredTools invoked like any LangChain tool, and the item BaseRetriever."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("langchain_core")

from lumenrec.agent.recommender import Recommender  # noqa: E402
from lumenrec.tools.core import TOOL_NAMES, LumenTools  # noqa: E402
from lumenrec.tools.langchain import langchain_tools, make_item_retriever  # noqa: E402


@pytest.fixture(scope="module")
def rec():
    return Recommender.from_dataset("synthetic")


@pytest.mark.integration
def test_langchain_tool_invoke_returns_catalogue_items(rec):
    from langchain_core.tools import BaseTool

    tools = {t.name: t for t in langchain_tools(LumenTools(rec))}
    assert set(tools) == set(TOOL_NAMES) and all(isinstance(t, BaseTool) for t in tools.values())
    assert "session_id" in tools["recommend"].args and "request" in tools["recommend"].args
    out = tools["recommend"].invoke({"session_id": "lc", "request": "printer paper"})
    ids = re.findall(r"^(\S+) \| ", out, re.M)
    assert ids and all(i in rec.catalog for i in ids)
    out2 = tools["item_details"].invoke({"item_id": ids[0]})
    assert out2.startswith(f"{ids[0]} | {rec.catalog.get(ids[0]).title}")


@pytest.mark.integration
def test_langchain_retriever_returns_item_documents(rec):
    from langchain_core.retrievers import BaseRetriever

    r = make_item_retriever(rec, k=4)
    assert isinstance(r, BaseRetriever)
    docs = r.invoke("dry erase markers")
    assert len(docs) == 4
    for d in docs:
        item = rec.catalog.get(d.metadata["id"])
        assert d.metadata["title"] == item.title and d.page_content == item.text()
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)


def test_args_schema_is_the_pydantic_model_of_the_one_schema_source(rec):
    from pydantic import BaseModel

    from lumenrec.tools.core import TOOL_SCHEMAS

    for t in langchain_tools(LumenTools(rec)):
        assert isinstance(t.args_schema, type) and issubclass(t.args_schema, BaseModel), t.name
        js = t.args_schema.model_json_schema()
        assert js["additionalProperties"] is False and set(js["required"]) == set(TOOL_SCHEMAS[t.name]["required"])
        for arg, spec in TOOL_SCHEMAS[t.name]["properties"].items():
            assert js["properties"][arg]["description"] == spec["description"], (t.name, arg)


@pytest.mark.parametrize("args,expect", [
    ({"session_id": "lc-bad"}, "request"),                                   # missing
    ({"session_id": "lc-bad", "request": "pens", "colour": "red"}, "colour"),  # unknown
    ({"session_id": "lc-bad", "request": 42}, "request"),                    # wrong type
])
def test_bad_call_is_a_validation_error_reported_as_an_error_message(rec, args, expect):
    """Not a TypeError inside the tool: an error ToolMessage naming the argument and a good call."""
    tool = {t.name: t for t in langchain_tools(LumenTools(rec))}["recommend"]
    msg = tool.invoke({"name": "recommend", "args": args, "id": "c1", "type": "tool_call"})
    assert msg.status == "error" and expect in msg.content and '"session_id": "s1"' in msg.content
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        tool.args_schema.model_validate(args)


def test_a_tool_that_cannot_act_returns_an_error_status(rec):
    tools = {t.name: t for t in langchain_tools(LumenTools(rec))}
    msg = tools["item_details"].invoke({"name": "item_details", "args": {"item_id": "NOT-AN-ITEM"}, "id": "c2",
                                        "type": "tool_call"})
    assert msg.status == "error" and "not an item of the catalogue" in msg.content
    ok = tools["recommend"].invoke({"name": "recommend", "args": {"session_id": "lc-ok", "request": "pens"},
                                    "id": "c3", "type": "tool_call"})
    assert ok.status == "success" and re.search(r"^\S+ \| ", ok.content, re.M)


def test_retriever_k_per_call_overrides_the_constructor(rec):
    r = make_item_retriever(rec, k=5)
    assert len(r.invoke("gel pens", k=1)) == 1 and len(r.invoke("gel pens")) == 5
