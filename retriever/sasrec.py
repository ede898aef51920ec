"""SASRec: a causal self-attention sequential recommender, and its retriever wrapper.

Model item index = catalogue index + 1; index 0 is the padding token (its embedding row is kept at
zero and never scored). Histories are LEFT-padded (the most recent item sits in the last column) and
positions are RIGHT-aligned: the most recent item always gets position ``max_len - 1``, so the hidden
state of a history does not depend on how much padding surrounds it. Histories longer than
``max_len`` keep their most recent ``max_len`` items.

Scoring shares the item embedding table: ``score(h, j) = <query(h), E[j]>``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lumenrec.data.types import Catalog, Item
from lumenrec.retriever.base import BaseRetriever, Query
from lumenrec.retriever.configs import SASRecConfig  # noqa: F401  (re-exported)

__all__ = ["SASRecConfig", "SASRec", "SASRecRetriever", "pad_histories", "score_histories", "PAD"]

log = logging.getLogger(__name__)

PAD = 0  # model index of the padding token; catalogue index i is model index i + 1


def pad_histories(histories: Sequence[Sequence[int] | np.ndarray], max_len: int) -> Tensor:
    """Catalogue-index histories -> (B, L) long tensor of model indices, left-padded with PAD.

    L = min(max_len, longest history) (at least 1). Each row keeps its most recent `max_len` items.
    """
    L = max(1, min(max_len, max((len(h) for h in histories), default=1)))
    out = np.zeros((len(histories), L), dtype=np.int64)  # (B, L)
    for i, h in enumerate(histories):
        h = np.asarray(h, dtype=np.int64)[-L:]
        if len(h):
            out[i, L - len(h):] = h + 1
    return torch.from_numpy(out)


@torch.no_grad()
def score_histories(model: "SASRec", histories: Sequence[np.ndarray], chunk: int = 128) -> np.ndarray:
    """Catalogue-index histories -> (B, N) float32 scores, in eval mode, without gradients.

    Histories are scored in chunks of similar length (sorted, then put back in order) so that a
    short history is not padded to the longest one of the whole batch.
    """
    was_training = model.training
    model.eval()
    try:
        out = np.empty((len(histories), model.config.num_items), dtype=np.float32)  # (B, N)
        order = np.argsort([len(h) for h in histories], kind="stable")
        for s in range(0, len(order), chunk):
            idx = order[s : s + chunk]
            out[idx] = model.score(pad_histories([histories[i] for i in idx], model.config.max_len)).numpy()
        return out
    finally:
        model.train(was_training)


class _Block(nn.Module):
    """Pre-LN transformer block: x + MHA(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        B, L, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, L, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (B, H, L, d/H)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                             dropout_p=self.dropout if self.training else 0.0)  # (B, H, L, d/H)
        x = x + self.drop(self.out(att.transpose(1, 2).reshape(B, L, d)))  # (B, L, d)
        return x + self.drop(self.ffn(self.ln2(x)))  # (B, L, d)


class SASRec(nn.Module):
    """Item + position embeddings -> causal pre-LN transformer blocks -> final LayerNorm."""

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.config = c = config
        self.item_emb = nn.Embedding(c.num_items + 1, c.dim, padding_idx=PAD)
        self.pos_emb = nn.Embedding(c.max_len, c.dim)
        self.emb_drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(_Block(c.dim, c.num_heads, c.ffn_mult * c.dim, c.dropout) for _ in range(c.num_layers))
        self.final_ln = nn.LayerNorm(c.dim)
        self.apply(self._init)

    def _init(self, m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=self.config.init_std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()

    def forward(self, seqs: Tensor) -> Tensor:
        """(B, L) model indices, left-padded with PAD, L <= max_len -> (B, L, d) hidden states.

        Position t attends to positions <= t that are not padding (and always to itself, so padding
        rows stay finite); padding rows of the output are zero.
        """
        B, L = seqs.shape
        if L > self.config.max_len:
            raise ValueError(f"sequence length {L} exceeds max_len={self.config.max_len}; truncate (pad_histories does)")
        valid = seqs != PAD  # (B, L)
        pos = torch.arange(self.config.max_len - L, self.config.max_len, device=seqs.device)  # (L,), right-aligned
        x = self.emb_drop(self.item_emb(seqs) + self.pos_emb(pos)[None])  # (B, L, d)
        x = x * valid[..., None]  # (B, L, d)
        causal = torch.ones(L, L, dtype=torch.bool, device=seqs.device).tril()  # (L, L)
        eye = torch.eye(L, dtype=torch.bool, device=seqs.device)  # (L, L)
        allowed = (causal[None] & valid[:, None, :]) | eye[None]  # (B, L, L): query t -> key j
        allowed = allowed[:, None]  # (B, 1, L, L), broadcast over heads
        for block in self.blocks:
            x = block(x, allowed)  # (B, L, d)
        return self.final_ln(x) * valid[..., None]  # (B, L, d)

    def query(self, seqs: Tensor) -> Tensor:
        """(B, L) left-padded model indices -> (B, d): the hidden state at the last (most recent) position."""
        return self.forward(seqs)[:, -1]  # (B, d)

    def item_embeddings(self) -> Tensor:
        """(N, d) scoring embeddings of the catalogue items (the padding row excluded)."""
        return self.item_emb.weight[1:]  # (N, d)

    def score(self, seqs: Tensor) -> Tensor:
        """(B, L) -> (B, N) dot-product scores over the whole catalogue."""
        return self.query(seqs) @ self.item_embeddings().T  # (B, N)


class SASRecRetriever(BaseRetriever):
    """A trained :class:`SASRec` over a catalogue, behind the :class:`BaseRetriever` interface.

    History ids not in the catalogue are ignored (logged at debug level). An empty history gives
    a zero query, i.e. all-zero scores.
    """

    def __init__(self, model: SASRec, catalog: Catalog, *, batch_size: int = 128) -> None:
        if len(catalog) != model.config.num_items:
            raise ValueError(f"catalogue has {len(catalog)} items but the model was built for {model.config.num_items}")
        self.model = model.eval()
        self.catalog = catalog
        self.batch_size = batch_size

    def score_indices(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Catalogue-index histories -> (B, N) float32 scores (length-bucketed chunks, no gradient)."""
        return score_histories(self.model, histories, self.batch_size)  # (B, N)

    def _indices(self, history: Sequence[str]) -> np.ndarray:
        known = [i for i in history if i in self.catalog]
        if len(known) < len(history):
            log.debug("ignoring %d history ids not in the catalogue", len(history) - len(known))
        return self.catalog.indices_of(known)

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        return self.score_indices([self._indices(q.history) for q in queries])  # (B, N)

    def as_scorer(self, text_of: Callable[[int], str | None] | None = None) -> Callable[[list[np.ndarray]], np.ndarray]:
        """The evaluation protocol's scorer, taking index histories directly (no id round trip)."""
        return self.score_indices

    @torch.no_grad()
    def query_embedding(self, history_ids: Sequence[str]) -> np.ndarray:
        """(d,) query vector of one history of item ids, for a vector index (inner-product space)."""
        self.model.eval()
        seq = pad_histories([self._indices(history_ids)], self.model.config.max_len)  # (1, L)
        return self.model.query(seq)[0].numpy()  # (d,)

    @torch.no_grad()
    def item_embeddings(self) -> np.ndarray:
        """(N, d) item vectors in catalogue order (score = query . item)."""
        return self.model.item_embeddings().detach().numpy().copy()  # (N, d)

    @classmethod
    def from_pretrained(cls, checkpoint_dir: str | Path, catalog: Catalog | None = None) -> "SASRecRetriever":
        """Load a checkpoint written by the trainer (checksums verified).

        With `catalog`, its ids must equal the checkpoint's item ids in order (else CheckpointError);
        without, a bare catalogue of the checkpoint's ids is built (titles empty).
        """
        from lumenrec.errors import CheckpointError
        from lumenrec.retriever.checkpoint import load_model

        model, item_ids, _ = load_model(checkpoint_dir)
        if catalog is None:
            catalog = Catalog(Item(i, "") for i in item_ids)
        elif list(catalog.ids) != list(item_ids):
            first = next((k for k, (a, b) in enumerate(zip(catalog.ids, item_ids)) if a != b), min(len(catalog), len(item_ids)))
            raise CheckpointError(f"{checkpoint_dir}: the catalogue does not match the checkpoint's item_ids.json "
                                  f"({len(catalog)} vs {len(item_ids)} items, first difference at index {first})")
        return cls(model, catalog)
