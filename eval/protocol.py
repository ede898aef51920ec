"""Full-catalogue evaluation of any scorer on an EvalSet.

A *scorer* is any callable ``scorer(histories: list[np.ndarray]) -> np.ndarray`` of shape (B, N):
one score per catalogue item for each history. Models, baselines and retrievers all expose one.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from lumenrec.data.split import EvalSet
from lumenrec.eval.metrics import DEFAULT_KS, mask_history, metrics_from_ranks, ranks_from_scores

__all__ = ["Scorer", "evaluate", "evaluate_ranks"]

log = logging.getLogger(__name__)
Scorer = Callable[[list[np.ndarray]], np.ndarray]


def evaluate_ranks(scorer: Scorer, cases: EvalSet, *, mask_history_items: bool = True,
                   batch_size: int = 512, progress: bool = False) -> np.ndarray:
    """0-based full-catalogue rank of every case's target (history items masked by default)."""
    ranks = np.empty(len(cases), dtype=np.int64)
    starts = range(0, len(cases), batch_size)
    for s in tqdm(starts, desc="evaluating", disable=not progress, unit="batch"):
        hist = cases.histories[s : s + batch_size]
        scores = np.array(scorer(hist), dtype=np.float64, copy=True)  # (B, N)
        if mask_history_items:
            mask_history(scores, hist)
        ranks[s : s + len(hist)] = ranks_from_scores(scores, cases.targets[s : s + len(hist)])
    return ranks


def evaluate(scorer: Scorer, cases: EvalSet, ks: Sequence[int] = DEFAULT_KS, *, mask_history_items: bool = True,
             batch_size: int = 512, progress: bool = False) -> dict[str, float]:
    """Recall/HR@K, NDCG@K, MRR of `scorer` on `cases`, ranking the whole catalogue."""
    return metrics_from_ranks(evaluate_ranks(scorer, cases, mask_history_items=mask_history_items,
                                             batch_size=batch_size, progress=progress), ks)
