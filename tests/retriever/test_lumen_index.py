"""LUMEN through the Chroma index: the dense/sparse split is exact, and retrieval equals in-memory scoring."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from lumenrec.data.types import Catalog, Item
from lumenrec.errors import ItemIndexError
from lumenrec.retriever.base import Query
from lumenrec.retriever.index import IndexConfig, ItemIndex
from lumenrec.retriever.lumen import LumenConfig, LumenRetriever, transition_matrix
from lumenrec.retriever.lumen_index import IndexedLumenRetriever, build_lumen_index

D = 16
BRANDS = ["Fellowes", "Avery", "Wilson Jones", "3M", "BIC", ""]


class DetEncoder:
    """Deterministic stand-in for MiniLM: 'want <k> ...' -> a fixed mix of item k's text vector and a hash of the text."""

    def __init__(self, T: np.ndarray):
        self.T = T

    def encode(self, texts):
        out = []
        for t in texts:
            words = t.split()
            k = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
            g = np.random.default_rng(sum(map(ord, t)))
            v = self.T[k % len(self.T)] + 0.3 * g.normal(size=self.T.shape[1])
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)


@pytest.fixture(scope="module")
def world():
    g = np.random.default_rng(0)
    n = 60
    cat = Catalog([Item(str(i), f"thing {i}", BRANDS[i % len(BRANDS)], ["Office", f"type{i % 4}"]) for i in range(n)])
    T = g.normal(size=(n, D)).astype(np.float32)
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    V = T + 0.3 * g.normal(size=(n, D)).astype(np.float32)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    seqs = [g.choice(n, size=6, replace=False) for _ in range(200)]
    M = transition_matrix(seqs, n)
    lum = LumenRetriever(cat, V, T, text_encoder=DetEncoder(T), transitions=M, popularity=g.integers(0, 50, n),
                         config=LumenConfig(epochs=3, batch_size=32, hidden=32, progress=False))
    hist = [s[:3] for s in seqs[:150]]
    lum.fit(hist, [f"want {int(s[3])} please" for s in seqs[:150]], [int(s[3]) for s in seqs[:150]])
    return cat, lum


QUERIES = [
    (["1", "2", "3"], "want 7 from Avery"),
    (["10"], "want 12, not Fellowes again"),
    (["5", "6"], None),
    ([], "want 30"),
    (["40", "41", "42", "43"], "want 2 prefer BIC over 3M"),
    (["1"], "want 0, not Fellowes"),  # item 0 is a Fellowes: the negated brand pushes dense hits down
    (["7"], "want 6, no Fellowes"),
]


def test_dense_plus_boosts_equals_the_full_score_up_to_a_constant(world):
    cat, lum = world
    X = lum.dense_item_vectors()  # (N, D')
    for hist, text in QUERIES:
        h = [cat.indices_of(hist)]
        full = lum.score_indices(h, [text])[0]  # (N,)
        dense, boosts = lum.query_parts(h, [text])
        split = X @ dense[0]
        idx, val = boosts[0]
        assert np.array_equal(idx, np.unique(idx))
        split[idx] += val
        diff = full - split
        assert np.allclose(diff, diff[0], atol=1e-4), (text, float(np.ptp(diff)))


@pytest.fixture(params=["persistent", pytest.param("http", marks=pytest.mark.integration)])
def indexed(world, tmp_path, request):
    """The same LUMEN index in an embedded store and on a real `chroma run` server."""
    cat, lum = world
    if request.param == "http":
        port = request.getfixturevalue("chroma_server")
        index = ItemIndex(IndexConfig(backend="http", port=port, distance="cosine",
                                      collection_prefix=f"lumen{uuid.uuid4().hex[:8]}"))
    else:
        index = ItemIndex(IndexConfig(path=str(tmp_path / "idx"), distance="cosine"))
    build_lumen_index(lum, index, progress=False)
    return cat, lum, IndexedLumenRetriever(lum, index, overfetch=1, selective_max=10)


def test_indexed_top_k_equals_in_memory(indexed):
    cat, lum, ix = indexed
    mask = np.array([it.brand != "Avery" for it in cat])
    for hist, text in QUERIES:
        for (allowed, excl), k in [((None, []), 10), ((mask, ["20", "21"]), 10), ((None, []), 1), ((None, []), 2), ((mask, []), 3)]:
            q = Query(history=hist, text=text, allowed=allowed, exclude_ids=excl)
            want, want_s = lum.retrieve(q, k=k)
            got, got_s = ix.retrieve(q, k=k)
            assert got == want, (text, got, want)
            assert np.allclose(np.diff(got_s), np.diff(want_s), atol=1e-4)  # same scores up to the per-query constant
            assert ix.last_stats["path"] == "ann"


def test_selective_filter_scores_by_id(indexed):
    cat, lum, ix = indexed
    allowed = np.zeros(len(cat), dtype=bool)
    allowed[[3, 9, 15, 27, 33]] = True  # 5 <= selective_max
    q = Query(history=["1"], text="want 9", allowed=allowed)
    got, _ = ix.retrieve(q, k=3)
    want, _ = lum.retrieve(q, k=3)
    assert got == want and ix.last_stats["path"] == "by_id" and set(got) <= {"3", "9", "15", "27", "33"}
    nothing = Query(history=["1"], text="want 9", allowed=np.zeros(len(cat), dtype=bool))
    assert ix.retrieve(nothing, k=3)[0] == []


def test_index_of_another_model_is_refused(indexed, world):
    cat, lum, ix = indexed
    ix.model_version = "lumen:other:000000000000"
    with pytest.raises(ItemIndexError, match="refusing vectors"):
        ix.retrieve(Query(history=["1"], text="want 3"), k=5)


def test_inner_product_index_is_refused(world, tmp_path):
    cat, lum = world
    with pytest.raises(ItemIndexError, match="distance='cosine'"):
        IndexedLumenRetriever(lum, ItemIndex(IndexConfig(path=str(tmp_path / "c"), distance="ip")))


def test_augmented_vectors_rank_by_inner_product(world):
    from lumenrec.retriever.lumen_index import augmented_items

    cat, lum = world
    A, R, s = augmented_items(lum)
    X = lum.dense_item_vectors()
    assert np.allclose(np.linalg.norm(A, axis=1), R, rtol=1e-5)
    assert s >= 1.0 and np.allclose(A[:, -2] * s, X[:, -1], atol=1e-5)  # the popularity column, divided by s
    y = np.random.default_rng(3).normal(size=X.shape[1]).astype(np.float32)
    yq = y.copy()
    yq[-1] *= s
    cos = A @ np.append(yq, 0.0) / (R * np.linalg.norm(yq))
    assert np.array_equal(np.argsort(-cos)[:10], np.argsort(-(X @ y))[:10])
    assert np.allclose(cos * R * np.linalg.norm(yq), X @ y, atol=1e-4)  # every dot product, not only the ranking


def test_a_large_popularity_column_is_scaled_down(world):
    """An item whose popularity coordinate is far above the other blocks' norms sets R unless scaled."""
    from lumenrec.retriever.lumen_index import augmented_items, index_layout

    cat, lum = world
    col = lum._blocks()["P"].start
    saved = lum.item_matrix[:, col].clone()
    try:
        lum.item_matrix[0, col] = 50.0
        R, s = index_layout(lum)
        A, R2, s2 = augmented_items(lum)
        assert s > 10 and (R, s) == (R2, s2)
        rest = np.linalg.norm(lum.dense_item_vectors()[:, :-1], axis=1).max()
        assert R < 1.01 * np.sqrt(2) * rest  # R comes from the content blocks, not from the one popular item
    finally:
        lum.item_matrix[:, col] = saved


def test_exactness_check_fetches_deeper_when_boosts_reorder_the_top(indexed, monkeypatch):
    """A large negative boost on the dense top items: the true top-k lies beyond the first fetch."""
    cat, lum, ix = indexed
    X = lum.dense_item_vectors()
    y = X[0].copy()
    dense_order = np.argsort(-(X @ y), kind="stable")
    boosts = {int(j): -1e3 for j in dense_order[:5]}  # the five best dense items are pushed to the bottom
    boosts[int(dense_order[-1])] = 1e3  # and the worst dense item to the top
    sparse = (np.array(sorted(boosts)), np.array([boosts[j] for j in sorted(boosts)]))
    monkeypatch.setattr(lum, "query_parts", lambda h, t: (y[None, :], [sparse]))
    truth = X @ y
    for j, b in boosts.items():
        truth[j] += b
    ids, _ = ix.retrieve(Query(history=[], text="x"), k=3)
    assert ids == [cat.ids[j] for j in np.argsort(-truth, kind="stable")[:3]]
    assert ix.last_stats["rounds"] > 1 and ix.last_stats["exact"]


def test_an_unreachable_index_is_one_clear_error(world):
    from netutil import free_port

    cat, lum = world
    # selective_max=10: the ANN path (a filter leaving few items is scored in memory, without the index)
    ix = IndexedLumenRetriever(lum, ItemIndex(IndexConfig(backend="http", port=free_port(), distance="cosine")),
                               selective_max=10)
    with pytest.raises(ItemIndexError, match="unreachable|Could not connect|connect"):
        ix.retrieve(Query(history=["1"], text="want 3"), k=5)
    assert ix.describe()["collection"].startswith("unavailable")
