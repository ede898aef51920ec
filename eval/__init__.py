"""Evaluation: full-catalogue ranking metrics, the evaluation protocol, reference baselines."""

from lumenrec.eval.baselines import MarkovScorer, PopularityScorer
from lumenrec.eval.metrics import metrics_from_ranked_ids, metrics_from_ranks, ranks_from_scores
from lumenrec.eval.protocol import evaluate, evaluate_ranks

__all__ = [
    "MarkovScorer",
    "PopularityScorer",
    "evaluate",
    "evaluate_ranks",
    "metrics_from_ranked_ids",
    "metrics_from_ranks",
    "ranks_from_scores",
]
