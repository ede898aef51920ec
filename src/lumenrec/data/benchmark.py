"""Loaders for the sequential-benchmark JSON pair and the regen-office-dev conversations.

Benchmark pair (the format of ``amazon-*-2014/`` in the shared data):

- ``<Name>.inter.json``: ``{"<user>": [item, item, ...], ...}``, chronological, item ids as ints
  or strings;
- ``<Name>.item.json`` (optional): ``{"<item>": {"title", "description", "brand",
  "categories"}}`` where ``categories`` is one ``", "``-joined category path; optional extra keys
  ``price`` and ``attributes`` (an object of strings) are read too (the synthetic store writes them);
- ``<Name>.time.json`` (optional): ``{"<user>": [unix seconds, ...]}`` aligned with the sequences.

Conversations (``regen-office-dev/conversations.jsonl``): one JSON object per line with
``user_id, history, previous_item, target, turns, narratives`` and optional extras (kept in
``Conversation.meta``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from lumenrec.data.io import LoadReport, iter_records, line_of_key
from lumenrec.data.types import (
    NARRATIVE_KINDS,
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
from lumenrec.errors import DataFormatError, DataNotFoundError

__all__ = ["load_benchmark_pair", "load_conversations", "parse_conversation", "find_pair_name"]

log = logging.getLogger(__name__)


def find_pair_name(directory: Path) -> str:
    """The `<Name>` of the single `<Name>.inter.json` in `directory`."""
    names = sorted(p.name[: -len(".inter.json")] for p in directory.glob("*.inter.json"))
    if not names:
        raise DataNotFoundError(f"{directory}: no <Name>.inter.json file")
    if len(names) > 1:
        raise DataFormatError(str(directory), None, f"several .inter.json files ({names}); pass name=")
    return names[0]


def _read_json(path: Path) -> tuple[Any, str]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataFormatError(str(path), line, f"not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start})") from e
    try:
        return json.loads(text), text
    except json.JSONDecodeError as e:
        raise DataFormatError(str(path), e.lineno, f"invalid JSON: {e.msg} (column {e.colno})") from e


def _item_from_record(item_id: str, rec: Any) -> Item:
    if not isinstance(rec, dict):
        raise ValueError(f"item {item_id!r} is a {type(rec).__name__}, expected an object")
    cats = rec.get("categories") or ""
    if isinstance(cats, str):
        path = [c.strip() for c in cats.split(", ") if c.strip()]
    elif isinstance(cats, list):
        path = [clean_text(c) for c in (cats[0] if cats and isinstance(cats[0], list) else cats)]
    else:
        raise ValueError(f"item {item_id!r}: 'categories' must be a string or list, got {type(cats).__name__}")
    attrs = rec.get("attributes") or {}  # extra key written by the synthetic store (save_store)
    if not isinstance(attrs, dict):
        raise ValueError(f"item {item_id!r}: 'attributes' must be an object, got {type(attrs).__name__}")
    return Item(
        id=item_id,
        title=clean_text(rec.get("title")),
        brand=clean_text(rec.get("brand")),
        categories=path,
        description=clean_text(rec.get("description")),
        price=_price(rec.get("price")),
        attributes={str(k): str(v) for k, v in attrs.items()},
    )


def _price(v: Any) -> float | None:
    if v in (None, ""):
        return None
    try:
        p = float(str(v).replace("$", "").replace(",", "").strip())
    except ValueError:
        return None
    return p if p >= 0 else None


def load_benchmark_pair(directory: str | Path, name: str | None = None, *, skip_bad: bool = False,
                        report: LoadReport | None = None) -> Dataset:
    """Load `<Name>.inter.json` (+ `<Name>.item.json` when present) from `directory`.

    Items referenced by sequences but absent from the item file get a placeholder title
    ("item <id>") and are counted in ``Dataset.info['items_without_metadata']``.
    Item order: numeric ids ascending when every id is an integer, else first appearance.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataNotFoundError(f"{directory}: not a directory")
    name = name or find_pair_name(directory)
    inter_path = directory / f"{name}.inter.json"
    item_path = directory / f"{name}.item.json"
    report = report if report is not None else LoadReport(str(inter_path))

    raw_inter, inter_text = _read_json(inter_path)
    if not isinstance(raw_inter, dict):
        raise DataFormatError(str(inter_path), 1, "expected an object mapping user id -> list of item ids")
    items: dict[str, Item] = {}
    if item_path.exists():
        raw_items, items_text = _read_json(item_path)
        if not isinstance(raw_items, dict):
            raise DataFormatError(str(item_path), 1, "expected an object mapping item id -> item record")
        for item_id, rec in raw_items.items():
            try:
                items[str(item_id)] = _item_from_record(str(item_id), rec)
            except ValueError as e:
                line = line_of_key(items_text, str(item_id))
                if not skip_bad:
                    raise DataFormatError(str(item_path), line, str(e)) from e
                report.skip(line, str(e))

    seqs: list[tuple[str, list[str]]] = []
    for user_id, seq in raw_inter.items():
        if not isinstance(seq, list) or not all(isinstance(x, (int, str)) and not isinstance(x, bool) for x in seq):
            line = line_of_key(inter_text, str(user_id))
            reason = f"user {user_id!r}: expected a list of item ids"
            if not skip_bad:
                raise DataFormatError(str(inter_path), line, reason)
            report.skip(line, reason)
            continue
        seqs.append((str(user_id), [str(x) for x in seq]))
        report.records += 1

    missing = 0
    seen: dict[str, None] = dict.fromkeys(items)
    for _, seq in seqs:
        for x in seq:
            if x not in seen:
                seen[x] = None
                items[x] = Item(id=x, title=f"item {x}")
                missing += 1
    ids = list(seen)
    if all(i.isdigit() for i in ids):
        ids.sort(key=int)
    catalog = Catalog(items[i] for i in ids)
    sequences = [UserSequence(u, [catalog.index_of(x) for x in seq]) for u, seq in seqs]
    time_path = directory / f"{name}.time.json"  # optional: {"<user>": [unix seconds, ...]} aligned to inter
    if time_path.exists():
        _attach_timestamps(sequences, time_path)
    if missing and item_path.exists():
        log.warning("%s: %d items in sequences have no metadata in %s", inter_path, missing, item_path.name)
    return Dataset(
        name=name,
        catalog=catalog,
        interactions=Interactions(sequences, len(catalog)),
        info={"source": str(directory), "format": "benchmark-pair", "items_without_metadata": missing,
              "skipped": report.num_skipped},
    )


def _attach_timestamps(sequences: list[UserSequence], time_path: Path) -> None:
    """Set each sequence's timestamps from `<Name>.time.json` (every user must be there, same lengths)."""
    raw, text = _read_json(time_path)
    if not isinstance(raw, dict):
        raise DataFormatError(str(time_path), 1, "expected an object mapping user id -> list of timestamps")
    for s in sequences:
        ts = raw.get(s.user_id)
        if not isinstance(ts, list) or len(ts) != len(s.items) or not all(isinstance(t, int) and not isinstance(t, bool) for t in ts):
            raise DataFormatError(str(time_path), line_of_key(text, s.user_id),
                                  f"user {s.user_id!r}: expected {len(s.items)} integer timestamps aligned with the sequence")
        s.timestamps = list(ts)


def parse_conversation(obj: dict[str, Any], catalog: Catalog | None = None) -> Conversation:
    """Build a Conversation from one dev-format record; unknown top-level fields go to `meta`.

    Raises DataFormatError(field=...) naming the first field that does not fit.
    """
    def bad(fieldname: str, reason: str) -> DataFormatError:
        return DataFormatError("", None, reason, field=fieldname)

    if not isinstance(obj, dict):
        raise bad("<record>", f"expected a JSON object, got {type(obj).__name__}")
    for key in ("user_id", "history", "turns"):
        if key not in obj:
            raise bad(key, "missing")
    history = obj["history"]
    if not isinstance(history, list) or not all(isinstance(x, (str, int)) for x in history):
        raise bad("history", "must be a list of item ids")
    history = [str(x) for x in history]
    turns_raw = obj["turns"]
    if not isinstance(turns_raw, list) or not turns_raw:
        raise bad("turns", "must be a non-empty list")
    turns = []
    for i, t in enumerate(turns_raw):
        if not isinstance(t, dict) or not isinstance(t.get("text"), str):
            raise bad(f"turns[{i}]", "must be an object with a string 'text'")
        try:
            turns.append(Turn(role=t.get("role", "user"), text=t["text"], kind=t.get("kind", "message")))
        except ValueError as e:
            raise bad(f"turns[{i}].role", str(e)) from e
    nar = obj.get("narratives") or {}
    if not isinstance(nar, dict):
        raise bad("narratives", "must be an object")
    narratives = Narratives(**{k: str(nar.get(k) or "") for k in NARRATIVE_KINDS},
                            extra={k: v for k, v in nar.items() if k not in NARRATIVE_KINDS})
    target = obj.get("target")
    target = None if target is None else str(target)
    prev = obj.get("previous_item")
    prev = None if prev is None else str(prev)
    if catalog is not None:
        for fieldname, ids in (("history", history), ("target", [target] if target else []),
                               ("previous_item", [prev] if prev else [])):
            for x in ids:
                if x not in catalog:
                    raise bad(fieldname, f"item id {x!r} is not in the catalogue")
    known = {"user_id", "history", "turns", "narratives", "target", "previous_item"}
    return Conversation(
        user_id=str(obj["user_id"]), history=history, turns=turns, target=target,
        narratives=narratives, previous_item=prev, meta={k: v for k, v in obj.items() if k not in known},
    )


def load_conversations(path: str | Path, catalog: Catalog | None = None, *, skip_bad: bool = False,
                       report: LoadReport | None = None) -> list[Conversation]:
    """Load a conversations JSONL file (dev format). With `catalog`, every item id is checked."""
    path = Path(path)

    def parse(line: str, lineno: int) -> Conversation:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(str(path), lineno, f"invalid JSON: {e.msg} (column {e.colno})") from e
        try:
            return parse_conversation(obj, catalog)
        except DataFormatError as e:
            raise DataFormatError(str(path), lineno, e.reason, field=e.field) from e

    return list(iter_records(path, parse, skip_bad=skip_bad, report=report))
