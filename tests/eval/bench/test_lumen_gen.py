"""`lumenrec bench lumen_gen` runs end to end (train, resume, evaluate, publish) on a tiny backbone and store."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("peft")

from tiny_lm import save_tiny_backbone  # noqa: E402


def test_bench_lumen_gen_end_to_end(tmp_path, monkeypatch):
    from lumenrec.eval.bench import lumen_gen

    monkeypatch.setenv("LUMENREC_DOCS_DIR", str(tmp_path / "docs"))
    backbone = save_tiny_backbone(tmp_path / "tiny")
    args = ["--data", "synthetic:num_items=150,num_users=150,num_conversations=5,max_seq_len=20", "--backbone", str(backbone),
            "--out", str(tmp_path / "run"), "--steps", "4", "--checkpoint-every", "2", "--threads", "1",
            "--eval-users", "8", "--beam-users", "3", "--levels", "2", "--codebook-size", "4", "--dev-critiques"]
    assert lumen_gen.main(args) == 0
    r = json.loads((tmp_path / "docs" / "results" / "lumen_gen.json").read_text())
    assert r["train"]["steps_total"] == 4 and r["short_run"] and r["items"] == 150
    assert r["examples"]["narrators"] == ["offline"] and r["conversation_users_excluded"] == 5
    beam = r["eval"]["beam_top10"]
    assert beam["items_returned"] == 30 and beam["valid_catalogue_items"] == 30
    m = r["eval"]["metrics"]
    assert {"popularity", "markov", "lumen_gen (history only)"} <= set(m) and m["popularity"]["n"] == 8
    nv = r["eval"]["narratives"]
    assert nv["cases"] == 5 and set(nv["rougeL"]) == {"lumen_gen", "offline narrator"}
    assert all(0.0 <= v <= 1.0 for v in nv["rougeL"].values())
    dev = r["eval"]["dev_critiques"]  # the store's conversations as critique turns, every scorer on the same cases
    assert dev["cases"] == 5 and {"lumen_gen (+ critique)", "lumen_gen (history only)", "text-only (whole critique)",
                                  "markov (history only)", "popularity"} == set(dev["metrics"])
    assert all(v["n"] == 5 and 0.0 <= v["recall@10"] <= 1.0 for v in dev["metrics"].values())
    md = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "<!-- bench:lumen-gen -->" in md and "SHORT RUN" in md and r["command"] in md
    # a second call with more steps resumes the checkpoint instead of starting over
    more = list(args)
    more[more.index("--steps") + 1] = "6"
    assert lumen_gen.main(more + ["--no-publish"]) == 0
    state = json.loads((tmp_path / "run" / "model" / "resume.json").read_text())
    assert state["step"] == 6
    metrics = json.loads((tmp_path / "run" / "model" / "metrics.json").read_text())
    assert len(metrics["history"]) == 6 and metrics["train_wall_s_total"] > 0


def test_bench_lumen_gen_with_item_leaves(tmp_path, monkeypatch):
    """--leaf item: every tuple ends with the item's own token; the report says so and every beam item is valid.
    --request-vector: the request's MiniLM vector is a prompt token (not with ILM item vectors)."""
    from lumenrec.eval.bench import lumen_gen

    monkeypatch.setenv("LUMENREC_DOCS_DIR", str(tmp_path / "docs"))
    backbone = save_tiny_backbone(tmp_path / "tiny")
    args = ["--data", "synthetic:num_items=150,num_users=120,num_conversations=4,max_seq_len=20", "--backbone", str(backbone),
            "--out", str(tmp_path / "run"), "--steps", "2", "--threads", "1", "--eval-users", "6", "--beam-users", "2",
            "--narrative-cases", "2", "--levels", "1", "--codebook-size", "4", "--leaf", "item", "--name", "leafy",
            "--request-vector", "--precision", "bf16"]
    assert lumen_gen.main(args) == 0
    r = json.loads((tmp_path / "docs" / "results" / "leafy.json").read_text())
    sid = r["semantic_ids"]
    assert sid["leaf"] == "item" and sid["level_sizes"][-1] == 150 and len(sid["level_sizes"]) == 2
    assert r["eval"]["beam_top10"]["valid_catalogue_items"] == r["eval"]["beam_top10"]["items_returned"] == 20
    md = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "last level: each item's own token" in md and "collision level" not in md
    assert r["model"]["request_vector"] is True and "the request's MiniLM vector is one more prompt token" in md
    assert r["train_config"]["precision"] == "bf16" and "bf16 autocast" in md
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved["model"]["request_vector"] is True
    with pytest.raises(SystemExit) as e:
        lumen_gen.main(args + ["--ilm-checkpoint", str(tmp_path / "ilm")])
    assert e.value.code == 2


class _ScriptedLocalLLM:
    """Stands in for the llama.cpp model of `lumenrec llm training-narratives`: one grounded-looking sentence."""

    name, model = "llamacpp", "scripted-1.5b"

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, messages, max_tokens=128, temperature=0.0, **kw):
        self.calls += 1
        return "This shopper wanted one more useful item for the office desk every day."


def test_a_second_stage_with_llm_narratives(tmp_path, monkeypatch):
    """Stage 1, then `lumenrec llm training-narratives` (resumable, here with a scripted local model), then
    stage 2 warm-started from stage 1 on a critique-heavy mix, a cosine rate and the file's narratives."""
    from lumenrec.agent.llm import backends
    from lumenrec.cli import main as cli
    from lumenrec.eval.bench import lumen_gen

    monkeypatch.setenv("LUMENREC_DOCS_DIR", str(tmp_path / "docs"))
    llm = _ScriptedLocalLLM()
    monkeypatch.setattr(backends, "make_local_llm", lambda *a, **k: llm)
    data = "synthetic:num_items=150,num_users=100,num_conversations=4,max_seq_len=16"
    backbone = save_tiny_backbone(tmp_path / "tiny")
    common = ["--data", data, "--backbone", str(backbone), "--threads", "1", "--eval-users", "4", "--beam-users", "1",
              "--narrative-cases", "2", "--levels", "1", "--codebook-size", "4", "--leaf", "item"]
    assert lumen_gen.main(common + ["--out", str(tmp_path / "s1"), "--steps", "2", "--name", "stage1"]) == 0
    narr = tmp_path / "narratives.jsonl"
    assert cli(["llm", "training-narratives", "--data", data, "--out", str(narr)]) == 0
    lines = [json.loads(x) for x in narr.read_text().splitlines()]
    assert lines and llm.calls == len(lines) and {r["model"] for r in lines} == {"scripted-1.5b"}
    assert cli(["llm", "training-narratives", "--data", data, "--out", str(narr)]) == 0  # done: nothing to write
    assert llm.calls == len(lines)
    stage2 = common + ["--out", str(tmp_path / "s2"), "--steps", "3", "--init-from", str(tmp_path / "s1"),
                       "--lr-schedule", "cosine", "--history-only-fraction", "0.25", "--narratives", str(narr),
                       "--name", "stage2"]
    assert lumen_gen.main(stage2) == 0
    r = json.loads((tmp_path / "docs" / "results" / "stage2.json").read_text())
    assert r["init_from"] == {"dir": str(tmp_path / "s1" / "model"), "step": 2}
    saved = json.loads((tmp_path / "s2" / "model" / "config.json").read_text())["init_from"]
    assert saved["step"] == 2 and saved["examples_digest"]
    assert r["examples"]["narrators"] == ["llm:scripted-1.5b"] and r["examples"]["narrative"] == len(lines)
    assert r["examples"]["narrative_file"]["missing"] == 0 and r["train_config"]["lr_schedule"] == "cosine"
    s1 = json.loads((tmp_path / "docs" / "results" / "stage1.json").read_text())["examples"]
    assert r["examples"]["with_critique"] == s1["with_critique"] > 0  # every critique example stays
    assert r["examples"]["item"] - r["examples"]["with_critique"] < s1["item"] - s1["with_critique"]
    md = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "Warm start from" in md and "llm:scripted-1.5b" in md and "cosine" in md
    assert r["train_config"]["example_offset"] == 0
    # a third stage on the same examples continues their stream after stage 2's 3 batches of 8
    stage3 = [a if a != str(tmp_path / "s1") else str(tmp_path / "s2") for a in stage2]
    stage3[stage3.index("--out") + 1], stage3[-1] = str(tmp_path / "s3"), "stage3"
    assert lumen_gen.main(stage3 + ["--continue-stream", "--steps", "1"]) == 0
    r3 = json.loads((tmp_path / "docs" / "results" / "stage3.json").read_text())
    assert r3["train_config"]["example_offset"] == 3 * 8 and r3["init_from"]["step"] == 3
    assert "where the warm start stopped" in (tmp_path / "docs" / "benchmarks.md").read_text()
    with pytest.raises(SystemExit):  # nothing to continue
        lumen_gen.main(common + ["--out", str(tmp_path / "s4"), "--continue-stream"])
