"""Rank-weight estimators: exact values, limits, and a simulation against exact ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from lumenrec.errors import ConfigError
from lumenrec.eval.bench.rank_estimation import sample_ranks, simulate_weights
from lumenrec.retriever.rank_estimation import (
    ALPHA_GRID,
    RankWeightEstimator,
    fit_powerlaw_alpha,
    harmonic,
    marginal_k,
    naive_table,
    ndcg_discount,
    posterior_table,
    rank_grid,
)


def test_weight_functions_match_their_definitions():
    for r in [0, 1, 2, 7, 100]:
        assert harmonic(r) == pytest.approx(sum(1.0 / j for j in range(1, r + 1)), abs=1e-12)
        assert ndcg_discount(r) == pytest.approx(1.0 / np.log2(2 + r))


def test_naive_table_is_phi_of_plugin_rank():
    t = naive_table(harmonic, 999, 4)
    np.testing.assert_allclose(t, harmonic(np.array([0, 999 / 4, 999 / 2, 3 * 999 / 4, 999])))
    assert t[0] == 0.0  # k = 0 -> weight 0: such rows would give no gradient


def test_flat_posterior_equals_beta_quadrature():
    """Flat prior on R: the discrete posterior sum tends to the Beta(k+1, m-k+1) integral."""
    n_others, m = 20_000, 4
    table = posterior_table(harmonic, n_others, m, "flat")
    for k in range(m + 1):
        beta = stats.beta(k + 1, m - k + 1)
        want, _ = integrate.quad(lambda p: harmonic(p * n_others) * beta.pdf(p), 0, 1, points=[1e-4, 1e-2], limit=200)
        assert table[k] == pytest.approx(want, rel=2e-3), k


def test_compressed_grid_matches_exact_sum():
    """Above 20k ranks the grid is compressed; its answer must match the exact sum closely."""
    exact = posterior_table(harmonic, 30_000, 8, "loguniform")  # uses the compressed grid
    r = np.arange(30_001, dtype=np.float64)
    k = np.arange(9)[:, None]
    lik = stats.binom.pmf(k, 8, r[None] / 30_000) / (r + 1.0)
    want = (lik * harmonic(r)).sum(1) / lik.sum(1)
    np.testing.assert_allclose(exact, want, rtol=2e-3)
    ranks, counts = rank_grid(30_000)
    assert counts.sum() == 30_001 and len(ranks) < 30_001


def test_corrected_table_properties():
    t = posterior_table(harmonic, 999, 8, "flat")
    assert t[0] > 0  # k = 0 still says "the rank is probably around N/(m+2)": non-zero weight
    assert np.all(np.diff(t) > 0)  # more violators -> larger rank -> larger WARP weight
    d = posterior_table(ndcg_discount, 999, 8, "flat")
    assert np.all(np.diff(d) < 0) and np.all((d > 0) & (d <= 1))


def test_exact_when_all_others_are_used():
    """m >= N-1: the losses use all other items, so k is the rank and the table is phi(k)."""
    for est in ["naive", "corrected"]:
        e = RankWeightEstimator(5, 16, "warp", est, "flat")
        assert e.exact
        np.testing.assert_allclose(e.table.numpy(), harmonic(np.arange(5)), rtol=1e-6)


def test_estimator_gathers_and_checks_range():
    e = RankWeightEstimator(1000, 4, "warp", "corrected", "flat")
    k = torch.tensor([[0, 4], [2, 1]])
    w = e(k)
    assert w.shape == (2, 2) and not w.requires_grad
    np.testing.assert_allclose(w.numpy(), posterior_table(harmonic, 999, 4, "flat")[k.numpy()], rtol=1e-6)
    with pytest.raises(ValueError, match=r"\[0, 4\].*\[0, 5\]"):
        e(torch.tensor([0, 5]))


@pytest.mark.parametrize("kwargs, field", [
    (dict(num_items=1, num_negatives=4), "num_items"),
    (dict(num_items=10, num_negatives=0), "num_negatives"),
    (dict(num_items=10, num_negatives=4, estimator="exactish"), "estimator"),
    (dict(num_items=10, num_negatives=4, prior="jeffreys"), "prior"),
])
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError) as err:
        RankWeightEstimator(**kwargs)
    assert err.value.field == field


def test_empirical_bayes_recovers_the_power_law_exponent():
    rng = np.random.default_rng(1)
    n, m = 1000, 8
    marg = np.stack([marginal_k(n - 1, m, float(a)) for a in ALPHA_GRID])
    for true_dist, want in [("uniform", 0.0), ("loguniform", 1.0)]:
        ranks = sample_ranks(n, true_dist, 20_000, rng)
        k = rng.binomial(m, ranks / (n - 1))
        alpha = ALPHA_GRID[fit_powerlaw_alpha(np.bincount(k, minlength=m + 1).astype(float), marg)]
        assert abs(alpha - want) <= 0.1, (true_dist, alpha)


def test_empirical_estimator_adapts_online():
    e = RankWeightEstimator(1000, 8, "warp", "corrected", "empirical")
    assert e.alpha == 0.0  # starts flat (an untrained model ranks uniformly)
    rng = np.random.default_rng(0)
    for _ in range(30):
        ranks = sample_ranks(1000, "loguniform", 256, rng)
        e.observe(torch.from_numpy(rng.binomial(8, ranks / 999)))
    assert 0.8 <= e.alpha <= 1.2


@pytest.mark.parametrize("num_items", [100, 1000])
@pytest.mark.parametrize("dist", ["loguniform", "uniform"])
@pytest.mark.parametrize("weight", ["warp", "lambdarank"])
def test_corrected_beats_naive_in_simulation(num_items, dist, weight):
    """Against exact phi(R): the corrected (default, empirical-Bayes) weight has a smaller RMSE than
    the naive plug-in for m in {1, 2, 4, 8, 16}; R log-uniform (a trained model) or uniform (untrained)."""
    for m in [1, 2, 4, 8, 16]:
        r = simulate_weights(num_items, m, dist, weight, n_rows=4000, seed=m)
        assert r["empirical"]["rmse"] < r["naive"]["rmse"], (m, r)
        if dist == "uniform":  # the flat prior is the Bayes rule here
            assert r["flat"]["rmse"] < r["naive"]["rmse"], (m, r)
