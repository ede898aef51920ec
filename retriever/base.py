"""The one retriever interface: a query in, ``(ids, scores)`` out, for one query or a batch.

Every retriever (popularity, sequential model, text-only, ILM, LUMEN critique-aware, the Chroma
index) subclasses :class:`BaseRetriever` and implements :meth:`score`; ranking, history masking,
filters and the single/batch convention live here once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Sequence, overload

import numpy as np

from lumenrec.data.types import Catalog

__all__ = ["Query", "BaseRetriever"]


@dataclass
class Query:
    """What a retriever ranks for: a history of item ids (oldest first) and optional shopper text.

    `exclude_ids` are never returned (e.g. items the shopper rejected); `allowed` optionally limits
    the candidates to a boolean mask over the catalogue (constraints from the critique parser).
    """

    history: list[str] = field(default_factory=list)
    text: str | None = None
    exclude_ids: list[str] = field(default_factory=list)
    allowed: np.ndarray | None = None


class BaseRetriever(ABC):
    """Subclasses set `self.catalog` and implement `score(queries) -> (B, N)`."""

    catalog: Catalog

    @abstractmethod
    def score(self, queries: Sequence[Query]) -> np.ndarray:
        """One score per catalogue item per query, shape (B, N); higher is better."""

    @overload
    def retrieve(self, query: Query, k: int = 10, *, exclude_history: bool = True) -> tuple[list[str], np.ndarray]: ...
    @overload
    def retrieve(self, query: Sequence[Query], k: int = 10, *, exclude_history: bool = True) -> tuple[list[list[str]], np.ndarray]: ...

    def retrieve(self, query, k: int = 10, *, exclude_history: bool = True):
        """Top-`k` item ids and scores. One Query -> (ids, scores (k,)); a list -> (list of ids, (B, k))."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        single = isinstance(query, Query)
        queries = [query] if single else list(query)
        scores = np.array(self.score(queries), dtype=np.float64, copy=True)  # (B, N)
        if scores.shape != (len(queries), len(self.catalog)):
            raise ValueError(f"{type(self).__name__}.score returned {scores.shape}, expected {(len(queries), len(self.catalog))}")
        for i, q in enumerate(queries):
            drop = list(q.exclude_ids) + (list(q.history) if exclude_history else [])
            if drop:
                scores[i, self.catalog.indices_of([d for d in drop if d in self.catalog])] = -np.inf
            if q.allowed is not None:
                scores[i, ~np.asarray(q.allowed, dtype=bool)] = -np.inf
        k = min(k, scores.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (B, k), unordered
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, 1)  # (B, k)
        top_scores = np.take_along_axis(scores, top, 1)  # (B, k)
        ids = [[self.catalog.ids[j] for j, s in zip(row, srow) if np.isfinite(s)] for row, srow in zip(top, top_scores)]
        if single:
            return ids[0], top_scores[0, : len(ids[0])]
        return ids, top_scores

    def as_scorer(self, text_of: Callable[[int], str | None] | None = None) -> Callable[[list[np.ndarray]], np.ndarray]:
        """Adapter to the evaluation protocol's scorer: index histories -> (B, N) scores."""
        def scorer(histories: list[np.ndarray]) -> np.ndarray:
            qs = [Query(history=[self.catalog.ids[int(i)] for i in h]) for h in histories]
            return self.score(qs)
        return scorer
