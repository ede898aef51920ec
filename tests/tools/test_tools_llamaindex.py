"""LlamaIndex surface: the BaseToolSpec's FunctionTools and the BaseRetriever return catalogue items."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("llama_index.core")

from lumenrec.agent.recommender import Recommender  # noqa: E402
from lumenrec.tools.core import TOOL_NAMES, LumenTools  # noqa: E402
from lumenrec.tools.llamaindex import make_llama_retriever  # noqa: E402


@pytest.fixture(scope="module")
def rec():
    return Recommender.from_dataset("synthetic")


@pytest.mark.integration
def test_tool_spec_tools_return_catalogue_items(rec):
    from llama_index.core.tools.tool_spec.base import BaseToolSpec

    from lumenrec.tools.llamaindex import LumenToolSpec

    spec = LumenToolSpec(LumenTools(rec))
    assert isinstance(spec, BaseToolSpec)
    tools = {t.metadata.name: t for t in spec.to_tool_list()}
    assert set(tools) == set(TOOL_NAMES)
    assert "Call this" in tools["recommend"].metadata.description
    out = tools["recommend"].call(session_id="li", request="manila file folders")
    ids = re.findall(r"^(\S+) \| ", str(out), re.M)
    assert ids and all(i in rec.catalog for i in ids)
    out2 = tools["explain_item"].call(session_id="li", item_ref="1")
    assert re.findall(r"^(\S+) \| ", str(out2), re.M) == [ids[0]]


@pytest.mark.integration
def test_llama_retriever_returns_item_nodes(rec):
    from llama_index.core.retrievers import BaseRetriever

    r = make_llama_retriever(rec, k=3)
    assert isinstance(r, BaseRetriever)
    nodes = r.retrieve("scientific calculator")
    assert len(nodes) == 3
    for n in nodes:
        item = rec.catalog.get(n.node.node_id)
        assert n.node.metadata["title"] == item.title


def test_fn_schemas_have_argument_descriptions_and_refuse_unknown_arguments(rec):
    from lumenrec.tools.core import TOOL_SCHEMAS
    from lumenrec.tools.llamaindex import LumenToolSpec

    tools = {t.metadata.name: t for t in LumenToolSpec(LumenTools(rec)).to_tool_list()}
    for name, t in tools.items():
        assert t.metadata.fn_schema.model_json_schema()["additionalProperties"] is False, name
        params = t.metadata.get_parameters_dict()
        for arg, spec in TOOL_SCHEMAS[name]["properties"].items():
            assert params["properties"][arg]["description"] == spec["description"], (name, arg)
        # what an agent sends to the LLM: the OpenAI-style tool, descriptions included
        fn = t.metadata.to_openai_tool()["function"]
        assert fn["name"] == name and all("description" in p for p in fn["parameters"]["properties"].values())


@pytest.mark.parametrize("kwargs,expect", [
    ({"session_id": "li-x", "request": "pens", "colour": "red"}, "unknown colour"),
    ({"session_id": "li-x"}, "missing request"),
    ({"session_id": "li-x", "request": ""}, "non-empty string"),
])
def test_bad_calls_are_error_outputs_not_exceptions(rec, kwargs, expect):
    from lumenrec.tools.llamaindex import LumenToolSpec

    tool = {t.metadata.name: t for t in LumenToolSpec(LumenTools(rec)).to_tool_list()}["recommend"]
    out = tool.call(**kwargs)
    assert out.is_error and expect in out.content


def test_explain_out_of_range_position_is_an_error(rec):
    from lumenrec.tools.llamaindex import LumenToolSpec

    tools = {t.metadata.name: t for t in LumenToolSpec(LumenTools(rec)).to_tool_list()}
    assert not tools["recommend"].call(session_id="li-99", request="staplers").is_error
    out = tools["explain_item"].call(session_id="li-99", item_ref="99")
    assert out.is_error and "between 1 and 5" in out.content


@pytest.mark.integration
def test_function_agent_drives_the_tools_and_sees_errors_as_errors(rec):
    """LlamaIndex's own agent machinery (FunctionAgent) with a scripted function-calling LLM: the tool
    calls it makes reach our tools through their fn_schema, and a tool that cannot act comes back as
    an error ToolOutput (is_error) the agent can read."""
    import asyncio

    from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
    from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
    from llama_index.core.llms.mock import MockFunctionCallingLLM

    from lumenrec.tools.llamaindex import LumenToolSpec

    script = [("recommend", {"session_id": "fa", "request": "manila file folders"}),
              ("explain_item", {"session_id": "fa", "item_ref": "99"}),
              ("item_details", {"item_id": "NOT-AN-ITEM"}),
              ("recommend", {"session_id": "fa", "request": "pens", "colour": "red"})]

    def respond(messages, **kwargs):
        done = sum(1 for m in messages if m.role == MessageRole.TOOL)
        if done < len(script):
            name, args = script[done]
            return ChatMessage(role=MessageRole.ASSISTANT,
                               blocks=[ToolCallBlock(tool_call_id=f"c{done}", tool_name=name, tool_kwargs=args)])
        return ChatMessage(role=MessageRole.ASSISTANT, content="done")

    agent = FunctionAgent(tools=LumenToolSpec(LumenTools(rec)).to_tool_list(),
                          llm=MockFunctionCallingLLM(response_generator=respond), system_prompt="shop")

    async def run():
        handler = agent.run("find folders")
        results = [ev async for ev in handler.stream_events() if isinstance(ev, ToolCallResult)]
        await handler
        return results

    results = asyncio.run(run())
    assert [r.tool_name for r in results] == [n for n, _ in script]
    ok, out_of_range, unknown_item, unknown_arg = results
    assert not ok.tool_output.is_error and re.findall(r"^(\S+) \| ", ok.tool_output.content, re.M)
    assert out_of_range.tool_output.is_error and "between 1 and 5" in out_of_range.tool_output.content
    assert unknown_item.tool_output.is_error and "not an item of the catalogue" in unknown_item.tool_output.content
    assert unknown_arg.tool_output.is_error and "colour" in unknown_arg.tool_output.content
