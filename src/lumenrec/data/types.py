"""The one data model every part of lumenrec speaks.

- :class:`Item` / :class:`Catalog`: the items, addressed by a string id outside and by a dense
  integer index (0..N-1) inside models and metrics.
- :class:`UserSequence` / :class:`Interactions`: each user's chronological item indices, with
  optional timestamps, ratings and review texts aligned to them.
- :class:`Turn`, :class:`Narratives`, :class:`Conversation`: REGEN-style conversations. They refer to
  items by string id so that a conversation file stays valid across catalogue re-indexing.
- :class:`Dataset`: a catalogue with its interactions and conversations, as a loader returns it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np


__all__ = [
    "Item",
    "Catalog",
    "UserSequence",
    "Interactions",
    "Turn",
    "Narratives",
    "Conversation",
    "Dataset",
    "NARRATIVE_KINDS",
]

NARRATIVE_KINDS = ("purchase_reason", "endorsement", "user_summary")


@dataclass
class Item:
    """One catalogue item. `categories` is the category path, most general first."""

    id: str
    title: str
    brand: str = ""
    categories: list[str] = field(default_factory=list)
    description: str = ""
    price: float | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.id = str(self.id)
        if not self.id:
            raise ValueError("Item.id must be a non-empty string")
        if self.price is not None and (not np.isfinite(self.price) or self.price < 0):
            raise ValueError(f"Item {self.id!r}: price must be a finite non-negative number, got {self.price!r}")

    @property
    def category(self) -> str:
        """The most specific category, or '' when the path is empty."""
        return self.categories[-1] if self.categories else ""

    def text(self, max_description_chars: int = 400) -> str:
        """The canonical text of the item, as text encoders and prompts see it."""
        parts = [self.title]
        if self.brand:
            parts.append(f"Brand: {self.brand}.")
        if self.categories:
            parts.append("Category: " + " > ".join(self.categories) + ".")
        if self.attributes:
            parts.append("; ".join(f"{k}: {v}" for k, v in sorted(self.attributes.items())) + ".")
        if self.description:
            parts.append(self.description[:max_description_chars])
        return " ".join(p for p in parts if p)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Item":
        return cls(
            id=str(d["id"]),
            title=str(d.get("title") or ""),
            brand=str(d.get("brand") or ""),
            categories=[str(c) for c in d.get("categories") or []],
            description=str(d.get("description") or ""),
            price=None if d.get("price") is None else float(d["price"]),
            attributes={str(k): str(v) for k, v in (d.get("attributes") or {}).items()},
        )


class Catalog:
    """An ordered collection of items with a string-id <-> dense-index map.

    >>> cat = Catalog([Item("a", "Red pen"), Item("b", "Blue pen")])
    >>> cat.index_of("b"), cat[0].title, len(cat)
    (1, 'Red pen', 2)
    """

    def __init__(self, items: Iterable[Item]) -> None:
        self.items: list[Item] = list(items)
        self.ids: list[str] = [it.id for it in self.items]
        self._index: dict[str, int] = {}
        for i, item_id in enumerate(self.ids):
            if item_id in self._index:
                raise ValueError(f"duplicate item id {item_id!r} at positions {self._index[item_id]} and {i}")
            self._index[item_id] = i

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __getitem__(self, index: int) -> Item:
        return self.items[index]

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def get(self, item_id: str) -> Item:
        """The item with this string id; KeyError naming the id when it is not in the catalogue."""
        try:
            return self.items[self._index[str(item_id)]]
        except KeyError:
            raise KeyError(f"item id {item_id!r} is not in the catalogue ({len(self)} items)") from None

    def index_of(self, item_id: str) -> int:
        try:
            return self._index[str(item_id)]
        except KeyError:
            raise KeyError(f"item id {item_id!r} is not in the catalogue ({len(self)} items)") from None

    def indices_of(self, item_ids: Sequence[str]) -> np.ndarray:
        return np.fromiter((self.index_of(i) for i in item_ids), dtype=np.int64, count=len(item_ids))

    def brands(self) -> list[str]:
        return sorted({it.brand for it in self.items if it.brand})

    def category_names(self) -> list[str]:
        return sorted({c for it in self.items for c in it.categories})

    def save_jsonl(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for it in self.items:
                f.write(json.dumps(it.to_dict(), ensure_ascii=False) + "\n")

    @classmethod
    def load_jsonl(cls, path: str | Path) -> "Catalog":
        """Read the catalogue written by :meth:`save_jsonl`; a bad line raises DataFormatError at file:line."""
        from lumenrec.data.io import iter_records  # io imports this module

        return cls(iter_records(path, lambda line, _: Item.from_dict(json.loads(line))))


@dataclass
class UserSequence:
    """One user's chronological interactions. `items` holds catalogue indices, oldest first."""

    user_id: str
    items: list[int]
    timestamps: list[int] | None = None
    ratings: list[float] | None = None
    reviews: list[str] | None = None

    def __post_init__(self) -> None:
        n = len(self.items)
        for name in ("timestamps", "ratings", "reviews"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise ValueError(f"user {self.user_id!r}: {name} has {len(v)} entries for {n} items")

    def __len__(self) -> int:
        return len(self.items)


class Interactions:
    """All users' sequences over one catalogue of `num_items` items."""

    def __init__(self, sequences: Iterable[UserSequence], num_items: int) -> None:
        self.sequences: list[UserSequence] = list(sequences)
        self.num_items = int(num_items)
        for s in self.sequences:
            if s.items and (min(s.items) < 0 or max(s.items) >= self.num_items):
                raise ValueError(f"user {s.user_id!r} has an item index outside [0, {self.num_items})")
        self._by_user = {s.user_id: i for i, s in enumerate(self.sequences)}

    def __len__(self) -> int:
        return len(self.sequences)

    def __iter__(self) -> Iterator[UserSequence]:
        return iter(self.sequences)

    def __getitem__(self, i: int) -> UserSequence:
        return self.sequences[i]

    def user(self, user_id: str) -> UserSequence:
        return self.sequences[self._by_user[str(user_id)]]

    @property
    def num_interactions(self) -> int:
        return sum(len(s) for s in self.sequences)

    @property
    def has_timestamps(self) -> bool:
        return bool(self.sequences) and all(s.timestamps is not None for s in self.sequences)

    def popularity(self) -> np.ndarray:
        """Interaction count per item, shape (N,)."""
        counts = np.zeros(self.num_items, dtype=np.int64)
        for s in self.sequences:
            np.add.at(counts, np.asarray(s.items, dtype=np.int64), 1)
        return counts


@dataclass
class Turn:
    """One message. `kind` is 'message' for plain text, 'critique' for a steering request."""

    role: str
    text: str
    kind: str = "message"

    def __post_init__(self) -> None:
        if self.role not in ("user", "assistant", "system"):
            raise ValueError(f"Turn.role must be user/assistant/system, got {self.role!r}")


@dataclass
class Narratives:
    """REGEN's narrative kinds; `extra` keeps any other narrative fields a file carried."""

    purchase_reason: str = ""
    endorsement: str = ""
    user_summary: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in NARRATIVE_KINDS}


@dataclass
class Conversation:
    """A REGEN-style case: a user's item history, their chat turns, the target item, narratives.

    `history` and `target` are string item ids. `meta` keeps fields the format did not model
    (e.g. `difficulty`), so nothing from the source file is dropped.
    """

    user_id: str
    history: list[str]
    turns: list[Turn]
    target: str | None = None
    narratives: Narratives = field(default_factory=Narratives)
    previous_item: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def critique(self) -> str | None:
        """The text of the last critique turn, if any."""
        for t in reversed(self.turns):
            if t.kind == "critique":
                return t.text
        return None

    @property
    def opening(self) -> str | None:
        for t in self.turns:
            if t.role == "user":
                return t.text
        return None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "user_id": self.user_id,
            "history": list(self.history),
            "previous_item": self.previous_item,
            "target": self.target,
            "turns": [
                {"role": t.role, "text": t.text, **({"kind": t.kind} if t.kind != "message" else {})}
                for t in self.turns
            ],
            "narratives": {**self.narratives.as_dict(), **self.narratives.extra},
        }
        d.update(self.meta)
        return d


@dataclass
class Dataset:
    """What a loader returns: a catalogue, its interactions, and conversations when the source has them."""

    name: str
    catalog: Catalog
    interactions: Interactions
    conversations: list[Conversation] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "items": len(self.catalog),
            "users": len(self.interactions),
            "interactions": self.interactions.num_interactions,
            "conversations": len(self.conversations),
        }


_WS = re.compile(r"\s+")


def clean_text(s: Any) -> str:
    """Collapse whitespace and undo the HTML entities common in Amazon metadata."""
    if s is None:
        return ""
    if isinstance(s, list):
        s = " ".join(str(x) for x in s)
    s = str(s).replace("&amp;", "&").replace("&quot;", '"').replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">")
    return _WS.sub(" ", s).strip()
