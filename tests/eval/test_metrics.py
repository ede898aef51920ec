import numpy as np
import pytest

from lumenrec.eval.metrics import mask_history, metrics_from_ranked_ids, metrics_from_ranks, ranks_from_scores


def test_ranks_count_strictly_greater_scores():
    scores = np.array([[0.1, 0.9, 0.5, 0.5], [3.0, 2.0, 1.0, 0.0]])
    assert ranks_from_scores(scores, np.array([2, 3])).tolist() == [1, 3]


def test_masked_target_is_never_a_hit():
    scores = mask_history(np.array([[1.0, 2.0, 3.0]]), [np.array([2])])
    assert scores[0, 2] == -np.inf
    assert ranks_from_scores(scores, np.array([2])).tolist() == [3]
    assert ranks_from_scores(scores, np.array([1])).tolist() == [0]


def test_metric_values_by_hand():
    m = metrics_from_ranks(np.array([0, 1, 9, 10]), ks=(1, 10))
    assert m["recall@1"] == pytest.approx(0.25)
    assert m["recall@10"] == pytest.approx(0.75)
    assert m["hr@10"] == m["recall@10"]
    assert m["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(11)) / 4)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 10 + 1 / 11) / 4)
    assert m["n"] == 4


def test_ranked_ids_agree_with_ranks():
    ranked = [["a", "b", "c"], ["c", "b", "a"], ["x", "y", "z"]]
    m = metrics_from_ranked_ids(ranked, ["a", "a", "a"], ks=(1, 3), num_candidates=100)
    ref = metrics_from_ranks(np.array([0, 2, 100]), ks=(1, 3))
    assert m["recall@1"] == ref["recall@1"] and m["ndcg@3"] == pytest.approx(ref["ndcg@3"])
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 0) / 3)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="zero cases"):
        metrics_from_ranks(np.array([]))
    with pytest.raises(ValueError, match=">= 0"):
        metrics_from_ranks(np.array([-1]))
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        ranks_from_scores(np.zeros(3), np.zeros(3, dtype=int))
