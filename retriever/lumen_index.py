"""The trained LUMEN retriever served through the Chroma item index.

LUMEN's score is ``query_vector @ item_matrix.T``. Its dense blocks (ILM vectors, item text, the
sequential model's item embeddings, log popularity: 833 columns on Office) live in a Chroma
collection (:meth:`LumenRetriever.dense_item_vectors`). HNSW search by raw inner product misses
true neighbours (measured on Office: in-memory top-10 items absent from a 40-item fetch), so the
vectors are stored with the standard inner-product-to-cosine augmentation: each item x gets one
extra coordinate sqrt(R^2 - |x|^2), R the largest item norm, and the query gets 0 there; then every
stored vector has norm R and ranking by cosine equals ranking by ``x . y`` (dot = cos * R * |y|). The sparse
blocks (the brands a critique names or negates, the previous item's brand, and the co-occurrence
prior of the last history items) touch few items per query and are added here
(:meth:`LumenRetriever.query_parts`). So a retrieval is:

1. encode the query (history + critique) with the LUMEN tower -> dense vector y, sparse boosts b;
2. ask Chroma for the top-K items by ``x . y`` (K over-fetches k for filters and exclusions);
3. score the union of those K and every item with a positive boost exactly: ``x . y + b``
   (the dense part of boosted items outside the K comes from Chroma by id);
4. **exactness check**: any item outside that union scores at most the K-th dense score tau, so
   the top-k is exact when its k-th score >= tau; otherwise K grows x4 and the query repeats.

A selective filter (few allowed items, e.g. one category) skips the ANN and scores the allowed
items by id. Results equal in-memory LUMEN scoring up to Chroma's HNSW recall
(``tests/retriever/test_lumen_index.py`` checks top-10 overlap 1.0). ``score()`` (full ranking, for
evaluation) runs in memory.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from lumenrec.errors import ItemIndexError
from lumenrec.retriever.base import BaseRetriever, Query
from lumenrec.retriever.index import ItemIndex
from lumenrec.retriever.lumen import LumenRetriever

__all__ = ["IndexedLumenRetriever", "build_lumen_index", "augmented_items"]

log = logging.getLogger(__name__)


def augmented_items(lumen: LumenRetriever) -> tuple[np.ndarray, float]:
    """(N, D'+1) item vectors of equal norm R, and R: cosine ranking of [y, 0] against them = dot ranking."""
    X = lumen.dense_item_vectors().astype(np.float64)  # (N, D')
    norms2 = (X * X).sum(axis=1)  # (N,)
    R2 = float(norms2.max()) * (1.0 + 1e-6)
    return np.concatenate([X, np.sqrt(R2 - norms2)[:, None]], axis=1).astype(np.float32), float(np.sqrt(R2))


def build_lumen_index(lumen: LumenRetriever, index: ItemIndex, *, checkpoint: str | None = None,
                      progress: bool = True) -> dict[str, Any]:
    """Write LUMEN's dense item vectors (augmented, see the module doc) into a cosine `index`; returns its info."""
    if index.config.distance != "cosine":
        raise ItemIndexError(f"a LUMEN index stores norm-equalised vectors and needs distance='cosine', "
                             f"got {index.config.distance!r}")
    vectors, _ = augmented_items(lumen)
    return index.build(lumen.catalog, vectors, lumen.model_version(), checkpoint=checkpoint, progress=progress)


class IndexedLumenRetriever(BaseRetriever):
    """:class:`LumenRetriever` whose top-k comes from a Chroma :class:`ItemIndex` (see the module doc).

    `selective_max`: a filter that leaves at most this many items is scored by id instead of
    through the ANN search. `overfetch`: the first K is ``k * overfetch`` (plus the excluded ids).
    """

    def __init__(self, lumen: LumenRetriever, index: ItemIndex, *, overfetch: int = 4, selective_max: int = 2000) -> None:
        if index.config.distance != "cosine":
            raise ItemIndexError(f"a LUMEN index stores norm-equalised vectors and needs distance='cosine', "
                                 f"got {index.config.distance!r}")
        self.lumen, self.index, self.catalog = lumen, index, lumen.catalog
        self.radius = augmented_items(lumen)[1]  # R: stored vectors all have this norm
        self.overfetch, self.selective_max = int(overfetch), int(selective_max)
        self.model_version = lumen.model_version()
        self.last_stats: dict[str, Any] = {}

    # full ranking (evaluation) stays in memory
    def score(self, queries: Sequence[Query]) -> np.ndarray:
        return self.lumen.score(queries)

    def describe(self) -> dict[str, Any]:
        """What the trace's retrieve step says about this retriever."""
        info = {"retriever": type(self).__name__, "model": type(self.lumen).__name__, "index": "chroma",
                "backend": self.index.config.backend, "model_version": self.model_version}
        try:
            active, _ = self.index._state()
            info["collection"] = active["collection"]
        except Exception as e:  # the trace must not fail because the index is down
            info["collection"] = f"unavailable ({type(e).__name__})"
        return info

    def retrieve(self, query, k: int = 10, *, exclude_history: bool = True):
        if not isinstance(query, Query):
            return super().retrieve(query, k, exclude_history=exclude_history)  # batches: in memory
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        cat = self.catalog
        n = len(cat)
        hist = cat.indices_of([h for h in query.history if h in cat])
        dense, boosts = self.lumen.query_parts([hist], [query.text])
        boost = boosts[0]  # {index: score}
        y = np.append(dense[0], 0.0).astype(np.float32)  # (D'+1,): 0 on the augmentation coordinate
        scale = self.radius * float(np.linalg.norm(y))  # dot = cos * R * |y|
        allowed = np.ones(n, dtype=bool) if query.allowed is None else np.array(query.allowed, dtype=bool, copy=True)
        drop = list(query.exclude_ids) + (list(query.history) if exclude_history else [])
        known = [d for d in drop if d in cat]
        if known:
            allowed[cat.indices_of(known)] = False
        n_allowed = int(allowed.sum())
        if n_allowed == 0:
            self.last_stats = {"path": "empty", "allowed": 0}
            return [], np.zeros(0)
        with self.index.reporting_failures():
            if n_allowed <= self.selective_max:
                ids = [cat.ids[j] for j in np.flatnonzero(allowed)]
                scores = self._dense_of(y, ids, scale)
                self.last_stats = {"path": "by_id", "allowed": n_allowed, "fetched": len(ids)}
                return self._top(scores, boost, k)
            fetch = min(n, k * self.overfetch + len(known))
            rounds = 0
            while True:
                rounds += 1
                got_ids, got_cos = self.index.query(y, fetch, model_version=self.model_version)
                got_scores = np.asarray(got_cos, dtype=np.float64) * scale
                tau = float(got_scores[-1]) if len(got_ids) >= fetch else -np.inf
                scores = {i: float(s) for i, s in zip(got_ids, got_scores) if allowed[cat.index_of(i)]}
                # a boosted item outside the fetch scores at most tau + its boost: only those that could beat
                # the k-th score found so far need their dense part from the index
                _, found = self._top(scores, boost, k)
                kth = float(found[-1]) if len(found) >= min(k, n_allowed) else -np.inf
                extra = [cat.ids[j] for j, b in boost.items()
                         if b > 0 and allowed[j] and cat.ids[j] not in scores and tau + b >= kth]
                if extra:
                    scores.update(self._dense_of(y, extra, scale))
                ids, top = self._top(scores, boost, k)
                exact = fetch >= n or (len(ids) >= min(k, n_allowed) and (len(top) and top[-1] >= tau))
                if exact or rounds >= 8:
                    self.last_stats = {"path": "ann", "allowed": n_allowed, "fetched": fetch, "rounds": rounds,
                                       "boosted": len(extra), "exact": bool(exact)}
                    return ids, top
                fetch = min(n, fetch * 4)

    def _dense_of(self, y: np.ndarray, ids: list[str], scale: float) -> dict[str, float]:
        """The dense score x . y of the given ids, from their stored vectors (cosine * R * |y|)."""
        return {i: c * scale for i, c in self.index.scores_of(y, ids, model_version=self.model_version).items()}

    def _top(self, dense: dict[str, float], boost: dict[int, float], k: int) -> tuple[list[str], np.ndarray]:
        cat = self.catalog
        full = {i: s + boost.get(cat.index_of(i), 0.0) for i, s in dense.items()}
        order = sorted(full, key=lambda i: (-full[i], cat.index_of(i)))[:k]
        return order, np.array([full[i] for i in order], dtype=np.float64)
