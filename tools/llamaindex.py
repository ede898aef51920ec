"""LlamaIndex surface: a ``BaseToolSpec`` with the lumenrec tools and a ``BaseRetriever`` over items.

    spec = LumenToolSpec(LumenTools(rec)); tools = spec.to_tool_list()   # FunctionTools
    nodes = make_llama_retriever(rec, k=5).retrieve("blue gel pens")      # NodeWithScore

Requires the ``llamaindex`` extra (imported lazily: ``MissingExtraError`` otherwise).
"""

from __future__ import annotations

from typing import Any

from lumenrec.errors import MissingExtraError
from lumenrec.tools.core import TOOL_NAMES, LumenTools, tool_args_model, tool_description

__all__ = ["LumenToolSpec", "make_llama_retriever"]

_CLS: dict[str, Any] = {}


def _li():
    try:
        from llama_index.core.retrievers import BaseRetriever
        from llama_index.core.schema import NodeWithScore, TextNode
        from llama_index.core.tools import FunctionTool, ToolOutput
        from llama_index.core.tools.tool_spec.base import BaseToolSpec
    except ImportError as e:
        raise MissingExtraError(e.name or "llama-index-core", "llamaindex", "the LlamaIndex tools") from e
    return BaseToolSpec, BaseRetriever, NodeWithScore, TextNode, FunctionTool, ToolOutput


def _spec_class():
    if "spec" in _CLS:
        return _CLS["spec"]
    BaseToolSpec, _, _, _, FunctionTool, ToolOutput = _li()

    class LumenToolSpec(BaseToolSpec):
        """The five lumenrec tools; ``to_tool_list()`` gives LlamaIndex FunctionTools whose ``fn_schema``
        is the pydantic model of tools.core.TOOL_SCHEMAS (argument descriptions, unknown arguments
        refused) and whose output has ``is_error=True`` when the tool could not act."""

        spec_functions = list(TOOL_NAMES)

        def __init__(self, tools: LumenTools) -> None:
            self.tools = tools

        def recommend(self, session_id: str, request: str) -> str:
            return self.tools.recommend(session_id, request)

        def refine_with_critique(self, session_id: str, critique: str) -> str:
            return self.tools.refine_with_critique(session_id, critique)

        def explain_item(self, session_id: str, item_ref: str) -> str:
            return self.tools.explain_item(session_id, item_ref)

        def summarize_user(self, session_id: str) -> str:
            return self.tools.summarize_user(session_id)

        def item_details(self, item_id: str) -> str:
            return self.tools.item_details(item_id)

        def to_tool_list(self, spec_functions=None, func_to_metadata_mapping=None) -> list:
            names = [n if isinstance(n, str) else n[0] for n in (spec_functions or self.spec_functions)]
            out = []
            for name in names:
                def run(_name=name, **kwargs):  # checked against the schema: never a TypeError
                    return self.tools.call(_name, kwargs)

                def as_output(res, _name=name):  # the ToolResult -> ToolOutput, failures flagged as errors
                    return ToolOutput(content=res.text, tool_name=_name, raw_input={}, raw_output=res.text,
                                      is_error=not res.ok)

                out.append(FunctionTool.from_defaults(fn=run, name=name, description=tool_description(name),
                                                      fn_schema=tool_args_model(name), callback=as_output))
            return out

    for name in TOOL_NAMES:  # one docstring per tool, the one the LLM reads (tools.core)
        getattr(LumenToolSpec, name).__doc__ = getattr(LumenTools, name).__doc__
    _CLS["spec"] = LumenToolSpec
    return LumenToolSpec


def _retriever_class():
    if "ret" in _CLS:
        return _CLS["ret"]
    _, BaseRetriever, NodeWithScore, TextNode, _, _ = _li()
    from lumenrec.retriever.base import Query

    class LumenLlamaRetriever(BaseRetriever):
        """Top-k catalogue items for a query as NodeWithScore (node id = item id; metadata: title,
        brand, category, price)."""

        def __init__(self, recommender, k: int = 5) -> None:
            super().__init__()
            self.recommender, self.k = recommender, int(k)

        def _retrieve(self, query_bundle) -> list:
            ids, scores = self.recommender.retriever.retrieve(Query(text=query_bundle.query_str), k=self.k)
            out = []
            for i, s in zip(ids, scores):
                it = self.recommender.screen.display_item(i)  # screened catalogue text
                meta = {"title": it.title, "brand": it.brand, "category": it.category}
                if it.price is not None:
                    meta["price"] = it.price
                out.append(NodeWithScore(node=TextNode(id_=it.id, text=it.text(), metadata=meta), score=float(s)))
            return out

    _CLS["ret"] = LumenLlamaRetriever
    return LumenLlamaRetriever


def make_llama_retriever(recommender, k: int = 5):
    """A LlamaIndex BaseRetriever over the recommender's item retriever."""
    return _retriever_class()(recommender, k)


def __getattr__(name: str):
    # Classes are built on first access, so importing this module never needs LlamaIndex.
    if name == "LumenToolSpec":
        return _spec_class()
    if name == "LumenLlamaRetriever":
        return _retriever_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
