"""`lumenrec build`: every stage on a small synthetic store, resumable, and the directory serves the system."""

from __future__ import annotations

import json

import pytest

from lumenrec.build import STAGES, BuildConfig, build
from lumenrec.errors import ConfigError

DATA = "synthetic:num_items=300,num_users=400,num_conversations=20,num_brands=16"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("system")
    build(BuildConfig(data=DATA, out=str(out), max_time_s=20, ilm_epochs=3, lumen_epochs=3, progress=False))
    return out


@pytest.mark.integration
def test_every_stage_is_recorded_with_metrics(built):
    state = json.loads((built / "build.json").read_text())
    assert list(state["stages"]) == list(STAGES)
    lumen = state["stages"]["lumen"]["metrics"]
    assert lumen["examples"] > 100 and 0.0 <= lumen["valid_users_critique"]["recall@10"] <= 1.0
    assert state["stages"]["index"]["metrics"]["top10_equal_in_memory"].split("/")[0] == \
        state["stages"]["index"]["metrics"]["top10_equal_in_memory"].split("/")[1]
    for sub in ("sasrec", "ilm", "lumen", "index"):
        assert (built / sub).is_dir()
    man = json.loads((built / "recommender.json").read_text())
    assert man["retriever"]["kind"] == "lumen" and man["index"]["backend"] == "persistent"
    assert man["dataset"]["path"] == "catalog.jsonl"


@pytest.mark.integration
def test_a_rerun_skips_finished_stages(built, capsys):
    before = json.loads((built / "build.json").read_text())
    build(BuildConfig(data=DATA, out=str(built), max_time_s=20, ilm_epochs=3, lumen_epochs=3, progress=False))
    after = json.loads((built / "build.json").read_text())
    assert after["stages"] == before["stages"]  # nothing re-ran: same keys, times and metrics


@pytest.mark.integration
def test_the_directory_serves_lumen_through_chroma(built):
    from lumenrec.agent.recommender import Recommender

    rec = Recommender.from_pretrained(built)
    reply = rec.chat("s1", "I need some pens for the office")
    assert reply.items and all(it["id"] in rec.catalog for it in reply.items)
    ret = next(s for s in reply.trace if s.name == "retrieve")
    assert ret.details["retriever"] == "IndexedLumenRetriever" and ret.details["index"] == "chroma"
    assert ret.details["collection"].startswith("lumenrec-lumen") and ret.details["model_version"].startswith("lumen:")


@pytest.mark.integration
def test_a_changed_setting_rebuilds_from_that_stage(built, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    build(BuildConfig(data=DATA, out=str(copy), max_time_s=20, ilm_epochs=3, lumen_epochs=2, progress=False))
    old = json.loads((built / "build.json").read_text())["stages"]
    new = json.loads((copy / "build.json").read_text())["stages"]
    assert new["sasrec"] == old["sasrec"] and new["ilm"] == old["ilm"]  # upstream kept
    assert new["lumen"]["metrics"]["epochs"] == 2 and new["lumen"]["key"] != old["lumen"]["key"]


def test_config_is_validated():
    with pytest.raises(ConfigError, match="max_time_s"):
        BuildConfig(max_time_s=0)
    with pytest.raises(ConfigError, match="chroma"):
        BuildConfig(chroma="localhost")
    with pytest.raises(ConfigError, match="lumen_loss"):
        BuildConfig(lumen_loss="hinge")
    with pytest.raises(ConfigError, match="generative_time_s"):
        BuildConfig(generative=True, generative_time_s=0)
    with pytest.raises(ConfigError, match="generative_steps"):
        BuildConfig(generative_steps=0)
    with pytest.raises(ConfigError, match="generative_item_vectors"):
        BuildConfig(generative_item_vectors="sasrec")
    with pytest.raises(ConfigError, match="redo"):
        BuildConfig(redo="narrate")
    assert BuildConfig(redo="generative").redo == "generative"
    assert BuildConfig(max_time_s=100).budget("sasrec", 10_000) == pytest.approx(45.0)
    assert BuildConfig().budget("sasrec", 48_353) == pytest.approx(60 + 48_353 / 500)


@pytest.mark.integration
def test_chat_and_replay_entry_points_run_the_built_system(built, tmp_path):
    """`lumenrec chat --model DIR` and `lumenrec eval replay --system NAME:recommender_dir=DIR`."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "lumenrec", "chat", "--model", str(built), "--message",
                        "I need pens, not too pricey", "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    reply = json.loads(r.stdout)
    ret = next(s for s in reply["trace"] if s["name"] == "retrieve")
    assert reply["items"] and ret["details"]["retriever"] == "IndexedLumenRetriever"

    from lumenrec.eval.replay import ReplayConfig, ReplaySystem, run_replay

    summary = run_replay(ReplayConfig(dataset=DATA, systems=[ReplaySystem("built", recommender_dir=str(built)),
                                                            ReplaySystem("text-only")],
                                      out=str(tmp_path / "replay"), limit=5, semantic=False, resume=False))
    built_sys = summary["systems"]["built"]
    assert built_sys["validity"]["rate"] == 1.0 and built_sys["conversations"] == 5
    assert "retriever_alone" in built_sys["ablation"] and "target_removed_by_constraints" in built_sys["ablation"]


@pytest.mark.integration
def test_demo_backend_loads_the_built_system(built):
    from lumenrec.agent.serving.demo_app import DemoBackend, DemoConfig

    backend = DemoBackend.from_config(DemoConfig(data=DATA, recommender_dir=str(built)))
    assert type(backend.rec.retriever).__name__ == "IndexedLumenRetriever"


def test_hnsw_search_width_grows_with_the_catalogue():
    """ef_search 400 missed true top-10 items at 1e5 (116/200 lists equal to in-memory LUMEN before the
    popularity column was scaled): the graph search gets wider with the catalogue, never wider than the
    catalogue itself."""
    from lumenrec.build import hnsw_settings

    assert hnsw_settings(500)["ef_search"] == 500          # small: the whole catalogue
    assert hnsw_settings(3000)["ef_search"] == 1000
    assert hnsw_settings(100_000)["ef_search"] == 1000     # 0.994 of the dense top-10 (see hnsw_settings)
    assert hnsw_settings(250_000)["ef_search"] == 2500
    assert hnsw_settings(1_000_000)["ef_search"] == 4000   # capped: latency
    assert all(hnsw_settings(n)["ef_construction"] == 200 for n in (10, 10**6))


@pytest.mark.integration
def test_the_generative_stage_trains_resumably_and_serves(built, tmp_path):
    """--generative: the paper's LUMEN (a tiny random Llama here) in OUT/generative, continued by a re-run."""
    import shutil

    from tiny_lm import save_tiny_backbone

    from lumenrec.agent.recommender import Recommender

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    backbone = str(save_tiny_backbone(tmp_path / "tiny"))
    cfg = dict(data=DATA, out=str(copy), max_time_s=20, ilm_epochs=3, lumen_epochs=3, progress=False, generative=True,
               generative_backbone=backbone, generative_steps=4, generative_stage2_steps=2)
    before = json.loads((copy / "build.json").read_text())["stages"]
    build(BuildConfig(**cfg, generative_time_s=1e-3))  # the budget stops it after its first step
    st = json.loads((copy / "build.json").read_text())["stages"]
    assert {k: st[k] for k in STAGES} == before  # the tower's stages were not touched
    first = st["generative"]["metrics"]
    assert first["steps_total"] < 4 and not first["finished"] and first["stage2"] is None
    assert first["checkpoint"] == "stage1"  # served meanwhile: the first stage's checkpoint
    build(BuildConfig(**cfg))  # the re-run continues the run to its steps, then trains the second stage
    again = json.loads((copy / "build.json").read_text())["stages"]["generative"]["metrics"]
    assert again["finished"] and again["steps_total"] == 4 and again["steps_this_run"] == 4 - first["steps_total"]
    assert again["stage2"]["steps_total"] == 2 and again["checkpoint"] == "model"
    assert again["stage2"]["examples"] < again["examples"]  # the critique-heavy mix
    s2 = json.loads((copy / "generative" / "model" / "config.json").read_text())
    assert s2["init_from"]["dir"] == str(copy / "generative" / "stage1") and s2["init_from"]["step"] == 4
    assert s2["train"]["lr_schedule"] == "cosine"
    # the second stage distils this build's tower: soft targets for every critique example, cached beside the run
    assert again["stage2"]["distilled_examples"] > 0 and s2["train"]["distill_weight"] == 1.0
    assert (copy / "generative" / "teacher.npz").is_file() and s2["teacher_digest"]
    assert json.loads((copy / "generative" / "recommender.json").read_text())["retriever"]["checkpoint"] == "model"
    assert again["item_vectors"] == "minilm item text"  # the default: semantic IDs of the item texts
    gcfg = json.loads((copy / "generative" / "stage1" / "config.json").read_text())
    assert gcfg["item_vectors"] == "minilm item text"
    rec = Recommender.from_pretrained(copy / "generative")
    reply = rec.chat("g1", "I need some pens for the office")
    assert reply.items and all(it["id"] in rec.catalog for it in reply.items)
    ret = next(s for s in reply.trace if s.name == "retrieve")
    assert "Generative" in ret.details["retriever"]
    # another choice of item vectors is another run: it starts over instead of reusing the text codes
    build(BuildConfig(**cfg, generative_item_vectors="ilm", generative_time_s=1e-3))
    redo = json.loads((copy / "build.json").read_text())["stages"]["generative"]["metrics"]
    assert redo["item_vectors"] == "ilm (this build)" and redo["steps_this_run"] == redo["steps_total"] < 4


@pytest.mark.integration
def test_the_generative_stage_trains_on_a_file_of_llm_narratives(built, tmp_path, monkeypatch):
    """--generative-narratives FILE: the narratives `lumenrec llm training-narratives` wrote (a scripted local
    model here) are the training narratives, recorded as the LLM's; a file that changed starts the run over."""
    import shutil

    from tiny_lm import save_tiny_backbone

    from lumenrec.agent.llm import backends
    from lumenrec.agent.llm.lumen_gen.narratives import write_training_narratives

    class Scripted:
        name, model = "llamacpp", "scripted-llm"

        def generate(self, messages, max_tokens=128, temperature=0.0, **kw):
            return "This shopper wanted one more useful item for the office desk every day."

    monkeypatch.setattr(backends, "make_local_llm", lambda *a, **k: Scripted())
    narr = tmp_path / "narratives.jsonl"
    w = write_training_narratives(DATA, narr)
    assert w["done"] and w["written"] == w["narratives_wanted"] > 0
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    cfg = dict(data=DATA, out=str(copy), max_time_s=20, ilm_epochs=3, lumen_epochs=3, progress=False, generative=True,
               generative_backbone=str(save_tiny_backbone(tmp_path / "tiny")), generative_steps=2,
               generative_stage2_steps=1, generative_narratives=str(narr))
    build(BuildConfig(**cfg))
    first = json.loads((copy / "build.json").read_text())["stages"]["generative"]["metrics"]
    assert first["narrators"] == ["llm:scripted-llm"] and first["finished"]
    lines = narr.read_text().splitlines()
    narr.write_text("\n".join(lines[:-1]) + "\n")  # one narrative fewer: other examples, so another run
    build(BuildConfig(**cfg))
    again = json.loads((copy / "build.json").read_text())["stages"]["generative"]["metrics"]
    assert again["examples"] == first["examples"] - 1 and again["steps_this_run"] == again["steps_total"] == 2
    assert again["stage2"]["steps_this_run"] == again["stage2"]["steps_total"] == 1
    # the second stage sees each of the file's narratives 3x (GENERATIVE_STAGE2)
    assert again["narrative_examples"] == len(lines) - 1 and again["stage2"]["narrative_examples"] == 3 * (len(lines) - 1)
    with pytest.raises(ConfigError, match="generative_narratives"):
        BuildConfig(**{**cfg, "generative_narratives": str(tmp_path / "absent.jsonl")})


@pytest.mark.integration
def test_bench_lumen_gen_distils_a_built_tower(built, tmp_path, monkeypatch):
    """bench lumen_gen --distill-from DIR: the built system's tower scores the critique examples; their soft
    targets train beside the true items, are cached in OUT/teacher.npz and named in the report; another
    catalogue's system is refused."""
    from tiny_lm import save_tiny_backbone

    from lumenrec.errors import ConfigError
    from lumenrec.eval.bench import lumen_gen

    monkeypatch.setenv("LUMENREC_DOCS_DIR", str(tmp_path / "docs"))
    args = ["--data", DATA, "--backbone", str(save_tiny_backbone(tmp_path / "tiny")), "--out", str(tmp_path / "run"),
            "--steps", "2", "--threads", "1", "--eval-users", "4", "--beam-users", "1", "--narrative-cases", "1",
            "--levels", "1", "--codebook-size", "4", "--leaf", "item", "--distill-from", str(built),
            "--distill-top-k", "20", "--name", "kd"]
    assert lumen_gen.main(args) == 0
    r = json.loads((tmp_path / "docs" / "results" / "kd.json").read_text())
    assert r["distill"]["examples_with_targets"] == r["examples"]["with_critique"] > 0
    assert r["distill"]["top_k"] == 20 and r["train"]["distill_loss_last20"] > 0
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved["train"]["distill_weight"] == 1.0 and saved["teacher_digest"]
    assert (tmp_path / "run" / "teacher.npz").is_file()
    assert "Distillation: the LUMEN tower of" in (tmp_path / "docs" / "benchmarks.md").read_text()
    swap = {DATA: "synthetic:num_items=200,num_users=100,num_conversations=3", str(tmp_path / "run"): str(tmp_path / "other")}
    with pytest.raises(ConfigError, match="another catalogue"):
        lumen_gen.main([swap.get(a, a) for a in args] + ["--no-publish"])
