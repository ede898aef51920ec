"""Ranking losses for training retrievers with a full or sampled catalogue.

Every loss is an ``nn.Module`` with the same call, used by the trainers:

    loss = make_loss("warp", num_items=N, num_negatives=16)(query, positives, item_emb)
    # query (M, d) float, positives (M,) long in [0, N), item_emb (N, d) -> scalar (mean over M rows)

and a pure core function on scores (``*_from_scores``) that the tests call directly.

Uniform negatives are drawn with replacement from the N-1 items other than the row's positive
(draw j in [0, N-1), shift j >= positive up by one), so a uniform negative never equals the
positive: accidental hits cannot happen there. In-batch negatives (the other rows' positives) can
equal the row's positive; those accidental hits are masked. Sampling uses torch's global RNG, or
the ``generator`` passed at construction, so a seeded trainer is reproducible.

WARP and LambdaRank weight each row by a function of the positive's catalogue rank estimated from
the sampled negatives (naive plug-in or corrected posterior mean: see rank_estimation.py and
docs/rank_estimation.md). With num_negatives >= N-1 they use all N-1 other items and the rank is
exact.
"""

from __future__ import annotations

import inspect
import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lumenrec.errors import ConfigError
from lumenrec.retriever.rank_estimation import ESTIMATORS, RankWeightEstimator

__all__ = [
    "RankingLoss", "FullSoftmaxLoss", "SampledSoftmaxLoss", "BPRLoss", "WARPLoss", "LambdaRankLoss",
    "LOSSES", "make_loss",
    "full_softmax_from_scores", "sampled_softmax_from_scores", "bpr_from_scores",
    "warp_from_scores", "lambdarank_from_scores", "sample_uniform_negatives", "all_other_items",
]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- argument checks

def _check_pos_neg(pos_scores: Tensor, neg_scores: Tensor, where: str) -> None:
    if pos_scores.dim() != 1:
        raise ValueError(f"{where}: pos_scores must be (M,), got shape {tuple(pos_scores.shape)}")
    if neg_scores.dim() != 2 or neg_scores.shape[0] != pos_scores.shape[0]:
        raise ValueError(f"{where}: neg_scores must be (M, m) with M={pos_scores.shape[0]}, "
                         f"got shape {tuple(neg_scores.shape)}")
    if neg_scores.shape[1] < 1:
        raise ValueError(f"{where}: need m >= 1 negatives per row, got m={neg_scores.shape[1]}")


def _check_mask(valid: Tensor | None, neg_scores: Tensor, where: str) -> None:
    if valid is not None and (valid.shape != neg_scores.shape or valid.dtype != torch.bool):
        raise ValueError(f"{where}: valid must be a bool tensor of shape {tuple(neg_scores.shape)}, "
                         f"got {valid.dtype} {tuple(valid.shape)}")


def _check_forward(name: str, query: Tensor, positives: Tensor, item_emb: Tensor, num_items: int) -> None:
    """Shapes, dtypes and ranges of the common forward arguments; the message names the bad value."""
    if query.dim() != 2:
        raise ValueError(f"{name}: query must be (M, d), got shape {tuple(query.shape)}")
    if item_emb.dim() != 2 or item_emb.shape[1] != query.shape[1]:
        raise ValueError(f"{name}: item_emb must be (N, d) with d={query.shape[1]}, got shape {tuple(item_emb.shape)}")
    if item_emb.shape[0] != num_items:
        raise ValueError(f"{name}: item_emb has {item_emb.shape[0]} rows but the loss was built for "
                         f"num_items={num_items}")
    if positives.dim() != 1 or positives.shape[0] != query.shape[0]:
        raise ValueError(f"{name}: positives must be (M,) with M={query.shape[0]}, got shape {tuple(positives.shape)}")
    if positives.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name}: positives must be integer ids, got dtype {positives.dtype}")
    if positives.numel():
        bad = (positives < 0) | (positives >= num_items)
        if bool(bad.any()):
            row = int(bad.nonzero()[0, 0])
            raise ValueError(f"{name}: positives[{row}]={int(positives[row])} is outside [0, {num_items})")


def _check_sizes(num_items: int, num_negatives: int) -> None:
    if not isinstance(num_items, (int, np.integer)) or num_items < 2:
        raise ConfigError("num_items", num_items, "need at least 2 items (a positive and a negative)")
    if not isinstance(num_negatives, (int, np.integer)) or num_negatives < 1:
        raise ConfigError("num_negatives", num_negatives, "need m >= 1 sampled negatives")


# ----------------------------------------------------------------------------- sampling

def sample_uniform_negatives(positives: Tensor, num_items: int, m: int,
                             generator: torch.Generator | None = None) -> Tensor:
    """m ids per row drawn uniformly with replacement from the N-1 items other than the positive; (M, m)."""
    device = generator.device if generator is not None else positives.device
    j = torch.randint(0, num_items - 1, (positives.shape[0], m), generator=generator, device=device)
    j = j.to(positives.device)  # (M, m)
    return j + (j >= positives[:, None]).long()  # skip the positive: never an accidental hit


def all_other_items(positives: Tensor, num_items: int) -> Tensor:
    """The N-1 items other than each row's positive, in id order; (M, N-1). Used when m >= N-1."""
    j = torch.arange(num_items - 1, device=positives.device)[None, :].expand(positives.shape[0], -1)
    return j + (j >= positives[:, None]).long()  # (M, N-1)


def _pos_neg_scores(query: Tensor, positives: Tensor, item_emb: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor]:
    pos = (query * item_emb[positives]).sum(-1)  # (M,)
    neg = torch.einsum("md,mkd->mk", query, item_emb[negatives])  # (M, m)
    return pos, neg


# ----------------------------------------------------------------------------- core functions

def full_softmax_from_scores(scores: Tensor, positives: Tensor) -> Tensor:
    """mean_i -log softmax(scores_i)[positive_i]: cross-entropy over the whole catalogue."""
    if scores.dim() != 2 or positives.shape != scores.shape[:1]:
        raise ValueError(f"full_softmax_from_scores: scores must be (M, N) and positives (M,), got "
                         f"{tuple(scores.shape)} and {tuple(positives.shape)}")
    return F.cross_entropy(scores, positives)


def sampled_softmax_from_scores(pos_scores: Tensor, neg_scores: Tensor, log_q: Tensor | float = 0.0,
                                valid: Tensor | None = None) -> Tensor:
    """mean_i [ -s_i+ + log( exp(s_i+) + sum_{j valid} exp(s_ij - log_q_ij) ) ].

    With log_q_ij = log(expected number of times item j is drawn among the row's negatives), the
    sum is an importance-sampling estimate of sum over the other N-1 items of exp(s) (logQ
    correction, Yi et al. 2019). `log_q` broadcasts to (M, m); `valid` (M, m) bool masks entries out
    (accidental hits). A row with no valid negative has loss 0.
    """
    _check_pos_neg(pos_scores, neg_scores, "sampled_softmax_from_scores")
    _check_mask(valid, neg_scores, "sampled_softmax_from_scores")
    logits = neg_scores - log_q  # (M, m)
    if valid is not None:
        logits = logits.masked_fill(~valid, float("-inf"))
    all_logits = torch.cat([pos_scores[:, None], logits], dim=1)  # (M, 1+m)
    return (torch.logsumexp(all_logits, dim=1) - pos_scores).mean()


def bpr_from_scores(pos_scores: Tensor, neg_scores: Tensor, valid: Tensor | None = None) -> Tensor:
    """mean_i mean_{j valid} -log sigmoid(s_i+ - s_ij) (Rendle et al. 2009); rows with no valid negative give 0."""
    _check_pos_neg(pos_scores, neg_scores, "bpr_from_scores")
    _check_mask(valid, neg_scores, "bpr_from_scores")
    terms = F.softplus(neg_scores - pos_scores[:, None])  # (M, m): -log sigmoid(s+ - s-)
    if valid is None:
        return terms.mean()
    w = valid.to(terms.dtype)
    return ((terms * w).sum(1) / w.sum(1).clamp_min(1.0)).mean()


def warp_from_scores(pos_scores: Tensor, neg_scores: Tensor, weight_table: Tensor, margin: float = 1.0,
                     surrogate: str = "hinge") -> Tensor:
    """Sampled-batch WARP.

    k_i = #{j : s_ij > s_i+ - margin} (violators), w_i = weight_table[k_i] (the rank weight
    Phi(R_i) estimated from k_i; a constant, no gradient), and

      hinge:    loss_i = w_i * (1/max(k_i,1)) * sum_j max(0, margin - s_i+ + s_ij)
                (the mean hinge over the violating negatives; 0 when k_i = 0)
      softplus: loss_i = w_i * mean_j softplus(margin - s_i+ + s_ij)
                (smooth; every negative contributes, so rows with k_i = 0 still get a gradient
                when their weight is > 0, as with the corrected estimator)

    loss = mean_i loss_i. `weight_table` has m+1 entries (k = 0..m).
    """
    _check_pos_neg(pos_scores, neg_scores, "warp_from_scores")
    m = neg_scores.shape[1]
    if weight_table.dim() != 1 or weight_table.numel() != m + 1:
        raise ValueError(f"warp_from_scores: weight_table must have m+1={m + 1} entries, got {tuple(weight_table.shape)}")
    if surrogate not in ("hinge", "softplus"):
        raise ValueError(f"warp_from_scores: surrogate={surrogate!r}, choose 'hinge' or 'softplus'")
    viol = margin - pos_scores[:, None] + neg_scores  # (M, m)
    k = (viol > 0).sum(1)  # (M,)
    w = weight_table.to(pos_scores.device, pos_scores.dtype)[k].detach()  # (M,)
    if surrogate == "hinge":
        per_row = F.relu(viol).sum(1) / k.clamp_min(1).to(viol.dtype)
    else:
        per_row = F.softplus(viol).mean(1)
    return (w * per_row).mean()


def lambdarank_from_scores(pos_scores: Tensor, neg_scores: Tensor, pos_discount_table: Tensor,
                           rank_scale: float) -> Tensor:
    """Sampled LambdaRank, binary relevance, one positive per row.

    loss = mean_i mean_j |D_i+ - D_ij| * log(1 + exp(-(s_i+ - s_ij))),   D(r) = 1/log2(2+r),

    the pairwise logistic loss weighted by |delta NDCG| of swapping the positive and negative j.
    D_i+ = pos_discount_table[k_i] with k_i = #{j : s_ij > s_i+} (the positive's discount estimated
    from its sampled rank, naive or corrected). The negative's rank is the plug-in estimate
    R_ij = c_ij * rank_scale + [s_i+ > s_ij] with c_ij = #{j' : s_ij' > s_ij} among the sampled
    negatives and rank_scale = (N-1)/m (1 when all other items are used: then exact). Weights
    carry no gradient.
    """
    _check_pos_neg(pos_scores, neg_scores, "lambdarank_from_scores")
    m = neg_scores.shape[1]
    if pos_discount_table.dim() != 1 or pos_discount_table.numel() != m + 1:
        raise ValueError(f"lambdarank_from_scores: pos_discount_table must have m+1={m + 1} entries, "
                         f"got {tuple(pos_discount_table.shape)}")
    with torch.no_grad():
        k = (neg_scores > pos_scores[:, None]).sum(1)  # (M,)
        d_pos = pos_discount_table.to(pos_scores.device, pos_scores.dtype)[k]  # (M,)
        srt = neg_scores.sort(dim=1).values.contiguous()  # (M, m) ascending
        above = m - torch.searchsorted(srt, neg_scores.contiguous(), right=True)  # (M, m) strictly higher negatives
        r_neg = above.to(neg_scores.dtype) * rank_scale + (pos_scores[:, None] > neg_scores).to(neg_scores.dtype)
        w = (d_pos[:, None] - 1.0 / torch.log2(2.0 + r_neg)).abs()  # (M, m) |delta NDCG|
    return (w * F.softplus(neg_scores - pos_scores[:, None])).mean()


# ----------------------------------------------------------------------------- modules

class RankingLoss(nn.Module):
    """Base class: forward(query (M, d), positives (M,) long in [0, N), item_emb (N, d)) -> scalar mean over M."""

    def __init__(self, num_items: int, num_negatives: int = 16, generator: torch.Generator | None = None) -> None:
        super().__init__()
        _check_sizes(num_items, num_negatives)
        self.num_items, self.num_negatives, self.generator = int(num_items), int(num_negatives), generator

    def _check(self, query: Tensor, positives: Tensor, item_emb: Tensor) -> None:
        _check_forward(type(self).__name__, query, positives, item_emb, self.num_items)

    def forward(self, query: Tensor, positives: Tensor, item_emb: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"num_items={self.num_items}, num_negatives={self.num_negatives}"


class FullSoftmaxLoss(RankingLoss):
    """Cross-entropy over all N items: mean_i -log softmax(q_i . E^T)[pos_i]. The reference loss."""

    def forward(self, query: Tensor, positives: Tensor, item_emb: Tensor) -> Tensor:
        self._check(query, positives, item_emb)
        return full_softmax_from_scores(query @ item_emb.T, positives.long())  # (M, N) scores


class SampledSoftmaxLoss(RankingLoss):
    """Softmax over the positive and sampled negatives, with logQ correction.

    loss_i = -s_i+ + log(exp(s_i+) + sum_j exp(s_ij - log c_j)), c_j = expected count of item j
    among row i's negatives:
      uniform:  m draws from the N-1 others, c_j = m/(N-1) (a constant);
      in_batch: the other M-1 rows' positives, c_j = (M-1) q_j with q_j the item's share of the
                training positives (item_popularity, add-one smoothed; when None, a running count
                of the positives seen in training); accidental hits (same item as the positive) masked;
      mixed:    both sets, c_j = m/(N-1) + (M-1) q_j for every negative (the mixture's expected count).
    logq_correction=False uses c_j = 1 (plain sampled softmax).
    """

    def __init__(self, num_items: int, num_negatives: int = 16, negatives: str = "uniform",
                 item_popularity: np.ndarray | None = None, logq_correction: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(num_items, num_negatives, generator)
        if negatives not in ("uniform", "in_batch", "mixed"):
            raise ConfigError("negatives", negatives, "choose 'uniform', 'in_batch' or 'mixed'")
        self.negatives, self.logq_correction = negatives, bool(logq_correction)
        self.streaming_popularity = item_popularity is None
        if item_popularity is None:
            counts = torch.ones(num_items, dtype=torch.float64)
        else:
            pop = np.asarray(item_popularity, dtype=np.float64)
            if pop.shape != (num_items,) or not np.all(np.isfinite(pop)) or (pop < 0).any():
                raise ConfigError("item_popularity", f"array of shape {pop.shape}",
                                  f"need {num_items} finite counts >= 0")
            counts = torch.tensor(pop / max(pop.sum(), 1e-12) * num_items + 1.0)  # add-one smoothing on the count scale
        self.register_buffer("pop_counts", counts, persistent=False)

    def _log_count(self, items: Tensor, n_batch_neg: int) -> Tensor:
        """log c_j for the given item ids (any shape)."""
        uniform = self.num_negatives / (self.num_items - 1) if self.negatives != "in_batch" else 0.0
        if self.negatives == "uniform":
            return torch.full(items.shape, math.log(uniform), device=items.device)
        q = (self.pop_counts / self.pop_counts.sum()).to(items.device)[items]
        return torch.log(uniform + n_batch_neg * q).float()

    def forward(self, query: Tensor, positives: Tensor, item_emb: Tensor) -> Tensor:
        self._check(query, positives, item_emb)
        positives = positives.long()
        M = positives.shape[0]
        if self.training and self.streaming_popularity and self.negatives != "uniform":
            self.pop_counts.index_add_(0, positives.to(self.pop_counts.device),
                                       torch.ones(M, dtype=self.pop_counts.dtype, device=self.pop_counts.device))
        pos = (query * item_emb[positives]).sum(-1)  # (M,)
        negs, scores, valid = [], [], []
        if self.negatives in ("uniform", "mixed"):
            ids = sample_uniform_negatives(positives, self.num_items, self.num_negatives, self.generator)  # (M, m)
            negs.append(ids)
            scores.append(torch.einsum("md,mkd->mk", query, item_emb[ids]))  # (M, m)
            valid.append(torch.ones_like(ids, dtype=torch.bool))
        if self.negatives in ("in_batch", "mixed"):
            negs.append(positives[None, :].expand(M, -1))  # (M, M): row i sees every row's positive
            scores.append(query @ item_emb[positives].T)  # (M, M)
            valid.append(positives[None, :] != positives[:, None])  # masks the diagonal and accidental hits
        neg_ids, neg_scores, neg_valid = torch.cat(negs, 1), torch.cat(scores, 1), torch.cat(valid, 1)
        log_q = self._log_count(neg_ids, max(M - 1, 1)).to(neg_scores.dtype) if self.logq_correction else 0.0
        return sampled_softmax_from_scores(pos, neg_scores, log_q, neg_valid)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, negatives={self.negatives!r}, logq_correction={self.logq_correction}"


class BPRLoss(RankingLoss):
    """Bayesian personalised ranking: mean_i mean_j -log sigmoid(s_i+ - s_ij), m uniform negatives."""

    def forward(self, query: Tensor, positives: Tensor, item_emb: Tensor) -> Tensor:
        self._check(query, positives, item_emb)
        positives = positives.long()
        ids = sample_uniform_negatives(positives, self.num_items, self.num_negatives, self.generator)  # (M, m)
        return bpr_from_scores(*_pos_neg_scores(query, positives, item_emb, ids))


class _RankWeightedLoss(RankingLoss):
    """Shared part of WARP and LambdaRank: negatives (sampled or all others) and the rank-weight table."""

    weight_name = "warp"

    def __init__(self, num_items: int, num_negatives: int = 16, estimator: str = "corrected",
                 prior: str | float = "empirical", eb_decay: float = 0.99,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(num_items, num_negatives, generator)
        if estimator not in ESTIMATORS:
            raise ConfigError("estimator", estimator, f"choose one of {ESTIMATORS}")
        self.estimator = estimator
        self.rank_weight = RankWeightEstimator(num_items, num_negatives, self.weight_name, estimator, prior, eb_decay)
        self.exact = self.rank_weight.exact  # m >= N-1: use all other items, the rank is exact

    def _negatives(self, positives: Tensor) -> Tensor:
        if self.exact:
            return all_other_items(positives, self.num_items)  # (M, N-1)
        return sample_uniform_negatives(positives, self.num_items, self.num_negatives, self.generator)  # (M, m)

    def _observe(self, k: Tensor) -> None:
        if self.training:
            self.rank_weight.observe(k)


class WARPLoss(_RankWeightedLoss):
    """Sampled-batch WARP: weight Phi(R) = H(R) = sum_{j<=R} 1/j of the positive's estimated rank
    times the mean hinge over violating negatives (see :func:`warp_from_scores` for the exact form).

    estimator "naive": Phi(k (N-1)/m); "corrected": E[Phi(R) | k] under `prior` (default empirical
    Bayes, see docs/rank_estimation.md). margin (default 1) enters both the violation count and the hinge.
    """

    weight_name = "warp"

    def __init__(self, num_items: int, num_negatives: int = 16, estimator: str = "corrected",
                 margin: float = 1.0, surrogate: str = "hinge", prior: str | float = "empirical",
                 eb_decay: float = 0.99, generator: torch.Generator | None = None) -> None:
        super().__init__(num_items, num_negatives, estimator, prior, eb_decay, generator)
        if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
            raise ConfigError("margin", margin, "must be a finite number >= 0")
        if surrogate not in ("hinge", "softplus"):
            raise ConfigError("surrogate", surrogate, "choose 'hinge' or 'softplus'")
        self.margin, self.surrogate = float(margin), surrogate

    def forward(self, query: Tensor, positives: Tensor, item_emb: Tensor) -> Tensor:
        self._check(query, positives, item_emb)
        positives = positives.long()
        pos, neg = _pos_neg_scores(query, positives, item_emb, self._negatives(positives))  # (M,), (M, m)
        self._observe((neg.detach() > pos.detach()[:, None] - self.margin).sum(1))
        return warp_from_scores(pos, neg, self.rank_weight.table, self.margin, self.surrogate)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, estimator={self.estimator!r}, margin={self.margin}, "
                f"surrogate={self.surrogate!r}, exact={self.exact}")


class LambdaRankLoss(_RankWeightedLoss):
    """Sampled LambdaRank (binary relevance, one positive): pairwise logistic loss per negative weighted
    by |1/log2(2+R+) - 1/log2(2+R-)| with estimated ranks (see :func:`lambdarank_from_scores`).

    The positive's discount 1/log2(2+R+) is estimated from k naive or corrected (posterior mean),
    the negative's rank by the plug-in from its place among the sampled negatives.
    """

    weight_name = "lambdarank"

    def forward(self, query: Tensor, positives: Tensor, item_emb: Tensor) -> Tensor:
        self._check(query, positives, item_emb)
        positives = positives.long()
        pos, neg = _pos_neg_scores(query, positives, item_emb, self._negatives(positives))  # (M,), (M, m)
        self._observe((neg.detach() > pos.detach()[:, None]).sum(1))
        scale = 1.0 if self.exact else (self.num_items - 1) / self.num_negatives
        return lambdarank_from_scores(pos, neg, self.rank_weight.table, scale)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, estimator={self.estimator!r}, exact={self.exact}"


LOSSES: dict[str, type[RankingLoss]] = {
    "softmax": FullSoftmaxLoss, "sampled_softmax": SampledSoftmaxLoss, "bpr": BPRLoss,
    "warp": WARPLoss, "lambdarank": LambdaRankLoss,
}


def make_loss(name: str, num_items: int, num_negatives: int = 16, estimator: str = "corrected",
              item_popularity: np.ndarray | None = None, **kwargs) -> RankingLoss:
    """Build a loss by name. `estimator` applies to warp/lambdarank and `item_popularity` to
    sampled_softmax (others ignore them, so a trainer can pass them always); other keyword
    arguments go to the loss class and must be ones it accepts."""
    if name not in LOSSES:
        raise ConfigError("loss", name, f"choose one of {sorted(LOSSES)}")
    cls = LOSSES[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ConfigError(unknown[0], kwargs[unknown[0]], f"not an option of the {name!r} loss; "
                          f"it takes {sorted(accepted - {'num_items'})}")
    if estimator not in ESTIMATORS:
        raise ConfigError("estimator", estimator, f"choose one of {ESTIMATORS}")
    args = dict(kwargs, num_items=num_items, num_negatives=num_negatives)
    if "estimator" in accepted:
        args["estimator"] = estimator
    if "item_popularity" in accepted:
        args["item_popularity"] = item_popularity
    return cls(**args)
