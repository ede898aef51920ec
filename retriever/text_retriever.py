"""The text-only baseline: rank items by cosine between the shopper's text and each item's text.

Query vector = the embedded `Query.text` (the critique); when a query has no text, the normalised
mean embedding of its history items stands in. It is the floor every trained retriever must beat.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from lumenrec.data.types import Catalog
from lumenrec.retriever.base import BaseRetriever, Query
from lumenrec.retriever.text_encoder import TextEncoder

__all__ = ["TextRetriever"]

log = logging.getLogger(__name__)


class TextRetriever(BaseRetriever):
    """Cosine retrieval over frozen text embeddings of the catalogue."""

    def __init__(self, catalog: Catalog, encoder: TextEncoder | None = None,
                 item_vectors: np.ndarray | None = None) -> None:
        self.catalog = catalog
        self.encoder = encoder or TextEncoder()
        vecs = self.encoder.encode_items(catalog) if item_vectors is None else np.asarray(item_vectors, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != len(catalog):
            raise ValueError(f"item_vectors must be (N={len(catalog)}, d), got {vecs.shape}")
        self.item_vectors = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)  # (N, d)

    def query_vectors(self, queries: Sequence[Query]) -> np.ndarray:
        """One unit vector per query (B, d): its text if non-empty, else its history mean, else zeros."""
        d = self.item_vectors.shape[1]
        out = np.zeros((len(queries), d), dtype=np.float32)  # (B, d)
        with_text = [i for i, q in enumerate(queries) if q.text and q.text.strip()]
        if with_text:
            out[with_text] = self.encoder.encode([queries[i].text for i in with_text])  # (T, d)
        has_text = set(with_text)
        for i, q in enumerate(queries):
            if i in has_text or not q.history:
                continue
            idx = self.catalog.indices_of([h for h in q.history if h in self.catalog])
            if len(idx):
                m = self.item_vectors[idx].mean(axis=0)  # (d,)
                out[i] = m / max(float(np.linalg.norm(m)), 1e-12)
        return out

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        return self.query_vectors(queries) @ self.item_vectors.T  # (B, N)
