"""Framework-free tools over a :class:`~lumenrec.agent.recommender.Recommender`: the one place their
behaviour, docstrings and JSON schemas live. Every plugin surface (LangChain, LlamaIndex, OpenAI tool
calling, MCP, the LLM router) wraps these.

The docstrings ARE the prompt an LLM reads to decide which tool to call: they say what each tool
returns and when to call it. Tools return actionable text: items as ``id | title | brand`` lines plus
a short narrative, and never a traceback. Bad input becomes a :class:`~lumenrec.errors.ToolInputError`
inside and one sentence outside saying what to send instead.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from lumenrec.errors import ToolInputError

__all__ = ["LumenTools", "TOOL_NAMES", "TOOL_SCHEMAS", "format_items", "ToolResult", "tool_description",
           "tool_args_model", "tool_example", "validate_tool_args"]

log = logging.getLogger(__name__)

TOOL_NAMES = ("recommend", "refine_with_critique", "explain_item", "summarize_user", "item_details")

_SID = {"type": "string", "description": "The conversation id; use the same one for every turn of a conversation."}

# JSON-schema parameters of each tool: THE schema source of every surface. OpenAI tool calling sends
# them with "strict": true (every property required, additionalProperties false), MCP lists them as
# input schemas, and tool_args_model() turns them into the pydantic models of LangChain (args_schema)
# and LlamaIndex (fn_schema) and the validation of MCP calls. Change a tool's arguments here only.
TOOL_SCHEMAS: dict[str, dict[str, Any]] = {
    "recommend": {"type": "object", "properties": {
        "session_id": _SID,
        "request": {"type": "string", "description": "What the shopper wants, in their words, e.g. 'blue gel pens under $10'."}},
        "required": ["session_id", "request"], "additionalProperties": False},
    "refine_with_critique": {"type": "object", "properties": {
        "session_id": _SID,
        "critique": {"type": "string", "description": "The shopper's feedback on the last items, e.g. 'not BIC again, cheaper'."}},
        "required": ["session_id", "critique"], "additionalProperties": False},
    "explain_item": {"type": "object", "properties": {
        "session_id": _SID,
        "item_ref": {"type": "string", "description": "Which shown item: its position ('2', 'the second one'), its id, or its exact title."}},
        "required": ["session_id", "item_ref"], "additionalProperties": False},
    "summarize_user": {"type": "object", "properties": {"session_id": _SID},
                       "required": ["session_id"], "additionalProperties": False},
    "item_details": {"type": "object", "properties": {
        "item_id": {"type": "string", "description": "A catalogue item id, as shown in the 'id | title | brand' lines."}},
        "required": ["item_id"], "additionalProperties": False},
}


@dataclass
class ToolResult:
    """A tool's text plus the structured reply behind it (for callers that want the items)."""

    text: str
    items: list[dict[str, str]] = field(default_factory=list)
    intent: str = ""
    ok: bool = True
    reply: Any = None  # the Recommender Reply behind the text (trace, narrative), when there is one


def format_items(items: list[dict[str, str]], with_why: bool = True) -> str:
    """Items as 'id | title | brand' lines, each followed by its narrative when it has one."""
    lines = []
    for it in items:
        lines.append(f"{it['id']} | {it['title']} | {it.get('brand') or '-'}")
        if with_why and it.get("why"):
            lines.append(f"    why: {it['why']}")
    return "\n".join(lines)


def _text(value: Any, name: str, example: str, max_chars: int = 2000) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ToolInputError(f"'{name}' must be a non-empty string, for example {example!r}; got {value!r:.60}.")
    if len(value) > max_chars:
        raise ToolInputError(f"'{name}' is {len(value)} characters long; send at most {max_chars}.")
    return value.strip()


class LumenTools:
    """The five tools over one recommender. Methods return text; ``*_result`` variants return ToolResult."""

    def __init__(self, recommender) -> None:
        self.rec = recommender
        self.calls: list[dict[str, Any]] = []  # (name, args, ok) log, for tests and traces

    # -- the tools (docstrings are the LLM's instructions) ---------------------------------------
    def recommend(self, session_id: str, request: str) -> str:
        """Recommend catalogue items for a shopper's request. Call this when the shopper asks for a
        product or a new kind of product (e.g. "I need gel pens"). Returns up to 5 items as
        'id | title | brand' lines, each with a short reason; only these items exist, never invent others."""
        return self.recommend_result(session_id, request).text

    def refine_with_critique(self, session_id: str, critique: str) -> str:
        """Refine the last recommendations with the shopper's feedback, such as "not BIC again",
        "cheaper", "in blue" or "a bigger pack". Call this after recommend when the shopper reacts to
        the items shown. Constraints accumulate over the conversation. Returns new items as
        'id | title | brand' lines with reasons."""
        return self.refine_result(session_id, critique).text

    def explain_item(self, session_id: str, item_ref: str) -> str:
        """Explain one item that was shown. Call this when the shopper asks "why the second one?" or
        "tell me about #1". item_ref is a position ('2', 'the second one'), an item id, or an exact
        title. Returns the item line and why it suits this shopper."""
        return self.explain_result(session_id, item_ref).text

    def summarize_user(self, session_id: str) -> str:
        """Summarise what is known about the shopper. Call this when they ask "what do you know about
        me?". Returns a short summary of their past purchases and the constraints (brands, categories,
        price) they gave in this conversation."""
        return self.summarize_result(session_id).text

    def item_details(self, item_id: str) -> str:
        """Look up one catalogue item. Call this when the shopper asks about a specific item's details;
        item_id comes from an 'id | title | brand' line. Returns its facts: title, brand, category,
        price, attributes and description."""
        return self.details_result(item_id).text

    # -- structured variants ------------------------------------------------------------------
    def recommend_result(self, session_id: str, request: str) -> ToolResult:
        return self._run("recommend", lambda: self._reply_result(self.rec.run_intent(
            _text(session_id, "session_id", "s1"), _text(request, "request", "blue gel pens"), "recommend")),
            session_id=session_id, request=request)

    def refine_result(self, session_id: str, critique: str) -> ToolResult:
        def go() -> ToolResult:
            sid = _text(session_id, "session_id", "s1")
            crit = _text(critique, "critique", "not BIC again, cheaper")
            s = self.rec.store.get(sid)
            if s is None or not s.shown:
                raise ToolInputError(f"session {sid!r} has no recommendations to refine yet; call recommend first "
                                     "with what the shopper wants.")
            return self._reply_result(self.rec.run_intent(sid, crit, "recommend"))
        return self._run("refine_with_critique", go, session_id=session_id, critique=critique)

    def explain_result(self, session_id: str, item_ref: str) -> ToolResult:
        def go() -> ToolResult:
            sid = _text(session_id, "session_id", "s1")
            ref = _text(item_ref, "item_ref", "2")
            s = self.rec.store.get(sid)
            if s is None or not s.shown:
                raise ToolInputError(f"session {sid!r} has shown no items yet; call recommend first.")
            iid = self.rec.resolve_item_ref(s, ref)
            if iid is None:
                raise ToolInputError(f"no shown item matches {ref!r}; send a position between 1 and {len(s.last_shown)}, "
                                     "or an item id from the 'id | title | brand' lines.")
            return self._reply_result(self.rec.run_intent(sid, ref, "explain", item_ref=iid))
        return self._run("explain_item", go, session_id=session_id, item_ref=item_ref)

    def summarize_result(self, session_id: str) -> ToolResult:
        return self._run("summarize_user", lambda: self._reply_result(self.rec.run_intent(
            _text(session_id, "session_id", "s1"), "", "summarize_user")), session_id=session_id)

    def details_result(self, item_id: str) -> ToolResult:
        def go() -> ToolResult:
            iid = _text(item_id if not isinstance(item_id, int) else str(item_id), "item_id", self.rec.catalog.ids[0])
            gid = self.rec.ground_item(iid, title=iid)
            if gid is None:
                raise ToolInputError(f"{iid!r} is not an item of the catalogue; send an id from an 'id | title | brand' "
                                     "line returned by recommend.")
            it = self.rec.screen.display_item(gid)  # screened: no links, numbers or orders from the catalogue
            lines = [f"{it.id} | {it.title} | {it.brand or '-'}"]
            if it.categories:
                lines.append("category: " + " > ".join(it.categories))
            if it.price is not None:
                lines.append(f"price: ${it.price:.2f}")
            for k, v in sorted(it.attributes.items()):
                lines.append(f"{k}: {v}")
            desc = self.rec.screen.description(gid)  # without its flagged sentences
            if desc:
                lines.append("description: " + desc[:600])
            return ToolResult("\n".join(lines), [self.rec.item_dict(gid)], "item_details")
        return self._run("item_details", go, item_id=item_id)

    # -- dispatch -------------------------------------------------------------------------------
    def call(self, name: str, arguments: dict[str, Any] | str | None) -> ToolResult:
        """Call a tool by name with JSON arguments (a dict or a JSON string); never raises.

        Arguments are checked against TOOL_SCHEMAS first: a missing, unknown or mistyped argument is a
        failed ToolResult (``ok=False``) that says what to send."""
        try:
            args = validate_tool_args(name, arguments)
        except ToolInputError as e:
            self.calls.append({"name": name, "args": arguments, "ok": False, "items": []})
            return ToolResult(str(e), ok=False)
        return self.result(name, **args)

    def result(self, name: str, **arguments: Any) -> ToolResult:
        """The structured result of one tool (arguments already checked against its schema)."""
        fn = {"recommend": self.recommend_result, "refine_with_critique": self.refine_result,
              "explain_item": self.explain_result, "summarize_user": self.summarize_result,
              "item_details": self.details_result}[name]
        return fn(**arguments)

    def functions(self) -> list[Callable[..., str]]:
        """The five tools as bound methods (name, docstring and signature intact)."""
        return [getattr(self, n) for n in TOOL_NAMES]

    # -- internals --------------------------------------------------------------------------------
    def _reply_result(self, reply) -> ToolResult:
        body = reply.text if not reply.items else _reply_text(reply)
        return ToolResult(body, list(reply.items), reply.intent, True, reply)

    def _run(self, name: str, fn: Callable[[], ToolResult], **args: Any) -> ToolResult:
        try:
            res = fn()
        except ToolInputError as e:
            res = ToolResult(str(e), ok=False)
        except Exception as e:  # a tool must answer with text, never a traceback
            log.exception("tool %s failed", name)
            res = ToolResult(f"The {name} tool failed ({type(e).__name__}); try again, or rephrase the request.", ok=False)
        self.calls.append({"name": name, "args": args, "ok": res.ok, "items": [it["id"] for it in res.items]})
        return res


def _reply_text(reply) -> str:
    head = reply.text.splitlines()[0] if reply.text else ""
    if reply.intent == "recommend" and len(reply.items) > 1:
        return f"{head}\n{format_items(reply.items)}"
    return f"{reply.text}\n{format_items(reply.items, with_why=False)}"


def tool_example(name: str) -> dict[str, str]:
    """A good call of the tool (the example an error message shows)."""
    return {"recommend": {"session_id": "s1", "request": "blue gel pens"},
            "refine_with_critique": {"session_id": "s1", "critique": "not BIC again"},
            "explain_item": {"session_id": "s1", "item_ref": "2"},
            "summarize_user": {"session_id": "s1"},
            "item_details": {"item_id": "123"}}[name]


def tool_description(name: str) -> str:
    """The tool's docstring on one line: the description every surface sends to the model."""
    if name not in TOOL_NAMES:
        raise ToolInputError(f"there is no tool {name!r}; the tools are: {', '.join(TOOL_NAMES)}")
    return " ".join((getattr(LumenTools, name).__doc__ or "").split())


_MODELS: dict[str, Any] = {}
_JSON_TYPES = {"string": str, "integer": int, "number": float, "boolean": bool}


def tool_args_model(name: str):
    """A pydantic model of the tool's arguments, built from TOOL_SCHEMAS (descriptions included;
    unknown arguments are refused: ``extra="forbid"``). LangChain's ``args_schema`` and LlamaIndex's
    ``fn_schema`` are this model, so a bad call is a validation error before the tool runs."""
    if name in _MODELS:
        return _MODELS[name]
    if name not in TOOL_NAMES:
        raise ToolInputError(f"there is no tool {name!r}; the tools are: {', '.join(TOOL_NAMES)}")
    from pydantic import ConfigDict, Field, create_model

    schema = TOOL_SCHEMAS[name]
    fields: dict[str, Any] = {}
    for arg, spec in schema["properties"].items():
        default = ... if arg in schema["required"] else None
        fields[arg] = (_JSON_TYPES[spec["type"]], Field(default, description=spec["description"]))
    model = create_model(name, __config__=ConfigDict(extra="forbid", title=name), **fields)
    model.__doc__ = tool_description(name)
    _MODELS[name] = model
    return model


def validate_tool_args(name: str, arguments: Any) -> dict[str, Any]:
    """`arguments` checked against the tool's schema (dict or JSON string); ToolInputError naming what
    is missing, unknown or of the wrong type, with an example of a good call."""
    if name not in TOOL_NAMES:
        raise ToolInputError(f"There is no tool {name!r}; the tools are: {', '.join(TOOL_NAMES)}.")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError as e:
            raise ToolInputError(f"The arguments of {name} are not valid JSON ({e.msg}); send an object like "
                                 f"{json.dumps(tool_example(name))}.") from e
    arguments = {} if arguments is None else arguments
    if not isinstance(arguments, dict):
        raise ToolInputError(f"The arguments of {name} must be a JSON object like {json.dumps(tool_example(name))}.")
    schema = TOOL_SCHEMAS[name]
    missing = [k for k in schema["required"] if k not in arguments]
    extra = [str(k) for k in arguments if k not in schema["properties"]]
    wrong = [k for k, v in arguments.items() if k in schema["properties"]
             and not isinstance(v, _JSON_TYPES[schema["properties"][k]["type"]])]
    if missing or extra or wrong:
        what = "; ".join(p for p in (f"missing {', '.join(missing)}" if missing else "",
                                     f"unknown {', '.join(extra)}" if extra else "",
                                     f"{', '.join(wrong)} must be a string" if wrong else "") if p)
        raise ToolInputError(f"Bad arguments for {name} ({what}); send {json.dumps(tool_example(name))}.")
    return dict(arguments)
