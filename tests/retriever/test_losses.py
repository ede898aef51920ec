"""Ranking losses: known values, limits, degenerate cases, masking, argument errors, a toy training run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lumenrec.errors import ConfigError
from lumenrec.retriever.losses import (
    LOSSES,
    BPRLoss,
    FullSoftmaxLoss,
    LambdaRankLoss,
    SampledSoftmaxLoss,
    WARPLoss,
    all_other_items,
    bpr_from_scores,
    lambdarank_from_scores,
    make_loss,
    sample_uniform_negatives,
    sampled_softmax_from_scores,
    warp_from_scores,
)
from lumenrec.retriever.rank_estimation import harmonic, naive_table, posterior_table

ALL_CONFIGS = [("softmax", {}), ("sampled_softmax", {}), ("sampled_softmax", {"negatives": "in_batch"}),
               ("sampled_softmax", {"negatives": "mixed"}), ("bpr", {}),
               ("warp", {"estimator": "naive"}), ("warp", {"estimator": "corrected"}),
               ("warp", {"estimator": "corrected", "surrogate": "softplus"}),
               ("lambdarank", {"estimator": "naive"}), ("lambdarank", {"estimator": "corrected"})]


def _inputs(n=50, m_rows=16, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(m_rows, d, generator=g, requires_grad=True)
    e = torch.randn(n, d, generator=g, requires_grad=True)
    p = torch.randint(0, n, (m_rows,), generator=g)
    return q, p, e


def test_full_softmax_equals_cross_entropy():
    q, p, e = _inputs()
    got = FullSoftmaxLoss(50)(q, p, e)
    torch.testing.assert_close(got, F.cross_entropy(q @ e.T, p))


def test_sampled_softmax_with_all_other_items_and_no_logq_is_full_softmax():
    q, p, e = _inputs()
    scores = q @ e.T  # (M, N)
    others = all_other_items(p, 50)  # (M, N-1)
    got = sampled_softmax_from_scores(scores.gather(1, p[:, None])[:, 0], scores.gather(1, others), 0.0)
    torch.testing.assert_close(got, F.cross_entropy(scores, p))


def test_sampled_softmax_module_approaches_full_softmax():
    """m = N-1 uniform draws (log q = log(m/(N-1)) = 0): the mean over draws is near the full softmax;
    with many more draws and the logQ correction it gets closer still."""
    n = 20
    q, p, e = _inputs(n=n, d=4)
    q, e = q.detach() * 0.5, e.detach() * 0.5
    full = float(FullSoftmaxLoss(n)(q, p, e))
    torch.manual_seed(0)
    loss = SampledSoftmaxLoss(n, n - 1)
    mean = np.mean([float(loss(q, p, e)) for _ in range(200)])
    assert mean == pytest.approx(full, rel=0.05)
    big = np.mean([float(SampledSoftmaxLoss(n, 40 * (n - 1))(q, p, e)) for _ in range(20)])
    assert big == pytest.approx(full, rel=0.01)
    assert abs(big - full) < abs(mean - full) + 0.01


def test_logq_of_uniform_negatives_is_constant():
    torch.manual_seed(3)
    q, p, e = _inputs(n=30)
    loss = SampledSoftmaxLoss(30, 5)
    torch.manual_seed(7)
    got = loss(q, p, e)
    torch.manual_seed(7)
    ids = sample_uniform_negatives(p, 30, 5)
    pos, neg = (q * e[p]).sum(-1), torch.einsum("md,mkd->mk", q, e[ids])
    want = (torch.logsumexp(torch.cat([pos[:, None], neg - math.log(5 / 29)], 1), 1) - pos).mean()
    torch.testing.assert_close(got, want)


def test_uniform_negatives_never_hit_the_positive_n3():
    """N = 3: a naive draw would hit the positive a third of the time; ours never does and covers both others."""
    p = torch.tensor([0, 1, 2] * 100)
    neg = sample_uniform_negatives(p, 3, 50, torch.Generator().manual_seed(0))
    assert not (neg == p[:, None]).any()
    for i in range(3):
        assert set(neg[p == i].unique().tolist()) == {0, 1, 2} - {i}


def test_in_batch_accidental_hits_are_masked_n3():
    """N = 3, rows with repeated positives: the softmax sees each row's positive once and only
    other items as negatives; a row whose positive is everyone's has no negatives (loss 0)."""
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, -1.0]])
    e = torch.tensor([[1.0, 0.2], [0.3, 1.0], [-1.0, 0.5]])
    p = torch.tensor([0, 0, 1, 0])
    loss = SampledSoftmaxLoss(3, 1, negatives="in_batch", logq_correction=False)
    got = loss(q, p, e)
    s = q @ e.T
    want = []
    for i in range(4):
        negs = [int(p[j]) for j in range(4) if int(p[j]) != int(p[i])]  # with duplicates, as drawn
        logits = torch.tensor([s[i, p[i]]] + [s[i, j] for j in negs])
        want.append(torch.logsumexp(logits, 0) - s[i, p[i]])
    torch.testing.assert_close(got, torch.stack(want).mean())
    only = SampledSoftmaxLoss(3, 1, negatives="in_batch")(q[:2], torch.tensor([2, 2]), e)
    assert float(only) == 0.0


def test_in_batch_logq_uses_popularity():
    q, p, e = _inputs(n=10, m_rows=6)
    pop = np.arange(1, 11, dtype=float)
    loss = SampledSoftmaxLoss(10, 1, negatives="in_batch", item_popularity=pop)
    s = q @ e.T
    counts = pop / pop.sum() * 10 + 1.0
    logc = torch.log(5 * torch.tensor(counts / counts.sum())).float()[p]  # (M,) for each column's item
    pos = s.gather(1, p[:, None])[:, 0]
    neg = s[:, p] - logc[None, :]
    neg = neg.masked_fill(p[None, :] == p[:, None], float("-inf"))
    want = (torch.logsumexp(torch.cat([pos[:, None], neg], 1), 1) - pos).mean()
    torch.testing.assert_close(loss(q, p, e), want)


def test_bpr_core_and_mask():
    pos = torch.tensor([1.0, 0.0])
    neg = torch.tensor([[0.0, 2.0], [0.0, 5.0]])
    valid = torch.tensor([[True, False], [True, True]])
    want = (F.softplus(torch.tensor(-1.0)) + (F.softplus(torch.tensor(0.0)) + F.softplus(torch.tensor(5.0))) / 2) / 2
    torch.testing.assert_close(bpr_from_scores(pos, neg, valid), want)


def test_warp_core_known_value():
    pos = torch.tensor([0.0, 3.0])
    neg = torch.tensor([[0.5, -2.0, 1.0], [0.0, 0.0, 0.0]])  # row 0: k=2 (0.5, 1.0 > -1); row 1: k=0
    table = torch.tensor([0.0, 1.0, 2.0, 3.0])
    got = warp_from_scores(pos, neg, table, margin=1.0)
    want = (2.0 * ((1 + 0.5) + (1 + 1.0)) / 2 + 0.0) / 2
    assert float(got) == pytest.approx(want)


def test_warp_k0_corrected_keeps_a_gradient_with_softplus():
    """k = 0 for every row: naive weight 0 -> no gradient; corrected E[Phi|k=0] > 0 -> gradient (softplus).
    With the hinge no negative violates, so the loss is 0 whatever the weight."""
    pos = torch.tensor([10.0, 12.0], requires_grad=True)
    neg = torch.zeros(2, 4, requires_grad=True)
    for table, has_grad in [(torch.tensor(naive_table(harmonic, 99, 4)), False),
                            (torch.tensor(posterior_table(harmonic, 99, 4)), True)]:
        pos.grad = None
        warp_from_scores(pos, neg, table.float(), surrogate="softplus").backward()
        assert bool((pos.grad != 0).any()) == has_grad
        assert torch.isfinite(pos.grad).all()
    assert float(warp_from_scores(pos.detach(), neg.detach(), torch.ones(5), surrogate="hinge")) == 0.0


def test_warp_exact_mode_uses_the_true_rank():
    """N = 5 with m = 16 >= N-1: negatives are the 4 other items and the weight is H(R) exactly."""
    q = torch.tensor([[1.0]])
    e = torch.tensor([[0.0], [3.0], [0.5], [2.5], [-1.0]])
    loss = WARPLoss(5, 16, margin=0.0)
    assert loss.exact
    got = loss(q, torch.tensor([2]), e)  # positive score 0.5; items 1, 3 above -> R = 2
    want = harmonic(2) * ((3.0 - 0.5) + (2.5 - 0.5)) / 2
    assert float(got) == pytest.approx(float(want), rel=1e-6)


def test_lambdarank_exact_mode_weights_are_delta_ndcg():
    q = torch.tensor([[1.0]])
    e = torch.tensor([[0.0], [3.0], [0.5], [2.5], [-1.0]])
    got = LambdaRankLoss(5, 16)(q, torch.tensor([2]), e)
    s = e[:, 0]
    rank = lambda i: int((s > s[i]).sum())  # noqa: E731  exact 0-based catalogue rank
    d = lambda r: 1.0 / math.log2(2 + r)  # noqa: E731
    terms = [abs(d(rank(2)) - d(rank(j))) * float(F.softplus(s[j] - s[2])) for j in [0, 1, 3, 4]]
    assert float(got) == pytest.approx(sum(terms) / 4, rel=1e-6)


def test_lambdarank_core_negative_rank_plugin():
    pos = torch.tensor([1.0])
    neg = torch.tensor([[2.0, 0.0, 3.0]])  # k = 2; negative places 1, 2, 0 above
    table = torch.tensor([1.0, 0.5, 0.25, 0.1])
    got = lambdarank_from_scores(pos, neg, table, rank_scale=10.0)
    r_neg = torch.tensor([10.0, 20.0 + 1.0, 0.0])
    w = (0.25 - 1.0 / torch.log2(2.0 + r_neg)).abs()
    torch.testing.assert_close(got, (w * F.softplus(neg[0] - 1.0)).mean()[None][0])


@pytest.mark.parametrize("name, kw", ALL_CONFIGS)
@pytest.mark.parametrize("case", ["random", "k0", "km", "all_equal", "tiny"])
def test_gradients_finite(name, kw, case):
    n, d, m_rows = 40, 4, 8
    if case == "tiny":
        n = 2  # m = 16 >= N-1: exact mode for warp / lambdarank
    torch.manual_seed(0)
    q = torch.randn(m_rows, d)
    e = torch.randn(n, d)
    p = torch.randint(0, n, (m_rows,))
    if case == "all_equal":
        e = torch.ones(n, d)
    if case in ("k0", "km"):
        e = torch.randn(n, d) * 0.01
        e[p] = q * (10.0 if case == "k0" else -10.0)  # positives far above / far below everything
    q, e = q.clone().requires_grad_(True), e.clone().requires_grad_(True)
    loss = make_loss(name, n, 16, **kw)(q, p, e)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(q.grad).all() and torch.isfinite(e.grad).all()


@pytest.mark.parametrize("name, kw", ALL_CONFIGS)
def test_loss_decreases_when_the_positive_score_increases(name, kw):
    """Same sampled negatives (same seed): raising only row 0's positive score lowers the loss. Rows 1-2
    (in-batch negatives for row 0) have queries orthogonal to the bumped direction."""
    q = torch.eye(4)[:3]
    e = torch.randn(30, 4, generator=torch.Generator().manual_seed(1))
    p = torch.tensor([4, 7, 9])
    values = []
    for bump in [0.0, 0.5, 1.0]:
        e2 = e.clone()
        e2[4, 0] = e[4, 0] + bump  # only the positive's score changes
        torch.manual_seed(5)
        values.append(float(make_loss(name, 30, 8, **kw)(q, p, e2)))
    assert values[0] > values[1] > values[2], values


def test_seeded_runs_are_reproducible_and_generator_is_used():
    q, p, e = (t.detach() for t in _inputs())
    outs = []
    for _ in range(2):
        torch.manual_seed(11)
        outs.append(float(BPRLoss(50, 4)(q, p, e)))
    assert outs[0] == outs[1]
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert float(WARPLoss(50, 4, generator=g1)(q, p, e)) == float(WARPLoss(50, 4, generator=g2)(q, p, e))


def test_argument_errors_name_the_value():
    q, p, e = _inputs()
    with pytest.raises(ConfigError, match="num_negatives") as err:
        make_loss("bpr", 50, 0)
    assert err.value.value == 0
    with pytest.raises(ConfigError, match="'hinge2'"):
        make_loss("warp", 50, 4, surrogate="hinge2")
    with pytest.raises(ConfigError, match="'listnet'"):
        make_loss("listnet", 50)
    with pytest.raises(ConfigError, match="temperature"):
        make_loss("bpr", 50, temperature=0.1)
    with pytest.raises(ConfigError, match="estimator"):
        make_loss("warp", 50, estimator="smart")
    with pytest.raises(ValueError, match=r"positives\[3\]=57 is outside \[0, 50\)"):
        BPRLoss(50)(q, torch.tensor([0, 1, 2, 57] + [0] * 12), e)
    with pytest.raises(ValueError, match=r"item_emb must be \(N, d\) with d=8"):
        WARPLoss(50)(q, p, e[:, :3])
    with pytest.raises(ValueError, match="num_items=40"):
        LambdaRankLoss(40)(q, p, e)
    with pytest.raises(ValueError, match=r"m >= 1.*m=0"):
        bpr_from_scores(torch.zeros(3), torch.zeros(3, 0))
    with pytest.raises(ValueError, match=r"m\+1=4 entries"):
        warp_from_scores(torch.zeros(2), torch.zeros(2, 3), torch.zeros(3))


def test_make_loss_covers_the_registry():
    assert set(LOSSES) == {"softmax", "sampled_softmax", "bpr", "warp", "lambdarank"}
    for name in LOSSES:
        loss = make_loss(name, 50, 8, estimator="naive", item_popularity=np.ones(50))
        assert isinstance(loss, LOSSES[name])


@pytest.mark.parametrize("name, kw", ALL_CONFIGS)
def test_toy_training_puts_positives_in_top5(name, kw):
    """N = 50 items, 40 users with a fixed random query each and one positive; 200 Adam steps on the
    item embeddings -> the positive ranks in the top 5 for most users."""
    torch.manual_seed(0)
    n, d, users = 50, 16, 40
    q = torch.randn(users, d)
    p = torch.randint(0, n, (users,))
    e = (0.1 * torch.randn(n, d)).requires_grad_(True)
    loss_fn = make_loss(name, n, 8, **kw)
    opt = torch.optim.Adam([e], lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        loss_fn(q, p, e).backward()
        opt.step()
    with torch.no_grad():
        s = q @ e.T
        rank = (s > s.gather(1, p[:, None])).sum(1)
    assert float((rank < 5).float().mean()) >= 0.8
