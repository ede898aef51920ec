"""Offline replay: per-turn metrics, the critique ablation, validity, parallel == serial, resume, reports."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from lumenrec.errors import ConfigError
from lumenrec.eval import replay as R
from lumenrec.eval.replay import (RECORDS, RankTap, ReplayConfig, ReplaySystem, aggregate, load_records,
                                  records_digest, run_replay)

DATA = "synthetic:num_items=500,num_users=800,num_conversations=30"
N = 10  # conversations replayed per run (keeps each run to seconds)


def _cfg(out, **kw) -> ReplayConfig:
    base = dict(dataset=DATA, out=str(out), limit=N, semantic=False, resume=True)
    base.update(kw)
    return ReplayConfig(**base)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    cfg = _cfg(out, semantic=True)
    summary = run_replay(cfg, progress=False)
    return cfg, summary, load_records(out / RECORDS)


# ------------------------------------------------------------------------------------------- units
class _Cat(list):
    def indices_of(self, ids):
        return np.array([self.index(i) for i in ids])


def test_rank_tap_applies_the_agents_masks():
    from lumenrec.retriever.base import Query

    ret = SimpleNamespace(catalog=_Cat("abcde"),
                          score=lambda qs: np.tile(np.array([0.1, 0.9, 0.5, 0.7, 0.3]), (len(qs), 1)))
    tap = RankTap(ret)
    assert tap.full_scores() is None
    ret.score([Query(history=["b"], exclude_ids=["d"], allowed=np.array([1, 1, 1, 1, 0], bool))])
    s = tap.full_scores()
    # b (history) and d (rejected) and e (not allowed) are out; c is now first, a second
    assert np.isneginf(s[[1, 3, 4]]).all()
    assert R._rank_of(s, 2) == 0 and R._rank_of(s, 0) == 1
    assert R._rank_of(s, 1) == 5  # a masked target is a miss (rank N)


def test_rank_tap_scores_a_query_served_without_score():
    """An index-backed retriever serves top-k without score(): the tap ranks its last query in full."""
    from lumenrec.retriever.base import Query

    calls = []

    def score(qs):
        calls.append(len(qs))
        return np.tile(np.array([0.1, 0.9, 0.5, 0.7, 0.3]), (len(qs), 1))

    ret = SimpleNamespace(catalog=_Cat("abcde"), score=score, retrieve=lambda q, k=10: (["b"], np.array([0.9])))
    tap = RankTap(ret)
    ret.retrieve(Query(history=["d"], allowed=np.array([1, 1, 1, 1, 1], bool)), k=1)
    assert calls == [] and tap.query().history == ["d"]
    s = tap.full_scores()
    assert calls == [1] and np.isneginf(s[3]) and R._rank_of(s, 1) == 0 and R._rank_of(s, 2) == 1


def test_system_spec_parsing_and_validation(tmp_path):
    s = ReplaySystem.parse("top10:top_k=10,narrate_top=2,router=offline")
    assert (s.name, s.top_k, s.narrate_top, s.router) == ("top10", 10, 2, "offline")
    with pytest.raises(ConfigError, match="router"):
        ReplaySystem(router="gpt")
    with pytest.raises(ConfigError, match="system"):
        ReplaySystem.parse("x:colour=red")
    with pytest.raises(ConfigError, match="systems"):
        ReplayConfig(systems=[ReplaySystem("a"), ReplaySystem("a")])
    with pytest.raises(ConfigError, match="workers"):
        ReplayConfig(workers=0)
    with pytest.raises(ConfigError, match="conversations"):
        ReplayConfig(conversations=str(tmp_path / "missing.jsonl"))


# ------------------------------------------------------------------------------------- replay runs
def test_per_turn_metrics_present_and_sane(serial):
    cfg, summary, records = serial
    assert len(records) == N and {r["conv"] for r in records} == set(range(N))
    s = summary["systems"]["offline"]
    assert list(s["per_turn"]) == ["1:message", "2:critique"]  # opening, critique
    for m in s["per_turn"].values():
        assert m["n"] == N
        rec = [m[f"recall@{k}"] for k in cfg.ks]
        assert rec == sorted(rec) and 0.0 <= rec[0] and rec[-1] <= 1.0
        for k in cfg.ks:
            assert m[f"ndcg@{k}"] <= m[f"recall@{k}"] + 1e-12
        assert 0.0 <= m["mrr"] <= 1.0
    # the critique names the target's category/brand: it must help the text retriever on this store
    assert s["per_turn"]["2:critique"]["mrr"] > s["per_turn"]["1:message"]["mrr"]


def test_ranks_agree_with_what_the_agent_showed(serial):
    _, _, records = serial
    checked = 0
    for r in records:
        for t in r["turns"]:
            shown = [it["id"] for it in t["items"]]
            if t["retrieved"] and not t["relaxed"]:
                assert t["rank_source"] == "scores"
                if r["target"] in shown:  # the shown list is the top-k of the same full ranking
                    assert t["rank"] == shown.index(r["target"])
                    checked += 1
                elif len(shown) == 5:
                    assert t["rank"] >= 5
            if not t["retrieved"]:
                assert t["rank"] == r["num_items"]
    assert checked > 0


def test_critique_ablation_and_validity(serial):
    _, summary, records = serial
    s = summary["systems"]["offline"]
    a = s["ablation"]
    assert a["n"] == N
    for r in records:  # 2-turn conversations: critique removed == the opening turn
        assert r["ablation"]["without_critique"] == r["turns"][0]["rank"]
        assert r["ablation"]["with_critique"] == r["turns"][1]["rank"]
    assert a["delta"]["mrr"] == pytest.approx(a["with_critique"]["mrr"] - a["without_critique"]["mrr"])
    assert s["validity"]["items"] > 0 and s["validity"]["rate"] == 1.0
    assert sum(sum(c.values()) for c in s["router"].values()) == 2 * N
    for st in ("route", "retrieve", "total"):
        assert s["latency_ms"][st]["p50"] <= s["latency_ms"][st]["p95"]
    for kind in ("reply", "endorsement", "purchase_reason", "user_summary"):
        m = s["narratives"][kind]
        assert m["n"] == N and 0.0 < m["rougeL"] <= 1.0 and 0.0 <= m["bleu"] <= 100.0 and -1.0 <= m["minilm_cos"] <= 1.0
    assert 0.0 <= s["grounding_reply_items"]["unsupported_claim_rate"] <= 1.0
    assert s["grounding_reply_items"]["claims"] > 0


def test_parallel_run_is_identical_to_serial(serial, tmp_path):
    cfg, summary, records = serial
    par = run_replay(_cfg(tmp_path, workers=2, semantic=True), progress=False)
    precs = load_records(tmp_path / RECORDS)
    assert records_digest(precs) == records_digest(records)

    def no_latency(x):
        x = json.loads(json.dumps(x))
        for s in x["systems"].values():
            s.pop("latency_ms")
        return x

    assert no_latency(par) == no_latency(summary)


def test_resume_after_a_crash(serial, tmp_path, monkeypatch):
    _, _, records = serial
    real, calls = R.replay_conversation, []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("simulated crash")
        return real(*a, **k)

    monkeypatch.setattr(R, "replay_conversation", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_replay(_cfg(tmp_path), progress=False)
    path = tmp_path / RECORDS
    assert len(load_records(path)) == 4
    with open(path, "a") as f:  # a crash in the middle of writing a line
        f.write('{"system": "offline", "conv": 4, "tur')
    calls.clear()
    monkeypatch.setattr(R, "replay_conversation", real)
    counted = []
    monkeypatch.setattr(R, "replay_conversation", lambda *a, **k: counted.append(1) or real(*a, **k))
    run_replay(_cfg(tmp_path), progress=False)
    assert len(counted) == N - 4  # only the missing conversations ran again
    assert records_digest(load_records(path)) == records_digest(records)
    # resuming into a run made with other inputs is refused
    with pytest.raises(ConfigError, match="resume"):
        run_replay(_cfg(tmp_path, limit=N - 1), progress=False)
    # resume=False starts over
    counted.clear()
    run_replay(_cfg(tmp_path, resume=False, limit=2), progress=False)
    assert len(counted) == 2 and len(load_records(path)) == 2


def test_two_systems_on_identical_inputs(tmp_path):
    cfg = _cfg(tmp_path, limit=4, systems=[ReplaySystem("k5"), ReplaySystem("k10", top_k=10, narrate_top=1)])
    summary = run_replay(cfg, progress=False)
    recs = load_records(tmp_path / RECORDS)
    assert sorted((r["system"], r["conv"]) for r in recs) == sorted((n, i) for n in ("k5", "k10") for i in range(4))
    a, b = summary["systems"]["k5"], summary["systems"]["k10"]
    # same retriever and inputs: identical ranks, more items shown by k10
    assert a["per_turn"] == b["per_turn"]
    assert b["validity"]["items"] > a["validity"]["items"]


def test_report_files_and_plots(serial, tmp_path):
    from lumenrec.eval.replay_report import markdown_summary, write_report

    cfg, summary, records = serial
    paths = write_report(summary, records, tmp_path)
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == 3  # recall by turn, ablation, latency
    assert "Critique ablation" in html and "<table>" in html and "http://" not in html.replace("http://127.0.0.1", "")
    assert json.loads(paths["json"].read_text())["systems"]["offline"]["conversations"] == N
    md = paths["md"].read_text()
    assert "| offline | 2:critique |" in md and "critique removed" in md
    assert markdown_summary(summary) in md


def test_cli_replay_prints_table_and_report(tmp_path, capsys, monkeypatch):
    from lumenrec.cli import main

    monkeypatch.setenv("LUMENREC_DOCS_DIR", str(tmp_path / "docs"))
    rc = main(["eval", "replay", "--data", DATA, "--out", str(tmp_path / "run"), "--limit", "3", "--no-semantic",
               "--publish"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "| offline | 1:message |" in out and f"report: {tmp_path / 'run' / 'report.html'}" in out
    assert (tmp_path / "run" / "report.html").is_file()
    assert json.loads((tmp_path / "docs" / "results" / "replay.json").read_text())["systems"]["offline"]
    assert "<!-- bench:replay -->" in (tmp_path / "docs" / "benchmarks.md").read_text()


@pytest.mark.slow
def test_replay_dev_conversations(shared_data, tmp_path):
    """The 150 REGEN dev conversations over Office 2014 (first 20 here)."""
    summary = run_replay(ReplayConfig(dataset="office-2014", out=str(tmp_path), limit=20, semantic=False),
                         progress=False)
    s = summary["systems"]["offline"]
    assert s["validity"]["rate"] == 1.0 and s["ablation"]["n"] == 20
