"""OpenAI tool calling: the tool schemas to send with a chat request, and a dispatcher for the calls.

    from openai import OpenAI
    tools = LumenTools(Recommender.from_dataset("synthetic"))
    resp = client.chat.completions.create(model=..., messages=..., tools=openai_tool_schemas())
    for call in resp.choices[0].message.tool_calls or []:
        messages.append({"role": "tool", "tool_call_id": call.id, "content": dispatch(call, tools)})

No framework needed: the schemas are plain JSON and :func:`dispatch` accepts the SDK's tool-call
objects or plain dicts.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from lumenrec.tools.core import TOOL_NAMES, TOOL_SCHEMAS, LumenTools, tool_description

__all__ = ["openai_tool_schemas", "dispatch", "parse_tool_call"]


def openai_tool_schemas(strict: bool = True) -> list[dict[str, Any]]:
    """The five tools in the OpenAI ``tools=[{"type": "function", ...}]`` format.

    ``strict`` (default) asks for Structured Outputs: the model's arguments then always match the
    schema. TOOL_SCHEMAS already follow the strict-mode rules (every property required,
    ``additionalProperties: false``, a description on every argument)."""
    out = []
    for name in TOOL_NAMES:
        fn: dict[str, Any] = {"name": name, "description": tool_description(name),
                              "parameters": copy.deepcopy(TOOL_SCHEMAS[name])}
        if strict:
            fn["strict"] = True
        out.append({"type": "function", "function": fn})
    return out


def parse_tool_call(tool_call: Any) -> tuple[str, Any]:
    """(name, arguments) of an OpenAI SDK tool call, a ``{"function": {...}}`` dict or ``{"name", "arguments"}``."""
    fn = getattr(tool_call, "function", None)
    if fn is not None:
        return str(getattr(fn, "name", "")), getattr(fn, "arguments", None)
    if isinstance(tool_call, dict):
        inner = tool_call.get("function") if isinstance(tool_call.get("function"), dict) else tool_call
        return str(inner.get("name", "")), inner.get("arguments", inner.get("args"))
    return "", None


def dispatch(tool_call: Any, tools: LumenTools) -> str:
    """Run one tool call and return the text to send back as the ``tool`` message (never raises)."""
    name, args = parse_tool_call(tool_call)
    if not name:
        return (f"The tool call has no function name; call one of {', '.join(TOOL_NAMES)} with JSON arguments "
                f"such as {json.dumps({'session_id': 's1', 'request': 'blue gel pens'})}.")
    return tools.call(name, args).text
