"""Choosing the local backend without loading a model: registry names in configs, the fallback when the
llama.cpp runtime cannot run here, tool-call JSON schemas and the parsing of written-out calls."""

from __future__ import annotations

import pytest

from lumenrec.agent.llm import backends
from lumenrec.agent.llm.llamacpp import parse_tool_calls, tool_call_schema
from lumenrec.agent.llm.runtime import RuntimeStatus
from lumenrec.errors import ConfigError, LLMError, ToolInputError


def test_config_accepts_registry_names_only_for_llama_backends():
    assert backends.LLMConfig(backend="llamacpp", model_path="1.5b").model_path == "1.5b"
    assert backends.LLMConfig(backend="local", model_path="hf:org/repo:f.gguf").model_path.startswith("hf:")
    with pytest.raises(ConfigError, match="no such file"):
        backends.LLMConfig(backend="transformers", model_path="1.5b")


def test_local_falls_back_to_transformers_when_llama_cpp_cannot_run(monkeypatch):
    import lumenrec.agent.llm.runtime as rt

    monkeypatch.setattr(rt, "check_runtime", lambda *a, **k: RuntimeStatus(ok=False, reason="built for AVX512"))
    made = []
    monkeypatch.setattr(backends, "TransformersLLM", lambda path, **kw: made.append((path, kw)) or "fallback")
    assert backends.make_local_llm(None, fallback=True) == "fallback" and made[0][0] is None
    with pytest.raises(LLMError, match="AVX512"):
        backends.make_local_llm(None, fallback=False)


def test_tool_call_schema_keeps_name_first_and_restricts_to_the_named_tool():
    tools = [{"type": "function", "function": {"name": "a", "description": "x", "parameters": {
        "type": "object", "properties": {"q": {"type": "string", "description": "d"}}, "required": ["q"]}}},
             {"type": "function", "function": {"name": "b", "parameters": {"type": "object", "properties": {}}}}]
    both = tool_call_schema(tools)
    assert [o["properties"]["name"]["const"] for o in both["anyOf"]] == ["a", "b"]
    assert list(both["anyOf"][0]["properties"]) == ["name", "arguments"]  # the model names the tool first
    only = tool_call_schema(tools, only="b")
    assert only["properties"]["name"] == {"const": "b"}
    assert "description" not in str(tool_call_schema(tools, only="a"))  # descriptions are prompt, not grammar
    assert both["anyOf"][0]["properties"]["arguments"]["additionalProperties"] is False
    with pytest.raises(ToolInputError, match="'c'"):
        tool_call_schema(tools, only="c")


def test_parse_tool_calls_reads_tags_and_bare_objects():
    assert parse_tool_calls('ok <tool_call>\n{"name": "a", "arguments": {"q": 1}}\n</tool_call>') == \
        [{"name": "a", "arguments": {"q": 1}}]
    assert parse_tool_calls('{{"name": "b", "arguments": {}}}') == [{"name": "b", "arguments": {}}]
    assert parse_tool_calls("no call here") == [] and parse_tool_calls('<tool_call>{"name": 3}</tool_call>') == []


def test_enums_survive_into_the_grammar():
    pytest.importorskip("llama_cpp")
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from lumenrec.agent.llm.llamacpp import _strict

    sch = {"type": "object", "properties": {"signal": {"type": ["string", "null"], "enum": ["accept", None],
                                                       "description": "x"}}}
    assert _strict(sch)["properties"]["signal"] == {"enum": ["accept", None]}
    import json

    gbnf = json_schema_to_gbnf(json.dumps(_strict(sch)))
    assert '"\\"accept\\""' in gbnf and "string" not in gbnf.split("signal ::=")[1].splitlines()[0]
