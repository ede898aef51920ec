"""`lumenrec bench simulate`: the parts' runs and their publication (docs JSON + benchmarks.md section)."""

from __future__ import annotations

import json

import pytest

from lumenrec.eval.bench.simulate import part_config

SMALL = "synthetic:num_items=300,num_users=300,num_conversations=12,num_brands=16"


def test_each_part_compares_the_four_systems_on_its_targets(tmp_path):
    d = str(tmp_path)
    dev, test = part_config("dev", d, "runs/x"), part_config("test", d, "runs/x", num_test=77)
    assert (dev.dataset, dev.targets, test.targets, test.num_targets) == ("office-2014", "conversations", "test", 77)
    assert [(s.name, s.mode, s.paged, s.recommender_dir) for s in dev.systems] == [
        ("history-only", "history", False, d), ("history-paged", "history", True, d), ("text-only", "agent", False, None),
        ("built", "agent", False, d)]
    assert part_config("synthetic", d, "runs/x", synthetic_data=SMALL).dataset == SMALL
    leaf = part_config("dev-leaf", d, "runs/x")
    assert (dev.opening, leaf.opening, [s.name for s in leaf.systems]) == ("parent", "leaf", ["text-only", "built"])
    hyb = part_config("dev-hybrid", d, "runs/x")
    assert [(s.name, s.router, s.recommender_dir) for s in hyb.systems] == [("built", "offline", d), ("hybrid", "hybrid", d)]
    assert (hyb.dataset, hyb.targets) == ("office-2014", "conversations")
    with pytest.raises(ValueError, match="unknown part"):
        part_config("beauty", d, "runs/x")


@pytest.mark.integration
def test_the_bench_runs_resumably_and_publishes(tmp_path, monkeypatch, capsys):
    from lumenrec.agent.recommender import write_manifest
    from lumenrec.data.registry import load_dataset
    from lumenrec.eval.bench.simulate import main

    monkeypatch.setenv("LUMENREC_DOCS_DIR", str(tmp_path / "docs"))
    sysdir = tmp_path / "system"
    write_manifest(sysdir, catalog=load_dataset(SMALL).catalog, retriever_kind="text")
    argv = ["--parts", "synthetic", "--synthetic-dir", str(sysdir), "--synthetic-data", SMALL, "--limit", "3",
            "--out-root", str(tmp_path / "runs")]
    assert main(argv) == 0
    res = json.loads((tmp_path / "docs" / "results" / "simulate.json").read_text())
    part = res["parts"]["synthetic"]
    assert list(part["systems"]) == ["history-only", "history-paged", "text-only", "built"]
    assert all(s["targets"] == 3 for s in part["systems"].values())
    assert "not_followed_examples" not in part["systems"]["history-only"]
    assert all(len(v) <= 3 for v in part["systems"]["built"]["not_followed_examples"].values())
    assert res["command"].startswith("lumenrec bench simulate --parts synthetic")
    md = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "<!-- bench:simulate -->" in md and "| history-paged | 3 |" in md
    assert (tmp_path / "runs" / "synthetic" / "report.html").is_file()
    records = (tmp_path / "runs" / "synthetic" / "records.jsonl").read_text()
    assert main(argv) == 0  # resumed: nothing run again
    assert (tmp_path / "runs" / "synthetic" / "records.jsonl").read_text() == records
