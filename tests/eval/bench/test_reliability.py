"""eval/bench/reliability: its pieces (fast) and one short real run against a `lumenrec serve` subprocess (slow)."""

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
    with pytest.raises(ValueError, match="shoppers"):
        br.run(shoppers=500, duration_s=5)
    with pytest.raises(ValueError, match="duration"):
        br.run(shoppers=2, duration_s=0)


def test_markdown_has_every_figure():
    res = {"load": {"shoppers": 3, "duration_s": 9.5, "conversations_from": "x", "requests": 10, "messages": 7,
                    "throughput_rps": 1.05, "messages_per_s": 0.7, "latency_ms_message": {"p50": 1.0, "p95": 2.0, "p99": 3.0},
                    "errors": 0, "rss_mb_before": 100.0, "rss_mb_after": 101.0, "rss_mb_peak": 102.0,
                    "rss_slope_mb_per_min_second_half": 0.1, "rss_mb_by_quarter": [100.0, 101.0, 101.0, 101.0],
                    "server_startup_s": 5.0},
           "restart": {"sigkill_then_healthy_s": 4.0, "sessions_kept": 5, "sessions_missing_after_restart": 0}}
    md = br.to_markdown(res, "cmd")
    for s in ("| shoppers (threads) | 3 |", "1.0 / 2.0 / 3.0", "| errors | 0 |", "100.0 / 101.0 / 102.0", "5 / 0"):
        assert s in md, s


@pytest.mark.slow
@pytest.mark.integration
def test_short_real_load_run_has_no_errors(tmp_path):
    res = br.run(shoppers=2, duration_s=5, data="synthetic", restart=True, workdir=str(tmp_path))
    assert res["load"]["errors"] == 0 and res["load"]["messages"] > 0
    assert res["restart"]["sessions_missing_after_restart"] == 0
