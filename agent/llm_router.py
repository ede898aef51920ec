"""The LLM router: a LangChain tool-calling agent that decides which tool runs a turn.

:class:`LLMRouter` wraps ``langchain.agents.create_agent`` over any LangChain chat model (e.g.
``ChatOpenAI(base_url=..., api_key="x", model=...)`` pointed at ``lumenrec llm serve``) with the five
tools of :mod:`lumenrec.tools.core`, bound to the turn's session. It offers two entry points:

- :meth:`LLMRouter.run_turn` (what :class:`~lumenrec.agent.recommender.Recommender` calls when
  ``RecommenderConfig.router == "llm"``): the agent runs; the items of the reply come only from the
  tools (the retriever), and ``id | title | brand`` lines the model writes itself are kept only when
  they name a catalogue item (by id or exact title). It raises :class:`LLMRouterError` on any
  failure (timeout, no or only malformed tool calls, exception), and the Recommender then answers
  with the offline router and sets ``fallback_used``.
- :meth:`LLMRouter.route` (the :class:`~lumenrec.agent.router.Router` protocol): one model call with
  the tools bound; its first tool call names the intent. Failures fall back to the offline router.

Injection is checked with the offline rules *before* the model sees the message: a model is never
the last line of defence against "ignore your instructions".
"""

from __future__ import annotations

import concurrent.futures
import logging
import re
import threading
import time
from typing import Any

from lumenrec.agent.intents import INJECTION_RX, Intent
from lumenrec.agent.router import OfflineRouter, RouteDecision
from lumenrec.errors import ConfigError, LLMError, MissingExtraError

__all__ = ["LLMRouter", "LLMRouterError", "SYSTEM_PROMPT", "TOOL_INTENTS", "make_chat_model", "ground_text"]

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are the shopping assistant of an office-supplies shop. Use the tools to answer: call recommend "
    "when the shopper asks for a product, refine_with_critique when they react to items you showed "
    "(e.g. 'not BIC again', 'cheaper'), explain_item when they ask why an item was picked, summarize_user "
    "when they ask what you know about them, item_details for one item's facts. Only mention items the "
    "tools returned, as 'id | title | brand' lines; never invent items, prices or brands. Keep answers short."
)

# Which intent each tool stands for (the Router protocol speaks intents).
TOOL_INTENTS = {"recommend": Intent.RECOMMEND, "refine_with_critique": Intent.RECOMMEND,
                "explain_item": Intent.EXPLAIN, "summarize_user": Intent.SUMMARIZE_USER,
                "item_details": Intent.EXPLAIN}

_ITEM_LINE = re.compile(r"^\s*(?:[-*\d.)]+\s*)?([^|\n]{1,80}?)\s*\|\s*([^|\n]+?)\s*(?:\|\s*([^|\n]*?)\s*)?$")


class LLMRouterError(LLMError):
    """The LLM turn failed (timeout, no usable tool call, exception); the offline router answers."""


def make_chat_model(base_url: str, model: str, *, api_key: str = "x", timeout_s: float = 60.0,
                    max_tokens: int = 256, temperature: float = 0.0):
    """A LangChain ChatOpenAI for any OpenAI-compatible endpoint (our `lumenrec llm serve`, vLLM, ...)."""
    try:
        from langchain_openai import ChatOpenAI
    except ImportError as e:
        raise MissingExtraError("langchain-openai", "langchain", "the LLM tool-calling router") from e
    return ChatOpenAI(base_url=base_url, api_key=api_key or "x", model=model, timeout=timeout_s, max_retries=0,
                      max_tokens=max_tokens, temperature=temperature)


def ground_text(text: str, recommender) -> tuple[str, list[str], list[str]]:
    """Keep only ``id | title | brand`` lines that name a catalogue item (id, else exact title).

    Returns (the text without the lines naming unknown items, catalogue ids named, dropped names).
    """
    kept, ids, dropped = [], [], []
    for line in (text or "").splitlines():
        m = _ITEM_LINE.match(line)
        if not m:
            kept.append(line)
            continue
        first, second = m.group(1).strip(), m.group(2).strip()
        gid = recommender.ground_item(first) or recommender.ground_item(title=second) or recommender.ground_item(title=first)
        if gid is None:
            dropped.append(line.strip()[:120])
            continue
        ids.append(gid)
        kept.append(line)
    return "\n".join(kept).strip(), list(dict.fromkeys(ids)), dropped


def _require_langchain():
    try:
        from langchain.agents import create_agent
        from langchain_core.tools import StructuredTool
    except ImportError as e:
        raise MissingExtraError(e.name or "langchain", "langchain", "the LLM tool-calling router") from e
    return create_agent, StructuredTool


class LLMRouter:
    """A LangChain agent over a chat model and the lumenrec tools, with an offline fallback."""

    def __init__(self, chat_model, *, timeout_s: float = 60.0, max_steps: int = 6, system_prompt: str = SYSTEM_PROMPT,
                 history_turns: int = 6, offline: OfflineRouter | None = None) -> None:
        if not (timeout_s > 0):
            raise ConfigError("timeout_s", timeout_s, "must be > 0")
        if max_steps < 1:
            raise ConfigError("max_steps", max_steps, "must be >= 1")
        self.model, self.timeout_s, self.max_steps = chat_model, float(timeout_s), int(max_steps)
        self.system_prompt, self.history_turns = system_prompt, int(history_turns)
        self.offline = offline or OfflineRouter()
        self.stats = {"turns": 0, "tool_turns": 0, "failures": 0}

    @classmethod
    def from_config(cls, config) -> "LLMRouter":
        """From a RecommenderConfig: ChatOpenAI at config.llm_base_url serving config.llm_model."""
        model = make_chat_model(config.llm_base_url, config.llm_model, timeout_s=config.llm_timeout_s,
                                max_tokens=config.llm_max_tokens)
        return cls(model, timeout_s=config.llm_timeout_s, max_steps=config.llm_max_steps)

    # ------------------------------------------------------------------------------ Router protocol
    def route(self, message: str, session: Any = None) -> RouteDecision:
        """One model call with the tools bound; the first tool call's name gives the intent."""
        if INJECTION_RX.search(message or ""):
            return RouteDecision(Intent.INJECTION, 0.99, None, None, "injection pattern (checked before the LLM)")
        try:
            from lumenrec.tools.openai_tools import openai_tool_schemas

            bound = self.model.bind_tools(openai_tool_schemas())
            ai = self._with_timeout(lambda: bound.invoke([("system", self.system_prompt), ("human", message)]))
            calls = getattr(ai, "tool_calls", None) or []
            for c in calls:
                intent = TOOL_INTENTS.get(c.get("name"))
                if intent is not None:
                    return RouteDecision(intent, 0.8, None, None, f"llm tool call {c['name']}")
            raise LLMRouterError(f"no known tool call in the model answer ({len(calls)} calls)")
        except Exception as e:
            d = self.offline.route(message, session)
            d.reason = f"offline fallback ({type(e).__name__}): {d.reason}"
            return d

    # ---------------------------------------------------------------------------------- full turn
    def run_turn(self, recommender, session_id: str, message: str):
        """Run one turn with the agent; returns a Reply or raises LLMRouterError (the caller falls back)."""
        from lumenrec.agent.recommender import Reply, TraceStep

        self.stats["turns"] += 1
        if INJECTION_RX.search(message or ""):
            reply = recommender.run_intent(session_id, message, Intent.INJECTION)
            reply._route_details = {"decision": "injection pattern (checked before the LLM)"}
            return reply
        create_agent, StructuredTool = _require_langchain()
        from lumenrec.tools.core import LumenTools

        tools = LumenTools(recommender)
        cancelled = threading.Event()
        results: list[tuple[str, Any]] = []

        def make(name: str, fn, doc: str, params: dict):
            def run(**kwargs) -> str:
                if cancelled.is_set():
                    return "This turn has ended."
                res = fn(session_id, **kwargs) if name != "item_details" else fn(**kwargs)
                results.append((name, res))
                return res.text
            schema = {"type": "object", "properties": params, "required": list(params), "title": name}
            return StructuredTool.from_function(func=run, name=name, description=doc, args_schema=schema)

        from lumenrec.tools.core import TOOL_SCHEMAS

        lc_tools = []
        for name, fn in (("recommend", tools.recommend_result), ("refine_with_critique", tools.refine_result),
                         ("explain_item", tools.explain_result), ("summarize_user", tools.summarize_result),
                         ("item_details", tools.details_result)):
            params = {k: v for k, v in TOOL_SCHEMAS[name]["properties"].items() if k != "session_id"}
            doc = " ".join((getattr(LumenTools, name).__doc__ or "").split())
            lc_tools.append(make(name, fn, doc, params))
        agent = create_agent(self.model, tools=lc_tools, system_prompt=self.system_prompt)
        messages = self._history(recommender, session_id) + [{"role": "user", "content": message}]
        t0 = time.perf_counter()
        try:
            state = self._with_timeout(lambda: agent.invoke({"messages": messages},
                                                            config={"recursion_limit": 2 * self.max_steps + 1}),
                                       cancelled)
        except Exception as e:
            self.stats["failures"] += 1
            raise LLMRouterError(f"agent failed: {type(e).__name__}: {e}"[:400]) from e
        agent_ms = (time.perf_counter() - t0) * 1000.0
        ok = [(n, r) for n, r in results if r.ok]
        calls = [{"name": n, "ok": r.ok, "items": [it["id"] for it in r.items]} for n, r in results]
        if not ok:
            self.stats["failures"] += 1
            raise LLMRouterError(f"the model made no successful tool call ({len(results)} tried: {calls})")
        self.stats["tool_turns"] += 1
        final = ""
        for m in reversed(state.get("messages", [])):
            if getattr(m, "type", "") == "ai" and not getattr(m, "tool_calls", None):
                final = m.content if isinstance(m.content, str) else str(m.content)
                break
        text, named, dropped = ground_text(final, recommender)
        main_name, main = ok[-1]
        items = list(main.items)
        have = {it["id"] for it in items}
        for iid in named:
            if iid not in have:
                items.append(recommender.item_dict(iid))
                have.add(iid)
        if len(text.split()) < 3:
            text = main.text
        trace = [TraceStep("llm_agent", agent_ms, {"tool_calls": calls, "dropped_item_lines": dropped,
                                                   "final_message": final[:500]})]
        if main.reply is not None:
            trace += main.reply.trace
        narrative = " ".join(r.reply.narrative for _, r in ok if r.reply is not None and r.reply.narrative)
        reply = Reply(text=text, items=items, narrative=narrative,
                      intent=TOOL_INTENTS.get(main_name, Intent.RECOMMEND).value, trace=trace, session_id=session_id)
        reply.items = recommender._ground([(it["id"], it.get("why", "")) for it in reply.items], reply.trace)
        reply._route_details = {"tools": [c["name"] for c in calls]}
        return reply

    # ---------------------------------------------------------------------------------- internals
    def _history(self, recommender, session_id: str) -> list[dict[str, str]]:
        s = recommender.store.get(session_id)
        if s is None:
            return []
        out = []
        for t in s.turns[-self.history_turns:]:
            if t.role in ("user", "assistant") and t.text:
                out.append({"role": t.role, "content": t.text[:1500]})
        return out

    def _with_timeout(self, fn, cancelled: threading.Event | None = None):
        ex = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-router")
        fut = ex.submit(fn)
        try:
            return fut.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            if cancelled is not None:
                cancelled.set()
            raise LLMRouterError(f"the LLM turn took longer than {self.timeout_s:g} s") from None
        finally:
            ex.shutdown(wait=False)
