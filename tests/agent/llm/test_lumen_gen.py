"""Generative LUMEN (issue 20) on tiny catalogues with known answers, on a tiny random Llama (fast).

SmolLM2 itself is exercised by `lumenrec bench lumen_gen`; here a 2-layer, 32-wide Llama with a
byte-level tokenizer (tests/tiny_lm.py) keeps every test well under a second or two.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from lumenrec.agent.llm.lumen_gen.examples import ExampleConfig, build_examples  # noqa: E402
from lumenrec.agent.llm.lumen_gen.model import GenerativeLumen, LumenGenConfig, LumenGenLoss, require_peft  # noqa: E402
from lumenrec.agent.llm.lumen_gen.retriever import GenerativeLumenNarrator, GenerativeLumenRetriever  # noqa: E402
from lumenrec.agent.llm.lumen_gen.semantic_ids import (PrefixTrie, SemanticIDConfig, assign_semantic_ids,  # noqa: E402
                                                       kmeans, residual_kmeans)
from lumenrec.agent.llm.lumen_gen.train import (LumenGenTrainConfig, load_lumen_gen, run_semantic_ids,  # noqa: E402
                                                save_lumen_gen, train_lumen_gen)
from lumenrec.data import Catalog, Item  # noqa: E402
from lumenrec.errors import CheckpointError, ConfigError, MissingExtraError  # noqa: E402
from lumenrec.retriever.base import Query  # noqa: E402
from tiny_lm import byte_tokenizer as _tokenizer, tiny_llama as _tiny_lm  # noqa: E402


# ---- fixtures ------------------------------------------------------------------------------------
def _clustered(n_clusters=4, per=5, dim=16, seed=0):
    """Well-separated clusters: (vectors (n_clusters * per, dim), cluster label of each row)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:n_clusters] * 10.0
    x = np.concatenate([c + rng.normal(scale=0.3, size=(per, dim)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(n_clusters), per)


def _model(sids, seed=0):
    tok = _tokenizer()
    return GenerativeLumen(LumenGenConfig(item_dim=sids.token_vectors.shape[1], lora_r=4), sids, _tiny_lm(len(tok), seed), tok)


@pytest.fixture
def sids():
    x, _ = _clustered()
    return assign_semantic_ids(x, SemanticIDConfig(levels=2, codebook_size=4, seed=0))


# ---- semantic IDs --------------------------------------------------------------------------------
def test_rq_first_level_recovers_the_clusters():
    x, label = _clustered()
    codes, books = residual_kmeans(x, levels=2, codebook_size=4, seed=0)
    assert codes.shape == (20, 2) and len(books) == 2 and books[0].shape == (4, 16)
    # items share a level-0 code exactly when they share a cluster
    same_code = codes[:, 0][:, None] == codes[:, 0][None]
    same_cluster = label[:, None] == label[None]
    assert (same_code == same_cluster).all()


def test_rq_is_deterministic_given_the_seed():
    x, _ = _clustered(seed=3)
    a = assign_semantic_ids(x, SemanticIDConfig(levels=3, codebook_size=3, seed=7))
    b = assign_semantic_ids(x, SemanticIDConfig(levels=3, codebook_size=3, seed=7))
    assert np.array_equal(a.codes, b.codes) and np.array_equal(a.token_vectors, b.token_vectors)


def test_collisions_get_an_extra_code_in_catalogue_order():
    v = np.array([[1, 0], [1, 0], [0, 1], [1, 0], [-1, 0]], dtype=np.float32)  # items 0, 1, 3 identical
    s = assign_semantic_ids(v, SemanticIDConfig(levels=1, codebook_size=3))
    assert s.collision_level and s.num_levels == 2 and s.level_sizes[-1] == 3
    assert s.codes[[0, 1, 3], 1].tolist() == [0, 1, 2] and s.codes[[2, 4], 1].tolist() == [0, 0]
    assert len({tuple(r) for r in s.codes.tolist()}) == 5
    assert not s.token_vectors[-3:].any()  # collision tokens start from no vector


def test_no_collision_level_when_codes_are_already_unique():
    x, _ = _clustered(n_clusters=2, per=2)
    s = assign_semantic_ids(x, SemanticIDConfig(levels=2, codebook_size=2))
    assert not s.collision_level and s.num_levels == 2


def test_atomic_mode_is_one_token_per_item():
    x, _ = _clustered()
    s = assign_semantic_ids(x, SemanticIDConfig(mode="atomic"))
    assert s.codes[:, 0].tolist() == list(range(20)) and s.level_sizes == [20] and s.num_tokens == 20
    assert s.token_names()[3] == "<item_3>"


def test_item_leaf_ends_every_tuple_with_the_items_own_token():
    """leaf="item": identical vectors still get unique tuples, and the leaf rows start from the items' vectors."""
    v = np.array([[1, 0], [1, 0], [0, 1], [1, 0], [-1, 0]], dtype=np.float32)  # items 0, 1, 3 identical
    s = assign_semantic_ids(v, SemanticIDConfig(levels=1, codebook_size=3, leaf="item"))
    assert not s.collision_level and s.num_levels == 2 and s.level_sizes[-1] == 5
    assert s.codes[:, 1].tolist() == [0, 1, 2, 3, 4] and len({tuple(r) for r in s.codes.tolist()}) == 5
    assert np.allclose(s.token_vectors[-5:], v)  # unit vectors already: the leaf row of item i starts at v_i
    t = s.trie()
    assert t.allowed((int(s.codes[0, 0]),)).tolist() == [0, 1, 3]  # the prefix of the three identical items
    assert s.token_names()[-1] == "<item_4>" and s.token_names()[0] == "<sid_0_0>"
    with pytest.raises(ConfigError, match="leaf"):
        SemanticIDConfig(leaf="index")


def test_item_leaf_scores_and_decodes_the_catalogue():
    x = np.random.default_rng(2).normal(size=(60, 16)).astype(np.float32)
    s = assign_semantic_ids(x, SemanticIDConfig(levels=1, codebook_size=4, leaf="item"))
    m = _model(s)
    p = m.prompt([3, 9], "a cheaper one")
    tree, batched = m.score_items(p), m.score_items(p, method="batched")
    assert np.allclose(tree, batched, atol=1e-5) and np.exp(tree).sum() == pytest.approx(1.0, abs=1e-5)
    got = m.beam_search(p, k=5)  # width 5 >= the 4 first-level codes: the beam is exact here
    assert [i for i, _ in got] == np.argsort(-tree, kind="stable")[:5].tolist()


def test_kmeans_with_more_clusters_than_distinct_points():
    x = np.array([[0.0, 1.0], [0.0, 1.0], [2.0, 0.0]])
    cent, lab = kmeans(x, 5)
    assert len(cent) == 2 and lab[0] == lab[1] != lab[2]


def test_semantic_id_config_is_validated():
    with pytest.raises(ConfigError, match="mode"):
        SemanticIDConfig(mode="tiger")
    with pytest.raises(ConfigError, match="codebook_size"):
        SemanticIDConfig(codebook_size=1)


def test_trie_matches_the_codes():
    codes = np.array([[0, 1, 0], [0, 1, 1], [0, 2, 0], [2, 0, 0]])
    t = PrefixTrie(codes, [3, 3, 2])
    assert t.allowed(()).tolist() == [0, 2]
    assert t.allowed((0,)).tolist() == [1, 2] and t.allowed((0, 1)).tolist() == [0, 1]
    assert t.allowed((1,)).tolist() == [] and t.allowed((0, 1, 1)).tolist() == []
    assert [t.item(r) for r in codes.tolist()] == [0, 1, 2, 3] and t.item((1, 0, 0)) is None
    assert t.allowed_mask((0,)).tolist() == [False, True, True]
    with pytest.raises(ValueError, match="share"):
        PrefixTrie(np.array([[0, 1], [0, 1]]), [1, 2])


# ---- the model -----------------------------------------------------------------------------------
def test_full_catalogue_scores_are_a_distribution_over_the_catalogue(sids):
    m = _model(sids)
    s = m.score_items(m.prompt([1, 2, 3], "not the red one"))
    assert s.shape == (20,) and np.isfinite(s).all()
    assert np.exp(s).sum() == pytest.approx(1.0, abs=1e-5)


def test_tree_scoring_equals_one_forward_per_prefix():
    """All trie prefixes in one pass (tree attention mask) give the scores of the prompt's cache repeated
    per prefix, on a three-level trie with a collision level."""
    x = np.random.default_rng(1).normal(size=(120, 16)).astype(np.float32)
    deep = assign_semantic_ids(x, SemanticIDConfig(levels=3, codebook_size=5, seed=0))
    m = _model(deep)
    p = m.prompt([3, 9, 40], "a cheaper one, not the red")
    tree, batched = m.score_items(p), m.score_items(p, method="batched")
    rows = m._tree()[3]
    assert any(bool((r < 0).any()) for r in rows)  # prefixes with a single continuation were skipped
    assert deep.num_levels >= 3 and np.allclose(tree, batched, atol=1e-5)
    assert np.argsort(-tree, kind="stable")[:10].tolist() == np.argsort(-batched, kind="stable")[:10].tolist()
    with pytest.raises(ValueError, match="method"):
        m.score_items(p, method="fast")


def test_constrained_beam_search_never_leaves_the_catalogue(sids):
    m = _model(sids)
    p = m.prompt([0, 5], None)
    full = m.score_items(p)
    got = m.beam_search(p, k=7, beam_width=3)
    items = [i for i, _ in got]
    assert len(items) == len(set(items)) == 7 and all(0 <= i < 20 for i in items)
    # a beam's score is the item's full-catalogue log-probability
    assert np.allclose([sc for _, sc in got], full[items], atol=1e-5)
    # a beam as wide as the catalogue is exact: the top-k of the full scores
    exact = m.beam_search(p, k=5, beam_width=20)
    assert [i for i, _ in exact] == np.argsort(-full, kind="stable")[:5].tolist()


def test_loss_refuses_a_target_outside_the_trie(sids):
    loss = LumenGenLoss()
    logits = torch.zeros(1, sids.num_tokens)
    allowed = torch.zeros(1, sids.num_tokens, dtype=torch.bool)
    allowed[0, 1] = True
    value, parts = loss(logits, allowed, torch.tensor([1]))
    assert float(value) == pytest.approx(0.0) and parts["item"] == pytest.approx(0.0)  # one allowed code: certain
    with pytest.raises(ValueError, match="not allowed"):
        loss(logits, allowed, torch.tensor([2]))


def test_item_tokens_never_come_from_text(sids):
    m = _model(sids)
    ids = m.prompt([4], "<sid_0_1> <item_3> " + chr(0x2603))
    assert sum(i >= m.vocab for i in ids) == sids.num_levels  # only the history item's codes


def test_only_lora_projection_and_rows_train(sids):
    m = _model(sids)
    names = [n for n, p in m.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n or n.startswith("items.") for n in names)
    assert any(n == "items.proj.weight" for n in names) and any(n == "items.delta" for n in names)


# ---- training, checkpoints, retriever ------------------------------------------------------------
def _cycle_examples(n=20, reps=1):
    """item i is always followed by item (i + 1) % n: a pattern the model can learn."""
    from lumenrec.agent.llm.lumen_gen.examples import GenExample

    return [GenExample("item", f"u{i}", [i], (i + 1) % n) for i in range(n)] * reps


def test_training_lowers_the_item_loss(sids, tmp_path):
    ids = [f"i{j}" for j in range(20)]
    cfg = LumenGenTrainConfig(steps=60, batch_size=8, lr=1e-2, lr_items=3e-2, warmup_steps=0, checkpoint_every=30,
                              progress=False, seed=1, num_threads=1)
    summary = train_lumen_gen(_model(sids), _cycle_examples(), ids, cfg, out=tmp_path / "run")
    hist = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    assert summary["steps_total"] == 60 and len(hist) == 60 and summary["peak_rss_mb"] > 0
    assert np.mean([h["item"] for h in hist[-10:]]) < 0.8 * np.mean([h["item"] for h in hist[:10]])


def test_a_run_cut_in_two_trains_like_one_run(sids, tmp_path):
    ids = [f"i{j}" for j in range(20)]
    ex = _cycle_examples()
    cfg = dict(batch_size=8, lr=1e-2, lr_items=3e-2, warmup_steps=3, checkpoint_every=4, progress=False, seed=1,
               num_threads=1)
    one = _model(sids)
    train_lumen_gen(one, ex, ids, LumenGenTrainConfig(steps=20, **cfg), out=tmp_path / "one")
    train_lumen_gen(_model(sids), ex, ids, LumenGenTrainConfig(steps=10, **cfg), out=tmp_path / "two")
    again = _model(sids)
    s2 = train_lumen_gen(again, ex, ids, LumenGenTrainConfig(steps=20, **cfg), out=tmp_path / "two")
    assert s2["resumed_from"] == 10 and s2["steps_this_run"] == 10
    a, b = one.trainable_state(), again.trainable_state()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    # other examples in the same directory: refused, never silently mixed
    with pytest.raises(CheckpointError, match="other examples"):
        train_lumen_gen(_model(sids), ex[:10], ids, LumenGenTrainConfig(steps=30, **cfg), out=tmp_path / "two")


def test_bf16_autocast_trains_and_belongs_to_the_run(sids, tmp_path):
    ids = [f"i{j}" for j in range(20)]
    cfg = dict(batch_size=8, lr=1e-2, lr_items=3e-2, warmup_steps=0, checkpoint_every=20, progress=False, seed=1,
               num_threads=1)
    m = _model(sids)
    train_lumen_gen(m, _cycle_examples(), ids, LumenGenTrainConfig(steps=60, precision="bf16", **cfg), out=tmp_path / "bf")
    hist = json.loads((tmp_path / "bf" / "metrics.json").read_text())["history"]
    assert np.mean([h["item"] for h in hist[-10:]]) < 0.8 * np.mean([h["item"] for h in hist[:10]])
    assert all(p.dtype == torch.float32 for p in m.parameters())  # only the forward ran in bf16
    with pytest.raises(CheckpointError, match="other examples or settings"):  # the same run in fp32: refused
        train_lumen_gen(_model(sids), _cycle_examples(), ids, LumenGenTrainConfig(steps=80, **cfg), out=tmp_path / "bf")
    with pytest.raises(ConfigError, match="precision"):
        LumenGenTrainConfig(precision="fp16")


def test_rate_schedules():
    const = LumenGenTrainConfig(steps=100, warmup_steps=10)
    assert [round(const.lr_factor(s), 3) for s in (0, 4, 9, 10, 99)] == [0.1, 0.5, 1.0, 1.0, 1.0]
    cos = LumenGenTrainConfig(steps=110, warmup_steps=10, lr_schedule="cosine", min_lr_ratio=0.1)
    f = [cos.lr_factor(s) for s in range(110)]
    assert f[9] == 1.0 and f[10] == pytest.approx(1.0) and f[60] == pytest.approx(0.55)
    assert f[109] == pytest.approx(0.1, abs=1e-3) and all(a >= b for a, b in zip(f[10:], f[11:]))
    assert cos.lr_factor(500) == pytest.approx(0.1)  # past the end: the floor
    # a constant run keeps the resume key of runs saved before schedules existed; a cosine one names its length
    assert "lr_schedule" not in const.resume_key() and cos.resume_key()["steps"] == 110
    with pytest.raises(ConfigError, match="lr_schedule"):
        LumenGenTrainConfig(lr_schedule="linear")
    with pytest.raises(ConfigError, match="min_lr_ratio"):
        LumenGenTrainConfig(min_lr_ratio=1.5)


def test_a_warm_start_begins_from_the_other_runs_weights(sids, tmp_path):
    ids = [f"i{j}" for j in range(20)]
    cfg = dict(batch_size=8, lr=1e-2, lr_items=3e-2, warmup_steps=0, checkpoint_every=5, progress=False, seed=1,
               num_threads=1)
    first = _model(sids)
    train_lumen_gen(first, _cycle_examples(), ids, LumenGenTrainConfig(steps=30, **cfg), out=tmp_path / "a")
    p = first.prompt([3])
    # stage 2 at a tiny rate: it starts from stage 1's weights, so it scores (almost) like stage 1 ...
    slow = dict(cfg, lr=1e-9, lr_items=1e-9)
    second = _model(sids)
    s = train_lumen_gen(second, _cycle_examples()[:10], ids, LumenGenTrainConfig(steps=1, **slow), out=tmp_path / "b",
                        init_from=tmp_path / "a")
    assert s["resumed_from"] == 0 and s["steps_total"] == 1
    assert np.allclose(second.score_items(p), first.score_items(p), atol=1e-4)
    # ... where the same stage from scratch does not
    cold = _model(sids)
    train_lumen_gen(cold, _cycle_examples()[:10], ids, LumenGenTrainConfig(steps=1, **slow), out=tmp_path / "c")
    assert not np.allclose(cold.score_items(p), first.score_items(p), atol=1e-2)
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved["init_from"]["dir"] == str(tmp_path / "a") and saved["init_from"]["step"] == 30
    # continuing stage 2 needs the same warm start (the same run: a moved directory is fine) ...
    import shutil

    shutil.copytree(tmp_path / "a", tmp_path / "moved")
    s = train_lumen_gen(_model(sids), _cycle_examples()[:10], ids, LumenGenTrainConfig(steps=2, **slow),
                        out=tmp_path / "b", init_from=tmp_path / "moved")
    assert s["resumed_from"] == 1 and s["steps_total"] == 2
    with pytest.raises(CheckpointError, match="warm-started"):
        train_lumen_gen(_model(sids), _cycle_examples()[:10], ids, LumenGenTrainConfig(steps=3, **slow),
                        out=tmp_path / "b")
    with pytest.raises(CheckpointError, match="warm-started"):  # another run
        train_lumen_gen(_model(sids), _cycle_examples()[:10], ids, LumenGenTrainConfig(steps=3, **slow),
                        out=tmp_path / "b", init_from=tmp_path / "c")
    # ... and codes other than the checkpoint's are refused
    x, _ = _clustered()
    other = assign_semantic_ids(x, SemanticIDConfig(levels=2, codebook_size=3, seed=0))
    with pytest.raises(CheckpointError, match="semantic IDs differ"):
        train_lumen_gen(_model(other), _cycle_examples()[:10], ids, LumenGenTrainConfig(steps=1, **slow),
                        out=tmp_path / "d", init_from=tmp_path / "a")


def test_a_continued_stage_trains_on_the_examples_after_its_warm_starts(sids, tmp_path, monkeypatch, caplog):
    from lumenrec.agent.llm.lumen_gen import train as train_mod
    from lumenrec.agent.llm.lumen_gen.train import _batch_indices, continued_stream_offset

    # the offset shifts the seeded stream (one permutation per epoch) and nothing else
    whole = np.concatenate([_batch_indices(13, s, 4, 7) for s in range(10)])
    assert sorted(whole[:13].tolist()) == list(range(13)) and sorted(whole[13:26].tolist()) == list(range(13))
    assert np.array_equal(np.concatenate([_batch_indices(13, s, 4, 7, 12) for s in range(7)]), whole[12:40])
    ids = [f"i{j}" for j in range(20)]
    ex = _cycle_examples()
    cfg = dict(batch_size=8, lr=1e-3, lr_items=1e-3, warmup_steps=0, checkpoint_every=5, progress=False, seed=1,
               num_threads=1)
    train_lumen_gen(_model(sids), ex, ids, LumenGenTrainConfig(steps=3, **cfg), out=tmp_path / "a")
    assert continued_stream_offset(tmp_path / "a", ex, seed=1) == 3 * 8
    assert continued_stream_offset(tmp_path / "a", ex[:10], seed=1) == 0  # other examples: another stream
    assert continued_stream_offset(tmp_path / "a", ex, seed=2) == 0  # another seed: another stream
    with pytest.raises(CheckpointError, match="resume.json"):
        continued_stream_offset(tmp_path / "nowhere", ex, seed=1)
    # the second stage's first batch is the stream's fourth, not its first again
    seen = []
    real_encode = train_mod._encode
    monkeypatch.setattr(train_mod, "_encode", lambda m, e, t=None: seen.append(e.user_id) or real_encode(m, e, t))
    stream = np.concatenate([_batch_indices(len(ex), s, 8, 1) for s in range(6)])
    b = LumenGenTrainConfig(steps=2, example_offset=24, **cfg)
    train_lumen_gen(_model(sids), ex, ids, b, out=tmp_path / "b", init_from=tmp_path / "a")
    assert seen == [ex[i].user_id for i in stream[24:40]]
    assert continued_stream_offset(tmp_path / "b", ex, seed=1) == 24 + 2 * 8  # a third stage goes on from there
    # resuming it with the stream from the start is another run
    with pytest.raises(CheckpointError, match="other examples or settings"):
        train_lumen_gen(_model(sids), ex, ids, LumenGenTrainConfig(steps=3, **cfg), out=tmp_path / "b",
                        init_from=tmp_path / "a")
    # a stage that replays its warm start's examples says so
    with caplog.at_level("WARNING", logger="lumenrec.agent.llm.lumen_gen.train"):
        train_lumen_gen(_model(sids), ex, ids, LumenGenTrainConfig(steps=1, **cfg), out=tmp_path / "c",
                        init_from=tmp_path / "a")
    assert "replaying" in caplog.text
    caplog.clear()  # ... but another seed is another stream: nothing replayed
    with caplog.at_level("WARNING", logger="lumenrec.agent.llm.lumen_gen.train"):
        train_lumen_gen(_model(sids), ex, ids, LumenGenTrainConfig(steps=1, **dict(cfg, seed=2)), out=tmp_path / "e",
                        init_from=tmp_path / "a")
    assert "replaying" not in caplog.text
    # runs saved before offsets existed keep their resume key; bad offsets are refused
    assert "example_offset" not in LumenGenTrainConfig().resume_key()
    assert LumenGenTrainConfig(example_offset=24).resume_key()["example_offset"] == 24
    for bad in (-1, True, 2.5):
        with pytest.raises(ConfigError, match="example_offset"):
            LumenGenTrainConfig(example_offset=bad)


def test_checkpoint_round_trip(sids, tmp_path):
    ids = [f"i{j}" for j in range(20)]
    m = _model(sids)
    with torch.no_grad():  # make the trainable weights non-trivial
        for p in m.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    p = m.prompt([3, 4], "bigger pack")
    before = m.score_items(p)
    d = save_lumen_gen(tmp_path / "ckpt", m, ids)
    assert {"config.json", "item_ids.json", "model.safetensors", "checksums.json"} <= {f.name for f in d.iterdir()}
    tok = _tokenizer()
    back, back_ids, cfg = load_lumen_gen(d, backbone=(_tiny_lm(len(tok)), tok))
    assert back_ids == ids and cfg["kind"] == "lumen_gen"
    assert np.array_equal(back.sids.codes, sids.codes)
    assert np.allclose(back.score_items(p), before, atol=1e-6)
    (d / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(CheckpointError, match="sha256"):
        load_lumen_gen(d, backbone=(_tiny_lm(len(tok)), tok))


def test_a_run_keeps_its_checkpoint_codes_and_refuses_other_ones(sids, tmp_path):
    def vectors():
        raise AssertionError("a checkpointed run must not recompute its codes")

    x, _ = _clustered()
    fresh = run_semantic_ids(tmp_path / "none", sids.config, 20, lambda: x)  # no checkpoint: assigned
    assert np.array_equal(fresh.codes, sids.codes)
    d = save_lumen_gen(tmp_path / "ckpt", _model(sids), [f"i{j}" for j in range(20)])
    assert np.array_equal(run_semantic_ids(d, sids.config, 20, vectors).codes, sids.codes)
    with pytest.raises(ConfigError, match="other semantic IDs"):
        run_semantic_ids(d, SemanticIDConfig(levels=2, codebook_size=4, seed=1), 20, vectors)
    with pytest.raises(ConfigError, match="other semantic IDs"):
        run_semantic_ids(d, sids.config, 21, vectors)


def test_retriever_returns_catalogue_ids_without_history(sids):
    cat = Catalog([Item(f"i{j}", f"item {j}") for j in range(20)])
    r = GenerativeLumenRetriever(_model(sids), cat)
    ids, scores = r.retrieve(Query(history=["i1", "i2"], text="something else"), k=5)
    assert len(ids) == 5 and not {"i1", "i2"} & set(ids) and all(i in cat for i in ids)
    assert list(scores) == sorted(scores, reverse=True)
    gen, _ = r.generate(Query(history=["i1"], exclude_ids=["i0"]), k=4)
    assert len(gen) == 4 and not {"i1", "i0"} & set(gen)
    with pytest.raises(CheckpointError):
        GenerativeLumenRetriever(_model(sids), Catalog([Item("a", "x")]))


def test_it_plugs_into_the_agent(sids):
    """The retriever and narrator inside the real Recommender: a chat turn shows catalogue items."""
    from lumenrec.agent.narrative import OfflineNarrator
    from lumenrec.agent.recommender import Recommender

    cat = Catalog([Item(f"i{j}", f"{'Blue' if j % 2 else 'Black'} gel pen model {j}", "Pilot" if j < 10 else "Bic",
                        ["Office", "Writing", "Pens"]) for j in range(20)])
    m = _model(sids)
    narrator = GenerativeLumenNarrator(m, cat, fallback=OfflineNarrator())
    rec = Recommender(cat, GenerativeLumenRetriever(m, cat), narrator=narrator)
    reply = rec.chat("s1", "I need gel pens")
    assert reply.items and all(it["id"] in cat for it in reply.items)
    assert isinstance(narrator.narrate("purchase_reason", cat[3], [cat[1]]), str)
    assert narrator.narrate("user_summary", None, [cat[1]])  # the fallback writes what the model was not trained for
    with pytest.raises(Exception, match="fallback"):
        GenerativeLumenNarrator(m, cat).narrate("user_summary", None, [cat[1]])


def test_a_system_directory_runs_the_generative_model(sids, tmp_path):
    """recommender.json with retriever.kind / narrator.kind lumen_gen: from_pretrained (what chat, demo,
    serve and replay load) rebuilds the model from the directory; a turn shows catalogue items and the
    narratives are fact-checked (the model's text, or the offline narrator's when it fails)."""
    from tiny_lm import save_tiny_backbone

    from lumenrec.agent.narrative import GroundedNarrator
    from lumenrec.agent.recommender import Recommender, write_manifest

    cat = Catalog([Item(f"i{j}", f"{'Blue' if j % 2 else 'Black'} gel pen model {j}", "Pilot" if j < 10 else "Bic",
                        ["Office", "Writing", "Pens"]) for j in range(20)])
    bb = save_tiny_backbone(tmp_path / "backbone")
    m = GenerativeLumen.from_backbone(LumenGenConfig(item_dim=sids.token_vectors.shape[1], lora_r=4, backbone=str(bb)), sids)
    save_lumen_gen(tmp_path / "sys" / "model", m, cat.ids)
    write_manifest(tmp_path / "sys", catalog=cat, retriever_kind="lumen_gen", checkpoint="model", narrator="lumen_gen")
    rec = Recommender.from_pretrained(tmp_path / "sys", narrator=None)  # None = the manifest's (replay passes it)
    assert isinstance(rec.retriever, GenerativeLumenRetriever) and isinstance(rec.narrator, GroundedNarrator)
    p = m.prompt([1, 2], "a blue one")
    assert np.allclose(rec.retriever.model.score_items(p), m.score_items(p), atol=1e-6)  # the same weights
    reply = rec.chat("s1", "I need gel pens")
    assert reply.items and all(it["id"] in cat for it in reply.items)
    assert rec.narrator.last["source"] in ("model", "fallback")
    assert [t.details["narrator"] for t in reply.trace if t.name == "narrate"] == ["GroundedNarrator"]
    with pytest.raises(ConfigError, match="narrator"):
        write_manifest(tmp_path / "bad", catalog=cat, retriever_kind="lumen_gen", checkpoint="model", narrator="gpt")
    write_manifest(tmp_path / "mixed", catalog=cat, narrator="lumen_gen")  # a text retriever has no model to narrate
    with pytest.raises(CheckpointError, match="needs retriever.kind 'lumen_gen'"):
        Recommender.from_pretrained(tmp_path / "mixed")


# ---- examples ------------------------------------------------------------------------------------
def test_examples_come_from_training_users_only(tiny_catalog):
    seqs = [np.array([0, 1, 2, 3]), np.array([4, 5, 0]), np.array([2, 3])]
    ex = build_examples(seqs, ["u1", "dev-user", "u3"], tiny_catalog,
                        ExampleConfig(positions_per_user=2, narrative_fraction=1.0), exclude_users={"dev-user"})
    assert ex and {e.user_id for e in ex} == {"u1", "u3"}
    items = [e for e in ex if e.task == "item"]
    assert {(tuple(e.history), e.target) for e in items} == {((0, 1), 2), ((0, 1, 2), 3), ((2,), 3)}
    assert any(e.critique for e in items) and any(e.critique is None for e in items)
    narr = [e for e in ex if e.task == "narrative"]
    assert narr and all(e.narrator == "offline" and e.narrative for e in narr)
    again = build_examples(seqs, ["u1", "dev-user", "u3"], tiny_catalog,
                           ExampleConfig(positions_per_user=2, narrative_fraction=1.0), exclude_users={"dev-user"})
    assert [(e.critique, e.narrative) for e in again] == [(e.critique, e.narrative) for e in ex]


def test_history_only_examples_can_be_thinned(tiny_catalog):
    seqs = [np.array([0, 1, 2, 3, 4, 5]), np.array([1, 0, 3, 2, 5, 4]), np.array([2, 3, 0, 1])] * 4
    users = [f"u{i}" for i in range(len(seqs))]
    cfg = dict(positions_per_user=4, narrative_fraction=0.0)
    full = build_examples(seqs, users, tiny_catalog, ExampleConfig(**cfg))
    none = build_examples(seqs, users, tiny_catalog, ExampleConfig(history_only_fraction=0.0, **cfg))
    half = build_examples(seqs, users, tiny_catalog, ExampleConfig(history_only_fraction=0.5, **cfg))
    crit = [e for e in full if e.critique]
    assert crit and [e for e in none if e.critique] == crit == [e for e in half if e.critique]
    assert not [e for e in none if e.critique is None]
    n_full, n_half = (sum(e.critique is None for e in x) for x in (full, half))
    assert 0 < n_half < n_full
    assert half == build_examples(seqs, users, tiny_catalog, ExampleConfig(history_only_fraction=0.5, **cfg))
    with pytest.raises(ConfigError, match="history_only_fraction"):
        ExampleConfig(history_only_fraction=1.2)


def test_missing_peft_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(MissingExtraError, match=r"lumenrec\[lumen-gen\]"):
        require_peft()


# ---- the request vector --------------------------------------------------------------------------
def _known_requests(vectors):
    """A request encoder with a known answer: the text 'want iK' embeds as item K's vector."""
    def encode(texts):
        return np.stack([vectors[int(t.rsplit("i", 1)[-1])] for t in texts])

    return encode


def _request_model(sids, vectors, seed=0):
    tok = _tokenizer()
    return GenerativeLumen(LumenGenConfig(item_dim=vectors.shape[1], lora_r=4, request_vector=True), sids,
                           _tiny_lm(len(tok), seed), tok, request_encoder=_known_requests(vectors))


def test_the_request_vector_is_one_soft_token_in_the_item_rows_space():
    x, _ = _clustered()
    leaf = assign_semantic_ids(x, SemanticIDConfig(levels=1, codebook_size=4, leaf="item", seed=0))
    m = _request_model(leaf, x)
    p = m.prompt([1, 2], "want i7")
    assert p.count(m.request_id) == 1 and np.array_equal(p.request, x[7])
    pos = p.index(m.request_id)
    assert p[pos - len(m._text("want i7")): pos] == m._text("want i7")  # right after the request text
    emb = m.embed(torch.tensor([list(p)]), torch.as_tensor(p.request)[None])[0, pos]  # (H,)
    row = leaf.item_tokens()[7][-1]  # item 7's own token: its row starts from the same vector
    assert torch.allclose(emb, m.items()[row] - m.items.delta[row], atol=1e-5)
    # the slot is read: the same tokens with another vector score otherwise; a slot without its vector is refused
    other = m.prompt([1, 2], "want i7")
    other.request = x[15]
    assert not np.allclose(m.score_items(p), m.score_items(other), atol=1e-4)
    with pytest.raises(ValueError, match="request vector"):
        m.score_items(list(p))
    # no request, no slot; and the option is off by default
    assert m.request_id not in m.prompt([1, 2], None) and m.prompt([1, 2], None).request is None
    plain = _model(leaf)
    assert plain.request_id not in plain.prompt([1], "want i7")
    with pytest.raises(ConfigError, match="request_vector"):  # an encoder of another width
        GenerativeLumen(LumenGenConfig(item_dim=16, lora_r=4, request_vector=True), leaf, _tiny_lm(len(m.tokenizer)),
                        m.tokenizer, request_encoder=lambda t: np.zeros((len(t), 8))).prompt([1], "want i2")


def test_training_and_scoring_read_the_request_vector_alike(sids):
    """The loss of a batch (one example with a request slot, one without) is exactly minus the log-probability
    that full-catalogue scoring gives each target: training and serving feed the vector the same way."""
    from lumenrec.agent.llm.lumen_gen.examples import GenExample
    from lumenrec.agent.llm.lumen_gen.train import _encode

    x, _ = _clustered()
    m = _request_model(sids, x)
    with torch.no_grad():
        for prm in m.parameters():
            if prm.requires_grad:
                prm.add_(torch.randn_like(prm) * 0.1)
    m.eval()
    a, b = GenExample("item", "u1", [1, 2], 13, critique="want i13"), GenExample("item", "u2", [3], 4)
    loss, _ = m.batch_loss([_encode(m, a), _encode(m, b)], LumenGenLoss())
    sa, sb = m.score_items(m.prompt(a.history, a.critique)), m.score_items(m.prompt(b.history))
    assert float(loss.detach()) * 2 * sids.num_levels == pytest.approx(-(sa[13] + sb[4]), rel=1e-5)


def test_a_request_vector_model_round_trips_and_resumes_only_as_itself(sids, tmp_path):
    ids = [f"i{j}" for j in range(20)]
    x, _ = _clustered()
    from lumenrec.agent.llm.lumen_gen.examples import GenExample

    ex = [GenExample("item", f"u{i}", [i], (i + 1) % 20, critique=f"want i{(i + 1) % 20}") for i in range(20)]
    cfg = dict(batch_size=4, lr=1e-2, lr_items=3e-2, warmup_steps=0, checkpoint_every=2, progress=False, seed=1,
               num_threads=1)
    m = _request_model(sids, x)
    train_lumen_gen(m, ex, ids, LumenGenTrainConfig(steps=2, **cfg), out=tmp_path / "run")
    p = m.prompt([3], "want i4")
    tok = _tokenizer()
    back, _, saved = load_lumen_gen(tmp_path / "run", backbone=(_tiny_lm(len(tok)), tok),
                                    request_encoder=_known_requests(x))
    assert saved["model"]["request_vector"] is True and back.config.request_vector
    assert np.allclose(back.score_items(back.prompt([3], "want i4")), m.score_items(p), atol=1e-6)
    with pytest.raises(CheckpointError, match="model configuration"):  # the same run without the vector: refused
        train_lumen_gen(_model(sids), ex, ids, LumenGenTrainConfig(steps=4, **cfg), out=tmp_path / "run")
    s = train_lumen_gen(_request_model(sids, x), ex, ids, LumenGenTrainConfig(steps=4, **cfg), out=tmp_path / "run")
    assert s["resumed_from"] == 2 and s["steps_total"] == 4


def test_the_default_request_encoder_is_the_item_texts_minilm():
    pytest.importorskip("sentence_transformers")
    from lumenrec.retriever.text_encoder import TextEncoder

    x = np.random.default_rng(0).normal(size=(12, 384)).astype(np.float32)
    ids = assign_semantic_ids(x, SemanticIDConfig(levels=1, codebook_size=3, leaf="item", seed=0))
    tok = _tokenizer()
    m = GenerativeLumen(LumenGenConfig(item_dim=384, lora_r=4, request_vector=True), ids, _tiny_lm(len(tok)), tok)
    got = m.prompt([1], "  a black ink cartridge, not HP ").request
    assert np.allclose(got, TextEncoder().encode("a black ink cartridge, not HP")[0], atol=1e-5)


# ---- distillation --------------------------------------------------------------------------------
def test_level_targets_split_the_teachers_mass_along_the_targets_prefix():
    from lumenrec.agent.llm.lumen_gen.distill import level_targets

    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [2, 0]])  # (N, L): 5 items, 3 clusters
    items, probs = np.array([1, 2, 4, 0]), np.array([0.4, 0.3, 0.2, 0.1], dtype=np.float32)
    got = level_targets(codes, 0, items, probs, [np.array([0, 1, 2]), np.array([0, 1])])
    assert np.allclose(got[0], [0.5, 0.3, 0.2])  # the mass of each cluster
    assert np.allclose(got[1], [0.2, 0.8])  # inside the target's cluster: items 0 and 1, renormalised
    # no teacher mass under the target's prefix: no soft target there
    none = level_targets(codes, 4, np.array([0, 1]), np.array([0.5, 0.5], dtype=np.float32),
                         [np.array([0, 1, 2]), np.array([0])])
    assert np.allclose(none[0], [1.0, 0.0, 0.0]) and none[1] is None


def test_the_distillation_loss_pulls_towards_the_teacher(sids):
    """With the same true targets, the soft part is the cross-entropy against the teacher: zero weight adds
    nothing; a teacher that agrees with the model costs its entropy; mass outside the trie is refused."""
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    allowed = torch.tensor([[True, True, True, False]])
    soft = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    base, _ = LumenGenLoss()(logits, allowed, torch.tensor([0]))
    same, parts0 = LumenGenLoss(distill_weight=0.0)(logits, allowed, torch.tensor([0]), item_soft=soft)
    assert float(same) == pytest.approx(float(base)) and "distill" not in parts0
    total, parts = LumenGenLoss(distill_weight=2.0)(logits, allowed, torch.tensor([0]), item_soft=soft)
    logp = torch.log_softmax(torch.tensor([2.0, 1.0, 0.0]), -1)
    assert parts["distill"] == pytest.approx(float(-(0.5 * logp[0] + 0.5 * logp[1])), rel=1e-5)
    assert float(total) == pytest.approx(float(base) + 2.0 * parts["distill"], rel=1e-5)
    with pytest.raises(ValueError, match="does not allow"):
        LumenGenLoss(distill_weight=1.0)(logits, allowed, torch.tensor([0]), item_soft=torch.tensor([[0.5, 0, 0, 0.5]]))


class _ScoresRetriever:
    """A teacher with known scores: item j scores -|j - 2 * len(history)| (history items would score highest)."""

    def score(self, queries):
        n = 20
        return np.stack([-np.abs(np.arange(n) - 2.0 * len(q.history)) + np.isin(np.arange(n), [int(h[1:]) for h in q.history]) * 99
                         for q in queries])


def test_training_towards_a_teacher_moves_the_model_to_its_choice(sids, tmp_path):
    """Every example's true target is item 19, but the teacher prefers item 2 * len(history): with the teacher the
    model learns to rank the teacher's item above what plain training gives it; targets are cached and checked."""
    from lumenrec.agent.llm.lumen_gen.distill import cached_teacher_targets, teacher_targets
    from lumenrec.agent.llm.lumen_gen.examples import GenExample

    ids = [f"i{j}" for j in range(20)]
    ex = [GenExample("item", "u", [1, 3, 5], 19, critique="something like this")] * 8
    soft = teacher_targets(_ScoresRetriever(), ex, ids, top_k=5, temperature=0.5, progress=False)
    top, p = soft[0]
    assert top[0] == 6 and not {1, 3, 5} & set(top.tolist()) and p.sum() == pytest.approx(1.0) and p[0] == p.max()
    key = {"k": 5}
    again = cached_teacher_targets(tmp_path / "t.npz", key, lambda: soft)
    assert (tmp_path / "t.npz").is_file() and np.array_equal(again[0][0], top)
    back = cached_teacher_targets(tmp_path / "t.npz", key, lambda: pytest.fail("the cached targets must be read"))
    assert np.array_equal(back[3][0], top) and np.allclose(back[3][1], p)
    cfg = dict(steps=30, batch_size=4, lr=1e-2, lr_items=3e-2, warmup_steps=0, checkpoint_every=10, progress=False,
               seed=1, num_threads=1)
    plain, taught = _model(sids), _model(sids)
    train_lumen_gen(plain, ex, ids, LumenGenTrainConfig(**cfg), out=tmp_path / "plain")
    s = train_lumen_gen(taught, ex, ids, LumenGenTrainConfig(distill_weight=1.0, **cfg), out=tmp_path / "taught",
                        teacher=soft)
    assert s["distill_loss_last20"] is not None
    pr = plain.prompt([1, 3, 5], "something like this")
    a, b = plain.score_items(pr), taught.score_items(pr)
    assert b[6] - b[19] > a[6] - a[19] + 1.0
    with pytest.raises(CheckpointError, match="teacher"):  # other soft targets: refused on resume
        other = teacher_targets(_ScoresRetriever(), ex, ids, top_k=3, progress=False)
        train_lumen_gen(_model(sids), ex, ids, LumenGenTrainConfig(distill_weight=1.0, **{**cfg, "steps": 40}),
                        out=tmp_path / "taught", teacher=other)
    with pytest.raises(ConfigError, match="distill_weight"):
        train_lumen_gen(_model(sids), ex, ids, LumenGenTrainConfig(**cfg), teacher=soft)
