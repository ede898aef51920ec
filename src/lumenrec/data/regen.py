"""Loader for the REGEN release (Reviews Enhanced with GEnerative Narratives, Sayana et al. 2024).

One user per JSON line. The fields confirmed by public loaders of the Kaggle release
(``googleai/regen-reviews-enhanced-with-generative-narratives``, files such as
``regen/REGEN/office.jsonl``) are::

    {"reviewer_id": "...",
     "purchase_history": [
        {"item":   {"asin", "title", "category": "A - B - C", "price"},
         "review": {"summary", "rating", "text", "unix_time"}}, ...],
     "user": {"long_summary": "...", ...},
     ...}

Where the critiques and the narratives live is NOT confirmed, so every field is looked up through
a :class:`RegenFieldMap`: each field has a list of candidate paths, tried in order, the first one
present wins, and every list can be overridden. A path is dotted keys with optional ``[i]``
indices (``"user.long_summary"``, ``"purchase_history[-1].critique"``). Narrative paths starting
with ``target.`` are looked up in the target (last) purchase entry.

Nothing is dropped: record fields no path used go to ``Conversation.meta``; the unused siblings
of a used narrative field (e.g. ``user.short_summary`` when ``user.long_summary`` was the user
summary) go to ``Narratives.extra`` under their dotted path; unused fields of purchase entries go to
``Conversation.meta["purchase_extra"]`` keyed by purchase position.

Conversations: history = the purchases before the last (chronological by ``unix_time``, stable),
target = the last purchase, ``previous_item`` = the one before it. The target purchase's critique
becomes the final ``Turn(kind="critique")``; critiques of earlier purchases become
``Turn(kind="past_critique")`` so that :attr:`Conversation.critique` is always the target's own.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from lumenrec.data.amazon_raw import k_core, parse_price, skip_info
from lumenrec.data.io import LoadReport, iter_records
from lumenrec.data.types import (
    Catalog,
    Conversation,
    Dataset,
    Interactions,
    Item,
    Narratives,
    Turn,
    UserSequence,
    clean_text,
)
from lumenrec.errors import ConfigError, DataFormatError, DataNotFoundError

__all__ = ["RegenFieldMap", "load_regen", "parse_regen_record", "get_path"]

log = logging.getLogger(__name__)

_MISSING = object()
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")


def _paths(*p: str) -> tuple[str, ...]:
    return tuple(p)


@dataclass
class RegenFieldMap:
    """Candidate paths for every REGEN field (first present wins). Override any of them.

    Record-level paths are relative to the user's JSON object; purchase-level ones (``item_*``,
    ``rating``, ``review_*``, ``timestamp``, ``critique``) to one ``purchase_history`` entry.
    Narrative paths are record-level, or relative to the target purchase with a ``target.`` prefix.
    """

    # --- record level (confirmed: reviewer_id, purchase_history)
    user_id: tuple[str, ...] = _paths("reviewer_id", "user_id")
    purchases: tuple[str, ...] = _paths("purchase_history")
    # --- purchase level (confirmed: item.{asin,title,category,price}, review.{summary,rating,text,unix_time})
    item_id: tuple[str, ...] = _paths("item.asin", "asin")
    item_title: tuple[str, ...] = _paths("item.title", "title")
    item_category: tuple[str, ...] = _paths("item.category", "category")
    item_price: tuple[str, ...] = _paths("item.price", "price")
    item_brand: tuple[str, ...] = _paths("item.brand", "brand")
    item_description: tuple[str, ...] = _paths("item.description", "description")
    rating: tuple[str, ...] = _paths("review.rating", "rating")
    review_text: tuple[str, ...] = _paths("review.text", "text")
    review_summary: tuple[str, ...] = _paths("review.summary", "summary")
    timestamp: tuple[str, ...] = _paths("review.unix_time", "unix_time", "review.unixReviewTime")
    # --- not confirmed: the critique that led to this purchase
    critique: tuple[str, ...] = _paths("critique", "review.critique", "item.critique")
    # --- not confirmed: narratives (user summary: `user.long_summary` is confirmed to exist)
    purchase_reason: tuple[str, ...] = _paths(
        "target.purchase_reason", "target.narratives.purchase_reason", "purchase_reason",
        "narratives.purchase_reason", "last_purchase.purchase_reason")
    endorsement: tuple[str, ...] = _paths(
        "target.endorsement", "target.product_endorsement", "target.narratives.endorsement",
        "endorsement", "product_endorsement", "narratives.endorsement", "narratives.product_endorsement",
        "last_purchase.endorsement", "last_purchase.product_endorsement")
    user_summary: tuple[str, ...] = _paths(
        "user_summary", "narratives.user_summary", "user.long_summary", "user.short_summary", "user.summary")
    # The separator of the category path string ("Office Products - Office & School Supplies - ...").
    category_sep: str = " - "

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "category_sep":
                if not isinstance(v, str) or not v:
                    raise ConfigError(f.name, v, "must be a non-empty string")
                continue
            if isinstance(v, str):  # allow a single path
                v = (v,)
                setattr(self, f.name, v)
            if not isinstance(v, (tuple, list)) or not v or not all(isinstance(p, str) and p for p in v):
                raise ConfigError(f.name, v, "must be a non-empty list of field paths like 'item.asin'")
            for p in v:
                _split(p, f.name)
            setattr(self, f.name, tuple(v))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RegenFieldMap":
        """Overrides from a dict (e.g. a JSON file); unknown keys raise ConfigError naming them."""
        known = {f.name for f in fields(cls)}
        for k in d:
            if k not in known:
                raise ConfigError(k, d[k], f"not a RegenFieldMap field (known: {sorted(known)})")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


def _split(path: str, fieldname: str = "path") -> list[str | int]:
    segs: list[str | int] = []
    pos = 0
    for m in _SEGMENT.finditer(path):
        if m.start() != pos and path[pos:m.start()] != ".":
            raise ConfigError(fieldname, path, "is not a field path like 'item.asin' or 'purchase_history[-1].critique'")
        segs.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if pos != len(path) or not segs:
        raise ConfigError(fieldname, path, "is not a field path like 'item.asin' or 'purchase_history[-1].critique'")
    return segs


def get_path(obj: Any, path: str) -> Any:
    """The value at a dotted/indexed path, or the module's ``_MISSING`` sentinel when absent."""
    cur = obj
    for seg in _split(path):
        if isinstance(seg, int):
            if not isinstance(cur, list) or not -len(cur) <= seg < len(cur):
                return _MISSING
            cur = cur[seg]
        else:
            if not isinstance(cur, dict) or seg not in cur:
                return _MISSING
            cur = cur[seg]
    return cur


def _first(obj: Any, paths: tuple[str, ...]) -> tuple[str | None, Any]:
    for p in paths:
        v = get_path(obj, p)
        if v is not _MISSING and v is not None:
            return p, v
    return None, _MISSING


def _leftovers(obj: dict[str, Any], used: set[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split the fields of `obj` no used path covers into (whole top-level keys, dotted sub-keys).

    A top-level key that some used path goes *through* (e.g. ``user`` for ``user.long_summary``)
    contributes its unused sub-keys (``user.short_summary``); an untouched key is kept whole.
    """
    whole, partial = {}, {}
    for k, v in obj.items():
        if k in used or v is None:
            continue
        inner = {u[len(k) + 1:] for u in used if u.startswith(k + ".")}
        if not inner:
            whole[k] = v
        elif isinstance(v, dict):
            for sk, sv in v.items():
                if sv is not None and sk not in inner and not any(i.startswith(sk + ".") for i in inner):
                    partial[f"{k}.{sk}"] = sv
    return whole, partial


def _str_field(v: Any, fieldname: str) -> str:
    if isinstance(v, (dict, list)):
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return clean_text(v)
        raise DataFormatError("", None, f"expected text, got {type(v).__name__}", field=fieldname)
    return clean_text(v)


def parse_regen_record(obj: Any, fm: RegenFieldMap) -> dict[str, Any]:
    """Check and extract one REGEN user record. Raises DataFormatError(field=<path>) on the first misfit."""
    def bad(fieldname: str, reason: str) -> DataFormatError:
        return DataFormatError("", None, reason, field=fieldname)

    if not isinstance(obj, dict):
        raise bad("<record>", f"expected a JSON object, got {type(obj).__name__}")
    used: set[str] = set()
    up, user = _first(obj, fm.user_id)
    if up is None:
        raise bad(fm.user_id[0], f"missing (looked for {list(fm.user_id)})")
    if not isinstance(user, (str, int)) or isinstance(user, bool) or str(user) == "":
        raise bad(up, f"must be a non-empty string, got {user!r}")
    used.add(up)
    pp, purchases = _first(obj, fm.purchases)
    if pp is None:
        raise bad(fm.purchases[0], f"missing (looked for {list(fm.purchases)})")
    if not isinstance(purchases, list) or not purchases:
        raise bad(pp, "must be a non-empty list of purchases")
    used.add(pp)

    rows = []
    n_with_time = 0
    for i, pe in enumerate(purchases):
        where = f"{pp}[{i}]"
        if not isinstance(pe, dict):
            raise bad(where, f"expected an object, got {type(pe).__name__}")
        pused: set[str] = set()

        def take(paths: tuple[str, ...], what: str, required: bool = False) -> Any:
            p, v = _first(pe, paths)
            if p is None:
                if required:
                    raise bad(f"{where}.{paths[0]}", f"missing {what} (looked for {list(paths)})")
                return None
            pused.add(p)
            return p, v

        ip, asin = take(fm.item_id, "item id", required=True)
        if not isinstance(asin, (str, int)) or isinstance(asin, bool) or str(asin) == "":
            raise bad(f"{where}.{ip}", f"must be a non-empty string, got {asin!r}")
        row: dict[str, Any] = {"item": str(asin)}
        for key, paths in (("title", fm.item_title), ("brand", fm.item_brand),
                           ("description", fm.item_description), ("text", fm.review_text),
                           ("summary", fm.review_summary), ("critique", fm.critique)):
            got = take(paths, key)
            row[key] = "" if got is None else _str_field(got[1], f"{where}.{got[0]}")
        got = take(fm.item_category, "category")
        if got is None:
            row["categories"] = []
        elif isinstance(got[1], str):
            row["categories"] = [c.strip() for c in got[1].split(fm.category_sep) if c.strip()]
        elif isinstance(got[1], list) and all(isinstance(c, str) for c in got[1]):
            row["categories"] = [clean_text(c) for c in got[1] if c.strip()]
        else:
            raise bad(f"{where}.{got[0]}", f"must be a category path string or list, got {type(got[1]).__name__}")
        got = take(fm.item_price, "price")
        row["price"] = None if got is None else parse_price(got[1])
        got = take(fm.rating, "rating")
        if got is None:
            row["rating"] = math.nan
        else:
            try:
                row["rating"] = float(got[1])
            except (TypeError, ValueError):
                raise bad(f"{where}.{got[0]}", f"must be a number, got {got[1]!r}") from None
        got = take(fm.timestamp, "timestamp")
        if got is None:
            row["time"] = None
        else:
            try:
                if isinstance(got[1], bool):
                    raise TypeError
                row["time"] = int(got[1])
                n_with_time += 1
            except (TypeError, ValueError):
                raise bad(f"{where}.{got[0]}", f"must be an integer unix time, got {got[1]!r}") from None
        row["_pe"], row["_used"] = pe, pused
        rows.append(row)
    if 0 < n_with_time < len(rows):
        i = next(i for i, r in enumerate(rows) if r["time"] is None)
        raise bad(f"{pp}[{i}].{fm.timestamp[0]}", "missing while other purchases of this user have one")
    if n_with_time:
        rows.sort(key=lambda r: r["time"])  # stable: equal times keep file order
    target_entry = rows[-1]["_pe"]

    nar: dict[str, str] = {}
    nar_containers: set[str] = set()
    for kind in ("purchase_reason", "endorsement", "user_summary"):
        for p in getattr(fm, kind):
            if p.startswith("target."):
                v = get_path(target_entry, p[len("target."):])
                if v is not _MISSING and v is not None:
                    rows[-1]["_used"].add(p[len("target."):])
                    nar[kind] = _str_field(v, f"{pp}[{len(rows) - 1}].{p[len('target.'):]}")
                    break
            else:
                v = get_path(obj, p)
                if v is not _MISSING and v is not None:
                    used.add(p)
                    if "." in p:
                        nar_containers.add(p.split(".")[0].split("[")[0])
                    nar[kind] = _str_field(v, p)
                    break

    whole, partial = _leftovers(obj, used)
    extra = {k: v for k, v in partial.items() if k.split(".")[0] in nar_containers}
    meta = dict(whole)
    meta.update({k: v for k, v in partial.items() if k not in extra})
    purchase_extra = {}
    for i, r in enumerate(rows):
        w, pt = _leftovers(r["_pe"], r["_used"])
        if w or pt:
            purchase_extra[i] = {**w, **pt}
    if purchase_extra:
        meta["purchase_extra"] = purchase_extra
    for r in rows:
        del r["_pe"], r["_used"]
    return {"user": str(user), "rows": rows, "has_time": bool(n_with_time),
            "narratives": Narratives(**nar, extra=extra), "meta": meta}


def load_regen(path: str | Path, field_map: RegenFieldMap | None = None, *, skip_bad: bool = False,
               k: int = 0, name: str | None = None) -> Dataset:
    """Load a REGEN JSON-lines file into a Dataset with one Conversation per user.

    `k` > 0 applies :func:`~lumenrec.data.amazon_raw.k_core` (off by default: REGEN is built on
    the 5-core data already). A record that does not fit raises DataFormatError at the file:line
    of the first such record, naming the field path; with `skip_bad` it is skipped and counted in
    ``info["skipped"]`` / ``info["skipped_reasons"]`` / ``info["skipped_detail"]``.
    """
    fm = field_map or RegenFieldMap()
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(f"{path}: no such REGEN file")
    report = LoadReport(str(path))
    seen_users: dict[str, int] = {}

    def parse(line: str, lineno: int) -> dict[str, Any]:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(str(path), lineno, f"invalid JSON: {e.msg} (column {e.colno})") from e
        try:
            rec = parse_regen_record(obj, fm)
        except DataFormatError as e:
            raise DataFormatError(str(path), lineno, e.reason, field=e.field) from e
        if rec["user"] in seen_users:
            raise DataFormatError(str(path), lineno, f"duplicate user id {rec['user']!r} (first on line "
                                                     f"{seen_users[rec['user']]})", field=fm.user_id[0])
        seen_users[rec["user"]] = lineno
        return rec

    records = list(iter_records(path, parse, skip_bad=skip_bad, report=report))

    items: dict[str, Item] = {}
    no_title = 0
    for rec in records:
        for r in rec["rows"]:
            it = items.get(r["item"])
            if it is None:
                items[r["item"]] = Item(id=r["item"], title=r["title"], brand=r["brand"], categories=r["categories"],
                                        description=r["description"], price=r["price"])
            else:  # fill what the first appearance lacked
                it.title = it.title or r["title"]
                it.brand = it.brand or r["brand"]
                it.categories = it.categories or r["categories"]
                it.description = it.description or r["description"]
                it.price = it.price if it.price is not None else r["price"]
    for it in items.values():
        if not it.title:
            it.title = f"item {it.id}"
            no_title += 1
    catalog = Catalog(items.values())
    seqs, convs = [], []
    for rec in records:
        rows = rec["rows"]
        seqs.append(UserSequence(
            user_id=rec["user"],
            items=[catalog.index_of(r["item"]) for r in rows],
            timestamps=[r["time"] for r in rows] if rec["has_time"] else None,
            ratings=[r["rating"] for r in rows],
            reviews=[r["text"] for r in rows],
        ))
        turns = [Turn("user", r["critique"], kind="past_critique") for r in rows[:-1] if r["critique"]]
        if rows[-1]["critique"]:
            turns.append(Turn("user", rows[-1]["critique"], kind="critique"))
        history = [r["item"] for r in rows[:-1]]
        convs.append(Conversation(
            user_id=rec["user"], history=history, turns=turns, target=rows[-1]["item"],
            narratives=rec["narratives"], previous_item=history[-1] if history else None, meta=rec["meta"],
        ))
    info = {"source": str(path), "format": "regen", "items_without_title": no_title,
            "conversations_with_critique": sum(1 for c in convs if c.critique), **skip_info([report])}
    ds = Dataset(name=name or f"regen-{path.name.split('.')[0]}", catalog=catalog,
                 interactions=Interactions(seqs, len(catalog)), conversations=convs, info=info)
    if k > 0:
        ds = k_core(ds, k)
    return ds
