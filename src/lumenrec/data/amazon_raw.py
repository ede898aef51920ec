"""Loaders for the raw Amazon Reviews releases (2014 and 2018), k-core filtering, and format autodetection.

Formats (one record per line, optionally gzipped):

- **2014** (McAuley et al., SNAP): ``reviews_<Cat>_5.json.gz`` holds JSON lines with ``reviewerID,
  asin, overall, reviewText, summary, unixReviewTime``; ``meta_<Cat>.json.gz`` holds *Python dict
  literals* (single quotes) with ``asin, title, brand, price, categories`` (a list of category
  paths, each a list of strings; the first path is used) and ``description``. They are parsed
  with :func:`ast.literal_eval`, never ``eval``.
- **2018** (Ni et al., UCSD): ``<Cat>_5.json.gz`` holds the same review fields plus ``style``
  (per-review product variant; not modelled); ``meta_<Cat>.json.gz`` holds JSON lines with
  ``asin, title, brand, price`` (a ``"$12.99"`` string, sometimes a range or empty),
  ``category`` (one category path) and ``description`` (a list of strings).

A meta line is read as JSON first and as a Python literal second, so either release's meta file
works under either name. Meta lines whose (single, unambiguous) ``asin`` no review mentions are not
parsed at all: the meta file covers the whole category, and only reviewed items are loaded. Sequences are each user's reviews sorted by ``unixReviewTime`` (stable:
ties keep file order). Items reviewed but absent from the meta file are kept with the placeholder
title ``"item <asin>"`` and counted in ``Dataset.info["items_without_metadata"]``.

:func:`load_path` is what :func:`lumenrec.data.registry.load_dataset` calls for any path that is
not a benchmark pair: it recognizes raw Amazon files, the REGEN release (see
:mod:`lumenrec.data.regen`) and the Office-2018 LC-Rec-style directory (see
:mod:`lumenrec.data.office2018`), from the file names and, for JSONL, the first record.
"""

from __future__ import annotations

import ast
import html
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from lumenrec.data.io import LoadReport, iter_records, open_text
from lumenrec.data.types import Catalog, Dataset, Interactions, Item, UserSequence, clean_text
from lumenrec.errors import ConfigError, DataFormatError, DataNotFoundError

__all__ = [
    "AmazonLoadConfig",
    "load_amazon_reviews",
    "parse_review_line",
    "parse_meta_line",
    "item_from_meta",
    "k_core",
    "find_amazon_files",
    "load_path",
    "skip_info",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

_REVIEWS_2014 = re.compile(r"^reviews_(?P<cat>.+?)(?:_5)?\.json(?:\.gz)?$")
_REVIEWS_2018 = re.compile(r"^(?P<cat>[A-Z][A-Za-z_,&-]*?)_5\.json(?:\.gz)?$")
_TAG = re.compile(r"<[^>]*>")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_ASIN = re.compile(r"""['"]asin['"]\s*:\s*['"]([^'"\\]+)['"]""")


@dataclass
class AmazonLoadConfig:
    """How raw Amazon review files become a Dataset."""

    # The "5-core" files are 5-core on the full data; the reviews that survive parsing (and
    # --skip-bad) may break that, and the sequential-recommendation literature re-applies it.
    k: int = 5
    # Keep items that have reviews but no meta record (placeholder title) rather than drop them:
    # dropping would silently shorten sequences.
    keep_items_without_metadata: bool = True
    # Drop repeated (user, item) reviews, keeping the earliest. Off by default: the 5-core files
    # are used as-is by the reference preprocessing.
    dedupe: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or self.k < 0:
            raise ConfigError("k", self.k, "must be an integer >= 0 (0 disables k-core filtering)")


# --------------------------------------------------------------------------- record parsing


def _html_text(v: Any) -> str:
    """Text with HTML tags and entities removed (2018 titles/descriptions carry some markup)."""
    if v is None:
        return ""
    if isinstance(v, list):
        v = " ".join(str(x) for x in v if x is not None)
    s = str(v)
    if "<" in s:
        s = re.sub(r"<!--.*?-->", " ", s, flags=re.S)
        s = _TAG.sub(" ", s)
    return clean_text(html.unescape(s))


def parse_price(v: Any) -> float | None:
    """A price from a number or a ``"$12.99"`` / ``"$1.00 - $3.00"`` string (first number); else None."""
    if v is None or v == "" or isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v) if math.isfinite(v) and v >= 0 else None
    s = str(v)
    if len(s) > 40:  # 2018 meta sometimes has an HTML/JS fragment here instead of a price
        return None
    m = _NUMBER.search(s.replace(",", ""))
    return float(m.group()) if m else None


def parse_review_line(line: str, lineno: int = 0) -> dict[str, Any]:
    """One review JSON line -> ``{user, item, time, rating, text, summary}``; raises on a bad record."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON: {e.msg} (column {e.colno})") from e
    if not isinstance(rec, dict):
        raise TypeError(f"not an object: expected a JSON object, got {type(rec).__name__}")
    for key in ("reviewerID", "asin", "unixReviewTime"):
        if rec.get(key) in (None, ""):
            raise KeyError(key)
    try:
        t = int(rec["unixReviewTime"])
    except (TypeError, ValueError):
        raise ValueError(f"bad field 'unixReviewTime': must be an integer, got {rec['unixReviewTime']!r}") from None
    rating = rec.get("overall")
    if rating is not None:
        try:
            rating = float(rating)
        except (TypeError, ValueError):
            raise ValueError(f"bad field 'overall': must be a number, got {rating!r}") from None
    return {
        "user": str(rec["reviewerID"]),
        "item": str(rec["asin"]),
        "time": t,
        "rating": math.nan if rating is None else rating,
        "text": str(rec.get("reviewText") or ""),
        "summary": str(rec.get("summary") or ""),
    }


def parse_meta_line(line: str, lineno: int = 0) -> dict[str, Any]:
    """One meta line (JSON, or a Python dict literal as in the 2014 release) -> dict."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as je:
        try:
            rec = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
            raise ValueError(f"invalid record: neither JSON ({je.msg}) nor a Python dict literal ({type(e).__name__})") from None
    if not isinstance(rec, dict):
        raise TypeError(f"not an object: expected an object / dict, got {type(rec).__name__}")
    if rec.get("asin") in (None, ""):
        raise KeyError("asin")
    return rec


def item_from_meta(rec: dict[str, Any]) -> Item:
    """An Item from a 2014 or 2018 meta record (``categories`` list-of-paths or ``category`` path)."""
    asin = str(rec["asin"])
    path: list[str] = []
    cats = rec.get("categories")
    if cats is None:
        cats = rec.get("category")
    if isinstance(cats, list) and cats:
        first = cats[0] if isinstance(cats[0], list) else cats  # 2014: list of paths; 2018: one path
        path = [c for c in (_html_text(x) for x in first) if c]
    elif isinstance(cats, str) and cats.strip():
        path = [c.strip() for c in re.split(r" - |, |>", cats) if c.strip()]
    title = _html_text(rec.get("title"))
    return Item(
        id=asin,
        title=title or f"item {asin}",
        brand=_html_text(rec.get("brand")),
        categories=path,
        description=_html_text(rec.get("description")),
        price=parse_price(rec.get("price")),
    )


def located(path: Path | str, parse: Callable[[str, int], T] | None = None):
    """Wrap a line parser so its errors become DataFormatError at ``path:lineno`` with a short reason
    (the part before the first ':' is what ``LoadReport.reasons()`` groups by). Usable as a decorator."""
    def wrap(fn: Callable[[str, int], T]) -> Callable[[str, int], T]:
        def parse_located(line: str, lineno: int) -> T:
            try:
                return fn(line, lineno)
            except DataFormatError:
                raise
            except KeyError as e:
                raise DataFormatError(str(path), lineno, f"missing field {e.args[0]!r}") from e
            except (ValueError, TypeError, AttributeError) as e:
                raise DataFormatError(str(path), lineno, str(e)) from e
        return parse_located
    return wrap(parse) if parse is not None else wrap


# --------------------------------------------------------------------------- building


def skip_info(reports: Iterable[LoadReport]) -> dict[str, Any]:
    """The ``Dataset.info`` entries describing skipped records: count, reasons, file:line detail."""
    reports = list(reports)
    reasons: dict[str, int] = {}
    detail: list[str] = []
    for r in reports:
        for k, v in r.reasons().items():
            reasons[k] = reasons.get(k, 0) + v
        detail.extend(f"{r.path}:{ln}: {why}" if ln is not None else f"{r.path}: {why}" for ln, why in r.skipped)
    return {"skipped": len(detail), "skipped_reasons": reasons, "skipped_detail": detail}


def build_dataset(name: str, events: dict[str, list[dict[str, Any]]], items: dict[str, Item],
                  info: dict[str, Any]) -> Dataset:
    """Catalog (first-appearance order) and chronological sequences from per-user review events."""
    order: dict[str, None] = {}
    for evs in events.values():
        for e in evs:
            order.setdefault(e["item"], None)
    catalog = Catalog(items[i] for i in order)
    seqs = []
    for user, evs in events.items():
        evs = sorted(evs, key=lambda e: e["time"])  # stable: ties keep file order
        seqs.append(UserSequence(
            user_id=user,
            items=[catalog.index_of(e["item"]) for e in evs],
            timestamps=[int(e["time"]) for e in evs],
            ratings=[float(e["rating"]) for e in evs],
            reviews=[e["text"] for e in evs],
        ))
    return Dataset(name=name, catalog=catalog, interactions=Interactions(seqs, len(catalog)), info=info)


def k_core(dataset: Dataset, k: int = 5) -> Dataset:
    """Iteratively keep users and items with at least `k` interactions (until nothing changes).

    Returns a new Dataset whose catalogue holds only the surviving items (original order kept)
    and whose sequences are re-indexed; aligned timestamps/ratings/reviews follow their items.
    Conversations of dropped users, or naming a dropped item, are dropped (counted in info).
    """
    if not isinstance(k, int) or k < 0:
        raise ConfigError("k", k, "must be an integer >= 0")
    seqs = [(s.user_id, list(zip(s.items, *(getattr(s, f) or [None] * len(s) for f in ("timestamps", "ratings", "reviews")))))
            for s in dataset.interactions]
    rounds = 0
    while True:
        rounds += 1
        counts: dict[int, int] = {}
        for _, evs in seqs:
            for e in evs:
                counts[e[0]] = counts.get(e[0], 0) + 1
        new = []
        for u, evs in seqs:
            kept = [e for e in evs if counts[e[0]] >= k]
            if len(kept) >= k:
                new.append((u, kept))
        changed = len(new) != len(seqs) or any(len(a[1]) != len(b[1]) for a, b in zip(new, seqs))
        seqs = new
        if not changed:
            break
    alive = sorted({e[0] for _, evs in seqs for e in evs})
    remap = {old: new for new, old in enumerate(alive)}
    catalog = Catalog(dataset.catalog[i] for i in alive)
    out_seqs = []
    for (u, evs), src in zip(seqs, (dataset.interactions.user(u) for u, _ in seqs)):
        out_seqs.append(UserSequence(
            user_id=u,
            items=[remap[e[0]] for e in evs],
            timestamps=[e[1] for e in evs] if src.timestamps is not None else None,
            ratings=[e[2] for e in evs] if src.ratings is not None else None,
            reviews=[e[3] for e in evs] if src.reviews is not None else None,
        ))
    users = {u for u, _ in seqs}
    convs = [c for c in dataset.conversations
             if c.user_id in users and all(x in catalog for x in [*c.history, *([c.target] if c.target else [])])]
    info = dict(dataset.info)
    info["k_core"] = {
        "k": k, "rounds": rounds,
        "users_before": len(dataset.interactions), "users_after": len(out_seqs),
        "items_before": len(dataset.catalog), "items_after": len(catalog),
        "interactions_before": dataset.interactions.num_interactions,
        "interactions_after": sum(len(s) for s in out_seqs),
        "conversations_dropped": len(dataset.conversations) - len(convs),
    }
    return Dataset(name=dataset.name, catalog=catalog, interactions=Interactions(out_seqs, len(catalog)),
                   conversations=convs, info=info)


def _category_of(reviews_path: Path) -> tuple[str, str]:
    """(category, release) from a reviews file name: 'reviews_X_5.json.gz' is 2014, 'X_5.json.gz' 2018."""
    m = _REVIEWS_2014.match(reviews_path.name)
    if m:
        return m.group("cat"), "2014"
    m = _REVIEWS_2018.match(reviews_path.name)
    if m:
        return m.group("cat"), "2018"
    return re.sub(r"\.json(l)?(\.gz)?$", "", reviews_path.name), "unknown"


def _meta_beside(reviews_path: Path) -> Path | None:
    cat, _ = _category_of(reviews_path)
    for name in (f"meta_{cat}.json.gz", f"meta_{cat}.json", f"meta_{cat}.jsonl.gz", f"meta_{cat}.jsonl"):
        if (reviews_path.parent / name).exists():
            return reviews_path.parent / name
    return None


def load_amazon_reviews(reviews_path: str | Path, meta_path: str | Path | None = None, *,
                        config: AmazonLoadConfig | None = None, skip_bad: bool = False,
                        name: str | None = None) -> Dataset:
    """Load a raw Amazon 2014/2018 reviews file (+ its meta file, found beside it when not given).

    Applies :func:`k_core` with ``config.k`` (default 5; 0 disables). With `skip_bad`, malformed
    lines are skipped and described in ``info["skipped"]``, ``info["skipped_reasons"]`` and
    ``info["skipped_detail"]`` (``file:line: reason``); otherwise the first one raises
    DataFormatError at ``file:line``.
    """
    config = config or AmazonLoadConfig()
    reviews_path = Path(reviews_path)
    if not reviews_path.exists():
        raise DataNotFoundError(f"{reviews_path}: no such reviews file")
    meta = Path(meta_path) if meta_path is not None else _meta_beside(reviews_path)
    cat, release = _category_of(reviews_path)

    rep_reviews = LoadReport(str(reviews_path))
    events: dict[str, list[dict[str, Any]]] = {}
    for ev in iter_records(reviews_path, located(reviews_path, parse_review_line), skip_bad=skip_bad, report=rep_reviews):
        events.setdefault(ev["user"], []).append(ev)
    duplicates = 0
    if config.dedupe:  # keep the earliest review of each (user, item)
        for u, evs in events.items():
            evs.sort(key=lambda e: e["time"])
            seen: set[str] = set()
            kept = [e for e in evs if not (e["item"] in seen or seen.add(e["item"]))]
            duplicates += len(evs) - len(kept)
            events[u] = kept
    needed = {e["item"] for evs in events.values() for e in evs}

    reports = [rep_reviews]
    items: dict[str, Item] = {}
    if meta is not None:
        rep_meta = LoadReport(str(meta))
        reports.append(rep_meta)

        @located(meta)
        def parse_meta(line: str, lineno: int) -> Item | None:
            # cheap pre-filter: most meta lines are items nobody reviewed (only when unambiguous)
            found = _ASIN.findall(line)
            if len(found) == 1 and found[0] not in needed:
                return None
            rec = parse_meta_line(line, lineno)
            if str(rec["asin"]) not in needed:
                return None  # the meta file covers the whole category; keep only reviewed items
            return item_from_meta(rec)

        for it in iter_records(meta, parse_meta, skip_bad=skip_bad, report=rep_meta):
            if it is not None and it.id not in items:
                items[it.id] = it
    else:
        log.warning("%s: no meta_%s.json(.gz) beside it; items get placeholder titles", reviews_path, cat)
    missing = sorted(needed - items.keys())
    if missing and not config.keep_items_without_metadata:
        drop = set(missing)
        events = {u: [e for e in evs if e["item"] not in drop] for u, evs in events.items()}
        events = {u: evs for u, evs in events.items() if evs}
    else:
        for asin in missing:
            items[asin] = Item(id=asin, title=f"item {asin}")
    if missing:
        log.info("%s: %d reviewed items have no meta record", reviews_path.name, len(missing))
    info: dict[str, Any] = {
        "source": str(reviews_path), "meta": str(meta) if meta else None,
        "format": f"amazon-{release}", "category": cat,
        "items_without_metadata": len(missing), "items_without_metadata_kept": config.keep_items_without_metadata,
        "duplicates_dropped": duplicates,
        **skip_info(reports),
    }
    ds = build_dataset(name or f"{cat}-{release}", events, items, info)
    if config.k > 0:
        ds = k_core(ds, config.k)
    return ds


# --------------------------------------------------------------------------- autodetection


def find_amazon_files(directory: Path) -> list[Path]:
    """The raw review files in `directory` (2014 ``reviews_*`` and 2018 ``<Cat>_5`` names)."""
    out = []
    for p in sorted(directory.iterdir()):
        if not p.is_file() or p.name.startswith("meta_") or p.name.endswith(".part"):
            continue
        if _REVIEWS_2014.match(p.name) or _REVIEWS_2018.match(p.name):
            out.append(p)
    return out


def _first_record(path: Path) -> Any:
    """The first non-blank line of a JSON-lines file, parsed; None when it is not JSON."""
    try:
        with open_text(path) as f:
            for line in f:
                if line.strip():
                    return json.loads(line)
    except (ValueError, OSError, EOFError):
        return None
    return None


def _is_regen(path: Path) -> bool:
    rec = _first_record(path)
    return isinstance(rec, dict) and ("purchase_history" in rec or "reviewer_id" in rec)


def _is_dev_conversations(path: Path) -> bool:
    rec = _first_record(path)
    return isinstance(rec, dict) and "turns" in rec and "history" in rec


def load_path(path: str | Path, *, skip_bad: bool = False, config: AmazonLoadConfig | None = None) -> Dataset:
    """Load a dataset from a file or directory, detecting its format (see the module docstring).

    Recognized: a benchmark pair directory (``*.inter.json``); the Office-2018 LC-Rec layout
    (``*.item.json`` + ``valid.csv``/``test.csv``); raw Amazon 2014/2018 review files (+ meta);
    REGEN JSON lines (``*.jsonl``/``*.json`` whose records have ``purchase_history``).
    """
    p = Path(path)
    if not p.exists():
        raise DataNotFoundError(f"{p}: no such file or directory")
    if p.is_dir():
        if list(p.glob("*.inter.json")):
            from lumenrec.data.benchmark import load_benchmark_pair

            return load_benchmark_pair(p, skip_bad=skip_bad)
        from lumenrec.data import office2018

        if office2018.is_office2018_dir(p):
            return office2018.load_office2018(p, skip_bad=skip_bad)
        reviews = find_amazon_files(p)
        if len(reviews) == 1:
            return load_amazon_reviews(reviews[0], config=config, skip_bad=skip_bad)
        if len(reviews) > 1:
            raise DataFormatError(str(p), None, f"several review files ({[r.name for r in reviews]}); "
                                                "pass one of them as the path")
        regen = [f for f in sorted(p.rglob("*.json*")) if f.is_file() and not f.name.startswith("meta_")
                 and not f.name.endswith(".part") and _is_regen(f)]
        if len(regen) == 1:
            from lumenrec.data.regen import load_regen

            return load_regen(regen[0], skip_bad=skip_bad)
        if len(regen) > 1:
            raise DataFormatError(str(p), None, f"several REGEN files ({[str(r.relative_to(p)) for r in regen]}); "
                                                "pass one of them as the path")
        names = sorted(x.name for x in p.iterdir())[:20]
        raise DataFormatError(str(p), None, "no supported dataset files found (expected *.inter.json, "
                                            "reviews_<Cat>_5.json.gz / <Cat>_5.json.gz + meta_<Cat>.json.gz, "
                                            f"a REGEN .jsonl, or the office-2018 layout); found {names}")
    # a single file
    if p.name.startswith("meta_"):
        raise DataFormatError(str(p), None, "this is a meta file; pass the reviews file (meta is found beside it)")
    if _REVIEWS_2014.match(p.name) or _REVIEWS_2018.match(p.name):
        return load_amazon_reviews(p, config=config, skip_bad=skip_bad)
    if p.name.endswith(".inter.json"):
        from lumenrec.data.benchmark import load_benchmark_pair

        return load_benchmark_pair(p.parent, p.name[: -len(".inter.json")], skip_bad=skip_bad)
    if _is_regen(p):
        from lumenrec.data.regen import load_regen

        return load_regen(p, skip_bad=skip_bad)
    rec = _first_record(p)
    if isinstance(rec, dict) and {"reviewerID", "asin"} <= rec.keys():
        return load_amazon_reviews(p, config=config, skip_bad=skip_bad)
    raise DataFormatError(str(p), 1, "unrecognized format: not raw Amazon reviews (reviewerID, asin, ...) "
                                     "nor REGEN (reviewer_id, purchase_history, ...)")
