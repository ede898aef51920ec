"""Full-catalogue ranking metrics, as pure functions.

Conventions (implicit / RecBole style): the rank of a target is the number of candidate items with
a strictly greater score (0 = top). Masked items (e.g. the user's history) score -inf and are never
candidates. Metrics come back as a dict keyed like ``"recall@10"``, ``"ndcg@10"``, ``"mrr"``;
``hr@K`` equals ``recall@K`` with one target per case and is reported under both names.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

__all__ = ["ranks_from_scores", "metrics_from_ranks", "metrics_from_ranked_ids", "mask_history"]

DEFAULT_KS = (1, 5, 10, 20, 50)


def mask_history(scores: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
    """Set each row's history items to -inf, in place. scores: (B, N); histories: B index arrays."""
    for i, h in enumerate(histories):
        if len(h):
            scores[i, np.asarray(h, dtype=np.int64)] = -np.inf
    return scores


def ranks_from_scores(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Rank of each target among all candidates: count of scores strictly greater. (B, N), (B,) -> (B,).

    A target whose own score is -inf (masked, or unreachable) gets rank N (never a hit).
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64)
    if scores.ndim != 2 or targets.shape != (scores.shape[0],):
        raise ValueError(f"scores must be (B, N) and targets (B,), got {scores.shape} and {targets.shape}")
    t = scores[np.arange(len(targets)), targets][:, None]  # (B, 1)
    ranks = (scores > t).sum(axis=1)  # (B,)
    ranks[~np.isfinite(t[:, 0]) & (t[:, 0] < 0)] = scores.shape[1]
    return ranks.astype(np.int64)


def metrics_from_ranks(ranks: Iterable[int] | np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Recall/HR@K, NDCG@K and MRR from 0-based target ranks (one target per case)."""
    r = np.asarray(list(ranks) if not isinstance(ranks, np.ndarray) else ranks, dtype=np.float64)
    if r.size == 0:
        raise ValueError("no ranks given: cannot compute metrics over zero cases")
    if np.any(r < 0):
        raise ValueError(f"ranks must be >= 0, got min {r.min()}")
    out: dict[str, float] = {}
    gain = 1.0 / np.log2(r + 2.0)
    for k in ks:
        hit = r < k
        out[f"recall@{k}"] = float(hit.mean())
        out[f"hr@{k}"] = out[f"recall@{k}"]
        out[f"ndcg@{k}"] = float(np.where(hit, gain, 0.0).mean())
    out["mrr"] = float((1.0 / (r + 1.0)).mean())
    out["n"] = int(r.size)
    return out


def metrics_from_ranked_ids(ranked: Sequence[Sequence[object]], targets: Sequence[object],
                            ks: Sequence[int] = DEFAULT_KS, num_candidates: int | None = None) -> dict[str, float]:
    """Metrics from ranked id lists (best first) and one target id per list.

    A target absent from its list gets rank `num_candidates` (or the list length), i.e. a miss at
    every K <= the list length, and contributes 0 to MRR only when the list is the full catalogue;
    pass `num_candidates` = catalogue size for that convention.
    """
    if len(ranked) != len(targets):
        raise ValueError(f"{len(ranked)} ranked lists for {len(targets)} targets")
    ranks = []
    for lst, t in zip(ranked, targets):
        lst = list(lst)
        try:
            ranks.append(lst.index(t))
        except ValueError:
            ranks.append(num_candidates if num_candidates is not None else max(len(lst), max(ks)))
    out = metrics_from_ranks(np.asarray(ranks), ks)
    if num_candidates is not None:
        r = np.asarray(ranks, dtype=np.float64)
        out["mrr"] = float(np.where(r < num_candidates, 1.0 / (r + 1.0), 0.0).mean())
    return out
