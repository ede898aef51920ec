"""Narrative benchmark: metric values on known inputs, an offline end-to-end run, cache resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lumenrec.data import Conversation, Narratives, Turn
from lumenrec.errors import ConfigError
from lumenrec.eval.bench.narratives import NarrativeBenchConfig, ResultCache, run_bench, score_rows

SYN = "synthetic:num_items=200,num_users=60,num_conversations=6"


class _BagEncoder:
    """A deterministic stand-in for MiniLM: bag of hashed words."""

    def encode(self, texts):
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, sum(map(ord, w)) % 64] += 1
        return out


def _row(gen, text, user="u1", latency=0.1, before=0, after=0, tokens=None, final="offline"):
    return {"key": f"{gen}|t|v|1|endorsement|{user}|x", "generator": gen, "kind": "endorsement", "user_id": user,
            "target": "x", "text": text, "final_generator": final, "unsupported_before": before,
            "unsupported_after": after, "latency_s": latency, "completion_tokens": tokens}


def test_config_validation():
    with pytest.raises(ConfigError, match="kinds"):
        NarrativeBenchConfig(kinds=("poem",))
    with pytest.raises(ConfigError, match="base_url"):
        NarrativeBenchConfig(generators=("openai",))
    assert "openai" in NarrativeBenchConfig(base_url="http://127.0.0.1:1/v1").generators


def test_score_rows_known_values():
    ref = "The blue pen writes smoothly and you already like this brand."
    refs = {("u1", "x"): Conversation("u1", [], [Turn("user", "hi")], "x", Narratives(endorsement=ref)),
            ("u2", "x"): Conversation("u2", [], [Turn("user", "hi")], "x", Narratives(endorsement=ref))}
    rows = [_row("offline", ref, "u1", 0.1), _row("offline", ref, "u2", 0.3),
            _row("smollm2-text", "Completely unrelated words here.", "u1", 1.0, before=2, after=0, tokens=10, final="llm"),
            _row("smollm2-text", "Other text entirely.", "u2", 3.0, before=0, after=1, tokens=30, final="offline")]
    out = {r["generator"]: r for r in score_rows(rows, refs, encoder=_BagEncoder())}
    exact, other = out["offline"], out["smollm2-text"]
    assert exact["rougeL"] == pytest.approx(1.0) and exact["bleu"] == pytest.approx(100.0)
    assert exact["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert other["rougeL"] < 0.3 and other["bleu"] < 10
    assert other["unsupported_before"] == 0.5 and other["unsupported_after"] == 0.5
    assert other["offline_fallback"] == 0.5
    assert other["tokens_per_s"] == pytest.approx(40 / 4.0)
    assert other["latency_p50_s"] == pytest.approx(2.0) and exact["tokens_per_s"] is None


def test_cache_drops_torn_line(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"key": "a", "v": 1}\n{"key": "b", "v"')
    c = ResultCache(p)
    assert set(c.rows) == {"a"} and p.read_text() == '{"key": "a", "v": 1}\n'
    c.add({"key": "b", "v": 2})
    assert set(ResultCache(p).rows) == {"a", "b"}


def test_offline_run_end_to_end_and_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("LUMENREC_DOCS_DIR", str(tmp_path / "docs"))
    cache = tmp_path / "cache.jsonl"
    cfg = NarrativeBenchConfig(data=SYN, limit=4, kinds=("endorsement", "user_summary"), generators=("offline",),
                               cache_path=str(cache), progress=False)
    res = run_bench(cfg, encoder=_BagEncoder())
    assert res["run"] == "smoke (4 conversations)" and res["conversations"] == 4
    assert {(r["generator"], r["kind"]) for r in res["results"]} == {("offline", "endorsement"), ("offline", "user_summary")}
    for r in res["results"]:
        assert r["n"] == 4 and 0 <= r["rougeL"] <= 1 and r["unsupported_after"] == 0.0 and r["mean_words"] > 5
    assert len(cache.read_text().splitlines()) == 8
    saved = json.loads((tmp_path / "docs" / "results" / "narratives.json").read_text())
    assert saved["results"] == res["results"]
    assert "<!-- bench:narratives -->" in (tmp_path / "docs" / "benchmarks.md").read_text()

    # a second run reuses the cache: no narrative is generated again
    from lumenrec.agent import narrative

    def boom(*a, **k):
        raise AssertionError("should have come from the cache")

    monkeypatch.setattr(narrative.NarrativeGenerator, "generate", boom)
    res2 = run_bench(cfg, encoder=_BagEncoder())
    assert [r["rougeL"] for r in res2["results"]] == [r["rougeL"] for r in res["results"]]


def test_rows_of_another_model_in_the_cache_are_not_scored(tmp_path, monkeypatch):
    """The cache is shared across runs: a row written by another model/adaptor (other tag) must not count."""
    monkeypatch.setenv("LUMENREC_DOCS_DIR", str(tmp_path / "docs"))
    cache = tmp_path / "cache.jsonl"
    cfg = NarrativeBenchConfig(data=SYN, limit=2, kinds=("endorsement",), generators=("offline",),
                               cache_path=str(cache), progress=False)
    res = run_bench(cfg, encoder=_BagEncoder())
    row = json.loads(cache.read_text().splitlines()[0])
    stale = dict(row, key=row["key"].replace("offline|offline|", "offline|older-model|"), text="zzz " * 40)
    with cache.open("a") as f:
        f.write(json.dumps(stale) + "\n")
    res2 = run_bench(cfg, encoder=_BagEncoder())
    assert res2["results"][0]["n"] == 2
    assert res2["results"][0]["mean_words"] == res["results"][0]["mean_words"]


def test_cached_only_scores_what_exists_and_generates_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("LUMENREC_DOCS_DIR", str(tmp_path / "docs"))
    cache = tmp_path / "cache.jsonl"
    run_bench(NarrativeBenchConfig(data=SYN, limit=2, kinds=("endorsement",), generators=("offline",),
                                   cache_path=str(cache), progress=False), encoder=_BagEncoder())
    from lumenrec.agent import narrative

    def boom(*a, **k):
        raise AssertionError("cached_only must not generate")

    monkeypatch.setattr(narrative.NarrativeGenerator, "generate", boom)
    res = run_bench(NarrativeBenchConfig(data=SYN, limit=3, kinds=("endorsement",), generators=("offline",),
                                         cache_path=str(cache), progress=False, cached_only=True), encoder=_BagEncoder())
    assert res["results"][0]["n"] == 2
    assert res["run"].startswith("partial (1 of 3 narratives")
    assert "--cached-only" in (tmp_path / "docs" / "benchmarks.md").read_text()


def test_paired_rows_keep_only_cases_both_generators_have():
    from lumenrec.eval.bench.narratives import _paired

    r = lambda g, k, u: {"generator": g, "kind": k, "user_id": u, "target": "t"}  # noqa: E731
    rows = [r("a", "endorsement", "1"), r("a", "endorsement", "2"), r("b", "endorsement", "2"),
            r("b", "user_summary", "1"), r("offline", "endorsement", "2")]
    got = _paired(rows, "a", "b")
    assert sorted((x["generator"], x["user_id"]) for x in got) == [("a", "2"), ("b", "2")]


def test_start_skips_the_first_conversations(tmp_path, monkeypatch):
    monkeypatch.setenv("LUMENREC_DOCS_DIR", str(tmp_path / "docs"))
    with pytest.raises(ConfigError, match="start"):
        NarrativeBenchConfig(start=-1)
    res = run_bench(NarrativeBenchConfig(data=SYN, limit=3, start=1, kinds=("endorsement",), generators=("offline",),
                                         cache_path=str(tmp_path / "c.jsonl"), progress=False, write_docs=False),
                    encoder=_BagEncoder())
    assert res["conversations"] == 2 and res["results"][0]["n"] == 2


def test_template_repetition_and_streamed_latencies():
    from lumenrec.eval.bench.narratives import template_repetition

    assert template_repetition(["Take a look at the pen.", "Take a look at the ink.", "Your next pick is here."]) == \
        pytest.approx(2 / 3)
    assert template_repetition(["One two three four.", "Five six seven eight."]) == 0.0
    ref = "The blue pen writes smoothly."
    refs = {("u1", "x"): Conversation("u1", [], [Turn("user", "hi")], "x", Narratives(endorsement=ref)),
            ("u2", "x"): Conversation("u2", [], [Turn("user", "hi")], "x", Narratives(endorsement=ref))}
    rows = [dict(_row("local", ref, "u1", 2.0, final="llm+streamed"), first_token_s=0.5, first_piece_s=1.0),
            dict(_row("local", ref, "u2", 4.0, final="llm+streamed"), first_token_s=1.5, first_piece_s=3.0)]
    out = score_rows(rows, refs, encoder=_BagEncoder())[0]
    assert out["first_token_p50_s"] == pytest.approx(1.0) and out["first_piece_p50_s"] == pytest.approx(2.0)
    assert out["template_repetition"] == 1.0 and out["offline_fallback"] == 0.0
    offline = score_rows([_row("offline", ref)], {("u1", "x"): refs[("u1", "x")]}, encoder=_BagEncoder())[0]
    assert offline["first_token_p50_s"] is None
