"""A LUMEN-style critique-aware retriever: history + critique text -> one query vector -> item scores.

REGEN's LUMEN feeds a user's history and critique to one model that outputs the next item. Here the
"one model" is a small query tower over frozen parts, trained with ranking losses:

query side (per request)                       item side (fixed matrices, row i = catalogue item i)
- c     : MiniLM(critique)  (zeros if none)    - V: ILM item vectors (384, the ILM text-aligned space)
- h     : mean ILM vector of the history       - T: MiniLM item-text vectors (384)
- last  : ILM vector of the most recent item   - E: the sequential model's item embeddings
- s     : the sequential model's query vector  - B: brand one-hot (critiques name brands a lot)
- brand mentions of the critique, split into   - P: log popularity (one column)
  wanted (+) and NEGATED (-) parts ("not Fellowes again", "Avery instead of 3M")
- recent: decayed one-hots of the last items   - M^T: item co-occurrence prior (optional, N columns)

- f     : MiniLM(focus of the critique): its closing sentences (see :func:`critique_focus`)

q = MLP([c, h, last, s, has_text, f]) + c  (a 384-d vector in the ILM item space)
score(i) = a.q.V_i + b.c.T_i + g.s.E_i + (w_pos.pos - w_neg.neg + w_same.same_hint + w_prev.prev)_brand(i) + p.P_i
           + k.recent.M[:, i] + phi.f.T_i

Why the focus term: shoppers open a critique by talking about the previous purchase ("toner's
handled.", "the samsung isn't working out for me") and state the new need last. Embedding the
whole message dilutes the need with the previous item's vocabulary. On the dev critiques,
text-only retrieval with the closing sentences (>= 6 words) gets R@10 0.520 against 0.387 for the
whole message (the rule is generic; the mixing weight is learned from the training critiques).

The mixing scalars (a, b, g, w_*, p) have one value for queries with a critique and one for
queries without, so the same model serves both (the critique is dropped at random in training).
Every term is a dot product between a query vector and a fixed item matrix, so the whole score is
``query_vector(q) @ item_matrix.T`` and the sampled ranking losses (``make_loss``) apply unchanged.
MiniLM does not understand negation reliably; the explicit negative brand part is why the tower
sees "positive" and "negative" brand vectors separately.
"""

from __future__ import annotations

import logging
import math
import time
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from lumenrec.data.types import Catalog
from lumenrec import polarity
from lumenrec.errors import CheckpointError, ConfigError
from lumenrec.retriever.base import BaseRetriever, Query

__all__ = ["LumenConfig", "LumenTower", "LumenRetriever", "BrandLexicon", "MIX_TERMS", "transition_matrix",
           "critique_focus"]

log = logging.getLogger(__name__)

MIX_TERMS = ("dense", "text", "seq", "brand_pos", "brand_neg", "brand_same", "brand_prev", "pop", "cooc", "focus")

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\s*(?:\.\.\.|\u2026|\u2014| - )\s*")


def critique_focus(text: str, min_words: int = 6) -> str:
    """The closing sentences of a critique that hold at least `min_words` words: the new need.

    "toner's handled. my plastic ruler is all chewed up, want a metal one" -> "my plastic ruler ...".
    A one-sentence critique is returned whole; so is one whose tail never reaches `min_words`.
    """
    parts = [p.strip() for p in _SENTENCE_END.split(text or "") if p and p.strip()]
    out: list[str] = []
    for part in reversed(parts):
        out.insert(0, part)
        if sum(len(x.split()) for x in out) >= min_words:
            break
    return " ".join(out) if out else (text or "")

class BrandLexicon:
    """Finds catalogue brands named in a text and whether each is wanted or negated."""

    def __init__(self, brands: Sequence[str]) -> None:
        uniq = sorted({b.strip().lower() for b in brands if b and len(b.strip()) >= 2}, key=len, reverse=True)
        self.brands = uniq
        self.index = {b: i for i, b in enumerate(uniq)}
        self._patterns = [(b, re.compile(r"(?<![\w-])" + re.escape(b) + r"(?![\w-])")) for b in uniq]

    def __len__(self) -> int:
        return len(self.brands)

    def id_of(self, brand: str) -> int:
        """Index of a brand, or -1 when unknown / empty."""
        return self.index.get(brand.strip().lower(), -1)

    def mentions(self, text: str) -> tuple[list[int], list[int]]:
        """(wanted brand ids, negated brand ids) named in `text`; longer brand names win overlaps.

        A mention is negated by the shared polarity rules (:mod:`lumenrec.polarity`, the same as the
        critique parser's): a negation cue before it in its clause, or a complaint after it.
        """
        t = text.lower()
        taken = np.zeros(len(t) + 1, dtype=bool)
        toks = None
        pos, neg = [], []
        for b, pat in self._patterns:
            for m in pat.finditer(t):
                if taken[m.start():m.end()].any():
                    continue
                taken[m.start():m.end()] = True
                toks = toks if toks is not None else polarity.tokenize(t)
                span = polarity.span_tokens(toks, m.start(), m.end())
                negated = span is not None and polarity.mention_polarity(toks, *span, kind="brand") == "exclude"
                (neg if negated else pos).append(self.index[b])
        return sorted(set(pos)), sorted(set(neg) - set(pos))


@dataclass
class LumenConfig:
    """Query tower and training of the LUMEN-style retriever."""

    hidden: int = 256  # MLP width of the query tower
    dropout: float = 0.1
    critique_dropout: float = 0.3  # share of training queries whose critique is removed (one model for both cases)
    # corrected sampled LambdaRank (64 negatives): on the dev set it ties full softmax on R@10 (0.580) and
    # leads on N@10 (0.371 vs 0.363), and its cost does not grow with the catalogue; "softmax" is the
    # full reference (affordable at ~2k items); also warp, bpr, sampled_softmax
    loss: str = "lambdarank"
    num_negatives: int = 64  # sampled losses only
    estimator: str = "corrected"  # rank / logQ estimator of the sampled losses
    epochs: int = 20
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_history: int = 20  # the history mean uses the most recent items only
    # also embed the critique's closing sentences (critique_focus) as a separate query part; False
    # reproduces checkpoints saved before this term existed
    focus: bool = True
    focus_min_words: int = 6  # the focus is the shortest tail of sentences with at least this many words
    seed: int = 0
    progress: bool = True
    # torch threads while training; tiny models on shared CPUs run fastest (up to 20x) on one thread. None = leave as is
    num_threads: int | None = 1
    # wall-clock budget of fit() in seconds: no epoch starts that would end past it (None = all epochs)
    max_time_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("hidden", "epochs", "batch_size", "num_negatives", "max_history", "focus_min_words"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(name, v, "must be a positive integer")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError("num_threads", self.num_threads, "must be >= 1 or None")
        if self.max_time_s is not None and not self.max_time_s > 0:
            raise ConfigError("max_time_s", self.max_time_s, "must be > 0 seconds or None")
        for name in ("dropout", "critique_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(name, getattr(self, name), "must be in [0, 1)")
        if self.loss not in ("softmax", "sampled_softmax", "bpr", "warp", "lambdarank"):
            raise ConfigError("loss", self.loss, "must be softmax, sampled_softmax, bpr, warp or lambdarank")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError("lr", self.lr, "must be a positive finite number")


class LumenTower(nn.Module):
    """Query features -> one query vector over the concatenated item matrix [V, T, E, B, B, B, B, P]."""

    def __init__(self, config: LumenConfig, text_dim: int, seq_dim: int, num_brands: int,
                 centred_items: Tensor | None = None) -> None:
        super().__init__()
        # centred ILM item vectors (N, 384): the dense term is z-scored over the catalogue per query
        self.register_buffer("Vc", centred_items if centred_items is not None else torch.zeros(1, text_dim))
        # Var_j(q . Vc_j) = q G q with G = Vc^T Vc / (N - 1) (Vc is centred; torch's unbiased var): the
        # same z-scoring at O(d^2) per query instead of O(N d), which matters at 1e5 items
        n = self.Vc.shape[0]
        self.register_buffer("Vgram", (self.Vc.T @ self.Vc) / max(n - 1, 1), persistent=False)  # (d, d)
        self.config, self.text_dim, self.seq_dim, self.num_brands = config, text_dim, seq_dim, num_brands
        self.terms = MIX_TERMS if config.focus else MIX_TERMS[:-1]
        self.mlp = nn.Sequential(nn.Linear((4 if config.focus else 3) * text_dim + seq_dim + 1, config.hidden), nn.GELU(),
                                 nn.Dropout(config.dropout), nn.Linear(config.hidden, text_dim))
        nn.init.zeros_(self.mlp[-1].weight)  # start as "q = c": the text query, refined by training
        nn.init.zeros_(self.mlp[-1].bias)
        # one row of mixing scalars for queries without a critique (0) and with one (1)
        # dense, text, seq and cooc terms are z-scored per query, so these are weights per standard deviation
        init = torch.tensor([0.5, 1.0, 0.3, 1.0, -1.0, 0.5, 0.0, 0.05, 0.1, 1.0][: len(self.terms)])
        self.mix = nn.Parameter(init.repeat(2, 1))  # (2, len(MIX_TERMS))

    def forward(self, c: Tensor, h: Tensor, last: Tensor, s: Tensor, has_text: Tensor, pos: Tensor, neg: Tensor,
                same: Tensor, prev: Tensor, recent: Tensor, zc: Tensor, zs: Tensor, zr: Tensor,
                f: Tensor | None = None, zf: Tensor | None = None) -> Tensor:
        """Per-query features -> (B, D) query vectors, D = 2*text_dim + seq_dim + 4*num_brands + 1 + N_cooc
        (+ text_dim with the focus term).

        c, h, last (B, 384); s (B, d_seq); has_text (B,) bool; pos, neg, same, prev (B, num_brands) 0/1;
        recent (B, N) decayed one-hots of the last history items (or (B, 1) zeros without a co-occurrence prior);
        zc, zs, zr (B, 1): 1 / the catalogue-wide standard deviation of the text, seq and cooc scores of the query.
        f (B, 384), zf (B, 1): the focus embedding and its scale (required when config.focus).
        """
        ht = has_text.float()[:, None]  # (B, 1)
        c = c * ht  # (B, 384): no critique -> zeros
        inputs = [c, h, last, s, ht]
        if self.config.focus:
            if f is None or zf is None:
                raise ValueError("this tower has a focus term: pass f and zf (LumenRetriever.features does)")
            f = f * ht  # (B, 384)
            inputs.append(f)
        q = c + self.mlp(torch.cat(inputs, dim=1))  # (B, 384)
        w = self.mix[has_text.long()]  # (B, K)
        zq = torch.rsqrt(((q @ self.Vgram) * q).sum(dim=1, keepdim=True).clamp(min=0.0) + 1e-4)  # (B, 1)
        parts = [w[:, 0:1] * q * zq, w[:, 1:2] * c * zc, w[:, 2:3] * s * zs, w[:, 3:4] * pos, w[:, 4:5] * neg, w[:, 5:6] * same,
                 w[:, 6:7] * prev, w[:, 7:8], w[:, 8:9] * recent * zr]
        if self.config.focus:
            parts.append(w[:, 9:10] * f * zf)  # (B, 384)
        return torch.cat(parts, dim=1)  # (B, D)


def transition_matrix(sequences, num_items: int, window: int = 3, backward: float = 0.5) -> np.ndarray:
    """Item -> item co-occurrence prior from TRAINING sequences, rows normalised: (N, N) float32.

    M[a, b] counts b following a within `window` steps (weight 0.5**(distance-1)), plus `backward`
    times b preceding a (bought together either way); each row is divided by its sum + 1 (smoothing).
    """
    M = np.zeros((num_items, num_items), dtype=np.float64)
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        for d in range(1, window + 1):
            if len(seq) <= d:
                break
            w = 0.5 ** (d - 1)
            np.add.at(M, (seq[:-d], seq[d:]), w)
            if backward:
                np.add.at(M, (seq[d:], seq[:-d]), w * backward)
    np.fill_diagonal(M, 0.0)
    return (M / (M.sum(1, keepdims=True) + 1.0)).astype(np.float32)


def _full_softmax(query: Tensor, positives: Tensor, item_emb: Tensor) -> Tensor:
    return F.cross_entropy(query @ item_emb.T, positives)  # (M, N) logits


class LumenRetriever(BaseRetriever):
    """History + optional critique -> scores over the catalogue (see the module docstring).

    `seq` is a sequential retriever exposing ``model.query`` / ``item_embeddings()`` (SASRecRetriever)
    or None (then its term is zero). `text_encoder` embeds critiques (a TextEncoder or anything with
    ``encode(list[str]) -> (n, 384)``).
    """

    def __init__(self, catalog: Catalog, ilm_vectors: np.ndarray, text_vectors: np.ndarray, *, seq=None,
                 text_encoder=None, config: LumenConfig | None = None, popularity: np.ndarray | None = None,
                 transitions: np.ndarray | None = None) -> None:
        n = len(catalog)
        V, T = np.asarray(ilm_vectors, dtype=np.float32), np.asarray(text_vectors, dtype=np.float32)
        if V.shape[0] != n or T.shape[0] != n or V.shape[1] != T.shape[1]:
            raise ValueError(f"ilm_vectors {V.shape} and text_vectors {T.shape} must both be (N={n}, d)")
        self.catalog, self.config = catalog, config or LumenConfig()
        self.seq, self._encoder = seq, text_encoder
        self.lexicon = BrandLexicon([it.brand for it in catalog])
        self.item_brand = np.array([self.lexicon.id_of(it.brand) for it in catalog], dtype=np.int64)  # (N,), -1 = none
        E = seq.item_embeddings() if seq is not None else np.zeros((n, 1), dtype=np.float32)
        pop = np.zeros(n) if popularity is None else np.asarray(popularity, dtype=np.float64)
        if pop.shape != (n,):
            raise ValueError(f"popularity must be ({n},), got {pop.shape}")
        logpop = np.log1p(pop)
        logpop = (logpop - logpop.mean()) / (logpop.std() + 1e-9)
        Bm = np.zeros((n, len(self.lexicon)), dtype=np.float32)  # (N, nb) brand one-hot
        has = self.item_brand >= 0
        Bm[np.nonzero(has)[0], self.item_brand[has]] = 1.0
        if transitions is not None and np.shape(transitions) != (n, n):
            raise ValueError(f"transitions must be (N={n}, N), got {np.shape(transitions)}")
        M = np.zeros((1, n), dtype=np.float32) if transitions is None else np.asarray(transitions, dtype=np.float32)
        self.V, self.T, self.E, self.M = V, T, np.asarray(E, dtype=np.float32), M
        # centred blocks: a per-query constant shift changes no ranking, and it makes each term's
        # catalogue-wide standard deviation a plain norm (its z-scoring stays a dot product)
        cen = lambda x: (x - x.mean(0, keepdims=True)).astype(np.float32)  # noqa: E731
        self.Vc, self.Tc, self.Ec, self.MTc = cen(V), cen(T), cen(self.E), cen(M.T)
        blocks = [self.Vc, self.Tc, self.Ec, Bm, Bm, Bm, Bm, logpop[:, None].astype(np.float32), self.MTc]
        self._pop_col = sum(b.shape[1] for b in blocks[:7])  # column of the popularity term
        if self.config.focus:
            blocks.append(self.Tc)  # the focus embedding also matches item text
        self.item_matrix = torch.from_numpy(np.concatenate(blocks, axis=1))  # (N, D)
        torch.manual_seed(self.config.seed)
        self.tower = LumenTower(self.config, V.shape[1], self.E.shape[1], len(self.lexicon), torch.from_numpy(self.Vc))
        self.tower.eval()
        self.history: list[dict[str, float]] = []

    @property
    def encoder(self):
        if self._encoder is None:
            from lumenrec.retriever.text_encoder import TextEncoder

            self._encoder = TextEncoder()
        return self._encoder

    # -- features --------------------------------------------------------------------------------
    def _seq_queries(self, histories: list[np.ndarray]) -> np.ndarray:
        if self.seq is None:
            return np.zeros((len(histories), 1), dtype=np.float32)
        from lumenrec.retriever.sasrec import pad_histories

        model = self.seq.model
        if model.training:  # eval() walks every submodule: only when needed (a query pays for it otherwise)
            model.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(histories), 512):
                out.append(model.query(pad_histories(histories[s:s + 512], model.config.max_len)).numpy())
        return np.concatenate(out).astype(np.float32)  # (B, d_seq)

    def features(self, histories: list[np.ndarray], texts: list[str | None], text_vecs: np.ndarray | None = None,
                 focus_vecs: np.ndarray | None = None) -> dict[str, Tensor]:
        """Query-side inputs of the tower for catalogue-index histories and critiques (None = no critique).

        `text_vecs` / `focus_vecs` (B, 384): precomputed embeddings of the critiques / of their
        :func:`critique_focus` (training passes cached ones); otherwise they are encoded here.
        """
        B, d, nb = len(histories), self.V.shape[1], len(self.lexicon)
        has = np.array([bool(t and t.strip()) for t in texts])
        c = np.zeros((B, d), dtype=np.float32)
        if text_vecs is not None:
            c[:] = text_vecs
        elif has.any():
            c[has] = self.encoder.encode([texts[i] for i in np.nonzero(has)[0]])
        f = np.zeros((B, d), dtype=np.float32)
        if self.config.focus:
            if focus_vecs is not None:
                f[:] = focus_vecs
            elif has.any():
                idx = np.nonzero(has)[0]
                foc = [critique_focus(texts[i], self.config.focus_min_words) for i in idx]
                same_text = np.array([fo == texts[i] for fo, i in zip(foc, idx)])
                f[idx[same_text]] = c[idx[same_text]]  # one-sentence critiques: the focus is the critique
                if (~same_text).any():
                    f[idx[~same_text]] = self.encoder.encode([fo for fo, s_ in zip(foc, same_text) if not s_])
        h = np.zeros((B, d), dtype=np.float32)
        last = np.zeros((B, d), dtype=np.float32)
        pos, neg, same, prev = (np.zeros((B, nb), dtype=np.float32) for _ in range(4))
        recent = np.zeros((B, self.M.shape[0]), dtype=np.float32)  # (B, N) or (B, 1)
        use_cooc = self.M.shape[0] > 1
        for i, hist in enumerate(histories):
            hist = np.asarray(hist, dtype=np.int64)
            if len(hist):
                h[i] = self.V[hist[-self.config.max_history:]].mean(0)
                last[i] = self.V[hist[-1]]
                if use_cooc:  # the last 3 items, most recent weighing most
                    for k, j in enumerate(hist[::-1][:3]):
                        recent[i, j] += 0.5 ** k
                pb = self.item_brand[hist[-1]]
                if pb >= 0:
                    prev[i, pb] = 1.0
                    if has[i] and polarity.SAME_CUE.search(texts[i].lower()):
                        same[i, pb] = 1.0
            if has[i]:
                p, n_ = self.lexicon.mentions(texts[i])
                pos[i, p] = 1.0
                neg[i, n_] = 1.0
        s = self._seq_queries(histories)
        # 1 / the catalogue-wide standard deviation of q . X_j (X centred): sqrt(q G q) with G = X^T X / N
        inv_sd = lambda q, G: (1.0 / np.sqrt(np.maximum(((q @ G) * q).sum(axis=1, keepdims=True), 0.0) + 1e-8)).astype(np.float32)  # noqa: E731
        t = lambda x: torch.from_numpy(np.ascontiguousarray(x))  # noqa: E731
        out = {"c": t(c), "h": t(h), "last": t(last), "s": t(s), "has_text": t(has),
               "pos": t(pos), "neg": t(neg), "same": t(same), "prev": t(prev), "recent": t(recent),
               "zc": t(inv_sd(c, self._gram("T"))), "zs": t(inv_sd(s, self._gram("E"))), "zr": t(self._inv_sd_recent(recent))}
        if self.config.focus:
            out.update(f=t(f), zf=t(inv_sd(f, self._gram("T"))))
        return out

    def _gram(self, name: str) -> np.ndarray:
        """X^T X / N of a centred item block (T: item text, E: sequential item embeddings), cached."""
        cache = self.__dict__.setdefault("_grams", {})
        if name not in cache:
            X = {"T": self.Tc, "E": self.Ec}[name].astype(np.float64)
            cache[name] = (X.T @ X / X.shape[0]).astype(np.float32)  # (d, d)
        return cache[name]

    def _inv_sd_recent(self, recent: np.ndarray) -> np.ndarray:
        """1 / std_j of the co-occurrence term: recent has a few non-zeros per row, so MTc @ r is a few columns."""
        out = np.empty((recent.shape[0], 1), dtype=np.float32)
        for i, r in enumerate(recent):
            nz = np.flatnonzero(r)
            u = self.MTc[:, nz] @ r[nz] if len(nz) else np.zeros(self.MTc.shape[0], dtype=np.float32)  # (N,)
            out[i, 0] = 1.0 / np.sqrt(float(u.var()) + 1e-8)
        return out

    # -- scoring ---------------------------------------------------------------------------------
    @torch.no_grad()
    def query_vectors(self, histories: list[np.ndarray], texts: list[str | None]) -> np.ndarray:
        if self.tower.training:
            self.tower.eval()
        return self.tower(**self.features(histories, texts)).numpy()  # (B, D)

    @torch.no_grad()
    def score_indices(self, histories: list[np.ndarray], texts: list[str | None]) -> np.ndarray:
        """(B, N) scores for catalogue-index histories and critiques (None / '' = no critique)."""
        return self.query_vectors(histories, texts) @ self.item_matrix.numpy().T  # (B, N)

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        hist = [self.catalog.indices_of([h for h in q.history if h in self.catalog]) for q in queries]
        return self.score_indices(hist, [q.text for q in queries])

    # -- dense + sparse split (serving through an ANN index) -------------------------------------
    def _blocks(self) -> dict[str, slice]:
        """Column ranges of the item matrix's blocks (see __init__ for their order)."""
        d, ds, nb, nm = self.V.shape[1], self.E.shape[1], len(self.lexicon), self.M.shape[0]
        names = [("V", d), ("T", d), ("E", ds), ("B0", nb), ("B1", nb), ("B2", nb), ("B3", nb), ("P", 1), ("M", nm)]
        if self.config.focus:
            names.append(("F", d))
        out, at = {}, 0
        for name, width in names:
            out[name] = slice(at, at + width)
            at += width
        assert at == self.item_matrix.shape[1], (at, self.item_matrix.shape)
        return out

    def dense_item_vectors(self) -> np.ndarray:
        """(N, D') the dense item side of the score, [Vc, Tc, Ec, log popularity]: what an ANN index stores.

        With :meth:`query_parts`, ``dense @ query.T + boosts`` equals :meth:`score_indices` up to a
        per-query constant (same ranking); the brand and co-occurrence terms are sparse (few items
        per query) and stay out of the index.
        """
        end, p = self.dense_columns()
        X = self.item_matrix.numpy()
        return np.ascontiguousarray(np.concatenate([X[:, :end], X[:, p:p + 1]], axis=1))

    def dense_columns(self) -> tuple[int, int]:
        """(end, p): the dense item side is ``item_matrix[:, :end]`` (the V, T and E blocks, in this
        order) and the popularity column ``p``; see :meth:`dense_item_vectors`."""
        b = self._blocks()
        assert b["V"].start == 0 and b["T"].start == b["V"].stop and b["E"].start == b["T"].stop
        return b["E"].stop, b["P"].start

    def query_parts(self, histories: list[np.ndarray], texts: list[str | None]
                    ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """(dense query vectors (B, D'), per query the sparse boosts as (catalogue indices, scores)) for an index.

        Boosts are the brand terms (items of a wanted/negated/previous brand) and the co-occurrence
        term (items that followed the last history items in training), without their per-query
        centring constant; indices are sorted and unique. See :meth:`dense_item_vectors`.
        """
        Q = self.query_vectors(histories, texts)  # (B, D)
        b = self._blocks()
        text_part = Q[:, b["T"]] + (Q[:, b["F"]] if "F" in b else 0.0)  # both blocks match the item text Tc
        dense = np.concatenate([Q[:, b["V"]], text_part, Q[:, b["E"]], Q[:, b["P"]]], axis=1).astype(np.float32)  # (B, D')
        brand_w = Q[:, b["B0"]] + Q[:, b["B1"]] + Q[:, b["B2"]] + Q[:, b["B3"]]  # (B, nb): every brand block is Bm
        boosts: list[tuple[np.ndarray, np.ndarray]] = []
        for i in range(len(Q)):
            # item_brand is -1 for items without a brand: the appended 0 is their weight
            out = np.append(brand_w[i], 0.0).astype(np.float64)[self.item_brand]  # (N,)
            if self.M.shape[0] > 1:
                r = Q[i, b["M"]]  # (N,): decayed one-hots of the last items times the cooc weight
                for a in np.flatnonzero(r):
                    out += float(r[a]) * self.M[a]  # (N,)
            idx = np.flatnonzero(out)
            boosts.append((idx, out[idx]))
        return dense, boosts

    def dense_scores(self, y: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """``dense_item_vectors()[indices] @ y`` without materialising the (N, D') matrix: (len(indices),)."""
        end, p = self.dense_columns()
        X = self.item_matrix.numpy()
        idx = np.asarray(indices, dtype=np.int64)
        y = np.asarray(y, dtype=np.float32)
        return (X[idx, :end] @ y[:end]).astype(np.float64) + X[idx, p].astype(np.float64) * float(y[end])  # (n,)

    def model_version(self) -> str:
        """A short id of these weights and item matrices (what the item index records and checks):
        the checkpoint's recorded sha256 when loaded from one, else a hash of the arrays."""
        sha = getattr(self, "checkpoint_sha256", None)
        if sha:
            return f"lumen:{self.config.loss}:{sha[:12]}"
        import hashlib

        h = hashlib.sha256()
        for k, v in sorted(self.tower.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().numpy().tobytes())
        h.update(self.item_matrix.numpy().tobytes())
        return f"lumen:{self.config.loss}:{h.hexdigest()[:12]}"

    # -- training --------------------------------------------------------------------------------
    def _loss_fn(self, popularity: np.ndarray | None):
        if self.config.loss == "softmax":
            return _full_softmax
        from lumenrec.retriever.losses import make_loss

        return make_loss(self.config.loss, len(self.catalog), num_negatives=self.config.num_negatives,
                         estimator=self.config.estimator, item_popularity=popularity)

    def fit(self, histories: Sequence[np.ndarray], texts: Sequence[str], targets: Sequence[int], *,
            text_vecs: np.ndarray | None = None, focus_vecs: np.ndarray | None = None,
            popularity: np.ndarray | None = None) -> list[dict[str, float]]:
        """Train the tower on (history, critique, target) triples; critiques are dropped at random."""
        from lumenrec.retriever.ilm import torch_threads

        with torch_threads(self.config.num_threads):
            return self._fit(histories, texts, targets, text_vecs, focus_vecs, popularity)

    def _fit(self, histories, texts, targets, text_vecs, focus_vecs, popularity) -> list[dict[str, float]]:
        cfg = self.config
        n = len(histories)
        if not (n == len(texts) == len(targets)) or n == 0:
            raise ValueError(f"histories, texts and targets must have the same non-zero length, got {n}, {len(texts)}, {len(targets)}")
        feats = self.features([np.asarray(h) for h in histories], list(texts), text_vecs, focus_vecs)
        y = torch.as_tensor(np.asarray(targets, dtype=np.int64))
        loss_fn = self._loss_fn(popularity)
        gen = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        opt = torch.optim.AdamW(self.tower.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps = math.ceil(n / cfg.batch_size)
        self.tower.train()
        bar = tqdm(total=cfg.epochs * steps, desc=f"LUMEN {cfg.loss}", disable=not cfg.progress, unit="step")
        t_start = time.perf_counter()
        for epoch in range(cfg.epochs):
            order = torch.randperm(n, generator=gen)
            tot = 0.0
            for s in range(steps):
                idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
                batch = {k: v[idx] for k, v in feats.items()}
                drop = torch.rand(len(idx), generator=gen) < cfg.critique_dropout  # (b,)
                batch["has_text"] = batch["has_text"] & ~drop
                keep = batch["has_text"].float()[:, None]
                for k in ("pos", "neg", "same"):  # the brand parts come from the critique: gone with it
                    batch[k] = batch[k] * keep
                q = self.tower(**batch)  # (b, D)
                loss = loss_fn(q, y[idx], self.item_matrix)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.tower.parameters(), 5.0)
                opt.step()
                tot += float(loss.detach())
                bar.update(1)
                bar.set_postfix(loss=f"{tot / (s + 1):.3f}")
            self.history.append({"epoch": epoch + 1, "loss": tot / steps})
            spent = time.perf_counter() - t_start
            if cfg.max_time_s is not None and spent * (epoch + 2) / (epoch + 1) > cfg.max_time_s:
                log.info("stopping after epoch %d of %d: the %.0f s budget would not fit another", epoch + 1,
                         cfg.epochs, cfg.max_time_s)
                break
        bar.close()
        self.tower.eval()
        log.info("LUMEN trained (%s): %s", cfg.loss, self.history[-1])
        return self.history

    def mix_weights(self) -> dict[str, dict[str, float]]:
        """The learned mixing scalars, for reports: {'no_critique': {...}, 'critique': {...}}."""
        m = self.tower.mix.detach().numpy()
        return {name: {t: float(v) for t, v in zip(self.tower.terms, m[row])}
                for row, name in ((0, "no_critique"), (1, "critique"))}

    # -- checkpoint ------------------------------------------------------------------------------
    def save(self, directory: str | Path, extra_config: dict | None = None) -> Path:
        """Tower weights + the item matrices (V, T, E, popularity column) + config; atomically."""
        from lumenrec.retriever.checkpoint import save_checkpoint

        state = {f"tower.{k}": v for k, v in self.tower.state_dict().items()}
        state["items.V"], state["items.T"] = torch.from_numpy(self.V), torch.from_numpy(self.T)
        state["items.pop"] = torch.from_numpy(self.item_matrix[:, self._pop_col].numpy().copy())
        if self.M.shape[0] > 1:
            state["items.M"] = torch.from_numpy(self.M)
        cfg = {"kind": "lumen", "lumen": asdict(self.config), **(extra_config or {})}
        return save_checkpoint(directory, model_state=state, config=cfg, item_ids=list(self.catalog.ids),
                               metrics={"history": self.history, "mix": self.mix_weights()})

    @classmethod
    def load(cls, directory: str | Path, catalog: Catalog, *, seq=None, text_encoder=None) -> "LumenRetriever":
        """Load a saved LUMEN retriever; `seq` must be the same sequential model it was trained with."""
        from safetensors.torch import load_file

        from lumenrec.retriever.checkpoint import MODEL_FILE, read_json, verify_checkpoint

        directory = Path(directory)
        verify_checkpoint(directory)
        cfg = read_json(directory / "config.json")
        if cfg.get("kind") != "lumen":
            raise CheckpointError(f"{directory}: not a LUMEN checkpoint (kind={cfg.get('kind')!r})")
        if read_json(directory / "item_ids.json") != list(catalog.ids):
            raise CheckpointError(f"{directory}: the catalogue does not match the checkpoint's item_ids.json")
        t = load_file(str(directory / MODEL_FILE))
        r = cls(catalog, t["items.V"].numpy(), t["items.T"].numpy(), seq=seq, text_encoder=text_encoder,
                config=LumenConfig(**{"focus": False, **cfg["lumen"]}), transitions=t["items.M"].numpy() if "items.M" in t else None)
        r.item_matrix[:, r._pop_col] = t["items.pop"]
        try:
            r.tower.load_state_dict({k[len("tower."):]: v for k, v in t.items() if k.startswith("tower.")})
        except RuntimeError as e:
            raise CheckpointError(f"{directory}: tower weights do not fit (was it trained with another sequential model?): {e}") from e
        r.tower.eval()
        r.checkpoint_sha256 = str(read_json(directory / "checksums.json").get(MODEL_FILE, "")) or None
        return r
