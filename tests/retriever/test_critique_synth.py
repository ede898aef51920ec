"""Training-critique synthesis: deterministic, varied, grounded in catalogue facts, never leaking the target."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from lumenrec.data.types import Catalog, Item
from lumenrec.errors import ConfigError
from lumenrec.retriever.critique_synth import (MODEL_NUMBER, CritiqueSynthConfig, extract_facets, synthesize_critique,
                                               synthesize_examples)

OFFICE = ["Office & School Supplies"]


@pytest.fixture
def cat() -> Catalog:
    return Catalog([
        Item("a", "Fellowes Powershred 79Ci 16-Sheet Cross-Cut Shredder, Black (3227901)", "Fellowes",
             OFFICE + ["Shredders"]),
        Item("b", "Avery Easy Peel Address Labels for Laser Printers, White, 3000 Labels (5160)", "Avery",
             OFFICE + ["Labels & Stickers", "Address Labels"]),
        Item("c", "BIC Round Stic Ball Pen, Fine Point, Blue, 12 Pens (GSF11-Blu)", "BIC",
             OFFICE + ["Writing & Correction Supplies", "Ballpoint Pens"]),
        Item("d", "BIC Round Stic Ball Pen, Medium Point, Red, 60 Pens", "BIC",
             OFFICE + ["Writing & Correction Supplies", "Ballpoint Pens"]),
        Item("e", "VTech Cordless Phone, Silver", "VTech", ["Office Electronics", "Telephones"]),
    ])


def test_extract_facets_reads_title_facts(cat):
    f = extract_facets(cat.get("b"))
    assert f.brand == "Avery" and f.item_type == "address labels" and f.parent_type == "labels and stickers"
    assert f.colours == ["white"] and f.pack == 3000
    g = extract_facets(cat.get("d"))
    assert g.colours == ["red"] and g.pack == 60
    assert "5160" not in " ".join(f.keywords)  # model numbers never become keywords


def test_deterministic_given_seed(cat):
    seqs = [np.array([0, 1, 2, 3]), np.array([2, 3, 1])]
    a = synthesize_examples(seqs, cat, CritiqueSynthConfig(seed=3, variants=3), positions="all")
    b = synthesize_examples(seqs, cat, CritiqueSynthConfig(seed=3, variants=3), positions="all")
    c = synthesize_examples(seqs, cat, CritiqueSynthConfig(seed=4, variants=3), positions="all")
    assert [e.text for e in a] == [e.text for e in b]
    assert [e.text for e in a] != [e.text for e in c]
    assert all(e.previous == e.history[-1] for e in a)


def test_varied_phrasings(cat):
    texts = {synthesize_critique(cat.get("a"), cat.get("b"), random.Random(i)) for i in range(60)}
    assert len(texts) >= 30  # many different requests for one move
    assert any(t == t.lower() for t in texts) and any(t != t.lower() for t in texts)
    joined = " ".join(texts).lower()
    assert "avery" in joined and "fellowes" in joined  # brand switch, negations name the old brand
    assert any(re.search(r"\bnot fellowes|no more fellowes|skip fellowes|instead of fellowes|over fellowes", t.lower())
               for t in texts)
    assert "labels" in joined


def test_never_leaks_title_or_model_numbers(cat):
    for prev, nxt in (("a", "b"), ("c", "d"), ("b", "a")):
        target = cat.get(nxt)
        models = {m.lower() for m in MODEL_NUMBER.findall(target.title)}
        for i in range(80):
            t = synthesize_critique(cat.get(prev), target, random.Random(i), CritiqueSynthConfig(p_typo=0.0)).lower()
            assert target.title.lower() not in t
            toks = set(re.findall(r"[a-z0-9-]+", t))
            assert not (toks & models), (t, models & toks)


def test_same_top_category_filter_and_positions(cat):
    seqs = [np.array([0, 4, 1])]  # shredder -> phone (different top category) -> labels
    ex = synthesize_examples(seqs, cat, CritiqueSynthConfig(variants=1), positions="all")
    assert [(e.previous, e.target) for e in ex] == []  # both pairs cross the top-level category
    ex = synthesize_examples([np.array([0, 1, 2])], cat, CritiqueSynthConfig(variants=2), positions="last")
    assert len(ex) == 2 and all(e.target == 2 and list(e.history) == [0, 1] for e in ex)
    loose = synthesize_examples(seqs, cat, CritiqueSynthConfig(variants=1, same_top_category=False), positions="all")
    assert len(loose) == 2


def test_config_validation():
    with pytest.raises(ConfigError, match="variants"):
        CritiqueSynthConfig(variants=0)
    with pytest.raises(ConfigError, match="p_typo"):
        CritiqueSynthConfig(p_typo=1.5)
