"""Reference baselines that every benchmark reports beside the models: popularity and Markov.

Both are scorers (``histories -> (B, N) scores``) fitted on training sequences only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import sparse

__all__ = ["PopularityScorer", "MarkovScorer"]


class PopularityScorer:
    """Score = training interaction count of the item, the same for every user."""

    def __init__(self, train: Sequence[np.ndarray], num_items: int) -> None:
        self.num_items = num_items
        self.counts = np.zeros(num_items, dtype=np.float64)
        for s in train:
            np.add.at(self.counts, np.asarray(s, dtype=np.int64), 1.0)

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(histories), self.num_items)).copy()  # (B, N)


class MarkovScorer:
    """First-order Markov chain over consecutive training items.

    count(a -> b) = number of consecutive pairs (a, b) in the training sequences. The score of item
    b for a history h is ``sum_j w_j * count(h[-1-j] -> b)`` over the last ``len(weights)`` items
    (most recent first; default weights 1, 0.5, 0.25) plus ``pop_eps * popularity(b)`` to break ties.
    """

    def __init__(self, train: Sequence[np.ndarray], num_items: int,
                 weights: Sequence[float] = (1.0, 0.5, 0.25), pop_eps: float = 1e-6) -> None:
        if not weights:
            raise ValueError("weights must be non-empty")
        self.num_items, self.weights, self.pop_eps = num_items, tuple(float(w) for w in weights), pop_eps
        src, dst = [], []
        pop = np.zeros(num_items, dtype=np.float64)
        for s in train:
            s = np.asarray(s, dtype=np.int64)
            np.add.at(pop, s, 1.0)
            if len(s) > 1:
                src.append(s[:-1])
                dst.append(s[1:])
        src_a = np.concatenate(src) if src else np.zeros(0, dtype=np.int64)
        dst_a = np.concatenate(dst) if dst else np.zeros(0, dtype=np.int64)
        self.transitions = sparse.csr_matrix(
            (np.ones(len(src_a)), (src_a, dst_a)), shape=(num_items, num_items))  # (N, N), duplicates summed
        self.popularity = pop

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        B = len(histories)
        rows, cols, vals = [], [], []
        for i, h in enumerate(histories):
            for j, w in enumerate(self.weights):
                if j < len(h):
                    rows.append(i)
                    cols.append(int(h[-1 - j]))
                    vals.append(w)
        q = sparse.csr_matrix((vals, (rows, cols)), shape=(B, self.num_items))  # (B, N)
        scores = (q @ self.transitions).toarray()  # (B, N)
        return scores + self.pop_eps * self.popularity[None, :]
