"""LangChain surface: the lumenrec tools as standard ``StructuredTool`` objects and a LangChain
``BaseRetriever`` over the item retriever, usable in any chain or agent.

    tools = langchain_tools(LumenTools(rec))           # list[StructuredTool]
    tools[0].invoke({"session_id": "s1", "request": "gel pens"})
    docs = LumenItemRetriever(recommender=rec, k=5).invoke("blue gel pens")

Requires the ``langchain`` extra (imported lazily: ``MissingExtraError`` otherwise).
"""

from __future__ import annotations

import json
from typing import Any

from lumenrec.errors import MissingExtraError
from lumenrec.tools.core import TOOL_NAMES, LumenTools, tool_args_model, tool_description, tool_example

__all__ = ["langchain_tools", "LumenItemRetriever", "make_item_retriever"]


def _lc():
    try:
        from langchain_core.documents import Document
        from langchain_core.retrievers import BaseRetriever
        from langchain_core.tools import StructuredTool, ToolException
    except ImportError as e:
        raise MissingExtraError(e.name or "langchain-core", "langchain", "the LangChain tools") from e
    return StructuredTool, BaseRetriever, Document, ToolException


def langchain_tools(tools: LumenTools) -> list[Any]:
    """The five tools as LangChain StructuredTools (names, docstrings and schemas of tools.core).

    ``args_schema`` is the pydantic model of TOOL_SCHEMAS (argument descriptions, unknown arguments
    refused), so a bad call is a validation error, reported to the model as an error ToolMessage
    that says what to send; a tool that cannot act (unknown item, nothing shown yet) raises
    ToolException, which LangChain also returns as a ToolMessage with ``status="error"``."""
    StructuredTool, _, _, ToolException = _lc()
    out = []
    for name in TOOL_NAMES:
        def run(_name=name, **kwargs: Any) -> str:
            res = tools.result(_name, **kwargs)
            if not res.ok:
                raise ToolException(res.text)
            return res.text

        out.append(StructuredTool.from_function(
            func=run, name=name, description=tool_description(name), args_schema=tool_args_model(name),
            handle_tool_error=True, handle_validation_error=_ValidationMessage(name)))
    return out


class _ValidationMessage:
    """handle_validation_error: the pydantic error turned into one actionable sentence."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, err: Exception) -> str:
        parts = []
        for e in getattr(err, "errors", lambda: [])()[:5]:
            loc = ".".join(str(x) for x in e.get("loc", ())) or "arguments"
            parts.append(f"{loc}: {e.get('msg', 'invalid')}")
        return (f"Bad arguments for {self.name} ({'; '.join(parts) or err}); send "
                f"{json.dumps(tool_example(self.name))}.")


def _item_document(Document, item, score: float | None = None):
    meta = {"id": item.id, "title": item.title, "brand": item.brand, "category": item.category}
    if item.price is not None:
        meta["price"] = item.price
    if score is not None:
        meta["score"] = float(score)
    return Document(page_content=item.text(), metadata=meta, id=item.id)


_CLS: dict[str, Any] = {}


def _retriever_class():
    """The LangChain BaseRetriever subclass, defined on first use (LangChain is an optional extra)."""
    if "cls" in _CLS:
        return _CLS["cls"]
    _, BaseRetriever, Document, _ = _lc()
    from lumenrec.retriever.base import Query

    class LumenItemRetriever(BaseRetriever):
        """Top-k catalogue items for a query, as LangChain Documents (metadata: id, title, brand,
        category, price, score). Ranks with the recommender's own retriever, so every Document is a
        catalogue item."""

        recommender: Any
        k: int = 5

        def _get_relevant_documents(self, query: str, *, run_manager=None, k: int | None = None) -> list:
            # `k` per call (``invoke(q, k=1)``) overrides the constructor's
            n = self.k if k is None else int(k)
            if n < 1:
                raise ValueError(f"k must be >= 1, got {n}")
            ids, scores = self.recommender.retriever.retrieve(Query(text=query), k=n)
            screen = self.recommender.screen  # the text an LLM reads is screened catalogue text
            return [_item_document(Document, screen.display_item(i), s) for i, s in zip(ids, scores)]

    _CLS["cls"] = LumenItemRetriever
    return LumenItemRetriever


def make_item_retriever(recommender, k: int = 5):
    """A LangChain BaseRetriever: a query string -> the top-k catalogue items as Documents."""
    return _retriever_class()(recommender=recommender, k=k)


def __getattr__(name: str):
    # `LumenItemRetriever` is built on first access, so importing this module never needs LangChain.
    if name == "LumenItemRetriever":
        return _retriever_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
