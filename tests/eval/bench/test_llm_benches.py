"""The #19 benchmarks' scoring on known inputs (no model): hybrid routing accuracy, critique field matching."""

from __future__ import annotations

import json

import pytest

from lumenrec.agent.critique import Critique


def test_hybrid_score_counts_intents_kinds_and_refs():
    from lumenrec.eval.bench.hybrid_router import load_turns, score

    turns = [{"id": "a", "kind": "opening", "intent": "recommend", "ref": None, "text": "pens"},
             {"id": "b", "kind": "hard", "intent": "explain", "ref": 1, "text": "is it blue?"},
             {"id": "c", "kind": "hard", "intent": "smalltalk", "ref": None, "text": "yo"}]
    preds = {"a": {"intent": "recommend"}, "b": {"intent": "explain", "ref": 0}, "c": {"intent": "out_of_scope"}}
    s = score(turns, preds)
    assert s["accuracy"] == pytest.approx(2 / 3) and s["correct"] == 2
    assert s["per_kind"]["hard"]["accuracy"] == 0.5 and s["per_intent"]["smalltalk"]["accuracy"] == 0.0
    assert s["ref_n"] == 1 and s["ref_accuracy"] == 0.0  # right intent, wrong item
    assert [e["id"] for e in s["errors"]] == ["c"]
    rows = load_turns()
    assert len(rows) >= 200 and {r["intent"] for r in rows} >= {"recommend", "explain", "summarize_user", "smalltalk",
                                                                   "out_of_scope", "clarify", "injection"}
    assert all(r["ref"] is None or 0 <= r["ref"] < len(r["shown"]) for r in rows)


def test_critique_fields_and_brand_families():
    from lumenrec.eval.bench.critique_llm import LABELS, _brand_match, _score, field_values

    c = Critique(include_brands=["Five Star"], exclude_brands=["HP"], price_direction="cheaper",
                 attributes={"colour": "black,blue"}, avoid_attributes={"colour": "red"})
    v = field_values(c)
    assert v == {"include_brands": {"five star"}, "exclude_brands": {"hp"}, "price_direction": "cheaper",
                 "colours": {"black", "blue"}, "avoid_colours": {"red"}}
    assert _brand_match({"five star"}, {"five star by mead"}) and not _brand_match({"hp"}, set())
    assert not _brand_match(set(), {"hp"})
    gold = dict(v)
    wrong = dict(v, price_direction=None)
    s = _score([gold, gold], [v, wrong], [[], ["exclude_brand"]])
    assert s["constraint_accuracy"] == 0.5 and s["field_accuracy"]["price_direction"] == 0.5
    assert s["removes_target"] == 1 and s["removes_target_kinds"]["exclude_brand"] == 1
    labels = [json.loads(x) for x in LABELS.read_text().splitlines() if x.strip()]
    assert len(labels) >= 100 and sum(1 for x in labels if x["include_brands"] or x["exclude_brands"]) >= 20
