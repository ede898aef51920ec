"""eval/bench/reliability: its pieces (fast) and one short real run against `lumenrec serve` subprocesses (slow)."""

from __future__ import annotations

import os

import pytest

from lumenrec.eval.bench import reliability as br


def test_rss_and_scripts_and_bounds():
    assert br.rss_mb(os.getpid()) > 10
    assert br.rss_mb(2**22 + 12345) is None  # no such process
    scripts, source = br.load_scripts("synthetic", limit=20)
    assert scripts and all(s["turns"] and all(isinstance(t, str) and t.strip() for t in s["turns"]) for s in scripts)
    assert source
    with pytest.raises(ValueError, match="levels"):
        br.run(levels=(1000,), duration_s=5)
    with pytest.raises(ValueError, match="duration"):
        br.run(levels=(2,), duration_s=0)
    with pytest.raises(ValueError, match="parts"):
        br.run(levels=(2,), duration_s=5, parts=("load", "chaos"))


def test_bad_input_list_covers_the_kinds():
    reqs = br._bad_requests("m")
    assert len(reqs) + len(br._RAW_BAD) >= 280
    paths = {p for _, p, _, _ in reqs}
    assert "/v1/chat/completions" in paths and any(p.startswith("/v1/sessions/") for p in paths)
    assert any("victim" in p for p in paths) and any(h.get("Host") == "evil.example" for *_, h in reqs)


def _result(**over):
    load = {"server": "as shipped", "shoppers": 32, "duration_s": 60.0, "turns_answered": 900, "turns_per_s": 15.0,
            "turn_latency_ms": {"p50": 100.0, "p95": 900.0, "p99": 1500.0}, "turn_latency_ms_max": 2000.0,
            "shed_503": 7, "shed_latency_ms": {"p50": 2.0, "p99": 5.0}, "errors": 0,
            "lookup_latency_ms": {"p50": 3.0, "p99": 9.0}, "rss_mb_before": 600.0, "rss_mb_peak": 700.0}
    res = {"data": "synthetic", "conversations_from": "x", "load": [load, {**load, "server": "baseline: no backpressure",
                                                                          "shoppers": 200, "shed_503": 0}],
           "restart": {"sigkill_then_healthy_s": 12.0, "sessions_kept": 50, "sessions_missing": 0,
                       "acknowledged_turns": 300, "acknowledged_turns_lost": 0},
           "faults": {"dropped_streams": {"trials": 20, "next_turn_ms": {"p50": 30.0, "p99": 60.0}, "blocked_5s_or_more": 0},
                      "big_chunked_uploads": {"uploads": 8, "declared_mb_each": 100, "answered_413": 8,
                                              "mb_sent_before_refusal_max": 4.0, "rss_mb_before": 600.0, "rss_mb_peak": 601.0},
                      "delete_during_turn": {"trials": 30, "resurrected_sessions": 0, "turn_answers": {"404": 30}},
                      "health_loop": {"health_calls": 900, "turn_ms_p50_quiet": 30.0, "turn_ms_p50_with_health_loop": 60.0,
                                      "slowdown_x": 2.0},
                      "store_directory_deleted": {"writes_after_deletion": 12, "acknowledged_then_lost": 0,
                                                  "answered_503": 12, "health": 503, "ready": 503},
                      "sqlite_locked": {"turn_during_lock": 503, "turn_during_lock_s": 5.0, "lookup_during_lock": 200,
                                        "lookup_ms_during_lock": 3.0, "health_ms_during_lock": 1.0, "turn_after_lock": 200,
                                        "health_after": 200},
                      "replicas_postgres": {"skipped": "PostgreSQL is not installed"}},
           "bad_inputs": {"requests_tried": 121, "statuses": {"400": 100}, "server_errors_5xx": 0, "errors_not_json": 0,
                          "leaks": 0},
           "data_lost": 0}
    res.update(over)
    return res


def test_markdown_has_every_figure_and_the_targets():
    md = br.to_markdown(_result(), "cmd")
    for s in ("| as shipped | 32 |", "100.0 / 900.0 / 1500.0", "baseline: no backpressure", "blocked >= 5 s: 0",
              "8 x 413", "resurrected sessions: 0", "acknowledged (then lost): 0", "**Data lost**", "**0**",
              "121 malformed requests", "PostgreSQL is not installed", "data lost = 0: met"):
        assert s in md, s


def test_verdicts_fail_when_a_target_is_missed():
    assert all(br._verdicts(_result()).values())
    bad = _result(data_lost=3)
    assert br._verdicts(bad)["data lost = 0"] is False
    r = _result()
    r["faults"]["dropped_streams"]["blocked_5s_or_more"] = 2
    assert not all(br._verdicts(r).values())
    assert "NOT met" in br.to_markdown(r, "cmd")


@pytest.mark.slow
@pytest.mark.integration
def test_short_real_run_meets_its_targets(tmp_path):
    res = br.run(levels=(2,), duration_s=5, data="synthetic", baseline=False, parts=("load", "bad_inputs"),
                 workdir=str(tmp_path))
    assert res["load"][0]["errors"] == 0 and res["load"][0]["turns_answered"] > 0
    assert res["restart"]["sessions_missing"] == 0 and res["restart"]["acknowledged_turns_lost"] == 0
    assert res["bad_inputs"]["server_errors_5xx"] == 0 and res["data_lost"] == 0
