"""Retrievers: sequential models and ranking losses, the ILM item encoder, the LUMEN critique-aware
retriever, and the Chroma item index. All share :class:`~lumenrec.retriever.base.BaseRetriever`."""

from lumenrec.retriever.base import BaseRetriever, Query

__all__ = ["BaseRetriever", "Query"]
