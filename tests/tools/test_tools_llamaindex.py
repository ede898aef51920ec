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
