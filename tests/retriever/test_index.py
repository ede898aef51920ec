"""The Chroma item index: build/query/upsert/delete, filters, atomic rebuild, model-version guard.

The suite runs against the embedded store ("persistent") and a REAL `chroma run` server ("http",
marked integration), through the same ItemIndex code path.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from lumenrec.data import Item
from lumenrec.errors import ConfigError, ItemIndexError
from lumenrec.retriever import index as index_mod
from lumenrec.retriever.index import (IndexConfig, ItemIndex, compare_filter_strategies, constraints_to_where,
                                      where_matches)

# Hand-made 4-d vectors for the tiny catalogue: pens on axis 0, notes on axis 1, ink on axis 2.
_RAW = {"p1": [1, 0, 0, 0], "p2": [0.9, 0.1, 0, 0.1], "n1": [0, 1, 0, 0], "n2": [0, 0.9, 0.1, 0.1],
        "t1": [0, 0, 1, 0], "t2": [0.1, 0, 0.9, 0.1]}


def _vectors(catalog) -> np.ndarray:
    v = np.array([_RAW[i] for i in catalog.ids], dtype=np.float32)  # (6, 4)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


INK = np.array([0, 0, 1, 0], dtype=np.float32)
PEN = np.array([1, 0, 0, 0], dtype=np.float32)


# -- a real Chroma server ------------------------------------------------------------------------


@pytest.fixture(params=["persistent", pytest.param("http", marks=pytest.mark.integration)])
def make_config(request, tmp_path):
    """A factory of IndexConfig for one backend; each test gets its own collection prefix."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    if request.param == "http":
        port = request.getfixturevalue("chroma_server")

        def make(**kw):
            return IndexConfig(backend="http", host="127.0.0.1", port=port, collection_prefix=prefix, **kw)
    else:
        def make(**kw):
            return IndexConfig(backend="persistent", path=str(tmp_path / "chroma"), collection_prefix=prefix, **kw)
    return make


@pytest.fixture
def built(make_config, tiny_catalog):
    idx = ItemIndex(make_config(batch_size=2))
    idx.build(tiny_catalog, _vectors(tiny_catalog), "test-v1", checkpoint="ckpt/one", progress=False)
    return idx


# -- build / query -------------------------------------------------------------------------------
def test_build_records_model_and_checkpoint(built, tiny_catalog):
    info = built.info()
    assert info["count"] == len(tiny_catalog) and info["dim"] == 4
    assert info["model_version"] == "test-v1" and info["checkpoint"] == "ckpt/one"
    assert info["collection"].startswith(built.config.collection_prefix + "-test-v1-")
    assert info["built_at"]
    if built.config.backend == "persistent":
        assert info["disk_bytes"] > 0


def test_query_known_nearest_neighbour_single_and_batch(built):
    ids, scores = built.query(INK, k=3)
    assert ids[:2] == ["t1", "t2"] and len(ids) == 3
    assert scores[0] == pytest.approx(1.0, abs=1e-5) and scores[0] >= scores[1] >= scores[2]
    bids, bscores = built.query(np.stack([INK, PEN]), k=2)
    assert bids == [["t1", "t2"], ["p1", "p2"]] and bscores.shape == (2, 2)


def test_query_more_than_count_and_exclude_ids(built):
    ids, scores = built.query(INK, k=50)
    assert sorted(ids) == sorted(["p1", "p2", "n1", "n2", "t1", "t2"]) and len(scores) == 6
    ids, _ = built.query(INK, k=2, exclude_ids=["t1"])
    assert ids == ["t2", ids[1]] and "t1" not in ids
    bids, bscores = built.query(np.stack([INK, PEN]), k=1, exclude_ids=[["t1"], ["p1"]])
    assert bids == [["t2"], ["p2"]]


@pytest.mark.parametrize("strategy", ["where", "python", "auto"])
def test_where_filters(built, strategy):
    ids, _ = built.query(INK, k=3, where=constraints_to_where(exclude_brands=["HP"]), filter_strategy=strategy)
    assert ids[0] == "t2" and "t1" not in ids and len(ids) == 3
    ids, _ = built.query(INK, k=10, where=constraints_to_where(include_categories=["Pens"]), filter_strategy=strategy)
    assert sorted(ids) == ["p1", "p2"]
    ids, _ = built.query(INK, k=10, where=constraints_to_where(max_price=5.0), filter_strategy=strategy)
    assert sorted(ids) == ["n1", "p1"]
    ids, _ = built.query(PEN, k=10, where=constraints_to_where(include_brands=["Post-it", "Canon"],
                                                               exclude_categories=["Notes"]), filter_strategy=strategy)
    assert ids == ["t2"]
    bids, bscores = built.query(np.stack([INK, PEN]), k=3, where=constraints_to_where(include_brands=["HP"]),
                                filter_strategy=strategy)
    assert bids == [["t1"], ["t1"]] and np.isneginf(bscores[:, 1:]).all()


def test_compare_filter_strategies_agree(built):
    out = compare_filter_strategies(built, np.stack([INK, PEN]), k=2, where=constraints_to_where(exclude_brands=["HP"]),
                                    repeats=1)
    assert out["agree"] and out["where_ms"] > 0 and out["python_ms"] > 0


# -- incremental updates -------------------------------------------------------------------------
def test_upsert_and_delete(built):
    new = Item("t3", "Epson 202 ink", "Epson", ["Office", "Ink", "Inkjet"], price=15.0)
    built.upsert([new], np.array([[0, 0, 1, 0.01]], dtype=np.float32))
    ids, _ = built.query(INK, k=2, exclude_ids=["t1"])
    assert ids[0] == "t3" and built.info()["count"] == 7
    assert built.get_documents(["t3"])["t3"][1]["brand"] == "Epson"
    built.delete(["t3", "t1"])
    ids, _ = built.query(INK, k=1)
    assert ids == ["t2"] and built.info()["count"] == 5
    with pytest.raises(ItemIndexError, match="3-d"):
        built.upsert([new], np.zeros((1, 3), dtype=np.float32))


class _CountingCollection:
    """Delegates to a Chroma collection and records count() calls and query() n_results."""

    def __init__(self, col):
        self._col, self.counts, self.fetches = col, 0, []

    def count(self):
        self.counts += 1
        return self._col.count()

    def query(self, **kw):
        self.fetches.append(kw["n_results"])
        return self._col.query(**kw)

    def __getattr__(self, name):
        return getattr(self._col, name)


def _spy(idx):
    idx._state()
    idx._collection = _CountingCollection(idx._collection)
    return idx._collection


def test_python_path_caches_count_and_invalidates_on_upsert_delete_build(built, tiny_catalog):
    spy = _spy(built)
    no_hp = constraints_to_where(exclude_brands=["HP"])
    for _ in range(3):
        ids, _ = built.query(INK, k=10, where=no_hp, filter_strategy="python")
    assert spy.counts == 1 and sorted(ids) == ["n1", "n2", "p1", "p2", "t2"]
    new = Item("t3", "Epson 202 ink", "Epson", ["Office", "Ink", "Inkjet"], price=15.0)
    built.upsert([new], np.array([[0, 0, 1, 0.01]], dtype=np.float32))
    ids, _ = built.query(INK, k=10, where=no_hp, filter_strategy="python")  # a stale count (6) would cap at 5 hits
    assert spy.counts == 2 and len(ids) == 6 and ids[0] == "t3"
    built.delete(["t3", "p1"])
    ids, _ = built.query(INK, k=10, where=no_hp, filter_strategy="python")
    assert spy.counts == 3 and sorted(ids) == ["n1", "n2", "p2", "t2"]
    built.build(tiny_catalog, _vectors(tiny_catalog), "test-v1", progress=False)
    assert built._count is None
    ids, _ = built.query(INK, k=10, where=no_hp, filter_strategy="python")
    assert sorted(ids) == ["n1", "n2", "p1", "p2", "t2"]


def test_python_path_survives_a_stale_count_from_another_writer(built, make_config):
    no_hp = constraints_to_where(exclude_brands=["HP"])
    built.query(INK, k=10, where=no_hp, filter_strategy="python")  # caches count = 6
    other = ItemIndex(built.config)  # another process's handle on the same index
    other.delete(["p1", "n1"])
    ids, _ = built.query(INK, k=10, where=no_hp, filter_strategy="python")
    assert sorted(ids) == ["n2", "p2", "t2"]
    other.upsert([Item("t3", "Epson 202 ink", "Epson", ["Office", "Ink", "Inkjet"], price=15.0)],
                 np.array([[0, 0, 1, 0.01]], dtype=np.float32))
    built.refresh()  # documented: refresh() picks up other writers' changes, count included
    ids, _ = built.query(INK, k=10, where=no_hp, filter_strategy="python")
    assert sorted(ids) == ["n2", "p2", "t2", "t3"]


def test_exclusion_overfetch_starts_small_and_grows(make_config, tiny_catalog):
    idx = ItemIndex(make_config(exclusion_overfetch=1.5, overfetch=4))
    idx.build(tiny_catalog, _vectors(tiny_catalog), "test-v1", progress=False)
    spy = _spy(idx)
    q = np.array([0.1, 0.05, 1, 0], dtype=np.float32)  # no ties: t1 > t2 > n2 > p2 > p1 > n1
    no_hp = constraints_to_where(exclude_brands=["HP"])
    ids, _ = idx.query(q, k=2, where=no_hp, filter_strategy="python")
    assert spy.fetches == [3] and ids == ["t2", "n2"]  # ceil(2 * 1.5) rows, t1 (HP) dropped, enough left
    # excluding both ink brands (t1 HP, t2 Canon) leaves 1 of the first 3 rows: look deeper
    spy.fetches.clear()
    both = constraints_to_where(exclude_brands=["HP", "Canon"])
    ids, _ = idx.query(q, k=2, where=both, filter_strategy="python")
    assert spy.fetches == [3, 6] and ids == ["n2", "p2"]
    assert ids == idx.query(q, k=2, where=both, filter_strategy="where")[0]
    # an include filter keeps the larger factor: it can drop most items
    spy.fetches.clear()
    idx.query(q, k=1, where=constraints_to_where(include_brands=["Bic"]), filter_strategy="python")
    assert spy.fetches[0] == 4


# -- rebuild atomicity and model guard -----------------------------------------------------------
def _collection_names(idx):
    return sorted(c.name if hasattr(c, "name") else str(c) for c in idx.client.list_collections()
                  if (c.name if hasattr(c, "name") else str(c)).startswith(idx.config.collection_prefix))


def test_rebuild_switches_and_drops_old(built, tiny_catalog):
    old = built.info()["collection"]
    built.build(tiny_catalog, _vectors(tiny_catalog), "test-v2", progress=False)
    info = built.info()
    assert info["model_version"] == "test-v2" and info["collection"] != old and info["checkpoint"] is None
    assert _collection_names(built) == sorted([info["collection"], built.alias_name])


def test_crash_mid_build_leaves_old_index_serving(built, tiny_catalog, monkeypatch, make_config):
    before = built.info()
    calls = {"n": 0}
    real = index_mod._write_batch

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the second of three batches
            raise RuntimeError("simulated crash mid-build")
        return real(*a, **kw)

    monkeypatch.setattr(index_mod, "_write_batch", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        built.build(tiny_catalog, _vectors(tiny_catalog) * -1, "test-v2", progress=False)
    assert calls["n"] == 2
    for idx in (built, ItemIndex(make_config())):  # this handle and a fresh process's view
        assert idx.info()["collection"] == before["collection"] and idx.info()["model_version"] == "test-v1"
        assert idx.query(INK, k=1)[0] == ["t1"]
    assert _collection_names(built) == sorted([before["collection"], built.alias_name])  # partial one removed


def test_model_version_and_dim_mismatch_refused(built, make_config):
    with pytest.raises(ItemIndexError, match="test-v1"):
        built.query(INK, k=1, model_version="other-model")
    with pytest.raises(ItemIndexError, match="4-d"):
        built.query(np.ones(5, dtype=np.float32), k=1)
    assert built.query(INK, k=1, model_version="test-v1")[0] == ["t1"]
    guarded = ItemIndex(make_config(model_version="text:all-MiniLM-L6-v2"))
    with pytest.raises(ItemIndexError, match="refusing"):
        guarded.query(INK, k=1)


def test_query_without_build_is_a_clear_error(make_config):
    with pytest.raises(ItemIndexError, match="build one first"):
        ItemIndex(make_config()).query(INK, k=1)


def test_build_rejects_bad_vectors(make_config, tiny_catalog):
    idx = ItemIndex(make_config())
    with pytest.raises(ValueError, match=r"shape \(6, d\)"):
        idx.build(tiny_catalog, np.zeros((5, 4)), "v", progress=False)
    bad = _vectors(tiny_catalog)
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="row 3"):
        idx.build(tiny_catalog, bad, "v", progress=False)


# -- pure parts (no Chroma) ----------------------------------------------------------------------
def test_constraints_to_where_shapes():
    assert constraints_to_where() is None
    assert constraints_to_where(exclude_brands=["HP"]) == {"brand": {"$nin": ["HP"]}}
    w = constraints_to_where(include_brands=["Bic"], max_price=10, min_price=2)
    assert w == {"$and": [{"brand": {"$in": ["Bic"]}}, {"price": {"$lte": 10.0}}, {"price": {"$gte": 2.0}}]}
    with pytest.raises(ValueError, match="min_price"):
        constraints_to_where(max_price=1, min_price=2)


def test_where_matches_semantics():
    md = {"brand": "HP", "cat0": "Office", "cat1": "Ink", "cat2": "", "category": "Inkjet", "price": 24.0}
    assert where_matches(constraints_to_where(include_categories=["Inkjet"]), md)
    assert not where_matches(constraints_to_where(exclude_brands=["HP"]), md)
    assert not where_matches(constraints_to_where(exclude_categories=["Ink"]), md)
    assert not where_matches({"price": {"$lte": 5}}, {"brand": "x"})  # missing key never matches
    with pytest.raises(ValueError, match=r"\$regex"):
        where_matches({"brand": {"$regex": "x"}}, md)


def test_auto_strategy_picks_python_only_for_exclusions():
    from lumenrec.retriever.index import _exclusion_only

    assert _exclusion_only(constraints_to_where(exclude_brands=["HP"], exclude_categories=["Ink"]))
    assert not _exclusion_only(constraints_to_where(exclude_brands=["HP"], max_price=5))
    assert not _exclusion_only(constraints_to_where(include_brands=["HP"]))
    assert not _exclusion_only(None)


def test_index_config_validation_exclusion_overfetch(tmp_path):
    with pytest.raises(ConfigError, match="exclusion_overfetch"):
        IndexConfig(path=str(tmp_path), exclusion_overfetch=0.5)


def test_index_config_validation(tmp_path):
    with pytest.raises(ConfigError, match="backend"):
        IndexConfig(backend="memory", path=str(tmp_path))
    with pytest.raises(ConfigError, match="path"):
        IndexConfig(backend="persistent")
    with pytest.raises(ConfigError, match="filter_strategy"):
        IndexConfig(path=str(tmp_path), filter_strategy="fast")
    with pytest.raises(ConfigError, match="distance"):
        IndexConfig(path=str(tmp_path), distance="l2")
    with pytest.raises(ConfigError, match="collection_prefix"):
        IndexConfig(path=str(tmp_path), collection_prefix="bad name!")


def test_rebuild_frees_the_old_collections_disk(tmp_path):
    """Chroma leaves a deleted collection's HNSW folder on disk (chroma-core/chroma#5259); a rebuild removes it."""
    from lumenrec.data import Catalog, Item

    cat = Catalog([Item(str(i), f"item {i}", "b", ["c"]) for i in range(1500)])  # > Chroma's sync threshold of 1000
    rng = np.random.default_rng(0)
    ix = ItemIndex(IndexConfig(path=str(tmp_path / "idx")))

    def segment_dirs():
        return sorted(d.name for d in (tmp_path / "idx").iterdir() if d.is_dir() and (d / "data_level0.bin").exists())

    ix.build(cat, rng.normal(size=(len(cat), 8)).astype(np.float32), "v1", progress=False)
    first = segment_dirs()  # the alias collection's and v1's
    ix.build(cat, rng.normal(size=(len(cat), 8)).astype(np.float32), "v2", progress=False)
    second = segment_dirs()
    assert len(second) == len(first) == 2 and len(set(first) & set(second)) == 1  # v1's folder went, v2's came
    assert ix.query(rng.normal(size=8).astype(np.float32), 3)[0]  # and it serves
