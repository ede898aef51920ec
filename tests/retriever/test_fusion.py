"""The SASRec + Markov probability mixture (lumenrec.retriever.fusion) on tiny catalogues with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from lumenrec.data.split import EvalSet
from lumenrec.errors import ConfigError
from lumenrec.eval import MarkovScorer
from lumenrec.retriever.fusion import MixtureScorer, mixture_ranks, to_distribution, tune_mixture


def _cases(histories, targets) -> EvalSet:
    return EvalSet([f"u{i}" for i in range(len(histories))], [np.asarray(h, dtype=np.int64) for h in histories],
                   np.asarray(targets, dtype=np.int64))


def test_to_distribution_rows_sum_to_one_and_keep_order():
    logits = np.array([[0.0, 1.0, 2.0], [1000.0, 0.0, -1000.0]])
    p = to_distribution(logits, "logits")
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert np.all(np.isfinite(p)), "large logits must not overflow"
    assert list(np.argsort(-p[0])) == [2, 1, 0]
    counts = np.array([[0.0, 3.0, 1.0], [0.0, 0.0, 0.0]])
    q = to_distribution(counts, "counts")
    np.testing.assert_allclose(q[0], [0.0, 0.75, 0.25])
    np.testing.assert_allclose(q[1], [1 / 3] * 3)  # no known transition -> uniform, the other component decides


def test_to_distribution_rejects_bad_input():
    with pytest.raises(ConfigError, match="kind"):
        to_distribution(np.zeros((1, 3)), "softmax")
    with pytest.raises(ValueError, match="non-negative"):
        to_distribution(np.array([[1.0, -1.0]]), "counts")
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        to_distribution(np.zeros(3), "logits")


def test_mixture_endpoints_equal_the_components():
    seq = lambda h: np.tile(np.array([3.0, 2.0, 1.0, 0.0]), (len(h), 1))  # noqa: E731  prefers item 0
    markov = MarkovScorer([np.array([1, 3]), np.array([1, 3]), np.array([2, 1])], 4, weights=(1.0,), pop_eps=0.0)
    hist = [np.array([1])]
    np.testing.assert_allclose(MixtureScorer(seq, markov, 0.0)(hist), to_distribution(seq(hist), "logits"))
    np.testing.assert_allclose(MixtureScorer(seq, markov, 1.0)(hist)[0], [0.0, 0.0, 0.0, 1.0])  # 1 -> 3 twice
    with pytest.raises(ConfigError, match="lam"):
        MixtureScorer(seq, markov, 1.5)


def test_tune_mixture_picks_the_weight_that_ranks_the_transition_target_first():
    # the sequential model always prefers item 0; the data says 1 is followed by 3. Validation targets are 3,
    # so only a weight > 0 ranks them first; with lam = 0 the target is ranked behind items 0 and 2.
    seq = lambda h: np.tile(np.array([5.0, 0.0, 4.0, 0.0]), (len(h), 1))  # noqa: E731
    markov = MarkovScorer([np.array([1, 3])] * 5, 4, weights=(1.0,), pop_eps=0.0)
    valid = _cases([[1], [1], [1]], [3, 3, 3])
    ranks = mixture_ranks(seq, markov, valid, [0.0, 0.5, 1.0])
    assert list(ranks[0.0]) == [2, 2, 2]
    assert list(ranks[1.0]) == [0, 0, 0]
    lam, by_lam = tune_mixture(seq, markov, valid, lams=[0.0, 0.5, 1.0])
    assert by_lam[0.0] < by_lam[0.5] == by_lam[1.0] == pytest.approx(1.0)
    assert lam == 0.5, "ties go to the smaller transition weight"


def test_mixture_ranks_mask_history_items():
    seq = lambda h: np.tile(np.array([9.0, 1.0, 0.0]), (len(h), 1))  # noqa: E731  item 0 would win, but it is history
    markov = MarkovScorer([np.array([0, 1])], 3, weights=(1.0,), pop_eps=0.0)
    ranks = mixture_ranks(seq, markov, _cases([[0]], [1]), [0.0])
    assert ranks[0.0][0] == 0


def test_tune_mixture_rejects_bad_arguments():
    seq = lambda h: np.zeros((len(h), 3))  # noqa: E731
    markov = MarkovScorer([np.array([0, 1])], 3)
    valid = _cases([[0]], [1])
    with pytest.raises(ConfigError, match="lams"):
        tune_mixture(seq, markov, valid, lams=[0.2, 1.3])
    with pytest.raises(ConfigError, match="metric"):
        tune_mixture(seq, markov, valid, metric="precision@3")


def test_mean_distribution_is_the_mean_of_the_members_distributions():
    from lumenrec.retriever.fusion import mean_distribution

    a = lambda h: np.array([[0.0, 1.0, 2.0], [5.0, 0.0, 0.0]])  # noqa: E731
    b = lambda h: np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 5.0]])  # noqa: E731
    got = to_distribution(mean_distribution([a, b])(None), "logits")  # (2, 3)
    want = (to_distribution(a(None), "logits") + to_distribution(b(None), "logits")) / 2
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(got[0], got[0][::-1])  # mirror-image members: a symmetric mean
    np.testing.assert_allclose(to_distribution(mean_distribution([a])(None), "logits"), to_distribution(a(None), "logits"))
    # counts members: rows divided by their sums, then averaged
    c = lambda h: np.array([[1.0, 0.0, 3.0]])  # noqa: E731
    np.testing.assert_allclose(np.exp(mean_distribution([c, c], kind="counts")(None)), [[0.25, 0.0, 0.75]])
    with pytest.raises(ConfigError, match="scorers"):
        mean_distribution([])
