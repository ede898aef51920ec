"""The generative LUMEN model behind the one retriever interface (``BaseRetriever``: (ids, scores)).

`score` ranks the whole catalogue by the model's log-probability of each item's code tuple after
the prompt (history + the shopper's text as the request): the same constrained distribution beam
search decodes from, so full-catalogue metrics and generation agree. `generate` is the beam search
(every returned id is a catalogue item); `narrate` writes the narrative for a chosen item.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lumenrec.agent.llm.lumen_gen.model import GenerativeLumen
from lumenrec.data.types import Catalog, Item
from lumenrec.errors import CheckpointError, ToolInputError
from lumenrec.retriever.base import BaseRetriever, Query

__all__ = ["GenerativeLumenRetriever", "GenerativeLumenNarrator"]


class GenerativeLumenRetriever(BaseRetriever):
    """(ids, scores) from a :class:`GenerativeLumen` over `catalog` (the items its codes were built for)."""

    def __init__(self, model: GenerativeLumen, catalog: Catalog, item_ids: Sequence[str] | None = None) -> None:
        if item_ids is not None and list(item_ids) != list(catalog.ids):
            raise CheckpointError(f"the model was trained on another catalogue ({len(item_ids)} items vs {len(catalog)})")
        if model.sids.num_items != len(catalog):
            raise CheckpointError(f"the model has codes for {model.sids.num_items} items, the catalogue {len(catalog)}")
        self.model, self.catalog = model, catalog

    @classmethod
    def from_pretrained(cls, directory, catalog: Catalog) -> "GenerativeLumenRetriever":
        from lumenrec.agent.llm.lumen_gen.train import load_lumen_gen

        model, ids, _ = load_lumen_gen(directory)
        return cls(model, catalog, ids)

    def _prompt(self, q: Query) -> list[int]:
        hist = [int(i) for i in self.catalog.indices_of([h for h in q.history if h in self.catalog])]
        return self.model.prompt(hist, q.text)

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        return np.stack([self.model.score_items(self._prompt(q)) for q in queries])  # (B, N)

    def generate(self, query: Query, k: int = 10, beam_width: int | None = None) -> tuple[list[str], np.ndarray]:
        """Top-`k` by constrained beam search (history and excluded items dropped from the beams' results)."""
        drop = set(query.exclude_ids) | set(query.history)
        got = self.model.beam_search(self._prompt(query), k + len(drop), beam_width)
        allowed = None if query.allowed is None else np.asarray(query.allowed, dtype=bool)
        keep = [(self.catalog.ids[i], s) for i, s in got
                if self.catalog.ids[i] not in drop and (allowed is None or allowed[i])][:k]
        return [i for i, _ in keep], np.asarray([s for _, s in keep], dtype=np.float64)

    def narrate(self, query: Query, item_id: str) -> str:
        hist = [int(i) for i in self.catalog.indices_of([h for h in query.history if h in self.catalog])]
        return self.model.narrate(hist, self.catalog.index_of(item_id), query.text)


class GenerativeLumenNarrator:
    """The agent's narrator protocol (``narrate(kind, item, history, *, user_id, critique) -> str``) over the model.

    The model was trained on purchase reasons; it writes those and endorsements (the same text for
    now). A user summary, or an empty generation, goes to `fallback` (the agent passes its offline
    narrator). Its texts are not grounding-checked here: the checker lives in the agent layer, and a
    system directory wraps this narrator in ``lumenrec.agent.narrative.GroundedNarrator``.
    """

    name = "lumen_gen"

    def __init__(self, model: GenerativeLumen, catalog: Catalog, *, fallback=None) -> None:
        self.model, self.catalog, self.fallback = model, catalog, fallback

    def narrate(self, kind: str, item: Item | None, history: Sequence[Item], *, user_id: str = "",
                critique: str | None = None) -> str:
        hist = [self.catalog.index_of(h.id) for h in history if h.id in self.catalog]
        text = ""
        if kind in ("purchase_reason", "endorsement") and item is not None and item.id in self.catalog:
            text = self.model.narrate(hist, self.catalog.index_of(item.id), critique)
        if text.strip():
            return text
        if self.fallback is None:
            raise ToolInputError(f"the generative LUMEN narrator writes purchase reasons and endorsements of "
                                 f"catalogue items; {kind!r} needs a fallback narrator")
        return self.fallback.narrate(kind, item, history, user_id=user_id, critique=critique)
