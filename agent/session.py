"""The state of one shopper's conversation: history, shown items, accumulated constraints, turn log.

- :class:`Constraints` accumulates what critiques asked for over the turns; :meth:`Constraints.merge`
  documents how a later critique relaxes or replaces an earlier one, :meth:`Constraints.to_mask`
  turns them into the boolean candidate mask of :class:`lumenrec.retriever.base.Query`, and
  :meth:`Constraints.to_where` into a Chroma ``where`` filter.
- :class:`Session` is plain data with a lossless JSON round trip (``to_json``/``from_json``).
- :class:`SessionStore` is the storage protocol; :class:`InMemorySessionStore` keeps sessions in a
  dict behind a lock (isolated copies in and out, safe across threads).
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from lumenrec.agent.critique import Critique, effective_brand, normalize_brand
from lumenrec.data.types import Catalog

__all__ = ["Constraints", "TurnRecord", "Session", "SessionStore", "InMemorySessionStore"]

ROLES = ("user", "assistant", "system")


def _uniq(xs: list[str]) -> list[str]:
    return list(dict.fromkeys(xs))


@dataclass
class Constraints:
    """Hard constraints accumulated over a conversation (brand/category names as in the catalogue)."""

    include_brands: list[str] = field(default_factory=list)
    exclude_brands: list[str] = field(default_factory=list)
    include_categories: list[str] = field(default_factory=list)
    exclude_categories: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    avoid_attributes: dict[str, str] = field(default_factory=dict)
    max_price: float | None = None
    min_price: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_price", "min_price"):
            v = getattr(self, name)
            if v is not None and (not np.isfinite(v) or v < 0):
                raise ValueError(f"Constraints.{name} must be a finite non-negative number or None, got {v!r}")
        if self.max_price is not None and self.min_price is not None and self.min_price > self.max_price:
            raise ValueError(f"Constraints: min_price {self.min_price} > max_price {self.max_price}")

    @classmethod
    def from_critique(cls, c: Critique) -> "Constraints":
        return cls(list(c.include_brands), list(c.exclude_brands), list(c.include_categories),
                   list(c.exclude_categories), dict(c.attributes), dict(c.avoid_attributes),
                   c.max_price, c.min_price)

    def is_empty(self) -> bool:
        return self == Constraints()

    def for_new_need(self) -> "Constraints":
        """What carries over when the shopper moves to a new need ("now I need a desk lamp"): only the
        brands and categories they ruled out. Wanted brands/categories, attributes and price bounds
        belonged to the previous need."""
        return Constraints(exclude_brands=list(self.exclude_brands), exclude_categories=list(self.exclude_categories))

    def merge(self, new: "Constraints | Critique") -> "Constraints":
        """A new Constraints: these, updated by a later critique. The later message wins:

        1. A brand the new message includes is removed from the excludes ("actually HP is fine"
           relaxes an earlier "not HP"), and vice versa: a newly excluded brand leaves the includes.
        2. A new include-brand list *replaces* the old include list ("Epson" after "Canon" means
           Epson now, not Canon-or-Epson); excludes accumulate ("not HP", then "not Canon" -> both).
        3. Categories follow the same two rules.
        4. Attributes: a new value for a key replaces the old one; a newly avoided value removes the
           same value from the wanted attributes and the other way round.
        5. Prices: a new bound replaces the old bound of the same side; if the bounds then cross,
           the older opposite bound is dropped.
        """
        n = Constraints.from_critique(new) if isinstance(new, Critique) else new
        out = copy.deepcopy(self)
        # brands
        if n.include_brands:
            out.include_brands = _uniq(list(n.include_brands))
        out.exclude_brands = _uniq([b for b in out.exclude_brands if b not in n.include_brands] + list(n.exclude_brands))
        out.include_brands = [b for b in out.include_brands if b not in n.exclude_brands]
        # categories
        if n.include_categories:
            out.include_categories = _uniq(list(n.include_categories))
        out.exclude_categories = _uniq([c for c in out.exclude_categories if c not in n.include_categories]
                                       + list(n.exclude_categories))
        out.include_categories = [c for c in out.include_categories if c not in n.exclude_categories]
        # attributes
        for k, v in n.attributes.items():
            out.attributes[k] = v
            if k in out.avoid_attributes:
                keep = [x for x in out.avoid_attributes[k].split(",") if x and x not in v.split(",")]
                if keep:
                    out.avoid_attributes[k] = ",".join(keep)
                else:
                    del out.avoid_attributes[k]
        for k, v in n.avoid_attributes.items():
            old = [x for x in out.avoid_attributes.get(k, "").split(",") if x]
            out.avoid_attributes[k] = ",".join(_uniq(old + [x for x in v.split(",") if x]))
            if k in out.attributes:
                keep = [x for x in out.attributes[k].split(",") if x and x not in v.split(",")]
                if keep:
                    out.attributes[k] = ",".join(keep)
                else:
                    del out.attributes[k]
        # prices
        if n.max_price is not None:
            out.max_price = n.max_price
            if out.min_price is not None and out.min_price > n.max_price and n.min_price is None:
                out.min_price = None
        if n.min_price is not None:
            out.min_price = n.min_price
            if out.max_price is not None and out.max_price < n.min_price and n.max_price is None:
                out.max_price = None
        return out

    def to_mask(self, catalog: Catalog, keep_unpriced: bool = True) -> np.ndarray:
        """Boolean (N,) mask of catalogue items that satisfy the brand/category/price constraints.

        Brands compare by normalised name on :func:`effective_brand` (a brand-less item whose title
        starts with a brand counts as that brand). Items without a price pass price bounds
        (unknown is not excluded). An avoided colour removes the items whose colours are all avoided
        (:mod:`lumenrec.agent.facts`: structured attributes, else the title); wanted attributes are
        soft (they re-rank what is shown, see Recommender).
        """
        n = len(catalog)
        mask = np.ones(n, dtype=bool)  # (N,)
        if self.is_empty():
            return mask
        inc_b = {normalize_brand(b) for b in self.include_brands}
        exc_b = {normalize_brand(b) for b in self.exclude_brands}
        inc_c, exc_c = set(self.include_categories), set(self.exclude_categories)
        brands = _item_brand_keys(catalog) if (inc_b or exc_b) else None
        avoid_col = frozenset(x for x in self.avoid_attributes.get("colour", "").split(",") if x)
        facts = None
        if avoid_col:
            from lumenrec.agent.facts import catalogue_facts, colours_violate

            facts = catalogue_facts(catalog)
        for j, it in enumerate(catalog):
            if facts is not None and colours_violate(facts[j]["colours"], avoid_col):
                mask[j] = False
                continue
            if brands is not None:
                b = brands[j]
                if (inc_b and b not in inc_b) or b in exc_b:
                    mask[j] = False
                    continue
            if inc_c and not inc_c.intersection(it.categories):
                mask[j] = False
                continue
            if exc_c and exc_c.intersection(it.categories):
                mask[j] = False
                continue
            if it.price is None:
                if not keep_unpriced and (self.max_price is not None or self.min_price is not None):
                    mask[j] = False
            else:
                if self.max_price is not None and it.price > self.max_price:
                    mask[j] = False
                elif self.min_price is not None and it.price < self.min_price:
                    mask[j] = False
        return mask

    def to_where(self, levels: Sequence[str] = ("cat0", "cat1", "cat2", "category")) -> dict[str, Any] | None:
        """A Chroma where-filter (keys brand, cat0/cat1/cat2, price), or None when unconstrained.

        Chroma metadata holds one value per key, so a category constraint is expressed on every
        stored level: (cat0 in S or cat1 in S or cat2 in S or category in S), "category" being the
        leaf, as lumenrec.retriever.index stores them; pass `levels` for another layout. Note: the
        index stores a price only when known, so a price bound there drops unpriced items, while
        :meth:`to_mask` keeps them by default (`keep_unpriced`). Brand strings are matched exactly as stored: an index should store the item's
        :func:`effective_brand` so that brand-less items named by their title match too.
        """
        clauses: list[dict[str, Any]] = []
        if self.include_brands:
            clauses.append({"brand": {"$in": list(self.include_brands)}})
        if self.exclude_brands:
            clauses.append({"brand": {"$nin": list(self.exclude_brands)}})
        if self.include_categories:
            clauses.append({"$or": [{lv: {"$in": list(self.include_categories)}} for lv in levels]})
        if self.exclude_categories:
            clauses.extend({lv: {"$nin": list(self.exclude_categories)}} for lv in levels)
        if self.max_price is not None:
            clauses.append({"price": {"$lte": float(self.max_price)}})
        if self.min_price is not None:
            clauses.append({"price": {"$gte": float(self.min_price)}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Constraints":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


_BRAND_KEY_CACHE: dict[int, tuple[Catalog, int, list[str]]] = {}
_CACHE_LOCK = threading.Lock()


def _item_brand_keys(catalog: Catalog) -> list[str]:
    """Normalised effective brand of every item, cached per catalogue object (and its size)."""
    with _CACHE_LOCK:
        hit = _BRAND_KEY_CACHE.get(id(catalog))
    if hit is not None and hit[0] is catalog and hit[1] == len(catalog):
        return hit[2]
    keys = {normalize_brand(b): b for b in catalog.brands() if normalize_brand(b)}
    out = [normalize_brand(effective_brand(it, keys)) for it in catalog]
    with _CACHE_LOCK:
        _BRAND_KEY_CACHE[id(catalog)] = (catalog, len(catalog), out)
    return out


@dataclass
class TurnRecord:
    """One logged turn: who spoke, what, the routed intent and the item ids shown or referred to."""

    role: str
    text: str
    intent: str | None = None
    item_ids: list[str] = field(default_factory=list)
    timestamp: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"TurnRecord.role must be one of {ROLES}, got {self.role!r}")


@dataclass
class Session:
    """One shopper's conversation state. Item references are string item ids."""

    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    user_id: str | None = None
    history: list[str] = field(default_factory=list)          # items given or bought, oldest first
    shown: list[list[str]] = field(default_factory=list)      # items shown, one ordered list per turn
    accepted: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    constraints: Constraints = field(default_factory=Constraints)
    turns: list[TurnRecord] = field(default_factory=list)
    created: float = field(default_factory=time.time)

    @property
    def last_shown(self) -> list[str]:
        """The most recently shown list ([] before anything was shown)."""
        return list(self.shown[-1]) if self.shown else []

    def resolve_ref(self, ref: int | None) -> str | None:
        """Item id for a 0-based index into the last shown list (-1: last), or None."""
        items = self.last_shown
        if ref is None or not items:
            return None
        if -len(items) <= ref < len(items):
            return items[ref]
        return None

    def add_turn(self, role: str, text: str, intent: str | None = None, item_ids: list[str] | None = None,
                 timestamp: float | None = None) -> TurnRecord:
        rec = TurnRecord(role, text, intent, list(item_ids or []), time.time() if timestamp is None else timestamp)
        self.turns.append(rec)
        return rec

    def record_shown(self, item_ids: list[str]) -> None:
        self.shown.append(list(item_ids))

    def accept(self, item_id: str) -> None:
        """The shopper takes an item: it joins accepted and the history, and leaves rejected."""
        if item_id not in self.accepted:
            self.accepted.append(item_id)
        if item_id not in self.history:
            self.history.append(item_id)
        self.rejected = [r for r in self.rejected if r != item_id]

    def reject(self, item_id: str) -> None:
        if item_id not in self.rejected:
            self.rejected.append(item_id)

    def apply_critique(self, critique: Critique) -> Constraints:
        """Merge a critique's constraints into the session's (see Constraints.merge) and return them."""
        self.constraints = self.constraints.merge(critique)
        return self.constraints

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Session":
        try:
            return cls(
                session_id=str(d["session_id"]),
                user_id=d.get("user_id"),
                history=[str(x) for x in d.get("history", [])],
                shown=[[str(x) for x in row] for row in d.get("shown", [])],
                accepted=[str(x) for x in d.get("accepted", [])],
                rejected=[str(x) for x in d.get("rejected", [])],
                constraints=Constraints.from_dict(d.get("constraints") or {}),
                turns=[TurnRecord(**t) for t in d.get("turns", [])],
                created=float(d.get("created", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a serialised Session: {e}") from e

    @classmethod
    def from_json(cls, s: str) -> "Session":
        return cls.from_dict(json.loads(s))


@runtime_checkable
class SessionStore(Protocol):
    """Where sessions live between turns (in memory here; a database elsewhere)."""

    def get(self, session_id: str) -> Session | None: ...
    def put(self, session: Session) -> None: ...
    def delete(self, session_id: str) -> None: ...
    def new(self, user_id: str | None = None, history: list[str] | None = None) -> Session: ...


class InMemorySessionStore:
    """Sessions in a dict behind a lock. Copies go in and out, so callers never share state."""

    def __init__(self) -> None:
        self._data: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, session_id: str) -> Session | None:
        with self._lock:
            s = self._data.get(session_id)
        return None if s is None else Session.from_json(s)

    def put(self, session: Session) -> None:
        blob = session.to_json()
        with self._lock:
            self._data[session.session_id] = blob

    def delete(self, session_id: str) -> None:
        with self._lock:
            self._data.pop(session_id, None)

    def new(self, user_id: str | None = None, history: list[str] | None = None) -> Session:
        s = Session(user_id=user_id, history=list(history or []))
        self.put(s)
        return s

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def update(self, session_id: str, fn) -> Session:
        """Atomically read-modify-write one session: `fn(session)` mutates it in place."""
        with self._lock:
            blob = self._data.get(session_id)
            if blob is None:
                raise KeyError(f"no session {session_id!r}")
            s = Session.from_json(blob)
            fn(s)
            self._data[session_id] = s.to_json()
        return s
