"""Simulation: how well do the sampled-rank weight estimators recover the exact weight phi(R)?

For a catalogue of N items, true 0-based ranks R are drawn from a rank distribution, k ~
Binomial(m, R/(N-1)) is what m uniform negatives would show, and each estimator's weight is
compared with the exact phi(R) (bias, RMSE, MAE). Used by docs/rank_estimation.md.

    python -m lumenrec.eval.bench.rank_estimation      # prints the table, writes docs/results/rank_estimation.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from lumenrec.retriever.rank_estimation import (
    ALPHA_GRID,
    WEIGHT_FUNCTIONS,
    fit_powerlaw_alpha,
    marginal_k,
    naive_table,
    posterior_table,
)

__all__ = ["RANK_DISTRIBUTIONS", "ESTIMATOR_NAMES", "sample_ranks", "simulate_weights", "main"]

log = logging.getLogger(__name__)

RANK_DISTRIBUTIONS = ("uniform", "loguniform", "mixed")
ESTIMATOR_NAMES = ("naive", "flat", "loguniform", "empirical")


def sample_ranks(num_items: int, dist: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """n true 0-based ranks in [0, N-1].

    uniform: an untrained model. loguniform: log(R+1) uniform on [0, log N], a trained model's
    heavy-tailed rank distribution. mixed: half each, a model in mid-training (outside the
    power-law prior family, to test empirical Bayes off-model).
    """
    if dist == "uniform":
        return rng.integers(0, num_items, size=n)
    if dist == "loguniform":
        return np.minimum(np.floor(np.power(float(num_items), rng.random(n))).astype(np.int64) - 1, num_items - 1)
    if dist == "mixed":
        half = rng.random(n) < 0.5
        return np.where(half, sample_ranks(num_items, "uniform", n, rng), sample_ranks(num_items, "loguniform", n, rng))
    raise ValueError(f"unknown rank distribution {dist!r}; choose one of {RANK_DISTRIBUTIONS}")


@lru_cache(maxsize=None)
def _table(weight: str, n_others: int, m: int, prior: str | float) -> np.ndarray:
    """Cached weight tables (shared by the rank distributions of one grid run)."""
    phi = WEIGHT_FUNCTIONS[weight]
    return naive_table(phi, n_others, m) if prior == "naive" else posterior_table(phi, n_others, m, prior)


@lru_cache(maxsize=None)
def _marginals(n_others: int, m: int) -> np.ndarray:
    """P(k) under each power-law prior of ALPHA_GRID, (A, m+1); cached per (N, m)."""
    return np.stack([marginal_k(n_others, m, float(a)) for a in ALPHA_GRID])


def simulate_weights(num_items: int, num_negatives: int, dist: str = "loguniform", weight: str = "warp",
                     n_rows: int = 20_000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Bias, RMSE and MAE of each estimator's weight against the exact phi(R).

    Returns {estimator: {"bias", "rmse", "mae"}} plus {"_info": {"mean_true", "alpha_fit"}}.
    Empirical Bayes fits its exponent on the histogram of all n_rows simulated k's.
    """
    rng = np.random.default_rng(seed)
    phi = WEIGHT_FUNCTIONS[weight]
    n_others, m = num_items - 1, num_negatives
    ranks = sample_ranks(num_items, dist, n_rows, rng)
    true = phi(ranks.astype(np.float64))
    if m >= n_others:  # every estimator is exact: the losses use all other items
        k = ranks
    else:
        k = rng.binomial(m, ranks / n_others)
    tables = {name: _table(weight, n_others, m, name) for name in ("naive", "flat", "loguniform")}
    alpha = None
    if m < n_others:
        marg = _marginals(n_others, m)
        alpha = float(ALPHA_GRID[fit_powerlaw_alpha(np.bincount(k, minlength=m + 1).astype(float), marg)])
        tables["empirical"] = _table(weight, n_others, m, alpha)
    else:
        tables["empirical"] = tables["flat"]
    out: dict[str, dict[str, float]] = {}
    for name in ESTIMATOR_NAMES:
        err = tables[name][k] - true
        out[name] = {"bias": float(err.mean()), "rmse": float(np.sqrt((err ** 2).mean())),
                     "mae": float(np.abs(err).mean())}
    out["_info"] = {"mean_true": float(true.mean()), "alpha_fit": alpha}
    return out


def _write_json_atomic(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.chmod(tmp, 0o644)  # mkstemp makes it private
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict:
    """Run the grid (m x N x rank distribution x weight), print RMSE tables, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ms", type=int, nargs="+", default=[1, 2, 4, 8, 16, 64, 256])
    ap.add_argument("--ns", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--dists", nargs="+", default=list(RANK_DISTRIBUTIONS))
    ap.add_argument("--weights", nargs="+", default=["warp", "lambdarank"])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "docs" / "results" / "rank_estimation.json"))
    args = ap.parse_args(argv)
    t0 = time.time()
    results = []
    for weight in args.weights:
        for dist in args.dists:
            print(f"\n{weight} weight, R {dist}: RMSE (bias) of the weight; naive | corrected flat | "
                  f"loguniform | empirical-Bayes (alpha)")
            for n in args.ns:
                for m in args.ms:
                    r = simulate_weights(n, m, dist, weight, args.rows, seed=n + m)
                    results.append({"weight": weight, "dist": dist, "N": n, "m": m, **r})
                    cells = " | ".join(f"{r[e]['rmse']:.3f} ({r[e]['bias']:+.3f})" for e in ESTIMATOR_NAMES)
                    print(f"  N={n:>6} m={m:>3}  E[phi]={r['_info']['mean_true']:.3f}  {cells}  "
                          f"alpha={r['_info']['alpha_fit']}")
    payload = {"description": "weight estimators vs exact phi(R); see docs/rank_estimation.md",
               "rows_per_cell": args.rows, "results": results, "seconds": round(time.time() - t0, 1)}
    _write_json_atomic(Path(args.out), payload)
    print(f"\nwrote {args.out} in {payload['seconds']} s")
    return payload


if __name__ == "__main__":
    main()
