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
3. score the union of those K and the boosted items that could reach the top exactly, ``x . y + b``,
   from the item matrix the retriever holds in memory (a few thousand rows at most: a matrix-vector
   product of under a millisecond; fetching those vectors from Chroma by id cost up to 300 ms at
   1e5 items, where a named brand boosts ~3,000 items);
4. **exactness check**: any item outside the fetch scores at most the K-th dense score tau (plus its
   boost), so the top-k is exact when its k-th score >= tau; otherwise K grows x4 and the query repeats.

A selective filter (few allowed items, e.g. one category) skips the ANN and scores the allowed
items exactly. Results equal in-memory LUMEN scoring up to Chroma's HNSW recall
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

__all__ = ["IndexedLumenRetriever", "build_lumen_index", "augmented_items", "index_layout", "index_version"]

log = logging.getLogger(__name__)


def index_layout(lumen: LumenRetriever) -> tuple[float, float]:
    """(R, s) of the stored vectors: the popularity column is divided by s, the norm equalised to R.

    The log-popularity column is the largest coordinate of the rarest-and-most-popular items (6.7 at
    1e5 synthetic items, where the other dense blocks reach a norm of 2.2): left as is it sets R, and
    the augmentation coordinate then dominates most stored vectors, squeezing their cosines together.
    HNSW then needs a far larger ef_search for the same recall (measured at 1e5 items, ef_search 1000:
    dense top-10 recall 0.985 unscaled, 0.994 with the column scaled by 3). Dividing it by
    s = max(1, max|p| / max norm of the other blocks) and multiplying the query's coordinate by s keeps
    every dot product, and so the ranking, exactly.
    """
    end, pcol = lumen.dense_columns()
    X = lumen.item_matrix.numpy()
    rest2 = np.einsum("ij,ij->i", X[:, :end], X[:, :end]).astype(np.float64)  # (N,)
    p = X[:, pcol].astype(np.float64)  # (N,)
    s = max(1.0, float(np.abs(p).max()) / max(float(np.sqrt(rest2.max())), 1e-12))
    R = float(np.sqrt((rest2 + (p / s) ** 2).max() * (1.0 + 1e-6)))
    return R, s


def index_version(lumen: LumenRetriever, s: float) -> str:
    """What the index records: the LUMEN weights and the stored layout (a change of either is refused)."""
    return f"{lumen.model_version()}:ip2cos:pop/{s:.4f}"


def augmented_items(lumen: LumenRetriever) -> tuple[np.ndarray, float, float]:
    """(N, D'+1) stored vectors of equal norm R, R and s: the cosine ranking of the query
    [y with its popularity coordinate times s, 0] against them is the dot ranking (see index_layout)."""
    R, s = index_layout(lumen)
    X = lumen.dense_item_vectors().astype(np.float64)  # (N, D'); the last column is the popularity
    X[:, -1] /= s
    norms2 = (X * X).sum(axis=1)  # (N,)
    return np.concatenate([X, np.sqrt(np.maximum(R * R - norms2, 0.0))[:, None]], axis=1).astype(np.float32), R, s


def build_lumen_index(lumen: LumenRetriever, index: ItemIndex, *, checkpoint: str | None = None,
                      progress: bool = True) -> dict[str, Any]:
    """Write LUMEN's dense item vectors (augmented, see the module doc) into a cosine `index`; returns its info."""
    if index.config.distance != "cosine":
        raise ItemIndexError(f"a LUMEN index stores norm-equalised vectors and needs distance='cosine', "
                             f"got {index.config.distance!r}")
    vectors, _, s = augmented_items(lumen)
    return index.build(lumen.catalog, vectors, index_version(lumen, s), checkpoint=checkpoint, progress=progress)


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
        self.radius, self.pop_scale = index_layout(lumen)  # R: stored vectors all have this norm; s: see index_layout
        self.overfetch, self.selective_max = int(overfetch), int(selective_max)
        self.model_version = index_version(lumen, self.pop_scale)
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
        b_idx, b_val = boosts[0]  # sparse boosts: catalogue indices, scores
        boost = np.zeros(n)  # (N,)
        boost[b_idx] = b_val
        y = np.append(dense[0], 0.0).astype(np.float32)  # (D'+1,): 0 on the augmentation coordinate
        y[-2] *= self.pop_scale  # the stored popularity column is divided by it
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
        if n_allowed <= self.selective_max:
            cand = np.flatnonzero(allowed)
            self.last_stats = {"path": "by_id", "allowed": n_allowed, "fetched": len(cand)}
            return self._top(cand, dense[0], boost, k)
        boosted = b_idx[(b_val > 0) & allowed[b_idx]]  # items a boost could lift from outside the fetch
        fetch = min(n, k * self.overfetch + len(known))
        rounds = 0
        with self.index.reporting_failures():
            while True:
                rounds += 1
                try:
                    got_ids, got_cos = self.index.query(y, fetch, model_version=self.model_version)
                except ItemIndexError as e:
                    if "refusing vectors" in str(e):
                        raise ItemIndexError(f"{e} A directory made by `lumenrec build`: run the same build "
                                             "command again; it rebuilds only the index.") from e
                    raise
                tau = float(got_cos[-1]) * scale if len(got_ids) >= fetch else -np.inf
                got = np.asarray(cat.indices_of(list(got_ids)), dtype=np.int64)
                cand = got[allowed[got]]
                full = self.lumen.dense_scores(dense[0], cand) + boost[cand]  # (C,) exact scores
                # an item outside the fetch scores at most tau + its boost: only boosted ones that could
                # beat the k-th score found so far need scoring (each item is scored once)
                m = min(k, len(full))  # the k-th best score so far (the lowest, with fewer than k allowed)
                kth = float(np.partition(full, -m)[-m]) if m and m >= min(k, n_allowed) else -np.inf
                extra = boosted[(tau + boost[boosted] >= kth) & ~np.isin(boosted, got)]
                if extra.size:
                    cand = np.concatenate([cand, extra])
                    full = np.concatenate([full, self.lumen.dense_scores(dense[0], extra) + boost[extra]])
                ids, top = self._best(cand, full, k)
                exact = fetch >= n or (len(ids) >= min(k, n_allowed) and (len(top) and top[-1] >= tau))
                if exact or rounds >= 8:
                    self.last_stats = {"path": "ann", "allowed": n_allowed, "fetched": fetch, "rounds": rounds,
                                       "boosted": int(extra.size), "exact": bool(exact)}
                    return ids, top
                fetch = min(n, fetch * 4)

    def _top(self, cand: np.ndarray, y: np.ndarray, boost: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
        """The k best of the candidate indices by exact score (dense, in memory, + boost); ties by index."""
        return self._best(cand, self.lumen.dense_scores(y, cand) + boost[cand], k)  # scores (C,)

    def _best(self, cand: np.ndarray, full: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
        """The k best candidates given their exact scores `full` (C,); ties by catalogue index."""
        order = np.lexsort((cand, -full))[:k]
        return [self.catalog.ids[int(j)] for j in cand[order]], full[order]
