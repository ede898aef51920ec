"""Evaluation: full-catalogue ranking metrics, the evaluation protocol, reference baselines.

Names load on first use (PEP 562), so that importing a submodule such as ``lumenrec.eval.commands``
(what ``lumenrec --help`` does) does not import numpy/scipy-heavy code."""

from __future__ import annotations

import importlib

_WHERE = {
    "MarkovScorer": "lumenrec.eval.baselines",
    "PopularityScorer": "lumenrec.eval.baselines",
    "metrics_from_ranked_ids": "lumenrec.eval.metrics",
    "metrics_from_ranks": "lumenrec.eval.metrics",
    "ranks_from_scores": "lumenrec.eval.metrics",
    "evaluate": "lumenrec.eval.protocol",
    "evaluate_ranks": "lumenrec.eval.protocol",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lumenrec.eval' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
