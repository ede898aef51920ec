"""Probability mixture of scorers: the sequential model plus a first-order transition model.

SASRec learns long-range taste; a first-order Markov chain over consecutive purchases captures the
"what comes right after this item" signal that is very strong on Amazon 5-core data (on Beauty 2014 the
Markov baseline alone beats a SASRec trained for a few epochs). FPMC (Rendle et al. 2010) combines the
two inside one model; here they are combined after training, as a mixture of their next-item
distributions::

    p(i | h) = (1 - lam) * softmax(s_seq(h))_i + lam * p_markov(i | h)

Each component is first turned into a distribution over the catalogue: ``"logits"`` components by a
softmax, ``"counts"`` components (non-negative scores such as transition counts) by dividing by the row
sum; a row of a counts component that sums to 0 (no known transition) becomes uniform, so the mixture
then falls back on the other component. The weight ``lam`` is chosen on the VALIDATION cases with
:func:`tune_mixture`, never on test.

Several sequential models (e.g. the same SASRec trained with different seeds) become one component with
:func:`mean_distribution`: the mean of their next-item distributions, as log-probabilities.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy.special import softmax

from lumenrec.errors import ConfigError

__all__ = ["to_distribution", "MixtureScorer", "mean_distribution", "mixture_ranks", "tune_mixture"]

Scorer = Callable[[list[np.ndarray]], np.ndarray]
KINDS = ("logits", "counts")


def to_distribution(scores: np.ndarray, kind: str) -> np.ndarray:
    """(B, N) scores of one component -> (B, N) rows that sum to 1 (float64)."""
    if kind not in KINDS:
        raise ConfigError("kind", kind, f"must be one of {KINDS}")
    s = np.asarray(scores, dtype=np.float64)  # (B, N)
    if s.ndim != 2:
        raise ValueError(f"scores must be (B, N), got shape {s.shape}")
    if kind == "logits":
        return softmax(s, axis=1)  # (B, N); scipy shifts by the row max, so large logits cannot overflow
    if np.any(s < 0):
        raise ValueError(f"a 'counts' component must be non-negative, got min {s.min():.3g}")
    tot = s.sum(axis=1, keepdims=True)  # (B, 1)
    return np.divide(s, tot, out=np.full_like(s, 1.0 / s.shape[1]), where=tot > 0)  # empty rows -> uniform


def mean_distribution(scorers: Sequence[Scorer], kind: str = "logits") -> Scorer:
    """One scorer from several (e.g. SASRec models trained with different seeds): the MEAN of their
    next-item distributions, returned as log-probabilities, so that it is itself a ``"logits"`` component
    (``softmax(log p) = p``) and can go into :class:`MixtureScorer` unchanged."""
    if not scorers:
        raise ConfigError("scorers", scorers, "give at least one scorer")
    members = list(scorers)

    def score(histories: list[np.ndarray]) -> np.ndarray:
        p = sum(to_distribution(f(histories), kind) for f in members) / len(members)  # (B, N)
        with np.errstate(divide="ignore"):
            return np.log(p)  # (B, N); -inf only where every member gives exactly 0

    return score


def _check_weight(field: str, lam: float) -> None:
    if not (0.0 <= lam <= 1.0):
        raise ConfigError(field, lam, "must be in [0, 1]")


class MixtureScorer:
    """``histories -> (B, N)`` mixture probabilities of two scorers (see the module docstring).

    Args:
        seq: the sequential scorer (e.g. ``lambda h: score_histories(model, h)``).
        markov: the transition scorer (e.g. :class:`lumenrec.eval.MarkovScorer`).
        lam: weight of `markov` in [0, 1] (0 = the sequential model alone).
        kinds: how each component's scores become a distribution (``"logits"`` or ``"counts"``).
    """

    def __init__(self, seq: Scorer, markov: Scorer, lam: float, kinds: tuple[str, str] = ("logits", "counts")) -> None:
        _check_weight("lam", lam)
        for k in kinds:
            if k not in KINDS:
                raise ConfigError("kinds", kinds, f"each must be one of {KINDS}")
        self.seq, self.markov, self.lam, self.kinds = seq, markov, float(lam), tuple(kinds)

    def components(self, histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The two (B, N) distributions, before mixing (scored once, mixed at any weight)."""
        return (to_distribution(self.seq(histories), self.kinds[0]),
                to_distribution(self.markov(histories), self.kinds[1]))

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        a, b = self.components(histories)  # (B, N) each
        return (1.0 - self.lam) * a + self.lam * b


def mixture_ranks(seq: Scorer, markov: Scorer, cases, lams: Sequence[float], *,
                  kinds: tuple[str, str] = ("logits", "counts"), batch_size: int = 512) -> dict[float, np.ndarray]:
    """0-based full-catalogue target ranks (history masked) for every weight in `lams`, scoring each
    component once per batch. `cases` is an :class:`lumenrec.data.split.EvalSet`."""
    from lumenrec.eval.metrics import mask_history, ranks_from_scores

    if not lams:
        raise ConfigError("lams", lams, "give at least one mixture weight")
    for lam in lams:
        _check_weight("lams", lam)
    mixture = MixtureScorer(seq, markov, 0.0, kinds)  # only its components are used
    out = {float(lam): np.empty(len(cases), dtype=np.int64) for lam in lams}
    for s in range(0, len(cases), batch_size):
        hist = cases.histories[s : s + batch_size]
        tgt = cases.targets[s : s + batch_size]
        a, b = mixture.components(hist)  # (B, N) each
        for lam in out:
            mixed = mask_history((1.0 - lam) * a + lam * b, hist)  # (B, N)
            out[lam][s : s + len(hist)] = ranks_from_scores(mixed, tgt)
    return out


def tune_mixture(seq: Scorer, markov: Scorer, valid_cases, *, lams: Sequence[float] = tuple(np.round(np.arange(0, 1.01, 0.1), 2)),
                 metric: str = "ndcg@10", kinds: tuple[str, str] = ("logits", "counts")) -> tuple[float, dict[float, float]]:
    """The weight in `lams` with the best `metric` on `valid_cases`, and the metric of every weight.

    Ties go to the smaller weight (less reliance on the transition model)."""
    from lumenrec.eval.metrics import metrics_from_ranks

    if metric not in metrics_from_ranks(np.zeros(1, dtype=np.int64), (10, 20)):
        raise ConfigError("metric", metric, "not a metric of metrics_from_ranks at k in (10, 20)")
    ranks = mixture_ranks(seq, markov, valid_cases, lams, kinds=kinds)
    scores = {lam: metrics_from_ranks(r, (10, 20))[metric] for lam, r in ranks.items()}
    best = max(sorted(scores), key=lambda lam: (scores[lam], -lam))
    return best, scores
