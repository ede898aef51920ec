"""Item identifiers an LLM can emit: short semantic IDs (residual k-means, TIGER-style) or one token per item.

Semantic IDs: the item vectors (ILM vectors when a build has them, else MiniLM item-text vectors)
are quantised level by level: k-means on the vectors gives the first code, k-means on what is left
(vector minus its centroid) gives the second, and so on. Items that end up with the same codes get
one more code, 0, 1, 2, ... in catalogue order, so every item has a unique tuple; when no two items
collide that level is left out. Every item's tuple has the same length, so one prefix trie over the
tuples tells which code may follow which (constrained decoding can then only produce catalogue items).

Codes are level-local integers; the model maps (level, code) to one new vocabulary token
(:meth:`SemanticIDs.token_offsets`). With ``mode="atomic"`` each item is its own single token.

Everything here is numpy and deterministic given the config's seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from lumenrec.errors import ConfigError

__all__ = ["SemanticIDConfig", "SemanticIDs", "PrefixTrie", "kmeans", "residual_kmeans", "assign_semantic_ids"]

MODES = ("rq", "atomic")
LEAVES = ("collision", "item")


@dataclass
class SemanticIDConfig:
    """How items become code tuples."""

    mode: str = "rq"  # "rq": a few codes per item (residual k-means); "atomic": one token per item
    levels: int = 3  # quantisation levels before the collision code (TIGER uses 3)
    codebook_size: int = 32  # codes per level (TIGER: 256 for ~10^4-10^5 items; a few thousand items need ~16-64)
    kmeans_iters: int = 25  # Lloyd iterations per level (converges within ~10-20 on 384-d MiniLM vectors)
    seed: int = 0  # k-means++ seeding: same seed and vectors, same codes
    normalize: bool = True  # L2-normalise the item vectors first (MiniLM/ILM vectors are compared by cosine)
    # the last code of an RQ tuple: "collision" (TIGER: 0, 1, 2, ... in catalogue order, only where tuples
    # collide) or "item" (every item ends with a token of its own, its row started from its own vector, so
    # the choice inside a prefix is made by content, not by an arbitrary index)
    leaf: str = "collision"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError("mode", self.mode, f"must be one of {MODES}")
        for name in ("levels", "codebook_size", "kmeans_iters"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(name, v, "must be a positive integer")
            setattr(self, name, int(v))
        if self.mode == "rq" and self.codebook_size < 2:
            raise ConfigError("codebook_size", self.codebook_size, "must be >= 2 for residual quantisation")
        if self.leaf not in LEAVES:
            raise ConfigError("leaf", self.leaf, f"must be one of {LEAVES}")

    def to_dict(self) -> dict:
        return asdict(self)


def kmeans(x: np.ndarray, k: int, *, iters: int = 25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(centroids (k', d), labels (N,)) of Lloyd's k-means with k-means++ seeding; k' = min(k, distinct rows).

    Deterministic given `seed`. An emptied cluster is re-seeded with the point farthest from its centroid.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"kmeans needs a non-empty (N, d) array, got shape {x.shape}")
    k = int(min(k, len(np.unique(x, axis=0))))
    rng = np.random.default_rng(seed)
    cent = np.empty((k, x.shape[1]), dtype=np.float64)
    cent[0] = x[rng.integers(len(x))]
    d2 = ((x - cent[0]) ** 2).sum(1)  # (N,) squared distance to the nearest chosen centroid
    for j in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(x), 1.0 / len(x))
        cent[j] = x[rng.choice(len(x), p=p)]
        d2 = np.minimum(d2, ((x - cent[j]) ** 2).sum(1))
    labels = np.zeros(len(x), dtype=np.int64)
    for _ in range(iters):
        dist = (x ** 2).sum(1)[:, None] - 2 * x @ cent.T + (cent ** 2).sum(1)[None]  # (N, k)
        new = dist.argmin(1)
        for j in range(k):
            members = new == j
            if members.any():
                cent[j] = x[members].mean(0)
            else:  # empty: take the worst-served point
                far = int(dist[np.arange(len(x)), new].argmax())
                cent[j], new[far] = x[far], j
        if np.array_equal(new, labels) and _ > 0:
            break
        labels = new
    return cent, labels


def residual_kmeans(vectors: np.ndarray, levels: int, codebook_size: int, *, iters: int = 25,
                    seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """(codes (N, levels) int64, codebooks: one (k_l, d) array per level) of residual quantisation."""
    resid = np.asarray(vectors, dtype=np.float64).copy()  # (N, d)
    codes = np.zeros((len(resid), levels), dtype=np.int64)
    books = []
    for lvl in range(levels):
        cent, lab = kmeans(resid, codebook_size, iters=iters, seed=seed + lvl)
        codes[:, lvl] = lab
        books.append(cent.astype(np.float32))
        resid = resid - cent[lab]
    return codes, books


@dataclass
class SemanticIDs:
    """Item code tuples, the vocabulary size of each level, and each new token's init vector.

    `codes` (N, L) int64, row i = item i of the catalogue; `level_sizes` (L,) tokens per level;
    `token_vectors` (sum(level_sizes), d): per token, the vector its new embedding row starts from
    (a level's centroid for RQ codes, the item vector for atomic tokens, zeros for collision codes).
    """

    codes: np.ndarray
    level_sizes: list[int]
    token_vectors: np.ndarray
    config: SemanticIDConfig = field(default_factory=SemanticIDConfig)
    collision_level: bool = False  # whether the last level is the collision code

    def __post_init__(self) -> None:
        self.codes = np.asarray(self.codes, dtype=np.int64)
        self.level_sizes = [int(s) for s in self.level_sizes]
        if self.codes.ndim != 2 or self.codes.shape[1] != len(self.level_sizes):
            raise ValueError(f"codes must be (N, {len(self.level_sizes)}), got {self.codes.shape}")
        if (self.codes < 0).any() or (self.codes >= np.asarray(self.level_sizes)[None]).any():
            raise ValueError("a code is outside its level's range")
        if len(np.unique(self.codes, axis=0)) != len(self.codes):
            raise ValueError("two items share a code tuple: semantic IDs must be unique")
        if self.token_vectors.shape[0] != self.num_tokens:
            raise ValueError(f"token_vectors has {self.token_vectors.shape[0]} rows for {self.num_tokens} tokens")

    @property
    def num_items(self) -> int:
        return int(self.codes.shape[0])

    @property
    def num_levels(self) -> int:
        return int(self.codes.shape[1])

    @property
    def num_tokens(self) -> int:
        return int(sum(self.level_sizes))

    def token_offsets(self) -> np.ndarray:
        """(L,) the first new-token index of each level."""
        return np.concatenate([[0], np.cumsum(self.level_sizes)[:-1]]).astype(np.int64)

    def item_tokens(self) -> np.ndarray:
        """(N, L) each item's new-token indices (level offset + code)."""
        return self.codes + self.token_offsets()[None]

    def token_names(self) -> list[str]:
        """Readable names of the new tokens, e.g. '<sid_0_12>' (level 0, code 12) or '<item_7>'."""
        if self.config.mode == "atomic":
            return [f"<item_{i}>" for i in range(self.num_tokens)]
        leaf = self.num_levels - 1 if self.config.leaf == "item" else -1
        return [f"<item_{c}>" if lvl == leaf else f"<sid_{lvl}_{c}>"
                for lvl, size in enumerate(self.level_sizes) for c in range(size)]

    def trie(self) -> "PrefixTrie":
        return PrefixTrie(self.codes, self.level_sizes)


def assign_semantic_ids(vectors: np.ndarray, config: SemanticIDConfig | None = None) -> SemanticIDs:
    """Semantic IDs of every item from its vector (N, d), per `config` (see the module docstring)."""
    cfg = config or SemanticIDConfig()
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2 or len(v) == 0 or not np.isfinite(v).all():
        raise ValueError(f"item vectors must be a finite, non-empty (N, d) array, got shape {v.shape}")
    if cfg.normalize:
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    n = len(v)
    if cfg.mode == "atomic":
        return SemanticIDs(np.arange(n, dtype=np.int64)[:, None], [n], v.copy(), cfg, False)
    codes, books = residual_kmeans(v, cfg.levels, cfg.codebook_size, iters=cfg.kmeans_iters, seed=cfg.seed)
    sizes = [len(b) for b in books]
    vecs = list(books)
    if cfg.leaf == "item":  # one leaf token per item, from its own vector: tuples are unique by construction
        codes = np.concatenate([codes, np.arange(n, dtype=np.int64)[:, None]], axis=1)
        return SemanticIDs(codes, sizes + [n], np.concatenate(vecs + [v]).astype(np.float32), cfg, False)
    # collisions: items with the same tuple get 0, 1, 2, ... in catalogue order
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    extra = np.zeros(n, dtype=np.int64)
    seen: dict[int, int] = {}
    for i, g in enumerate(inverse):
        extra[i] = seen.get(int(g), 0)
        seen[int(g)] = extra[i] + 1
    collided = bool(extra.max() > 0)
    if collided:
        codes = np.concatenate([codes, extra[:, None]], axis=1)
        sizes.append(int(extra.max()) + 1)
        vecs.append(np.zeros((sizes[-1], v.shape[1]), dtype=np.float32))
    return SemanticIDs(codes, sizes, np.concatenate(vecs).astype(np.float32), cfg, collided)


class PrefixTrie:
    """Which code may follow a prefix of codes, over the code tuples of the catalogue.

    >>> t = PrefixTrie(np.array([[0, 1], [0, 2], [1, 0]]), [2, 3])
    >>> t.allowed(()).tolist(), t.allowed((0,)).tolist(), t.item((1, 0))
    ([0, 1], [1, 2], 2)
    """

    def __init__(self, codes: np.ndarray, level_sizes: Sequence[int]) -> None:
        self.codes = np.asarray(codes, dtype=np.int64)  # (N, L)
        self.level_sizes = [int(s) for s in level_sizes]
        self._children: dict[tuple[int, ...], set[int]] = {}
        self._items: dict[tuple[int, ...], int] = {}
        for i, row in enumerate(self.codes.tolist()):
            for lvl in range(len(row)):
                self._children.setdefault(tuple(row[:lvl]), set()).add(row[lvl])
            if tuple(row) in self._items:
                raise ValueError(f"items {self._items[tuple(row)]} and {i} share the code tuple {tuple(row)}")
            self._items[tuple(row)] = i
        self._allowed = {p: np.array(sorted(c), dtype=np.int64) for p, c in self._children.items()}

    @property
    def depth(self) -> int:
        return int(self.codes.shape[1])

    def allowed(self, prefix: Sequence[int]) -> np.ndarray:
        """Level-local codes that may follow `prefix` (empty when the prefix is no catalogue prefix or complete)."""
        return self._allowed.get(tuple(int(c) for c in prefix), np.zeros(0, dtype=np.int64))

    def allowed_mask(self, prefix: Sequence[int]) -> np.ndarray:
        """(level size,) bool mask of `allowed(prefix)` at the prefix's level."""
        lvl = len(prefix)
        m = np.zeros(self.level_sizes[lvl], dtype=bool)
        m[self.allowed(prefix)] = True
        return m

    def item(self, codes: Sequence[int]) -> int | None:
        """The catalogue index of a complete code tuple, or None."""
        return self._items.get(tuple(int(c) for c in codes))

    def prefixes(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(distinct prefixes (M, length), inverse (N,)): every item's prefix of that length, deduplicated."""
        if length == 0:
            return np.zeros((1, 0), dtype=np.int64), np.zeros(len(self.codes), dtype=np.int64)
        uniq, inv = np.unique(self.codes[:, :length], axis=0, return_inverse=True)
        return uniq, inv.reshape(-1)
