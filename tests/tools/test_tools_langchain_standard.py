"""LangChain's own conformance suite (`langchain-tests`) run against our tools and item retriever.

ToolsUnitTests and ToolsIntegrationTests for each of the five tools (a name, an input schema that
accepts the example call, invoke/ainvoke with and without a ToolCall), RetrieversIntegrationTests for
the item retriever (``k`` in the constructor and per call: ``invoke(q, k=1)`` returns one Document).
"""

from __future__ import annotations

from functools import lru_cache

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_tests.integration_tests import RetrieversIntegrationTests, ToolsIntegrationTests  # noqa: E402
from langchain_tests.unit_tests import ToolsUnitTests  # noqa: E402

from lumenrec.agent.recommender import Recommender  # noqa: E402
from lumenrec.tools.core import LumenTools  # noqa: E402
from lumenrec.tools.langchain import LumenItemRetriever, langchain_tools  # noqa: E402


@lru_cache(maxsize=1)
def _rec() -> Recommender:
    return Recommender.from_dataset("synthetic")


@lru_cache(maxsize=1)
def _tools() -> dict:
    tools = LumenTools(_rec())
    tools.recommend("std-1", "blue gel pens")  # a session with shown items, for refine / explain
    return {t.name: t for t in langchain_tools(tools)}


EXAMPLES = {
    "recommend": {"session_id": "std-1", "request": "blue gel pens"},
    "refine_with_critique": {"session_id": "std-1", "critique": "something cheaper"},
    "explain_item": {"session_id": "std-1", "item_ref": "2"},
    "summarize_user": {"session_id": "std-1"},
    "item_details": {"item_id": "1"},
}


def _standard(name: str, base: type) -> type:
    class Suite(base):
        @property
        def tool_constructor(self):
            return _tools()[name]

        @property
        def tool_invoke_params_example(self) -> dict:
            return dict(EXAMPLES[name])

    Suite.__name__ = Suite.__qualname__ = f"Test{base.__name__}_{name}"
    return Suite


for _name in EXAMPLES:
    for _base in (ToolsUnitTests, ToolsIntegrationTests):
        _cls = _standard(_name, _base)
        globals()[_cls.__name__] = _cls
del _cls, _name, _base


class TestItemRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self):
        return LumenItemRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"recommender": _rec(), "k": 5}

    @property
    def retriever_query_example(self) -> str:
        return "dry erase markers"


def test_the_suite_ran_for_every_tool():
    """The generated classes exist (a typo in the loop would silently run nothing)."""
    names = [n for n in globals() if n.startswith("TestTools")]
    assert len(names) == 2 * len(EXAMPLES)
