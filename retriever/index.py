"""The Chroma item index: item vectors + filterable metadata, rebuilt atomically, tied to one model.

- One code path for an embedded ``chromadb.PersistentClient(path)`` and a real server through
  ``chromadb.HttpClient``: pick it with :class:`IndexConfig.backend`.
- Chroma never embeds anything here: collections are created with ``embedding_function=None`` and
  every write/query passes vectors explicitly (Chroma's default function would download a model).
- :meth:`ItemIndex.build` writes a *new* collection ``<prefix>-<model>-<timestamp>-<rand>`` in
  batches, and only when it is complete moves the alias to it: the alias is one record in a small
  pointer collection ``<prefix>-alias`` (stored in Chroma itself, so it works over HTTP too); then
  the old collection is deleted. A crash mid-build leaves the old index serving.
- The alias records the model version, checkpoint, dim and build time; :meth:`ItemIndex.query`
  refuses vectors of another model version or dimension (mixing models gives silent garbage).
- Filters: :func:`constraints_to_where` turns critique constraints into a Chroma ``where`` dict;
  :meth:`ItemIndex.query` applies it inside Chroma (``filter_strategy="where"``) or over-fetches and
  filters in Python (``"python"``, same `where` evaluated by :func:`where_matches`);
  :func:`compare_filter_strategies` times both and checks that they agree. Chroma's pre-filter is
  slow for a filter that keeps nearly everything (measured at 1e5 items: ~370 ms per "not HP" query
  vs ~5 ms for the Python path), so "auto" post-filters exclusion-only filters. The Python path
  fetches only ~1.5x k rows with metadata for those (growing x4 when too few pass) and caches the
  collection's item count (reset by build/upsert/delete/refresh) instead of asking Chroma per query.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from lumenrec.data.types import Catalog, Item
from lumenrec.errors import ConfigError, ItemIndexError, MissingExtraError

__all__ = [
    "IndexConfig",
    "ItemIndex",
    "constraints_to_where",
    "where_matches",
    "item_metadata",
    "compare_filter_strategies",
]

log = logging.getLogger(__name__)

_ALIAS_SUFFIX = "-alias"
_ALIAS_ID = "active"
_STRATEGIES = ("auto", "where", "python")
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,60}[a-zA-Z0-9]$")


@dataclass
class IndexConfig:
    """Where the index lives and how it measures similarity."""

    # "persistent": embedded Chroma in a local directory (no server); "http": a running `chroma run` server.
    backend: str = "persistent"
    # Directory of the embedded store (backend="persistent").
    path: str | None = None
    # Server address (backend="http"); 127.0.0.1:8000 is `chroma run`'s default port.
    host: str = "127.0.0.1"
    port: int = 8000
    ssl: bool = False
    # Extra HTTP headers, e.g. an auth token for a hosted server.
    headers: dict[str, str] = field(default_factory=dict)
    # Names every collection of this index; several indexes can share one store under different prefixes.
    collection_prefix: str = "lumenrec-items"
    # "cosine" for normalised text/ILM vectors; "ip" when vector norms carry meaning.
    distance: str = "cosine"
    # When set, queries without an explicit model_version are checked against it.
    model_version: str | None = None
    # Rows per Chroma write: big enough to amortise round-trips, below Chroma's max batch size.
    batch_size: int = 1000
    # HNSW recall/speed knobs; Chroma's defaults (100/100) give ~exact top-10 at 1e5 items.
    ef_construction: int = 100
    ef_search: int = 100
    # Category levels stored as cat0..cat{n-1} (plus the leaf as "category") for filtering.
    category_levels: int = 3
    # Over-fetch factor of the Python filter path for include/price filters: fetch k*factor, filter,
    # grow x4 until k found.
    overfetch: int = 4
    # First over-fetch factor for exclusion-only filters ($nin/$ne, e.g. "not HP"): they drop few items,
    # and each fetched row costs a metadata read, so start small (k=10 -> 15 rows) and grow x4 if needed.
    exclusion_overfetch: float = 1.5
    # Default filter path of query(). "auto": Python post-filtering for exclusion-only filters (they drop
    # few items, so a small over-fetch suffices; measured at 1e5 synthetic items, 2-core Xeon: Chroma's
    # `where` pre-filter p50 365 ms per query, the Python path a few ms), Chroma's `where` for
    # include/price filters (selective: over-fetching could scan everything).
    filter_strategy: str = "auto"

    def __post_init__(self) -> None:
        if self.backend not in ("persistent", "http"):
            raise ConfigError("backend", self.backend, "must be 'persistent' or 'http'")
        if self.backend == "persistent" and not self.path:
            raise ConfigError("path", self.path, "backend='persistent' needs a directory path")
        if self.backend == "http" and not (0 < int(self.port) < 65536):
            raise ConfigError("port", self.port, "must be in 1..65535")
        if self.filter_strategy not in _STRATEGIES:
            raise ConfigError("filter_strategy", self.filter_strategy, f"must be one of {_STRATEGIES}")
        if self.distance not in ("cosine", "ip"):
            raise ConfigError("distance", self.distance, "must be 'cosine' or 'ip'")
        if not _NAME_RE.match(self.collection_prefix + "-x"):
            raise ConfigError("collection_prefix", self.collection_prefix,
                              "must be 2-50 characters of letters, digits, '.', '_' or '-', starting with a letter or digit")
        if len(self.collection_prefix) > 50:
            raise ConfigError("collection_prefix", self.collection_prefix, "must be at most 50 characters")
        for name in ("batch_size", "ef_construction", "ef_search", "category_levels", "overfetch"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(name, getattr(self, name), "must be >= 1")
        if not float(self.exclusion_overfetch) >= 1.0:
            raise ConfigError("exclusion_overfetch", self.exclusion_overfetch, "must be >= 1")


# ------------------------------------------------------------------------------------------------
# metadata and filters
# ------------------------------------------------------------------------------------------------
def item_metadata(item: Item, model_version: str, category_levels: int = 3) -> dict[str, Any]:
    """Chroma metadata of one item. Every key but price is always present ("" when unknown), so
    `$nin`/`$ne` filters keep items with unknown brand; price is only set when known, so a price
    bound drops items without one."""
    md: dict[str, Any] = {"brand": item.brand or "", "model_version": model_version, "category": item.category}
    for lvl in range(category_levels):
        md[f"cat{lvl}"] = item.categories[lvl] if lvl < len(item.categories) else ""
    if item.price is not None:
        md["price"] = float(item.price)
    return md


def constraints_to_where(include_brands: Sequence[str] | None = None, exclude_brands: Sequence[str] | None = None,
                         include_categories: Sequence[str] | None = None, exclude_categories: Sequence[str] | None = None,
                         max_price: float | None = None, min_price: float | None = None,
                         *, category_levels: int = 3) -> dict[str, Any] | None:
    """A Chroma `where` dict for these constraints (None when there are none).

    Brands match exactly. A category matches an item when it equals any stored level
    (cat0..cat{n-1}) or the leaf category, so "Pens" and "Office Products" both work.
    """
    clauses: list[dict[str, Any]] = []
    cat_keys = [f"cat{i}" for i in range(category_levels)] + ["category"]
    if include_brands:
        clauses.append({"brand": {"$in": [str(b) for b in include_brands]}})
    if exclude_brands:
        clauses.append({"brand": {"$nin": [str(b) for b in exclude_brands]}})
    if include_categories:
        cats = [str(c) for c in include_categories]
        clauses.append({"$or": [{k: {"$in": cats}} for k in cat_keys]})
    if exclude_categories:
        cats = [str(c) for c in exclude_categories]
        clauses.extend({k: {"$nin": cats}} for k in cat_keys)
    if max_price is not None and min_price is not None and float(min_price) > float(max_price):
        raise ValueError(f"min_price {min_price} is above max_price {max_price}")
    if max_price is not None:
        clauses.append({"price": {"$lte": float(max_price)}})
    if min_price is not None:
        clauses.append({"price": {"$gte": float(min_price)}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


_CMP = {
    "$eq": lambda v, x: v == x, "$ne": lambda v, x: v != x,
    "$gt": lambda v, x: v > x, "$gte": lambda v, x: v >= x,
    "$lt": lambda v, x: v < x, "$lte": lambda v, x: v <= x,
    "$in": lambda v, x: v in x, "$nin": lambda v, x: v not in x,
}


def _exclusion_only(where: dict[str, Any] | None) -> bool:
    """True when `where` only removes items ($nin/$ne joined by $and): few items fail it."""
    if not where:
        return False
    for key, cond in where.items():
        if key == "$and":
            if not all(_exclusion_only(c) for c in cond):
                return False
        elif key.startswith("$") or not isinstance(cond, dict) or not set(cond) <= {"$nin", "$ne"}:
            return False
    return True


def where_matches(where: dict[str, Any] | None, metadata: dict[str, Any]) -> bool:
    """Evaluate a Chroma `where` dict against one metadata dict, in Python, with Chroma's semantics
    (a comparison on a missing key is false, `$ne`/`$nin` included)."""
    if not where:
        return True
    for key, cond in where.items():
        if key == "$and":
            if not all(where_matches(c, metadata) for c in cond):
                return False
        elif key == "$or":
            if not any(where_matches(c, metadata) for c in cond):
                return False
        else:
            if key not in metadata or metadata[key] is None:
                return False
            value = metadata[key]
            ops = cond if isinstance(cond, dict) else {"$eq": cond}
            for op, x in ops.items():
                fn = _CMP.get(op)
                if fn is None:
                    raise ValueError(f"unsupported where operator {op!r} on key {key!r}")
                try:
                    if not fn(value, x):
                        return False
                except TypeError:  # e.g. str <= float: Chroma treats a type mismatch as no match
                    return False
    return True


# ------------------------------------------------------------------------------------------------
# the index
# ------------------------------------------------------------------------------------------------
def _chroma():
    try:
        import chromadb
        from chromadb.config import Settings
    except ImportError as e:  # chromadb is a core dependency, but keep the message clear
        raise MissingExtraError("chromadb", "all", "the item index") from e
    return chromadb, Settings


def _write_batch(collection: Any, ids: list[str], vectors: np.ndarray, metadatas: list[dict], documents: list[str]) -> None:
    """One Chroma write (upsert, so a retried batch is harmless). Module-level so tests can fail it."""
    collection.upsert(ids=ids, embeddings=vectors, metadatas=metadatas, documents=documents)


_UUID_RX = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _slug(s: str, n: int = 24) -> str:
    out = re.sub(r"[^a-zA-Z0-9]+", "-", s).strip("-").lower()
    return (out[:n].strip("-") or "model")


class ItemIndex:
    """Item vectors in Chroma behind an alias. Create it, `build()` once, then `query()`."""

    def __init__(self, config: IndexConfig) -> None:
        self.config = config
        self._client: Any = None
        self._active: dict[str, Any] | None = None  # the alias record, cached
        self._collection: Any = None  # the active collection handle, cached
        # Item count of the active collection, cached: col.count() is a store round trip per query.
        # Reset by refresh() (hence build()), upsert() and delete(); a stale value only caps n_results.
        self._count: int | None = None

    # -- connection ------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            chromadb, Settings = _chroma()
            settings = Settings(anonymized_telemetry=False, allow_reset=False)
            c = self.config
            if c.backend == "persistent":
                self._client = chromadb.PersistentClient(path=str(c.path), settings=settings)
            else:
                try:
                    self._client = chromadb.HttpClient(host=c.host, port=int(c.port), ssl=c.ssl,
                                                       headers=dict(c.headers) or None, settings=settings)
                except Exception as e:  # the client pings the server on creation
                    raise ItemIndexError(f"cannot reach the Chroma server at {c.host}:{c.port}: {e}") from e
        return self._client

    @property
    def alias_name(self) -> str:
        return self.config.collection_prefix + _ALIAS_SUFFIX

    def _alias_collection(self) -> Any:
        return self.client.get_or_create_collection(self.alias_name, embedding_function=None,
                                                    metadata={"lumenrec": "alias"})

    def _read_alias(self) -> dict[str, Any] | None:
        """The alias record, or None when this store has no index yet (reading never creates anything)."""
        if self.config.backend == "persistent" and self._client is None and not Path(self.config.path).is_dir():
            return None
        try:
            alias = self.client.get_collection(self.alias_name, embedding_function=None)
        except Exception as e:  # chromadb.errors.NotFoundError (its class moved between versions)
            if "does not exist" in str(e) or "NotFound" in type(e).__name__:
                return None
            raise
        got = alias.get(ids=[_ALIAS_ID], include=["metadatas"])
        if not got["ids"]:
            return None
        return dict(got["metadatas"][0])

    def refresh(self) -> None:
        """Forget the cached alias/collection/count (another process may have rebuilt or changed the index)."""
        self._active, self._collection, self._count = None, None, None

    def _item_count(self, col: Any) -> int:
        """Items in the active collection (cached; see `_count`)."""
        if self._count is None:
            self._count = int(col.count())
        return self._count

    def _state(self) -> tuple[dict[str, Any], Any]:
        """The alias record and the active collection, or ItemIndexError when nothing was built."""
        if self._collection is None:
            active = self._read_alias()
            if active is None:
                where = self.config.path if self.config.backend == "persistent" else f"{self.config.host}:{self.config.port}"
                raise ItemIndexError(f"no item index {self.config.collection_prefix!r} at {where}; "
                                     "build one first (`lumenrec index build`)")
            try:
                self._collection = self.client.get_collection(active["collection"], embedding_function=None)
            except Exception as e:
                raise ItemIndexError(f"the alias points to collection {active['collection']!r}, which is missing: {e}") from e
            self._active = active
        return self._active, self._collection  # type: ignore[return-value]

    @property
    def exists(self) -> bool:
        try:
            self._state()
            return True
        except ItemIndexError:
            return False

    # -- build -----------------------------------------------------------------------------------
    def build(self, catalog: Catalog, vectors: np.ndarray, model_version: str, *, checkpoint: str | None = None,
              progress: bool = True) -> dict[str, Any]:
        """Write all items into a new collection, then switch the alias to it and drop the old one.

        vectors: (N, d) aligned with `catalog`. Returns :meth:`info` of the new index.
        """
        vectors = self._check_vectors(vectors, len(catalog), "vectors")
        if not model_version or not isinstance(model_version, str):
            raise ValueError(f"model_version must be a non-empty string, got {model_version!r}")
        c = self.config
        now = datetime.now(timezone.utc)
        name = f"{c.collection_prefix}-{_slug(model_version)}-{now:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
        dim = int(vectors.shape[1])
        record = {"collection": name, "model_version": model_version, "checkpoint": checkpoint or "",
                  "built_at": now.isoformat(timespec="seconds"), "dim": dim, "distance": c.distance,
                  "count": len(catalog)}
        old = self._read_alias()
        col = self.client.create_collection(
            name, embedding_function=None, metadata={"lumenrec": "items", "state": "building"},
            configuration={"hnsw": {"space": c.distance, "ef_construction": c.ef_construction, "ef_search": c.ef_search}},
        )
        t0 = time.perf_counter()
        try:
            bs = min(c.batch_size, int(self.client.get_max_batch_size()))
            starts = range(0, len(catalog), bs)
            for s in tqdm(starts, desc=f"indexing {len(catalog)} items", unit="batch", disable=not progress):
                items = catalog.items[s : s + bs]
                _write_batch(col, [it.id for it in items], vectors[s : s + bs],
                             [item_metadata(it, model_version, c.category_levels) for it in items],
                             [it.title or it.id for it in items])
            got = col.count()
            if got != len(catalog):
                raise ItemIndexError(f"collection {name!r} holds {got} items after the build, expected {len(catalog)}")
        except BaseException:
            log.warning("index build into %s failed; the previous index (if any) stays active", name)
            try:
                self.client.delete_collection(name)
            except Exception as e:  # best effort: a leftover collection is only wasted space
                log.warning("could not delete the partial collection %s: %s", name, e)
            raise
        # The switch: one upsert of one record. Before it, readers see the old collection; after, the new.
        self._alias_collection().upsert(ids=[_ALIAS_ID], embeddings=[[1.0]], metadatas=[record], documents=[name])
        log.info("index %s built in %.1fs (%d items, dim %d, model %s)", name, time.perf_counter() - t0,
                 len(catalog), dim, model_version)
        if old and old.get("collection") and old["collection"] != name:
            try:
                self.client.delete_collection(old["collection"])
            except Exception as e:
                log.warning("could not delete the previous collection %s: %s", old["collection"], e)
            self._remove_orphan_segments()
        self.refresh()
        return self.info()

    def _remove_orphan_segments(self) -> list[str]:
        """Delete the vector-segment folders no collection uses any more (embedded store only).

        Chroma's delete_collection drops a collection from its database but leaves its HNSW folder on
        disk (chroma-core/chroma#5259: file removal is left to a garbage collector the embedded client
        does not run), so every rebuild kept the previous index's vectors: 336 MB at 1e5 items. A folder
        is removed only when its name is a segment id and the database lists no such segment.
        Returns the removed folder names.
        """
        if self.config.backend != "persistent":
            return []
        import shutil
        import sqlite3

        root = Path(self.config.path)
        db = root / "chroma.sqlite3"
        if not db.is_file():
            return []
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                live = {str(r[0]) for r in con.execute("SELECT id FROM segments")}
            finally:
                con.close()
        except sqlite3.Error as e:  # another Chroma layout: leave the files alone
            log.warning("could not read the segment list of %s (%s); no folders removed", db, e)
            return []
        removed = []
        for d in root.iterdir():
            if d.is_dir() and _UUID_RX.fullmatch(d.name) and d.name not in live:
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d.name)
        if removed:
            log.info("removed %d folder(s) of deleted collections from %s", len(removed), root)
        return removed

    # -- incremental updates ---------------------------------------------------------------------
    def upsert(self, items: Sequence[Item] | Catalog, vectors: np.ndarray, *, model_version: str | None = None) -> None:
        """Add or replace items in the active index (vectors (n, d) from the index's own model)."""
        active, col = self._state()
        items = list(items)
        vectors = self._check_vectors(vectors, len(items), "vectors")
        self._check_model(active, vectors.shape[1], model_version)
        bs = min(self.config.batch_size, int(self.client.get_max_batch_size()))
        for s in range(0, len(items), bs):
            chunk = items[s : s + bs]
            _write_batch(col, [it.id for it in chunk], vectors[s : s + bs],
                         [item_metadata(it, active["model_version"], self.config.category_levels) for it in chunk],
                         [it.title or it.id for it in chunk])
            self._count = None  # after every batch: a failed later batch must not leave a stale count

    def delete(self, ids: Iterable[str]) -> None:
        """Remove items by id from the active index (unknown ids are ignored)."""
        ids = [str(i) for i in ids]
        if ids:
            _, col = self._state()
            try:
                col.delete(ids=ids)
            finally:
                self._count = None

    # -- query -----------------------------------------------------------------------------------
    def query(self, vectors: np.ndarray, k: int = 10, *, where: dict[str, Any] | None = None,
              exclude_ids: Sequence[str] | Sequence[Sequence[str]] | None = None, model_version: str | None = None,
              filter_strategy: str | None = None):
        """Top-`k` ids and scores (higher is better) for one vector (d,) or a batch (B, d).

        One vector -> (ids, scores (<=k,)); a batch -> (list of id lists, scores (B, k), -inf padded),
        like BaseRetriever.retrieve. `exclude_ids`: one list for all queries or one list per query.
        `filter_strategy`: "where" filters inside Chroma; "python" over-fetches and filters here;
        "auto" picks (see IndexConfig.filter_strategy); None: the config's choice.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        filter_strategy = filter_strategy or self.config.filter_strategy
        if filter_strategy not in _STRATEGIES:
            raise ValueError(f"filter_strategy must be one of {_STRATEGIES}, got {filter_strategy!r}")
        if filter_strategy == "auto":
            filter_strategy = "python" if _exclusion_only(where) else "where"
        q = np.asarray(vectors, dtype=np.float32)
        single = q.ndim == 1
        q = q[None, :] if single else q  # (B, d)
        if q.ndim != 2 or q.shape[0] == 0:
            raise ValueError(f"query vectors must be (d,) or (B, d) with B >= 1, got {np.shape(vectors)}")
        if not np.all(np.isfinite(q)):
            raise ValueError("query vectors contain NaN or inf")
        active, col = self._state()
        self._check_model(active, q.shape[1], model_version)
        excl = self._per_query_excludes(exclude_ids, len(q))
        try:
            if filter_strategy == "where":
                ids, scores = self._query_where(col, q, k, where, excl)
            else:
                ids, scores = self._query_python(col, q, k, where, excl)
        except ItemIndexError:
            raise
        except Exception as e:
            if "does not exist" in str(e) or "NotFound" in type(e).__name__:
                # rebuilt by another process since we cached the handle: re-read the alias once
                self.refresh()
                active, col = self._state()
                self._check_model(active, q.shape[1], model_version)
                fn = self._query_where if filter_strategy == "where" else self._query_python
                ids, scores = fn(col, q, k, where, excl)
            else:
                raise ItemIndexError(f"Chroma query failed on {active['collection']!r}: {e}") from e
        if single:
            return ids[0], scores[0, : len(ids[0])]
        return ids, scores

    def _query_where(self, col, q, k, where, excl):
        n_excl = max((len(e) for e in excl), default=0)
        res = col.query(query_embeddings=q, n_results=k + n_excl, where=where, include=["distances"])
        return self._collect(res, k, excl, None)

    def _query_python(self, col, q, k, where, excl):
        n = self._item_count(col)
        n_excl = max((len(e) for e in excl), default=0)
        want = k + n_excl
        if not where:
            factor = 1.0
        elif _exclusion_only(where):
            factor = float(self.config.exclusion_overfetch)
        else:
            factor = float(self.config.overfetch)
        fetch = min(n, int(np.ceil(want * factor)))
        while True:
            res = col.query(query_embeddings=q, n_results=max(fetch, 1),
                            include=["distances", "metadatas"] if where else ["distances"])
            ids, scores = self._collect(res, k, excl, where)
            # exhausted: asked for everything, or the store had fewer rows than asked (stale cached count)
            exhausted = fetch >= n or any(len(r) < fetch for r in res["ids"])
            if exhausted or all(len(r) >= k for r in ids):
                return ids, scores
            fetch = min(n, fetch * 4)  # not enough passed the filter: look deeper

    @staticmethod
    def _collect(res, k, excl, where):
        B = len(res["ids"])
        out_ids: list[list[str]] = []
        scores = np.full((B, k), -np.inf, dtype=np.float64)  # (B, k)
        for b in range(B):
            drop = excl[b]
            row_ids, row_scores = [], []
            mds = res["metadatas"][b] if where is not None else None
            for j, (i, d) in enumerate(zip(res["ids"][b], res["distances"][b])):
                if i in drop or (mds is not None and not where_matches(where, mds[j] or {})):
                    continue
                row_ids.append(i)
                row_scores.append(1.0 - float(d))  # cosine: 1-cos; ip: 1-dot -> score = cos / dot
                if len(row_ids) == k:
                    break
            out_ids.append(row_ids)
            scores[b, : len(row_scores)] = row_scores
        return out_ids, scores

    @contextlib.contextmanager
    def reporting_failures(self):
        """Any failure talking to Chroma becomes an ItemIndexError, and the handle is refreshed, so the next
        call re-reads the alias and reconnects: a server that comes back is used again without a restart."""
        try:
            yield
        except ItemIndexError:
            self.refresh()
            raise
        except Exception as e:  # connection refused, timeouts, ...: one clear error type
            self.refresh()
            raise ItemIndexError(f"the item index is unreachable: {type(e).__name__}: {e}") from e

    def get_documents(self, ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """id -> (document text (the title), metadata) for display."""
        if not ids:
            return {}
        _, col = self._state()
        got = col.get(ids=list(ids), include=["documents", "metadatas"])
        return {i: (d or "", dict(m or {})) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"])}

    # -- info ------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Collection name, item count, model version, checkpoint, build time, dim, disk size."""
        active, col = self._state()
        disk = None
        if self.config.backend == "persistent":
            disk = sum(p.stat().st_size for p in Path(self.config.path).rglob("*") if p.is_file())
        return {
            "collection": active["collection"],
            "count": int(col.count()),
            "model_version": active["model_version"],
            "checkpoint": active.get("checkpoint") or None,
            "built_at": active["built_at"],
            "dim": int(active["dim"]),
            "distance": active.get("distance", self.config.distance),
            "backend": self.config.backend,
            "disk_bytes": disk,  # the whole store directory; None for a remote server
        }

    # -- checks ----------------------------------------------------------------------------------
    @staticmethod
    def _check_vectors(vectors: np.ndarray, n: int, name: str) -> np.ndarray:
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[0] != n or v.shape[1] < 1:
            raise ValueError(f"{name} must have shape ({n}, d), got {np.shape(vectors)}")
        if not np.all(np.isfinite(v)):
            bad = int(np.flatnonzero(~np.isfinite(v).all(axis=1))[0])
            raise ValueError(f"{name} row {bad} contains NaN or inf")
        return v

    def _check_model(self, active: dict[str, Any], dim: int, model_version: str | None) -> None:
        mv = model_version if model_version is not None else self.config.model_version
        if mv is not None and mv != active["model_version"]:
            raise ItemIndexError(f"index {active['collection']!r} was built by model {active['model_version']!r} "
                                 f"(checkpoint {active.get('checkpoint') or '-'}); refusing vectors from {mv!r}. "
                                 "Rebuild the index with this model or query with its own vectors.")
        if int(dim) != int(active["dim"]):
            raise ItemIndexError(f"index {active['collection']!r} holds {active['dim']}-d vectors "
                                 f"(model {active['model_version']!r}); got {dim}-d vectors")

    @staticmethod
    def _per_query_excludes(exclude_ids, B: int) -> list[set[str]]:
        if not exclude_ids:
            return [set() for _ in range(B)]
        ex = list(exclude_ids)
        if all(isinstance(e, str) for e in ex):
            s = set(ex)
            return [s for _ in range(B)]
        if len(ex) != B:
            raise ValueError(f"exclude_ids has {len(ex)} lists for {B} queries")
        return [set(map(str, e)) for e in ex]


def compare_filter_strategies(index: ItemIndex, vectors: np.ndarray, k: int = 10, *, where: dict[str, Any] | None,
                              repeats: int = 3) -> dict[str, Any]:
    """Time Chroma-side `where` filtering against over-fetch + Python filtering on the same queries.

    vectors: (B, d), queried one at a time (the serving pattern). Returns median ms per query for
    each strategy and whether the two returned the same ids (`agree`, plus the fraction `overlap`,
    since HNSW is approximate and a pre-filtered search may visit other nodes than a post-filtered one).
    """
    q = np.asarray(vectors, dtype=np.float32)
    q = q[None, :] if q.ndim == 1 else q  # (B, d)
    results: dict[str, list[list[str]]] = {}
    timings: dict[str, float] = {}
    for strategy in ("where", "python"):
        best = []
        for r in range(repeats):
            per, got = [], []
            for row in q:
                t = time.perf_counter()
                ids, _ = index.query(row, k, where=where, filter_strategy=strategy)
                per.append(time.perf_counter() - t)
                got.append(ids)
            best.append(float(np.median(per)) * 1e3)
            results[strategy] = got
        timings[strategy] = min(best)
    same = [a == b for a, b in zip(results["where"], results["python"])]
    overlap = [len(set(a) & set(b)) / max(len(a), len(b), 1) for a, b in zip(results["where"], results["python"])]
    return {"where_ms": timings["where"], "python_ms": timings["python"], "agree": all(same),
            "agree_fraction": float(np.mean(same)), "overlap": float(np.mean(overlap)), "queries": len(q), "k": k,
            "faster": "where" if timings["where"] <= timings["python"] else "python"}
