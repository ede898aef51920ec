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


def test_hybrid_answers_follow_the_policy(tiny_catalog):
    """bench hybrid_router's hybrid column is what HybridRouter.route returns: a confident offline turn
    stays; a sent turn takes the LLM's answer when it names the same intent; another intent replaces the
    offline one only with llm_intent=True."""
    from lumenrec.agent.critique import CritiqueParser
    from lumenrec.agent.hybrid import HybridConfig, HybridRouter
    from lumenrec.agent.intents import Intent
    from lumenrec.agent.router import RouteDecision
    from lumenrec.eval.bench.hybrid_router import _hybrid

    turns = [{"id": i, "text": t, "shown": [], "kind": "plain", "intent": "recommend", "ref": None}
             for i, t in (("a", "I need pens"), ("b", "organising my drawer"), ("c", "organising my desk"))]
    rules = {"a": {"intent": "recommend", "ref": None, "decision": RouteDecision(Intent.RECOMMEND, 0.95)},
             "b": {"intent": "recommend", "ref": None, "decision": RouteDecision(Intent.RECOMMEND, 0.6)},
             "c": {"intent": "recommend", "ref": None, "decision": RouteDecision(Intent.RECOMMEND, 0.6)}}
    llm = {"a": {"intent": "smalltalk", "ref": None}, "b": {"intent": "recommend", "ref": None, "tool": "recommend"},
           "c": {"intent": "smalltalk", "ref": None}}
    parser = CritiqueParser(tiny_catalog)
    out, sent = _hybrid(HybridRouter(None, parser=parser), turns, rules, llm)
    assert sent == ["b", "c"] and out["a"]["intent"] == "recommend" and "why" not in out["a"]
    assert out["b"].get("tool") == "recommend" and out["c"]["intent"] == "recommend" and out["c"]["llm_overruled"]
    out2, _ = _hybrid(HybridRouter(None, parser=parser, config=HybridConfig(llm_intent=True)), turns, rules, llm)
    assert out2["c"]["intent"] == "smalltalk"


def test_scene_router_report_reads_only_turns_on_screen(tmp_path, monkeypatch):
    import json

    from lumenrec.eval.bench import scene_router as sr

    p = tmp_path / "t.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in (
        {"id": "1", "scene": "none", "shown": [], "intent": "smalltalk", "ref": None, "text": "hi"},
        {"id": "2", "scene": "pens", "shown": ["1", "2", "3"], "intent": "recommend", "ref": None, "text": "cheaper"})))
    monkeypatch.setattr(sr, "REPO", tmp_path)
    rows = sr.scene_rows(["t.jsonl"])
    assert [r["id"] for r in rows] == ["2"] and rows[0]["file"] == "t.jsonl"
    assert [r["id"] for r in sr.scene_rows(["t.jsonl"], on_screen=False)] == ["1"]
    grid = [{"c": 1.0, "word_weight": 0.0, "min_probability": 0.4, "accuracy": 0.5, "per_scene": {"pens": 0.5}},
            {"c": 16.0, "word_weight": 1.5, "min_probability": 0.4, "accuracy": 0.9, "per_scene": {"pens": 0.9}}]
    md = sr.to_markdown({"n": 1, "scenes": ["pens"], "files": ["t.jsonl"], "general_files": ["g.jsonl"], "general_rows": 3,
                         "rules": {"injection pattern": {"n": 2, "precision": 1.0, "decides_alone": True}},
                         "rules_alone_accuracy": 0.5, "leave_one_scene_out": grid,
                         "shipped": {"c": 1.0, "word_weight": 0.0, "min_probability": 0.4},
                         "command": "lumenrec bench scene_router", "seconds": 1.0})
    assert "| injection pattern | 2 | 1.000 | yes |" in md and "| 16 | 1.5 | 0.4 | 0.900 | 0.90 |" in md
    assert "| 1 | 0 | 0.4 | 0.500 | 0.50 |" in md  # the shipped setting is listed


@pytest.mark.parametrize("name", ["hybrid_turns", "hybrid_holdout2", "hybrid_holdout3", "hybrid_holdout4", "hybrid_train",
                                  "hybrid_train2", "hybrid_train3"])
def test_hybrid_sets_are_well_formed(name):
    """Every labelled hybrid set: unique ids, a known intent, `shown` empty exactly for scene none, the same
    three items for every row of a scene, and an item reference inside the shown list."""
    from pathlib import Path

    from lumenrec.agent.intents import Intent

    path = Path(__file__).resolve().parents[2] / "agent" / "data" / f"{name}.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 200 and len({r["id"] for r in rows}) == len(rows)
    scenes: dict[str, list] = {}
    for r in rows:
        assert {"id", "scene", "shown", "kind", "intent", "ref", "text"} <= set(r) and r["text"].strip(), r
        assert r["intent"] in {i.value for i in Intent}, r
        assert (r["scene"] == "none") == (not r["shown"]), r
        assert scenes.setdefault(r["scene"], r["shown"]) == r["shown"], r
        assert r["ref"] is None or 0 <= r["ref"] < len(r["shown"]), r
