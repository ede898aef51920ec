"""SASRec trainer: learns a deterministic chain, budgets, early stopping, checkpoints, resume, CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lumenrec.data import Catalog, Interactions, Item, UserSequence, leave_one_out
from lumenrec.errors import CheckpointError, ConfigError
from lumenrec.retriever.sasrec import SASRecConfig, SASRecRetriever
from lumenrec.retriever.train import Trainer, TrainConfig

N_ITEMS = 40


class _CE(nn.Module):
    """Test double of the full-softmax ranking loss (used only if losses.py is unavailable)."""

    def forward(self, query, positives, item_emb):
        return F.cross_entropy(query @ item_emb.T, positives)


class _ZeroLoss(nn.Module):
    """A loss with zero gradient: the weights never change, so validation never improves."""

    def forward(self, query, positives, item_emb):
        return 0.0 * (query.sum() + item_emb.sum())


def _softmax(num_items: int) -> nn.Module:
    try:
        from lumenrec.retriever.losses import make_loss
    except ImportError:
        return _CE()
    return make_loss("softmax", num_items)


def chain_split(n_users=200, n_items=N_ITEMS, seed=0):
    """Every user walks the chain i -> i+1 (mod n_items) from a random start: the next item is
    fully determined by the last one, so a sequential model should reach recall@1 close to 1."""
    rng = np.random.default_rng(seed)
    seqs = [UserSequence(f"u{u}", [int((s + k) % n_items) for k in range(int(rng.integers(4, 10)))])
            for u, s in enumerate(rng.integers(0, n_items, n_users))]
    return leave_one_out(Interactions(seqs, n_items))


def _small(**kw) -> SASRecConfig:
    return SASRecConfig(**{"num_items": N_ITEMS, "max_len": 12, "dim": 32, "num_layers": 1, "dropout": 0.1, **kw})


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"batch_size": 32, "lr": 5e-3, "progress": False, "num_threads": 1, "patience": 3, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One training run shared by the checkpoint tests."""
    split = chain_split()
    out = tmp_path_factory.mktemp("ckpt") / "sasrec"
    t0 = time.monotonic()
    trainer = Trainer(split, _small(), _cfg(epochs=15, checkpoint_dir=str(out)), loss_fn=_softmax(N_ITEMS),
                      item_ids=[f"i{j}" for j in range(N_ITEMS)], dataset_name="chain")
    result = trainer.fit()
    return split, trainer, result, out, time.monotonic() - t0


def test_training_learns_the_chain_quickly(trained):
    split, trainer, result, out, seconds = trained
    assert result.best_valid["recall@1"] > 0.8, result.history
    assert result.test["recall@1"] > 0.8
    assert result.test["n"] == len(split.test)
    assert seconds < 30
    assert result.steps > 0 and result.steps_per_s > 0 and result.peak_rss_mb > 0
    assert result.best_epoch >= 1 and result.history[-1]["epoch"] == result.epochs


def test_checkpoint_round_trip_gives_identical_scores(trained):
    split, trainer, result, out, _ = trained
    assert {p.name for p in out.iterdir()} >= {"config.json", "item_ids.json", "model.safetensors", "metrics.json",
                                               "checksums.json", "resume.safetensors", "resume.json"}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["dim"] == 32 and cfg["dataset"] == "chain" and "lumenrec_version" in cfg
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["recall@10"] == pytest.approx(result.test["recall@10"])
    catalog = Catalog(Item(f"i{j}", f"item {j}") for j in range(N_ITEMS))
    loaded = SASRecRetriever.from_pretrained(out, catalog)
    hist = split.test.histories[:20]
    np.testing.assert_array_equal(loaded.as_scorer()(hist), trainer.retriever(catalog).as_scorer()(hist))
    bare = SASRecRetriever.from_pretrained(out)  # no catalogue given: ids from item_ids.json
    assert bare.catalog.ids == catalog.ids


def test_checkpoint_with_wrong_catalogue_is_refused(trained):
    out = trained[3]
    wrong = Catalog(Item(f"x{j}", "") for j in range(N_ITEMS))
    with pytest.raises(CheckpointError, match="does not match"):
        SASRecRetriever.from_pretrained(out, wrong)


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_corrupted_or_missing_weights_raise_checkpoint_error(trained, tmp_path):
    bad = _copy(trained[3], tmp_path / "bad")
    data = bytearray((bad / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF  # flip bits inside a weight
    (bad / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 mismatch for model.safetensors"):
        SASRecRetriever.from_pretrained(bad)
    missing = _copy(trained[3], tmp_path / "missing")
    (missing / "item_ids.json").unlink()
    with pytest.raises(CheckpointError, match="missing file item_ids.json"):
        SASRecRetriever.from_pretrained(missing)
    with pytest.raises(CheckpointError, match="does not exist"):
        SASRecRetriever.from_pretrained(tmp_path / "nowhere")


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    """2 epochs + resume to 4 == 4 epochs straight (same weights: RNG, optimizer, order restored)."""
    split = chain_split(n_users=80)
    kw = dict(patience=100, lr=1e-3)
    straight = Trainer(split, _small(), _cfg(epochs=4, **kw), loss_fn=_softmax(N_ITEMS))
    r_straight = straight.fit()
    first = Trainer(split, _small(), _cfg(epochs=2, checkpoint_dir=str(tmp_path / "c"), **kw), loss_fn=_softmax(N_ITEMS))
    first.fit()
    resumed = Trainer(split, None, _cfg(epochs=4, **kw), loss_fn=_softmax(N_ITEMS), resume_from=tmp_path / "c")
    assert resumed.epoch == 2 and resumed.step == first.step
    r = resumed.fit()
    assert r.epochs == 4 and [h["epoch"] for h in r.history] == [1, 2, 3, 4]
    for k, a in straight.last_state.items():
        torch.testing.assert_close(resumed.last_state[k], a, rtol=0, atol=1e-6, msg=k)
    assert r.best_valid["ndcg@10"] == pytest.approx(r_straight.best_valid["ndcg@10"])


def test_resume_from_a_mid_epoch_stop(tmp_path):
    """Stopped by max_steps inside epoch 2, resumed to 3 epochs == 3 epochs straight."""
    split = chain_split(n_users=80)  # 80 users / 32 per batch = 3 batches per epoch
    kw = dict(patience=100, lr=1e-3)
    straight = Trainer(split, _small(), _cfg(epochs=3, **kw), loss_fn=_softmax(N_ITEMS))
    straight.fit()
    first = Trainer(split, _small(), _cfg(epochs=3, max_steps=4, checkpoint_dir=str(tmp_path / "c"), **kw),
                    loss_fn=_softmax(N_ITEMS))
    assert first.fit().stopped == "max_steps"
    resumed = Trainer(split, None, _cfg(epochs=3, **kw), loss_fn=_softmax(N_ITEMS), resume_from=tmp_path / "c")
    assert (resumed.epoch, resumed.batch_in_epoch, resumed.step) == (1, 1, 4)
    r = resumed.fit()
    assert r.steps == straight.step == 9 and r.epochs == 3
    for k, a in straight.last_state.items():
        torch.testing.assert_close(resumed.last_state[k], a, rtol=0, atol=1e-6, msg=k)


def test_early_stopping_triggers_after_patience_evals():
    split = chain_split(n_users=60)
    r = Trainer(split, _small(), _cfg(epochs=50, patience=2), loss_fn=_ZeroLoss()).fit()
    assert r.stopped == "early_stop"
    assert r.epochs == 3 and r.best_epoch == 1  # best at the first eval, then 2 without improvement


def test_budgets_stop_training():
    split = chain_split(n_users=60)
    r = Trainer(split, _small(), _cfg(epochs=50, max_steps=3), loss_fn=_softmax(N_ITEMS)).fit()
    assert r.stopped == "max_steps" and r.steps == 3 and r.best_valid  # evaluated once at the end
    assert r.epochs == 1  # 60 users / 32 = 2 batches per epoch: step 3 is inside epoch 2
    r = Trainer(split, _small(), _cfg(epochs=50, max_steps=2), loss_fn=_softmax(N_ITEMS)).fit()
    assert r.epochs == 1 and r.steps == 2  # the budget ended on an epoch's last batch: that epoch counts
    r = Trainer(split, _small(), _cfg(epochs=1000, max_time_s=1.0, patience=1000), loss_fn=_softmax(N_ITEMS)).fit()
    assert r.stopped == "max_time" and r.wall_time_s < 10 and r.best_valid


@pytest.mark.parametrize("field,value", [("lr", 0.0), ("batch_size", 0), ("loss", "hinge"), ("estimator", "x"),
                                         ("max_time_s", -1.0), ("metric", "auc")])
def test_train_config_rejects_bad_values(field, value):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**{field: value})
    assert e.value.field == field


def _write_pair(directory: Path, split_users=120) -> Path:
    """A chain dataset in the benchmark-pair format `lumenrec train --data PATH` reads."""
    rng = np.random.default_rng(1)
    inter = {str(u): [int((s + k) % N_ITEMS) for k in range(int(rng.integers(4, 10)))]
             for u, s in enumerate(rng.integers(0, N_ITEMS, split_users))}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Chain.inter.json").write_text(json.dumps(inter))
    return directory


def test_cli_train_prints_metrics_json(tmp_path, capsys):
    pytest.importorskip("lumenrec.retriever.losses")
    from lumenrec.cli import main

    data = _write_pair(tmp_path / "chain")
    rc = main(["train", "--data", str(data), "--out", str(tmp_path / "ck"), "--epochs", "2", "--dim", "16",
               "--layers", "1", "--threads", "1", "--no-progress", "--loss", "softmax"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    out = json.loads(captured.out)
    assert out["epochs"] == 2 and 0 <= out["test"]["recall@10"] <= 1 and out["dataset"] == "Chain"
    assert (tmp_path / "ck" / "model.safetensors").is_file()


def test_cli_train_fails_with_one_line_reason(tmp_path, capsys):
    from lumenrec.cli import main

    data = _write_pair(tmp_path / "chain")
    assert main(["train", "--data", str(data), "--dim", "15", "--heads", "2", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "num_heads" in err, err
    assert main(["train", "--data", str(tmp_path / "absent")]) == 1
    err = capsys.readouterr().err
    assert "unknown dataset" in err and err.strip().count("\n") == 0, err


def test_epoch_batches_cover_every_user_once_and_bucket_by_length():
    split = chain_split(n_users=500)
    t = Trainer(split, _small(), _cfg(batch_size=8), loss_fn=_CE())
    batches = t._epoch_batches(0)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(t.train_seqs)))
    assert all(len(b) <= 8 for b in batches)
    assert [b.tolist() for b in t._epoch_batches(0)] == [b.tolist() for b in batches]  # deterministic
    assert [b.tolist() for b in t._epoch_batches(1)] != [b.tolist() for b in batches]  # reshuffled per epoch
    spread = np.mean([np.ptp([len(t.train_seqs[i]) for i in b]) for b in batches])
    t_rand = Trainer(split, _small(), _cfg(batch_size=8, length_bucketing=False), loss_fn=_CE())
    spread_rand = np.mean([np.ptp([len(t_rand.train_seqs[i]) for i in b]) for b in t_rand._epoch_batches(0)])
    assert spread < 0.5 * spread_rand  # bucketed batches hold histories of similar length


def test_interrupted_swap_recovers_the_previous_checkpoint(tmp_path):
    """Simulate a kill between the two renames of save_checkpoint: loading must find the old one."""
    import os

    import torch

    from lumenrec.retriever.checkpoint import read_json, save_checkpoint, verify_checkpoint

    ck = tmp_path / "ckpt"
    save_checkpoint(ck, model_state={"w": torch.zeros(2)}, config={"step": 1}, item_ids=["a"])
    aside = tmp_path / ".ckpt.old-x"
    aside.mkdir()
    os.replace(ck, aside / "ckpt")  # what the first rename does; the process dies before the second
    assert not ck.exists()
    verify_checkpoint(ck)
    assert read_json(ck / "config.json")["step"] == 1 and not aside.exists()
