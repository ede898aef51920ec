"""Session state: constraint merge/relax rules, masks and where-filters, JSON round trip, the store."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from lumenrec.agent.critique import Critique, CritiqueParser
from lumenrec.agent.session import Constraints, InMemorySessionStore, Session, SessionStore, TurnRecord
from lumenrec.data import Catalog, Item


# --- merge rules ----------------------------------------------------------------------------------

def test_relax_an_exclude():
    c = Constraints(exclude_brands=["HP", "Canon"])
    c2 = c.merge(Critique(include_brands=["HP"]))          # "actually HP is fine"
    assert c2.exclude_brands == ["Canon"] and c2.include_brands == ["HP"]
    assert c.exclude_brands == ["HP", "Canon"]             # merge returns a new object


def test_new_include_replaces_old_and_excludes_accumulate():
    c = Constraints(include_brands=["Canon"], exclude_brands=["HP"])
    c = c.merge(Critique(include_brands=["Epson"], exclude_brands=["Kodak"]))
    assert c.include_brands == ["Epson"]
    assert c.exclude_brands == ["HP", "Kodak"]
    c = c.merge(Critique(exclude_brands=["Epson"]))        # excluding an included brand drops it
    assert c.include_brands == [] and "Epson" in c.exclude_brands


def test_categories_follow_the_same_rules():
    c = Constraints(exclude_categories=["Pens"]).merge(Critique(include_categories=["Pens"]))
    assert c.include_categories == ["Pens"] and c.exclude_categories == []
    c = c.merge(Critique(include_categories=["Notes"]))
    assert c.include_categories == ["Notes"]


def test_attributes_replace_and_avoid():
    c = Constraints(attributes={"colour": "blue", "pack": "12"})
    c = c.merge(Critique(avoid_attributes={"colour": "blue"}))
    assert "colour" not in c.attributes and c.avoid_attributes == {"colour": "blue"} and c.attributes["pack"] == "12"
    c = c.merge(Critique(attributes={"colour": "blue"}))     # changed their mind again
    assert c.attributes["colour"] == "blue" and "colour" not in c.avoid_attributes
    c = c.merge(Critique(attributes={"pack": "24"}))
    assert c.attributes["pack"] == "24"


def test_price_bounds_replace_and_uncross():
    c = Constraints(min_price=10.0, max_price=50.0).merge(Critique(max_price=8.0))
    assert c.max_price == 8.0 and c.min_price is None
    c = Constraints(max_price=20.0).merge(Critique(min_price=5.0))
    assert (c.min_price, c.max_price) == (5.0, 20.0)
    with pytest.raises(ValueError, match="min_price"):
        Constraints(min_price=9.0, max_price=3.0)


def test_session_applies_parsed_critiques(tiny_catalog):
    p = CritiqueParser(tiny_catalog)
    s = Session()
    s.apply_critique(p.parse("not HP again"))
    s.apply_critique(p.parse("no more Canon either"))
    assert s.constraints.exclude_brands == ["HP", "Canon"]
    s.apply_critique(p.parse("actually HP is fine"))
    assert s.constraints.exclude_brands == ["Canon"] and s.constraints.include_brands == ["HP"]


# --- masks and where filters ----------------------------------------------------------------------

def _ids(cat, mask):
    return [it.id for it, m in zip(cat, mask) if m]


def test_to_mask(tiny_catalog):
    assert Constraints().to_mask(tiny_catalog).all()
    m = Constraints(include_brands=["Bic"]).to_mask(tiny_catalog)
    assert m.dtype == bool and m.shape == (6,) and _ids(tiny_catalog, m) == ["p1"]
    assert _ids(tiny_catalog, Constraints(exclude_brands=["Post-it"]).to_mask(tiny_catalog)) == ["p1", "p2", "t1", "t2"]
    assert _ids(tiny_catalog, Constraints(include_categories=["Ink"]).to_mask(tiny_catalog)) == ["t1", "t2"]
    assert _ids(tiny_catalog, Constraints(exclude_categories=["Writing", "Ink"]).to_mask(tiny_catalog)) == ["n1", "n2"]
    assert _ids(tiny_catalog, Constraints(max_price=5.0).to_mask(tiny_catalog)) == ["p1", "n1"]
    assert _ids(tiny_catalog, Constraints(min_price=9.0, exclude_brands=["HP"]).to_mask(tiny_catalog)) == ["n2", "t2"]


def test_to_mask_uses_title_brand_and_keeps_unpriced_items():
    cat = Catalog([Item("a", "Five Star notebook", "", ["Paper"]), Item("b", "Mead notebook", "Mead", ["Paper"], price=3.0),
                   Item("c", "Five Star binder", "Five Star", ["Binders"], price=30.0)])
    assert _ids(cat, Constraints(include_brands=["Five Star"]).to_mask(cat)) == ["a", "c"]
    assert _ids(cat, Constraints(max_price=10.0).to_mask(cat)) == ["a", "b"]  # unknown price is not excluded
    assert _ids(cat, Constraints(max_price=10.0).to_mask(cat, keep_unpriced=False)) == ["b"]


def test_mask_fits_the_retriever_query(tiny_catalog):
    from lumenrec.retriever.base import BaseRetriever, Query

    class Flat(BaseRetriever):
        def __init__(self, catalog):
            self.catalog = catalog

        def score(self, queries):
            return np.tile(np.arange(len(self.catalog), dtype=float), (len(queries), 1))

    ids, _ = Flat(tiny_catalog).retrieve(Query(allowed=Constraints(exclude_brands=["Canon", "HP"]).to_mask(tiny_catalog)), k=3)
    assert ids == ["n2", "n1", "p2"]


def test_to_where():
    assert Constraints().to_where() is None
    assert Constraints(exclude_brands=["HP"]).to_where() == {"brand": {"$nin": ["HP"]}}
    w = Constraints(include_brands=["Bic"], include_categories=["Pens"], max_price=5.0).to_where()
    assert w == {"$and": [{"brand": {"$in": ["Bic"]}},
                          {"$or": [{"cat0": {"$in": ["Pens"]}}, {"cat1": {"$in": ["Pens"]}}, {"cat2": {"$in": ["Pens"]}},
                                   {"category": {"$in": ["Pens"]}}]},
                          {"price": {"$lte": 5.0}}]}
    w = Constraints(exclude_categories=["Ink"], min_price=2.0).to_where()
    assert {"cat2": {"$nin": ["Ink"]}} in w["$and"] and {"category": {"$nin": ["Ink"]}} in w["$and"]
    assert {"price": {"$gte": 2.0}} in w["$and"]
    assert Constraints(include_categories=["Pens"]).to_where(levels=("cat0",)) == {"$or": [{"cat0": {"$in": ["Pens"]}}]}


def test_to_where_matches_the_index_filter():
    """Same where-dict as lumenrec.retriever.index.constraints_to_where, when that module is present."""
    index = pytest.importorskip("lumenrec.retriever.index")
    c = Constraints(include_brands=["Bic"], exclude_brands=["HP"], include_categories=["Pens"],
                    exclude_categories=["Ink"], max_price=9.0)
    assert c.to_where() == index.constraints_to_where(c.include_brands, c.exclude_brands, c.include_categories,
                                                      c.exclude_categories, c.max_price, c.min_price)


# --- session JSON and the store ------------------------------------------------------------------

def _full_session() -> Session:
    s = Session(session_id="s-1", user_id="u9", history=["p1", "n1"])
    s.record_shown(["t1", "t2", "p2"])
    s.add_turn("user", "not HP again", intent="recommend", timestamp=1.5)
    s.add_turn("assistant", "Here are three", item_ids=["t1", "t2", "p2"], timestamp=2.5)
    s.apply_critique(Critique(exclude_brands=["HP"], attributes={"colour": "black"}, max_price=20.0))
    s.reject("t1")
    s.accept("t2")
    return s


def test_json_round_trip_is_lossless():
    s = _full_session()
    s2 = Session.from_json(s.to_json())
    assert s2 == s
    assert s2.to_json() == s.to_json()
    assert s2.accepted == ["t2"] and "t2" in s2.history and s2.rejected == ["t1"]
    assert isinstance(s2.turns[0], TurnRecord) and s2.turns[1].item_ids == ["t1", "t2", "p2"]
    assert s2.resolve_ref(1) == "t2" and s2.resolve_ref(-1) == "p2" and s2.resolve_ref(7) is None


def test_bad_json_names_the_problem():
    with pytest.raises(ValueError, match="Session"):
        Session.from_dict({"history": []})
    with pytest.raises(ValueError, match="role"):
        TurnRecord("robot", "hi")


def test_store_isolates_sessions():
    store = InMemorySessionStore()
    assert isinstance(store, SessionStore)
    a, b = store.new("u1"), store.new("u2")
    assert a.session_id != b.session_id and len(store) == 2
    got = store.get(a.session_id)
    got.history.append("x")                     # a copy: the stored session is unchanged
    assert store.get(a.session_id).history == []
    store.put(got)
    assert store.get(a.session_id).history == ["x"] and store.get(b.session_id).history == []
    store.delete(a.session_id)
    assert store.get(a.session_id) is None


def test_store_is_thread_safe():
    store = InMemorySessionStore()
    s = store.new("u")

    def work():
        for _ in range(50):
            store.update(s.session_id, lambda sess: sess.history.append("i"))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.get(s.session_id).history) == 300
    with pytest.raises(KeyError):
        store.update("nope", lambda sess: None)
