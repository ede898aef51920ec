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
