"""A teacher's full-catalogue scores as soft targets of the generative LUMEN model (knowledge distillation).

One item example teaches the model one target; a teacher that scores the whole catalogue for the same
prompt (the LUMEN tower of a built system: history + critique -> a score per item) also says which
other items fit the request and by how much. For each item example, :func:`teacher_targets` keeps the
teacher's top-k items and their softmax probabilities at temperature T (history items removed,
renormalised over the k). :func:`level_targets` turns them into one target distribution per code
position of the example's item tuple, the same factorisation the model is trained and decoded with:

- at level l, given the target's code prefix c_<l, the teacher's mass of the items under that prefix,
  summed by their code at level l (e.g. level 0: the mass of each cluster; the item leaf: each item of
  the target's cluster), renormalised; a position where the teacher puts no mass under the prefix gets
  no soft target.

The loss (:class:`~.model.LumenGenLoss`) adds ``distill_weight x`` the cross-entropy of the model's
trie-constrained distribution against these targets to the usual cross-entropy on the true target.
The teacher is used at training time only; the trained model serves alone.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Sequence

import numpy as np

from lumenrec.agent.llm.lumen_gen.examples import GenExample
from lumenrec.errors import ConfigError

__all__ = ["teacher_targets", "level_targets", "teacher_digest", "cached_teacher_targets"]

log = logging.getLogger(__name__)


def teacher_targets(retriever, examples: Sequence[GenExample], item_ids: Sequence[str], *, top_k: int = 100,
                    temperature: float = 1.0, batch_size: int = 64, critique_only: bool = True,
                    progress: bool = True) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """The teacher's top-`top_k` (items, probabilities) for every item example (None for narrative examples,
    and, with `critique_only`, for examples without a critique). `retriever`: any ``BaseRetriever`` over the
    same catalogue order as `item_ids` (its ``score`` gives (B, N) scores), e.g. a built system's tower
    (:func:`lumenrec.build.tower_teacher`)."""
    from tqdm.auto import tqdm

    from lumenrec.retriever.base import Query

    if top_k < 1:
        raise ConfigError("distill_top_k", top_k, "must be >= 1")
    if not temperature > 0:
        raise ConfigError("distill_temperature", temperature, "must be > 0")
    want = [i for i, e in enumerate(examples) if e.task == "item" and (e.critique or not critique_only)]
    out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(examples)
    n = len(item_ids)
    k = min(top_k, n)
    for s in tqdm(range(0, len(want), batch_size), desc="teacher scores", disable=not progress, unit="batch"):
        idx = want[s:s + batch_size]
        queries = [Query(history=[item_ids[h] for h in examples[i].history], text=examples[i].critique) for i in idx]
        scores = np.asarray(retriever.score(queries), dtype=np.float64)  # (B, N)
        if scores.shape != (len(idx), n):
            raise ConfigError("teacher", scores.shape, f"the teacher scores {scores.shape[-1]} items, the model {n}")
        for row, i in zip(scores, idx):
            row = row / temperature
            row[np.asarray(examples[i].history, dtype=np.int64)] = -np.inf  # a history item is never the answer
            top = np.argpartition(-row, k - 1)[:k]  # (k,)
            top = top[np.argsort(-row[top], kind="stable")]
            z = row[top] - row[top[0]]
            p = np.exp(z)
            p[~np.isfinite(z)] = 0.0
            if p.sum() > 0:
                out[i] = (top.astype(np.int64), (p / p.sum()).astype(np.float32))
    log.info("teacher soft targets for %d of %d examples (top %d, temperature %g)",
             sum(t is not None for t in out), len(examples), k, temperature)
    return out


def level_targets(codes: np.ndarray, target: int, items: np.ndarray, probs: np.ndarray,
                  allowed: Sequence[np.ndarray]) -> list[np.ndarray | None]:
    """Per code position of `target`'s tuple: the teacher's distribution over that position's allowed codes
    (aligned with ``allowed[l]``, codes of level l without the level offset), or None where the teacher
    has no mass under the target's prefix. `codes` (N, L): every item's code tuple."""
    out: list[np.ndarray | None] = []
    tcodes = codes[int(target)]
    under = np.ones(len(items), dtype=bool)  # teacher items that share the target's prefix so far
    for lvl, codes_here in enumerate(allowed):
        mass = np.zeros(len(codes_here), dtype=np.float64)
        pos = {int(c): j for j, c in enumerate(codes_here)}
        for it, p, ok in zip(items, probs, under):
            if ok:
                j = pos.get(int(codes[it, lvl]))
                if j is not None:
                    mass[j] += p
        out.append((mass / mass.sum()).astype(np.float32) if mass.sum() > 0 else None)
        under &= codes[items, lvl] == tcodes[lvl]
    return out


def teacher_digest(targets: Sequence[tuple[np.ndarray, np.ndarray] | None]) -> str:
    """A short hash of soft targets: a resumed run must train on the same ones."""
    h = hashlib.sha256()
    for t in targets:
        if t is None:
            h.update(b"-")
        else:
            h.update(np.ascontiguousarray(t[0]).tobytes())
            h.update(np.round(np.asarray(t[1], dtype=np.float64), 6).tobytes())
    return h.hexdigest()[:16]


def cached_teacher_targets(path, key: dict, compute) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """``compute()``'s soft targets, kept in the .npz file `path` under `key` (what they were computed from:
    examples digest, teacher, top-k, temperature): a resumed run reads them instead of scoring again; a file
    with another key is recomputed and replaced."""
    import json
    from pathlib import Path

    path = Path(path)
    want = json.dumps(key, sort_keys=True)
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) == want:
                out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * int(z["n"])
                for i, items, probs in zip(z["index"], z["items"], z["probs"]):
                    out[int(i)] = (items, probs)
                log.info("teacher soft targets read from %s", path)
                return out
        log.info("%s holds soft targets of other settings: computing them again", path)
    out = compute()
    have = [i for i, t in enumerate(out) if t is not None]
    k = max((len(out[i][0]) for i in have), default=0)
    items = np.full((len(have), k), -1, dtype=np.int64)
    probs = np.zeros((len(have), k), dtype=np.float32)
    for r, i in enumerate(have):
        items[r, : len(out[i][0])], probs[r, : len(out[i][1])] = out[i]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, key=np.array(want), n=np.array(len(out)), index=np.array(have, dtype=np.int64), items=items, probs=probs)
    tmp.replace(path)
    return out

