"""Estimating the positive's catalogue rank from m sampled negatives, for rank-weighted losses.

Setting (derivation in docs/rank_estimation.md). A row has one positive with 0-based catalogue
rank R in {0, ..., N-1}: R of the other N-1 items "beat" it. We draw m negatives uniformly, with
replacement, from those N-1 other items and count the k that beat it, so

    k | R ~ Binomial(m, p),   p = R / (N-1).

Rank-weighted losses need a weight phi(R): WARP uses the harmonic number H(R) = sum_{j<=R} 1/j,
LambdaRank the NDCG discount 1/log2(2+R). Two estimators of phi(R) from k:

* ``naive``     phi(k (N-1)/m): plug the unbiased rank estimate into phi. Biased for a non-linear
                phi; for WARP k = 0 gives weight 0.
* ``corrected`` E[phi(R) | k], the posterior mean under a prior on R. It minimises the expected
                squared error of the weight when the prior is the true rank distribution.

Priors: ``"flat"`` (uniform on R; the continuum limit is p | k ~ Beta(k+1, m-k+1)),
``"loguniform"`` (P(R) ~ 1/(R+1)), a float alpha (P(R) ~ (R+1)^-alpha), or ``"empirical"``:
empirical Bayes over the power-law family, alpha fit by maximum marginal likelihood on a decayed
histogram of the k's seen in training (the rank distribution moves from ~uniform at
initialisation to heavy-tailed as the model learns).

Everything is precomputed as a table over k = 0..m at construction, so a training step is a
gather. With m >= N-1 the losses use all N-1 other items, k = R exactly and the table is phi(k).
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch
from scipy.special import digamma, gammaln, logsumexp, xlogy
from torch import Tensor, nn

from lumenrec.errors import ConfigError

__all__ = [
    "EULER_GAMMA",
    "harmonic",
    "ndcg_discount",
    "WEIGHT_FUNCTIONS",
    "ESTIMATORS",
    "PRIORS",
    "rank_grid",
    "prior_weights",
    "naive_table",
    "posterior_table",
    "marginal_k",
    "fit_powerlaw_alpha",
    "RankWeightEstimator",
]

log = logging.getLogger(__name__)

EULER_GAMMA = 0.5772156649015329
ESTIMATORS = ("naive", "corrected")
PRIORS = ("flat", "loguniform", "empirical")
# The power-law exponents empirical Bayes chooses from: 0 = flat, 1 = log-uniform.
ALPHA_GRID = np.round(np.linspace(0.0, 2.0, 21), 2)


def harmonic(x: np.ndarray | float) -> np.ndarray:
    """H(x) = sum_{j<=x} 1/j, extended to real x >= 0 as psi(x+1) + gamma (H(0) = 0): WARP's weight."""
    return digamma(np.asarray(x, dtype=np.float64) + 1.0) + EULER_GAMMA


def ndcg_discount(x: np.ndarray | float) -> np.ndarray:
    """D(x) = 1/log2(2+x): the NDCG gain of a single relevant item at 0-based rank x (D(0) = 1)."""
    return 1.0 / np.log2(2.0 + np.asarray(x, dtype=np.float64))


WEIGHT_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "warp": harmonic, "lambdarank": ndcg_discount,
}


def _check_sizes(num_others: int, m: int) -> None:
    if not isinstance(num_others, (int, np.integer)) or num_others < 1:
        raise ConfigError("num_items", num_others + 1 if isinstance(num_others, (int, np.integer)) else num_others,
                          "need at least 2 items (a positive and one negative)")
    if not isinstance(m, (int, np.integer)) or m < 1:
        raise ConfigError("num_negatives", m, "need at least 1 sampled negative")


def rank_grid(num_others: int, max_exact: int = 20_000, n_geometric: int = 6_000) -> tuple[np.ndarray, np.ndarray]:
    """Points standing for the ranks 0..num_others, and how many integer ranks each stands for.

    Exact (every integer, count 1) up to `max_exact` ranks; beyond, integers 0..2047 stay exact and
    the rest is cut into geometric cells (ratio ~1.001-1.002 for N up to 1e6) represented by their
    midpoint. Sums over the grid weighted by the counts approximate sums over all ranks.
    """
    if num_others + 1 <= max_exact:
        r = np.arange(num_others + 1, dtype=np.float64)
        return r, np.ones_like(r)
    edges = np.unique(np.concatenate([
        np.arange(2048),
        np.round(np.geomspace(2048, num_others + 1, n_geometric)).astype(np.int64),
    ]))  # cell i = integers [edges[i], edges[i+1])
    lo, hi = edges[:-1].astype(np.float64), edges[1:].astype(np.float64)
    return (lo + hi - 1.0) / 2.0, hi - lo


def prior_weights(ranks: np.ndarray, prior: str | float) -> np.ndarray:
    """Unnormalised prior mass at each rank: flat 1, log-uniform 1/(R+1), a float alpha (R+1)^-alpha."""
    if prior == "flat":
        alpha = 0.0
    elif prior == "loguniform":
        alpha = 1.0
    elif isinstance(prior, (int, float)) and not isinstance(prior, bool) and prior >= 0:
        alpha = float(prior)
    else:
        raise ConfigError("prior", prior, "use 'flat', 'loguniform', 'empirical' or a power-law exponent >= 0")
    return np.power(ranks + 1.0, -alpha)


def naive_table(phi: Callable[[np.ndarray], np.ndarray], num_others: int, m: int) -> np.ndarray:
    """phi(k * num_others / m) for k = 0..m (exact phi(k) for k = 0..num_others when m >= num_others)."""
    _check_sizes(num_others, m)
    if m >= num_others:
        return phi(np.arange(num_others + 1, dtype=np.float64))
    return phi(np.arange(m + 1, dtype=np.float64) * num_others / m)


def _log_likelihood(ranks: np.ndarray, num_others: int, m: int) -> np.ndarray:
    """log P(k | R) for k = 0..m (rows) and each grid rank (columns): the binomial pmf, (m+1, G)."""
    p = ranks / num_others  # (G,)
    k = np.arange(m + 1, dtype=np.float64)[:, None]  # (m+1, 1)
    log_binom = gammaln(m + 1.0) - gammaln(k + 1.0) - gammaln(m - k + 1.0)
    return log_binom + xlogy(k, p[None, :]) + xlogy(m - k, 1.0 - p[None, :])  # (m+1, G)


def posterior_table(phi: Callable[[np.ndarray], np.ndarray], num_others: int, m: int,
                    prior: str | float = "flat") -> np.ndarray:
    """E[phi(R) | k] for k = 0..m under `prior`, k | R ~ Binomial(m, R/num_others); (m+1,).

    With m >= num_others the rank is observed exactly and the table is phi(k), k = 0..num_others.
    """
    _check_sizes(num_others, m)
    if m >= num_others:
        return phi(np.arange(num_others + 1, dtype=np.float64))
    ranks, counts = rank_grid(num_others)
    log_post = _log_likelihood(ranks, num_others, m) + np.log(prior_weights(ranks, prior) * counts)  # (m+1, G)
    log_post -= logsumexp(log_post, axis=1, keepdims=True)
    return np.exp(log_post) @ phi(ranks)  # (m+1,)


def marginal_k(num_others: int, m: int, prior: str | float) -> np.ndarray:
    """P(k) for k = 0..m when R follows `prior` (normalised over 0..num_others); (m+1,)."""
    _check_sizes(num_others, m)
    ranks, counts = rank_grid(num_others)
    log_prior = np.log(prior_weights(ranks, prior) * counts)
    log_prior -= logsumexp(log_prior)
    return np.exp(logsumexp(_log_likelihood(ranks, num_others, m) + log_prior[None, :], axis=1))


def fit_powerlaw_alpha(k_hist: np.ndarray, marginals: np.ndarray) -> int:
    """Index of the prior whose marginal P(k) (rows of `marginals`, (A, m+1)) best explains the
    histogram of observed k (maximum marginal likelihood: argmax_a sum_k hist_k log P_a(k))."""
    return int(np.argmax(np.log(np.clip(marginals, 1e-300, None)) @ k_hist))


class RankWeightEstimator(nn.Module):
    """The weight phi(R) of a row from its violation count k: a gather in a precomputed table.

    Args:
        num_items: catalogue size N (the positive's rank is among the N-1 others).
        num_negatives: m sampled negatives; m >= N-1 means all others are used and k = R exactly.
        weight: "warp" (harmonic number) or "lambdarank" (1/log2(2+R)), or a callable phi.
        estimator: "naive" (phi of the plug-in rank) or "corrected" (posterior mean E[phi(R)|k]).
        prior: for "corrected": "flat", "loguniform", a power-law exponent, or "empirical".
        eb_decay: for "empirical": per-call decay of the k histogram (0.99 ~ the last 100 batches).
    """

    def __init__(self, num_items: int, num_negatives: int, weight: str | Callable = "warp",
                 estimator: str = "corrected", prior: str | float = "empirical", eb_decay: float = 0.99) -> None:
        super().__init__()
        if estimator not in ESTIMATORS:
            raise ConfigError("estimator", estimator, f"choose one of {ESTIMATORS}")
        if isinstance(weight, str) and weight not in WEIGHT_FUNCTIONS:
            raise ConfigError("weight", weight, f"choose one of {sorted(WEIGHT_FUNCTIONS)} or pass a callable")
        if not 0.0 < eb_decay <= 1.0:
            raise ConfigError("eb_decay", eb_decay, "must be in (0, 1]")
        _check_sizes(num_items - 1, num_negatives)
        phi = WEIGHT_FUNCTIONS[weight] if isinstance(weight, str) else weight
        self.num_items, self.num_negatives, self.estimator, self.prior = num_items, num_negatives, estimator, prior
        self.exact = num_negatives >= num_items - 1
        self.eb_decay = eb_decay
        self.empirical = estimator == "corrected" and prior == "empirical" and not self.exact
        if estimator == "naive" or self.exact:
            tables = naive_table(phi, num_items - 1, num_negatives)[None]  # (1, K)
        elif self.empirical:
            tables = np.stack([posterior_table(phi, num_items - 1, num_negatives, float(a)) for a in ALPHA_GRID])
            marg = np.stack([marginal_k(num_items - 1, num_negatives, float(a)) for a in ALPHA_GRID])
            self.register_buffer("marginals", torch.tensor(marg, dtype=torch.float64), persistent=False)
            # Start from the flat prior: an untrained model ranks the positive ~uniformly.
            self.register_buffer("k_hist", torch.zeros(num_negatives + 1, dtype=torch.float64), persistent=False)
        else:
            tables = posterior_table(phi, num_items - 1, num_negatives, prior)[None]
        self.register_buffer("tables", torch.tensor(tables, dtype=torch.float32), persistent=False)  # (A, K)
        self.active = 0  # row of `tables` in use (the fitted alpha for empirical Bayes)

    @property
    def table(self) -> Tensor:
        """The weight for each k = 0..m (or 0..N-1 when exact) currently in use; (K,)."""
        return self.tables[self.active]

    @property
    def alpha(self) -> float | None:
        """The power-law exponent in use when empirical, else None."""
        return float(ALPHA_GRID[self.active]) if self.empirical else None

    @torch.no_grad()
    def observe(self, k: Tensor) -> None:
        """Add a batch of violation counts to the histogram and refit the prior (empirical only)."""
        if not self.empirical:
            return
        counts = torch.bincount(k.reshape(-1).to(self.k_hist.device), minlength=self.num_negatives + 1)
        self.k_hist.mul_(self.eb_decay).add_(counts.to(self.k_hist.dtype))
        self.active = fit_powerlaw_alpha(self.k_hist.cpu().numpy(), self.marginals.cpu().numpy())

    @torch.no_grad()
    def forward(self, k: Tensor) -> Tensor:
        """Weights for violation counts `k` (any shape, long in [0, len(table))), without gradient."""
        table = self.table
        if k.numel() and (int(k.min()) < 0 or int(k.max()) >= table.numel()):
            raise ValueError(f"violation counts must lie in [0, {table.numel() - 1}], got "
                             f"[{int(k.min())}, {int(k.max())}]")
        return table.to(k.device)[k]

    def extra_repr(self) -> str:
        return (f"num_items={self.num_items}, num_negatives={self.num_negatives}, estimator={self.estimator!r}, "
                f"prior={self.prior!r}, exact={self.exact}")
