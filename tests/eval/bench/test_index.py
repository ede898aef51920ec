"""The index latency benchmark runs end to end on a small synthetic catalogue."""

from __future__ import annotations

import pytest

from lumenrec.errors import ConfigError
from lumenrec.eval.bench.index import BenchConfig, run, synthetic_catalog


def test_bench_index_small_synthetic(tmp_path):
    res = run(["300"], BenchConfig(num_queries=4, warmup=1, batch_size=100, encoder_threads=None), workdir=str(tmp_path))
    r = res["synthetic-300"]
    assert r["items"] == 300 and r["dim"] == 384 and r["disk_mb"] > 0 and r["build_s"] > 0
    for setting in ("unfiltered", "filtered_where", "filtered_python"):
        t = r[setting]
        assert t["calls"] == 4 and 0 < t["p50_ms"] <= t["p95_ms"]
        assert t["encode"]["p50_ms"] > 0 and t["query"]["p50_ms"] > 0
    assert r["filter_strategies"]["overlap"] > 0.9
    assert r["query_backend"] in ("onnx", "torch") and len(r["load_avg"]["before"]) == 3


def test_synthetic_catalog_and_config():
    cat = synthetic_catalog(50, seed=1)
    assert len(cat) == 50 and cat[0].id == "s0" and len(cat[0].categories) == 3
    assert "HP" in {it.brand for it in synthetic_catalog(2000)}
    with pytest.raises(ConfigError, match="num_queries"):
        BenchConfig(num_queries=0)
