"""ILM phase 1: a Q-Former item encoder that maps collaborative + text signals into the text space.

Following ILM (Yang et al. 2024) / BLIP-2, a few learned query vectors cross-attend over an item's
input tokens, then self-attend and pass an FFN; the pooled queries are projected into the 384-d
MiniLM space and L2-normalised, so item vectors live beside critique embeddings (and in a Chroma
index). Input tokens per item:

- one **collaborative** token: the item's embedding from the sequential model (e.g. SASRec's item
  table), linearly projected;
- three **text** tokens: frozen sentence-level MiniLM embeddings of (title), (brand + category path)
  and (description). We chose sentence-level field embeddings over MiniLM's token-level outputs:
  3 tokens instead of ~128 make training ~40x cheaper on CPU, and the fields are exactly the facets
  a critique talks about (brand, type, use). An empty field is masked out.

Losses (each switchable in :class:`ILMConfig`), all in-batch InfoNCE in both directions:
- ITC: item vector vs the frozen embedding of the item's full text (`Item.text()`);
- II: items consumed consecutively by one user;
- UI: a user as a special item (the mean collaborative embedding of their history, passed through
  the same encoder with no text tokens) vs their next item.

During training, text tokens are dropped at random (`text_dropout`) so that the collaborative token
has to carry information (otherwise ITC is solved by copying the title token).

Text skip (`text_skip`, off by default; our addition, not in ILM): the mean of the item's present
field embeddings is added to the Q-Former output before normalising, and the output projection
starts at zero, so the encoder starts IN the text space and learns a collaborative residual.
Measured on the dev critiques (python -m lumenrec.eval.bench.retrieval), it is a trade-off:
- ILM vectors matched directly against a critique: R@10 0.32-0.34 with the skip, 0.04-0.05
  without (100 ITC steps do not rediscover the text space through the 128-d bottleneck);
- as the item space of the LUMEN retriever: R@10 0.467 with the skip, 0.587 without (without it
  the vectors stay item-specific, so LUMEN's dense term adds collaborative signal that the text
  term does not already carry).
So LUMEN uses ILM without the skip, and the soft-prompt adaptor and a critique-only index use it
with the skip (``lumenrec ilm train --text-skip``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from lumenrec.data.types import Catalog
from lumenrec.errors import CheckpointError, ConfigError
from lumenrec.retriever.base import BaseRetriever, Query

__all__ = ["ILMConfig", "ItemQFormer", "ILMEncoder", "ILMRetriever", "info_nce", "item_text_fields", "torch_threads",
           "ilm_vectors_from_checkpoint",
           "build_text_features", "TEXT_FIELDS"]

log = logging.getLogger(__name__)

TEXT_FIELDS = ("title", "brand_category", "description")


@dataclass
class ILMConfig:
    """Architecture and training of the ILM item encoder."""

    num_queries: int = 4  # learned query tokens; ILM uses 8, 4 suffice for 4 input tokens and halve the cost
    dim: int = 128  # inner width of the Q-Former; small because the catalogue has only a few thousand items
    num_layers: int = 2  # (cross-attn, self-attn, FFN) blocks
    num_heads: int = 4  # must divide dim
    dropout: float = 0.1  # light: the inputs are already compact embeddings
    text_dim: int = 384  # MiniLM width: the output space of the encoder
    text_dropout: float = 0.3  # chance to hide each text token during training (forces use of the CF token)
    text_skip: bool = False  # add the mean field embedding to the output (text-aligned vectors; see module doc)
    use_itc: bool = True  # item-text contrastive
    use_ii: bool = True  # item-item contrastive (consecutive items of one user)
    use_ui: bool = True  # user-item contrastive (user = mean CF of history -> next item)
    w_itc: float = 1.0  # loss weights; ILM reports II/UI as modest regularisers, so they weigh less
    w_ii: float = 0.5
    w_ui: float = 0.5
    temperature: float = 0.07  # InfoNCE temperature, CLIP/BLIP-2's initial value
    epochs: int = 30  # passes over the catalogue (ITC batches); II/UI batches ride along each step
    batch_size: int = 256  # in-batch negatives: 255 per positive
    lr: float = 2e-3  # AdamW; tiny model, short schedule
    weight_decay: float = 0.01
    ui_max_history: int = 20  # the user token averages at most this many most recent items
    seed: int = 0
    progress: bool = True
    # torch threads while training; tiny models on shared CPUs run fastest (up to 20x) on one thread. None = leave as is
    num_threads: int | None = 1
    # wall-clock budget of fit() in seconds: no epoch starts that would end past it (None = all epochs)
    max_time_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("num_queries", "dim", "num_layers", "num_heads", "text_dim", "epochs", "batch_size", "ui_max_history"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(name, v, "must be a positive integer")
        if self.dim % self.num_heads:
            raise ConfigError("num_heads", self.num_heads, f"must divide dim={self.dim}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError("num_threads", self.num_threads, "must be >= 1 or None")
        if self.max_time_s is not None and not self.max_time_s > 0:
            raise ConfigError("max_time_s", self.max_time_s, "must be > 0 seconds or None")
        for name in ("dropout", "text_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(name, getattr(self, name), "must be in [0, 1)")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ConfigError("temperature", self.temperature, "must be a positive finite number")
        if not (self.use_itc or self.use_ii or self.use_ui):
            raise ConfigError("use_itc", self.use_itc, "at least one of use_itc/use_ii/use_ui must be on")
        for name in ("w_itc", "w_ii", "w_ui", "lr"):
            if getattr(self, name) < 0:
                raise ConfigError(name, getattr(self, name), "must be >= 0")

    @property
    def losses(self) -> str:
        """Short name of the enabled losses, e.g. 'itc+ii'."""
        return "+".join(n for n, on in (("itc", self.use_itc), ("ii", self.use_ii), ("ui", self.use_ui)) if on)


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run a block with `n` torch intra-op threads (None: unchanged), restoring the previous setting."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def info_nce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """Symmetric in-batch InfoNCE between row-aligned unit vectors a (B, d) and b (B, d)."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"info_nce needs two (B, d) tensors of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = a @ b.T / temperature  # (B, B)
    labels = torch.arange(a.shape[0], device=a.device)  # (B,)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


class _QBlock(nn.Module):
    """Queries cross-attend to the input tokens, then self-attend, then FFN (pre-LN, residual)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln_q, self.ln_kv, self.ln_s, self.ln_f = (nn.LayerNorm(dim) for _ in range(4))
        self.cross = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))

    def forward(self, q: Tensor, kv: Tensor, ignore: Tensor) -> Tensor:
        kvn = self.ln_kv(kv)  # (B, T, d)
        q = q + self.cross(self.ln_q(q), kvn, kvn, key_padding_mask=ignore, need_weights=False)[0]  # (B, Q, d)
        s = self.ln_s(q)
        q = q + self.self_attn(s, s, s, need_weights=False)[0]  # (B, Q, d)
        return q + self.ffn(self.ln_f(q))  # (B, Q, d)


class ItemQFormer(nn.Module):
    """(cf (B, d_cf), text tokens (B, T, 384), text mask (B, T)) -> (B, 384) unit item vectors."""

    def __init__(self, config: ILMConfig, cf_dim: int, num_text_tokens: int = len(TEXT_FIELDS)) -> None:
        super().__init__()
        c = self.config = config
        self.cf_dim, self.num_text_tokens = int(cf_dim), int(num_text_tokens)
        self.cf_proj = nn.Linear(cf_dim, c.dim)
        self.text_proj = nn.Linear(c.text_dim, c.dim)
        self.token_type = nn.Embedding(1 + num_text_tokens, c.dim)  # 0 = CF token, 1.. = text fields
        self.queries = nn.Parameter(torch.randn(c.num_queries, c.dim) * 0.02)
        self.blocks = nn.ModuleList(_QBlock(c.dim, c.num_heads, c.dropout) for _ in range(c.num_layers))
        self.ln = nn.LayerNorm(c.dim)
        self.out = nn.Linear(c.dim, c.text_dim)
        if c.text_skip:  # start as "item vector = mean of its text fields"; training learns the residual
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, cf: Tensor, text: Tensor | None = None, text_mask: Tensor | None = None) -> Tensor:
        B = cf.shape[0]
        if cf.ndim != 2 or cf.shape[1] != self.cf_dim:
            raise ValueError(f"cf must be (B, {self.cf_dim}), got {tuple(cf.shape)}")
        if text is None:  # a user token, or an item without text: the CF token alone
            text = cf.new_zeros(B, self.num_text_tokens, self.config.text_dim)
            text_mask = torch.zeros(B, self.num_text_tokens, dtype=torch.bool, device=cf.device)
        if text.shape != (B, self.num_text_tokens, self.config.text_dim) or text_mask is None or text_mask.shape != text.shape[:2]:
            raise ValueError(f"text must be (B={B}, {self.num_text_tokens}, {self.config.text_dim}) with a (B, T) mask, "
                             f"got {tuple(text.shape)} and {None if text_mask is None else tuple(text_mask.shape)}")
        types = self.token_type.weight  # (1 + T, d)
        tokens = torch.cat([self.cf_proj(cf)[:, None], self.text_proj(text)], dim=1) + types[None]  # (B, 1 + T, d)
        present = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=cf.device), text_mask.bool()], dim=1)  # (B, 1 + T)
        q = self.queries[None].expand(B, -1, -1)  # (B, Q, d)
        for blk in self.blocks:
            q = blk(q, tokens, ~present)  # (B, Q, d)
        out = self.out(self.ln(q.mean(dim=1)))  # (B, 384)
        if self.config.text_skip:
            m = text_mask.float()[..., None]  # (B, T, 1)
            out = out + (text * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)  # (B, 384) + mean present field
        return F.normalize(out, dim=-1)  # (B, 384)


# ---- text features ----------------------------------------------------------------------------
def item_text_fields(catalog: Catalog, max_description_chars: int = 300) -> dict[str, list[str]]:
    """The three text fields of every item (empty string when the item lacks the field)."""
    return {
        "title": [it.title for it in catalog],
        "brand_category": [(" ".join(p for p in (it.brand, " > ".join(it.categories)) if p)) for it in catalog],
        "description": [it.description[:max_description_chars] for it in catalog],
    }


def _encode_cached(encoder, texts: list[str]) -> np.ndarray:
    """MiniLM embeddings of `texts`, cached on disk like TextEncoder.encode_items (empty text -> zeros)."""
    from lumenrec.retriever.text_encoder import _atomic_save

    path = encoder.cache_path(texts)
    if path.is_file():
        vecs = np.load(path, allow_pickle=False)
        if vecs.shape[0] == len(texts):
            return vecs
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    # each distinct non-empty text once (brand + category strings repeat across thousands of items)
    uniq = list(dict.fromkeys(t for t in texts if t.strip()))
    if uniq:
        vecs = encoder.encode(uniq, progress=len(uniq) > 2000)
        row = {t: i for i, t in enumerate(uniq)}
        idx = [i for i, t in enumerate(texts) if t.strip()]
        out[idx] = vecs[[row[texts[i]] for i in idx]]
    _atomic_save(path, out)
    return out


def build_text_features(catalog: Catalog, encoder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(text tokens (N, 3, 384), mask (N, 3) bool, full-text target (N, 384)) from a frozen TextEncoder."""
    fields = item_text_fields(catalog)
    toks = np.stack([_encode_cached(encoder, fields[f]) for f in TEXT_FIELDS], axis=1)  # (N, 3, 384)
    mask = np.stack([[bool(t.strip()) for t in fields[f]] for f in TEXT_FIELDS], axis=1)  # (N, 3)
    target = encoder.encode_items(catalog, progress=False)  # (N, 384)
    return toks.astype(np.float32), mask, np.asarray(target, dtype=np.float32)


# ---- training / inference wrapper ------------------------------------------------------------
class ILMEncoder:
    """A trained (or trainable) ItemQFormer with its per-item inputs, so `item_vectors()` needs nothing else.

    Inputs are row-aligned with `item_ids`: `cf` (N, d_cf) collaborative embeddings, `text`
    (N, T, 384) field embeddings, `text_mask` (N, T), `text_target` (N, 384) full-text embeddings.
    """

    def __init__(self, config: ILMConfig, item_ids: Sequence[str], cf: np.ndarray, text: np.ndarray,
                 text_mask: np.ndarray, text_target: np.ndarray) -> None:
        n = len(item_ids)
        cf, text = np.asarray(cf, dtype=np.float32), np.asarray(text, dtype=np.float32)
        text_mask, text_target = np.asarray(text_mask, dtype=bool), np.asarray(text_target, dtype=np.float32)
        if cf.ndim != 2 or cf.shape[0] != n:
            raise ValueError(f"cf must be (N={n}, d), got {cf.shape}")
        if text.ndim != 3 or text.shape[0] != n or text.shape[2] != config.text_dim:
            raise ValueError(f"text must be (N={n}, T, {config.text_dim}), got {text.shape}")
        if text_mask.shape != text.shape[:2]:
            raise ValueError(f"text_mask must be {text.shape[:2]}, got {text_mask.shape}")
        if text_target.shape != (n, config.text_dim):
            raise ValueError(f"text_target must be ({n}, {config.text_dim}), got {text_target.shape}")
        self.config, self.item_ids = config, [str(i) for i in item_ids]
        self.cf, self.text, self.text_mask, self.text_target = (torch.from_numpy(x.copy()) for x in (cf, text, text_mask, text_target))
        torch.manual_seed(config.seed)
        self.model = ItemQFormer(config, cf.shape[1], text.shape[1])
        self.history: list[dict[str, float]] = []

    # -- training --------------------------------------------------------------------------------
    def _encode_items(self, idx: Tensor, drop_text: bool) -> Tensor:
        mask = self.text_mask[idx]  # (B, T)
        if drop_text and self.config.text_dropout > 0:
            mask = mask & (torch.rand(mask.shape) >= self.config.text_dropout)
        return self.model(self.cf[idx], self.text[idx], mask)  # (B, 384)

    def _user_tokens(self, histories: list[np.ndarray]) -> Tensor:
        L = self.config.ui_max_history
        return torch.stack([self.cf[torch.from_numpy(np.asarray(h[-L:], dtype=np.int64))].mean(0) for h in histories])  # (B, d_cf)

    def fit(self, train_sequences: Sequence[np.ndarray] | None = None) -> list[dict[str, float]]:
        """Train with the enabled losses; II/UI need `train_sequences` (catalogue-index arrays, oldest first)."""
        with torch_threads(self.config.num_threads):
            return self._fit(train_sequences)

    def _fit(self, train_sequences: Sequence[np.ndarray] | None) -> list[dict[str, float]]:
        c = self.config
        n = len(self.item_ids)
        seqs = [np.asarray(s, dtype=np.int64) for s in (train_sequences or []) if len(s) >= 2]
        if (c.use_ii or c.use_ui) and not seqs:
            raise ConfigError("use_ii", c.use_ii, "II/UI losses need training sequences with >= 2 items")
        pairs = np.array([(s[t - 1], s[t]) for s in seqs for t in range(1, len(s)) if s[t - 1] != s[t]],
                         dtype=np.int64).reshape(-1, 2)  # (P, 2) consecutive (a, b)
        positions = [(u, t) for u, s in enumerate(seqs) for t in range(1, len(s))]
        gen = np.random.default_rng(c.seed)
        torch.manual_seed(c.seed)
        opt = torch.optim.AdamW(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        steps_per_epoch = max(1, math.ceil(n / c.batch_size))
        total = c.epochs * steps_per_epoch
        warm = max(1, total // 10)  # linear warm-up over 10% of the steps, then cosine decay to 0
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda i: min(1.0, (i + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, i / max(1, total)))))
        self.model.train()
        bar = tqdm(total=total, desc=f"ILM {c.losses}", disable=not c.progress, unit="step")
        t_start = time.perf_counter()
        for epoch in range(c.epochs):
            order = gen.permutation(n)
            sums: dict[str, float] = {}
            for s in range(steps_per_epoch):
                loss = torch.zeros(())
                parts = {}
                if c.use_itc:
                    idx = torch.from_numpy(order[s * c.batch_size:(s + 1) * c.batch_size])
                    if len(idx) < 2:  # a batch of one has no negatives
                        idx = torch.from_numpy(gen.choice(n, size=min(n, c.batch_size), replace=False))
                    v = self._encode_items(idx, drop_text=True)  # (B, 384)
                    parts["itc"] = info_nce(v, self.text_target[idx], c.temperature)
                    loss = loss + c.w_itc * parts["itc"]
                if c.use_ii and len(pairs) >= 2:
                    pb = torch.from_numpy(pairs[gen.choice(len(pairs), size=min(len(pairs), c.batch_size), replace=False)])  # (B, 2)
                    parts["ii"] = info_nce(self._encode_items(pb[:, 0], True), self._encode_items(pb[:, 1], True), c.temperature)
                    loss = loss + c.w_ii * parts["ii"]
                if c.use_ui and len(positions) >= 2:
                    pick = gen.choice(len(positions), size=min(len(positions), c.batch_size), replace=False)
                    hist = [seqs[positions[i][0]][: positions[i][1]] for i in pick]
                    nxt = torch.tensor([seqs[positions[i][0]][positions[i][1]] for i in pick], dtype=torch.long)
                    u = self.model(self._user_tokens(hist))  # (B, 384), no text tokens
                    parts["ui"] = info_nce(u, self._encode_items(nxt, True), c.temperature)
                    loss = loss + c.w_ui * parts["ui"]
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
                opt.step()
                sched.step()
                for k, val in parts.items():
                    sums[k] = sums.get(k, 0.0) + float(val.detach())
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            self.history.append({"epoch": epoch + 1, **{k: v / steps_per_epoch for k, v in sums.items()}})
            spent = time.perf_counter() - t_start
            if c.max_time_s is not None and spent * (epoch + 2) / (epoch + 1) > c.max_time_s:
                log.info("stopping after epoch %d of %d: the %.0f s budget would not fit another", epoch + 1,
                         c.epochs, c.max_time_s)
                break
        bar.close()
        self.model.eval()
        log.info("ILM %s trained: last epoch %s", c.losses, self.history[-1] if self.history else {})
        return self.history

    # -- inference -------------------------------------------------------------------------------
    @torch.no_grad()
    def item_vectors(self, batch_size: int = 1024) -> np.ndarray:
        """(N, 384) unit item vectors in `item_ids` order, for the Chroma index."""
        self.model.eval()
        n = len(self.item_ids)
        out = [self._encode_items(torch.arange(s, min(n, s + batch_size)), drop_text=False) for s in range(0, n, batch_size)]
        return torch.cat(out).numpy().astype(np.float32)

    @torch.no_grad()
    def user_vector(self, history: np.ndarray) -> np.ndarray:
        """(384,) the UI "special item" vector of one history of catalogue indices."""
        self.model.eval()
        if len(history) == 0:
            return np.zeros(self.config.text_dim, dtype=np.float32)
        return self.model(self._user_tokens([np.asarray(history)]))[0].numpy()

    # -- checkpoint ------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """config.json + item_ids.json + model.safetensors (weights and the per-item inputs), atomically."""
        from lumenrec.retriever.checkpoint import save_checkpoint

        state = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        state.update({"inputs.cf": self.cf, "inputs.text": self.text, "inputs.text_mask": self.text_mask.to(torch.uint8),
                      "inputs.text_target": self.text_target})
        cfg = {"kind": "ilm", "ilm": asdict(self.config), "cf_dim": int(self.cf.shape[1]), "text_fields": list(TEXT_FIELDS)}
        return save_checkpoint(directory, model_state=state, config=cfg, item_ids=self.item_ids,
                               metrics={"history": self.history})

    @classmethod
    def load(cls, directory: str | Path) -> "ILMEncoder":
        from safetensors.torch import load_file

        from lumenrec.retriever.checkpoint import MODEL_FILE, read_json, verify_checkpoint

        directory = Path(directory)
        verify_checkpoint(directory)
        cfg = read_json(directory / "config.json")
        if cfg.get("kind") != "ilm":
            raise CheckpointError(f"{directory}: not an ILM checkpoint (kind={cfg.get('kind')!r})")
        config = ILMConfig(**cfg["ilm"])
        ids = read_json(directory / "item_ids.json")
        t = load_file(str(directory / MODEL_FILE))
        enc = cls(config, ids, t["inputs.cf"].numpy(), t["inputs.text"].numpy(), t["inputs.text_mask"].bool().numpy(),
                  t["inputs.text_target"].numpy())
        enc.model.load_state_dict({k[len("model."):]: v for k, v in t.items() if k.startswith("model.")})
        enc.model.eval()
        return enc


class ILMRetriever(BaseRetriever):
    """Cosine retrieval in the ILM item space: query = MiniLM(critique) if any, else mean of history vectors."""

    def __init__(self, catalog: Catalog, item_vectors: np.ndarray, text_encoder=None) -> None:
        v = np.asarray(item_vectors, dtype=np.float32)
        if v.shape[0] != len(catalog):
            raise ValueError(f"item_vectors has {v.shape[0]} rows for {len(catalog)} items")
        self.catalog, self.item_vecs = catalog, v
        self._encoder = text_encoder

    @property
    def encoder(self):
        if self._encoder is None:
            from lumenrec.retriever.text_encoder import TextEncoder

            self._encoder = TextEncoder()
        return self._encoder

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        q = np.zeros((len(queries), self.item_vecs.shape[1]), dtype=np.float32)  # (B, 384)
        with_text = [i for i, x in enumerate(queries) if x.text and x.text.strip()]
        if with_text:
            q[with_text] = self.encoder.encode([queries[i].text for i in with_text])
        for i, x in enumerate(queries):
            if i not in with_text and x.history:
                idx = self.catalog.indices_of([h for h in x.history if h in self.catalog])
                if len(idx):
                    q[i] = self.item_vecs[idx].mean(0)
        return q @ self.item_vecs.T  # (B, N)


def ilm_vectors_from_checkpoint(checkpoint_dir: str | Path, catalog: Catalog) -> tuple[np.ndarray, str]:
    """(N, 384) ILM item vectors aligned with `catalog`, and the model-version string an index records.

    Meant for ``lumenrec index build --checkpoint`` (hook ``vectors_from_checkpoint``).
    """
    enc = ILMEncoder.load(checkpoint_dir)
    if enc.item_ids != list(catalog.ids):
        raise CheckpointError(f"{checkpoint_dir}: the catalogue does not match the checkpoint's item_ids.json "
                              f"({len(catalog)} vs {len(enc.item_ids)} items)")
    from lumenrec.retriever.checkpoint import read_json

    sums = read_json(Path(checkpoint_dir) / "checksums.json")
    return enc.item_vectors(), f"ilm:{enc.config.losses}:{str(sums.get('model.safetensors', ''))[:12]}"
