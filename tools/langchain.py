"""LangChain surface: the lumenrec tools as standard ``StructuredTool`` objects and a LangChain
``BaseRetriever`` over the item retriever, usable in any chain or agent.

    tools = langchain_tools(LumenTools(rec))           # list[StructuredTool]
    tools[0].invoke({"session_id": "s1", "request": "gel pens"})
    docs = LumenItemRetriever(recommender=rec, k=5).invoke("blue gel pens")

Requires the ``langchain`` extra (imported lazily: ``MissingExtraError`` otherwise).
"""

from __future__ import annotations

from typing import Any

from lumenrec.errors import MissingExtraError
from lumenrec.tools.core import TOOL_NAMES, TOOL_SCHEMAS, LumenTools

__all__ = ["langchain_tools", "LumenItemRetriever", "make_item_retriever"]


def _lc():
    try:
        from langchain_core.documents import Document
        from langchain_core.retrievers import BaseRetriever
        from langchain_core.tools import StructuredTool
    except ImportError as e:
        raise MissingExtraError(e.name or "langchain-core", "langchain", "the LangChain tools") from e
    return StructuredTool, BaseRetriever, Document


def langchain_tools(tools: LumenTools) -> list[Any]:
    """The five tools as LangChain StructuredTools (names, docstrings and JSON schemas of tools.core)."""
    StructuredTool, _, _ = _lc()
    out = []
    for name in TOOL_NAMES:
        fn = getattr(tools, name)
        schema = dict(TOOL_SCHEMAS[name], title=name)
        schema.pop("additionalProperties", None)
        out.append(StructuredTool.from_function(func=fn, name=name, args_schema=schema,
                                                description=" ".join((fn.__doc__ or "").split())))
    return out


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
    _, BaseRetriever, Document = _lc()
    from lumenrec.retriever.base import Query

    class LumenItemRetriever(BaseRetriever):
        """Top-k catalogue items for a query, as LangChain Documents (metadata: id, title, brand,
        category, price, score). Ranks with the recommender's own retriever, so every Document is a
        catalogue item."""

        recommender: Any
        k: int = 5

        def _get_relevant_documents(self, query: str, *, run_manager=None) -> list:
            ids, scores = self.recommender.retriever.retrieve(Query(text=query), k=self.k)
            cat = self.recommender.catalog
            return [_item_document(Document, cat.get(i), s) for i, s in zip(ids, scores)]

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
