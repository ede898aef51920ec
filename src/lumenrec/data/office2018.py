"""Loader for the ``amazon-office-2018`` directory (Amazon 2018 Office Products, LC-Rec-style split).

Files (as shipped in ../shared/data/amazon-office-2018):

- ``Office_Products.item.json``: ``{"<int id>": {"title", "description", "brand", "categories"}}``,
  the shape of the 2014 benchmark ``*.item.json``, except that ``description`` is the *string form
  of a Python list* (``"['first paragraph', ...]"``) and ``categories`` is empty for every item;
- ``items.tsv``: ``<semantic id>\\t<title>\\t<int id>`` per item (semantic ids like
  ``<a_60><b_159><c_203>``, kept in ``info["splits"].semantic_ids``);
- ``valid.csv`` / ``test.csv``: one row per evaluation case with columns ``user_id,
  history_item_title, item_title, history_item_id, item_id, history_item_sid, item_sid``, where
  ``history_item_id`` is a Python list literal of int ids (the last <= 10 items before the target).
  There is no train file.

Sequences are rebuilt per user by chaining the rows of valid then test (file order): each row's
history must be a suffix of what was rebuilt so far, and its target is appended. The part of a
user's sequence before their first row's (truncated) history is not in these files, so rebuilt
sequences are shorter than the original ones. The official cases are kept as
:class:`~lumenrec.data.split.EvalSet` s in ``Dataset.info["splits"]`` (an :class:`Office2018Splits`).
"""

from __future__ import annotations

import ast
import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lumenrec.data.amazon_raw import _html_text, parse_price, skip_info
from lumenrec.data.io import LoadReport, json_error_place, line_of_key
from lumenrec.data.split import EvalSet
from lumenrec.data.types import Catalog, Dataset, Interactions, Item, UserSequence
from lumenrec.errors import DataFormatError, DataNotFoundError

__all__ = ["Office2018Splits", "is_office2018_dir", "load_office2018"]

log = logging.getLogger(__name__)

_CSV_COLUMNS = ("user_id", "history_item_id", "item_id")


@dataclass(repr=False)
class Office2018Splits:
    """The official valid/test cases (catalogue indices) and each item's semantic id."""

    valid: EvalSet
    test: EvalSet
    semantic_ids: list[str] = field(default_factory=list)  # per catalogue index; '' when unknown

    def __repr__(self) -> str:  # short: `lumenrec data info` prints Dataset.info with str()
        return f"Office2018Splits(valid={len(self.valid)} cases, test={len(self.test)} cases, semantic_ids={len(self.semantic_ids)})"

    __str__ = __repr__


def is_office2018_dir(directory: Path) -> bool:
    return bool(list(directory.glob("*.item.json"))) and ((directory / "valid.csv").exists()
                                                          or (directory / "test.csv").exists())


def _description(v: Any) -> str:
    if isinstance(v, str) and v.startswith("[") and v.endswith("]"):
        try:
            v = ast.literal_eval(v)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
    return _html_text(v)


def _read_rows(path: Path, skip_bad: bool, report: LoadReport) -> list[tuple[int, str, list[str], str]]:
    """(line, user, history ids, target id) per CSV row; bad rows raise or are reported."""
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in _CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataFormatError(str(path), 1, f"missing columns {missing} (header: {reader.fieldnames})")
        while True:
            try:
                r = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                if not skip_bad:
                    raise DataFormatError(str(path), reader.line_num, f"bad CSV: {e}") from e
                report.skip(reader.line_num, f"bad CSV: {e}")
                continue
            line = reader.line_num
            try:
                hist = ast.literal_eval(r["history_item_id"] or "")
                if not isinstance(hist, list) or not all(isinstance(x, (int, str)) for x in hist):
                    raise ValueError("not a list of ids")
                target = str(r["item_id"]).strip()
                if not target or not r["user_id"]:
                    raise ValueError("empty user_id or item_id")
            except (ValueError, SyntaxError, TypeError) as e:
                reason = f"field 'history_item_id'/'item_id': {e}"
                if not skip_bad:
                    raise DataFormatError(str(path), line, reason) from e
                report.skip(line, reason)
                continue
            report.records += 1
            rows.append((line, r["user_id"], [str(x) for x in hist], target))
    return rows


def load_office2018(directory: str | Path, *, skip_bad: bool = False) -> Dataset:
    """Load the office-2018 directory (see the module docstring) into a Dataset."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataNotFoundError(f"{directory}: not a directory")
    item_files = sorted(directory.glob("*.item.json"))
    if len(item_files) != 1:
        raise DataFormatError(str(directory), None, f"expected one *.item.json file, found {[p.name for p in item_files]}")
    item_path = item_files[0]
    name = item_path.name[: -len(".item.json")]
    text = item_path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFormatError(str(item_path), json_error_place(e), f"invalid JSON: {e.msg} (column {e.colno})") from e
    if not isinstance(raw, dict):
        raise DataFormatError(str(item_path), 1, "expected an object mapping item id -> item record")
    item_report = LoadReport(str(item_path))
    items: dict[str, Item] = {}
    for item_id, rec in raw.items():
        try:
            if not isinstance(rec, dict):
                raise ValueError(f"item {item_id!r} is a {type(rec).__name__}, expected an object")
            cats = rec.get("categories") or []
            cats = [c.strip() for c in cats.split(", ") if c.strip()] if isinstance(cats, str) else [str(c) for c in cats]
            items[str(item_id)] = Item(id=str(item_id), title=_html_text(rec.get("title")) or f"item {item_id}",
                                       brand=_html_text(rec.get("brand")), categories=cats,
                                       description=_description(rec.get("description")),
                                       price=parse_price(rec.get("price")))
            item_report.records += 1
        except (ValueError, TypeError) as e:
            line = line_of_key(text, str(item_id))
            if not skip_bad:
                raise DataFormatError(str(item_path), line, str(e)) from e
            item_report.skip(line, str(e))

    reports = [item_report]
    split_rows: dict[str, list] = {}
    for split in ("valid", "test"):
        p = directory / f"{split}.csv"
        rep = LoadReport(str(p))
        reports.append(rep)
        split_rows[split] = _read_rows(p, skip_bad, rep) if p.exists() else []

    missing = 0
    for rows in split_rows.values():
        for _, _, hist, target in rows:
            for x in [*hist, target]:
                if x not in items:
                    items[x] = Item(id=x, title=f"item {x}")
                    missing += 1
    ids = list(items)
    if all(i.isdigit() for i in ids):
        ids.sort(key=int)
    catalog = Catalog(items[i] for i in ids)

    # Rebuild each user's sequence by chaining the rows (valid first, then test).
    seqs: dict[str, list[str]] = {}
    inconsistent = 0
    for split in ("valid", "test"):
        rep = reports[1 if split == "valid" else 2]
        for line, user, hist, target in split_rows[split]:
            cur = seqs.get(user)
            if cur is None:
                seqs[user] = [*hist, target]
            elif not hist or cur[-len(hist):] == hist:
                cur.append(target)
            else:
                reason = f"user {user!r}: history is not a suffix of the user's earlier rows"
                if not skip_bad:
                    raise DataFormatError(rep.path, line, reason, field="history_item_id")
                rep.skip(line, reason)
                inconsistent += 1

    evals = {}
    for split in ("valid", "test"):
        es = EvalSet()
        es.users = [u for _, u, _, _ in split_rows[split]]
        es.histories = [catalog.indices_of(h) for _, _, h, _ in split_rows[split]]
        es.targets = np.asarray([catalog.index_of(t) for _, _, _, t in split_rows[split]], dtype=np.int64)
        evals[split] = es
    sids = [""] * len(catalog)
    tsv = directory / "items.tsv"
    if tsv.exists():
        with open(tsv, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 3 and parts[-1] in catalog:
                    sids[catalog.index_of(parts[-1])] = parts[0]
                elif line.strip():
                    if not skip_bad:
                        raise DataFormatError(str(tsv), lineno, "expected '<semantic id>\\t<title>\\t<item id>' with a known item id")
                    tsv_rep = LoadReport(str(tsv))
                    tsv_rep.skip(lineno, "bad items.tsv row")
                    reports.append(tsv_rep)

    sequences = [UserSequence(u, [catalog.index_of(x) for x in s]) for u, s in seqs.items()]
    info = {"source": str(directory), "format": "office-2018-lcrec", "items_without_metadata": missing,
            "splits": Office2018Splits(evals["valid"], evals["test"], sids),
            "note": "sequences rebuilt from valid/test rows; items before a user's first row are not in the files",
            **skip_info(reports)}
    return Dataset(name=f"{name}-2018", catalog=catalog, interactions=Interactions(sequences, len(catalog)), info=info)
