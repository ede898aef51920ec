"""Training examples of the generative LUMEN model, from TRAINING sequences only.

The paper's task mix: history (+ critique) -> next item; item + context -> narrative. Here:

- ``item`` examples: for each training sequence, its last `positions_per_user` positions t:
  history seq[:t] -> seq[t], once without a critique and, where the two items are similar enough for
  REGEN to write one, once with a synthetic critique (:mod:`lumenrec.retriever.critique_synth`);
- ``narrative`` examples: for a seeded fraction of the critique examples, the purchase reason of the
  target written by the inpainting pipeline's narrator (:class:`lumenrec.data.inpaint.Inpainter`:
  the offline narrator unless an LLM is given); each example records which narrator wrote it.

Callers pass training sequences (``Split.train``: the validation and test items are held out) and
the users to leave out (the dev conversations' users), so no dev target or narrative reaches training.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lumenrec.data.types import Catalog
from lumenrec.errors import ConfigError

__all__ = ["ExampleConfig", "GenExample", "build_examples"]

log = logging.getLogger(__name__)


@dataclass
class ExampleConfig:
    """Which examples are made."""

    positions_per_user: int = 3  # the last few transitions of each training sequence
    with_critique: bool = True  # add a critique example where the pair is similar (REGEN's rule)
    without_critique: bool = True  # keep the history-only example too (the model must work without a critique)
    history_only_fraction: float = 1.0  # seeded share of those history-only examples kept (a critique-heavy mix)
    narrative_fraction: float = 0.25  # share of critique examples that also get a narrative example
    narrative_kind: str = "purchase_reason"
    narrative_repeats: int = 1  # copies of each narrative example (more exposure to few, e.g. LLM-written, narratives)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("positions_per_user", "narrative_repeats"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(name, v, "must be a positive integer")
        for name in ("narrative_fraction", "history_only_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(name, getattr(self, name), "must be in [0, 1]")
        if not (self.with_critique or self.without_critique):
            raise ConfigError("with_critique", self.with_critique, "with_critique or without_critique must be on")


@dataclass
class GenExample:
    """One training example. `task` is 'item' (history -> target) or 'narrative' (target -> text)."""

    task: str
    user_id: str
    history: list[int]
    target: int
    critique: str | None = None
    narrative: str | None = None
    narrator: str | None = None  # which generator wrote the narrative ('offline' or the LLM's name)


def build_examples(sequences: Sequence[np.ndarray], users: Sequence[str], catalog: Catalog,
                   config: ExampleConfig | None = None, *, exclude_users: set[str] | frozenset = frozenset(),
                   inpainter=None, narrator=None) -> list[GenExample]:
    """Examples from training sequences (catalogue indices, oldest first); see the module docstring.

    `narrator` (anything with the narrators' ``generate``, e.g. a
    :class:`~lumenrec.agent.llm.lumen_gen.narratives.FileNarrator` of LLM narratives) writes the narrative
    examples instead of `inpainter`'s narrator; an empty text means no narrative example."""
    from lumenrec.retriever.critique_synth import CritiqueSynthConfig, synthesize_critique

    cfg = config or ExampleConfig()
    if len(sequences) != len(users):
        raise ValueError(f"{len(sequences)} sequences for {len(users)} users")
    if narrator is None and inpainter is not None:
        narrator = inpainter.narrator
    if narrator is None and cfg.narrative_fraction > 0:
        from lumenrec.data.inpaint import Inpainter

        narrator = Inpainter(catalog).narrator  # offline: the inpainting pipeline's offline narrator
    synth = CritiqueSynthConfig(seed=cfg.seed)
    out: list[GenExample] = []
    for seq, user in zip(sequences, users):
        if str(user) in exclude_users:
            continue
        seq = [int(i) for i in seq]
        for t in range(max(1, len(seq) - cfg.positions_per_user), len(seq)):
            hist, tgt = seq[:t], seq[t]
            if hist[-1] == tgt:
                continue
            if cfg.without_critique and (cfg.history_only_fraction >= 1.0 or random.Random(
                    f"lumen_gen:history:{cfg.seed}:{user}:{t}").random() < cfg.history_only_fraction):
                out.append(GenExample("item", str(user), hist, tgt))
            prev, nxt = catalog[hist[-1]], catalog[tgt]
            if not cfg.with_critique or prev.categories[:1] != nxt.categories[:1]:
                continue
            rng = random.Random(f"lumen_gen:{cfg.seed}:{user}:{t}")
            text = synthesize_critique(prev, nxt, rng, synth)
            out.append(GenExample("item", str(user), hist, tgt, critique=text))
            if narrator is not None and rng.random() < cfg.narrative_fraction:
                res = narrator.generate(cfg.narrative_kind, nxt, [catalog[h] for h in hist],
                                                  user_id=str(user), critique=text)
                if res.text.strip():
                    out.extend([GenExample("narrative", str(user), hist, tgt, critique=text, narrative=res.text,
                                           narrator=res.generator + (f":{res.model}" if res.model else ""))]
                               * cfg.narrative_repeats)
    counts = Counter((e.task, e.critique is not None) for e in out)
    log.info("generative LUMEN examples: %d item (%d with a critique), %d narrative (narrators: %s)",
             counts[("item", False)] + counts[("item", True)], counts[("item", True)],
             sum(1 for e in out if e.task == "narrative"),
             dict(Counter(e.narrator for e in out if e.task == "narrative")))
    return out
