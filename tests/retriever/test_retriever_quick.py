"""Refit on train_full (TrainConfig.refit_full) and train_quick (what `lumenrec quickstart` runs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lumenrec.data import Catalog, Interactions, Item, UserSequence, leave_one_out
from lumenrec.errors import ConfigError
from lumenrec.retriever.sasrec import SASRecConfig, SASRecRetriever
from lumenrec.retriever.train import TrainConfig, Trainer

N_ITEMS = 40


def _chain_split(n_users=120, seed=0):
    rng = np.random.default_rng(seed)
    seqs = [UserSequence(f"u{u}", [int((s + k) % N_ITEMS) for k in range(int(rng.integers(4, 10)))])
            for u, s in enumerate(rng.integers(0, N_ITEMS, n_users))]
    return leave_one_out(Interactions(seqs, N_ITEMS))


def _model() -> SASRecConfig:
    return SASRecConfig(num_items=N_ITEMS, max_len=12, dim=16, num_layers=1, dropout=0.1)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"batch_size": 32, "lr": 5e-3, "progress": False, "num_threads": 1, "patience": 100,
                          "epochs": 3, **kw})


def _spy_batches(trainer: Trainer) -> list[tuple[bool, list[list[int]]]]:
    """Record (in selection phase?, sequences) of every training batch the trainer builds."""
    seen: list[tuple[bool, list[list[int]]]] = []
    selection = trainer.train_seqs
    original = trainer._batch

    def spy(idx):
        seen.append((trainer.train_seqs is selection, [trainer.train_seqs[i].tolist() for i in idx]))
        return original(idx)

    trainer._batch = spy
    return seen


def test_refit_trains_on_train_full_after_selection_and_never_on_test_targets():
    split = _chain_split()
    trainer = Trainer(split, _model(), _cfg(refit_epochs=2))
    seen = _spy_batches(trainer)
    result = trainer.fit()
    selection = sorted(s for sel, batch in seen if sel for s in batch)
    refit = sorted(s for sel, batch in seen if not sel for s in batch)
    as_lists = lambda seqs: sorted(s.tolist() for s in seqs if len(s) >= 2)  # noqa: E731
    assert selection == sorted(as_lists(split.train) * 3)  # 3 selection epochs on seq[:-2]
    assert refit == sorted(as_lists(split.train_full) * 2)  # 2 refit epochs on seq[:-1]
    # no training sequence ends with (or contains) a user's test target position: seq[:-1] at most
    full_by_len = {tuple(h.tolist()) for h in split.test.histories}
    assert all(tuple(s) in full_by_len or len(s) < 3 for s in refit)
    assert result.refit_epochs == 2 and result.test_before_refit and result.test
    assert result.test != result.test_before_refit or result.test["recall@1"] == 1.0


def test_refit_checkpoint_records_the_refit_and_holds_the_refit_weights(tmp_path):
    split = _chain_split()
    ids = [f"i{j}" for j in range(N_ITEMS)]
    trainer = Trainer(split, _model(), _cfg(refit_epochs=1, checkpoint_dir=str(tmp_path / "c")), item_ids=ids)
    result = trainer.fit()
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    metrics = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert cfg["refit"]["epochs"] == 1 and cfg["train"]["refit_full"] is True
    assert metrics["refit"]["epochs"] == 1 and "train_full" in metrics["refit"]["data"]
    assert metrics["test"]["recall@10"] == pytest.approx(result.test["recall@10"])
    assert metrics["refit"]["test_before_refit"]["recall@10"] == pytest.approx(result.test_before_refit["recall@10"])
    catalog = Catalog(Item(i, "") for i in ids)
    loaded = SASRecRetriever.from_pretrained(tmp_path / "c", catalog)
    hist = split.test.histories[:10]
    np.testing.assert_array_equal(loaded.as_scorer()(hist), trainer.retriever(catalog).as_scorer()(hist))
    # the selected (pre-refit) weights are kept for a resume, and differ from the refit ones
    resumed = Trainer(split, None, _cfg(epochs=3, refit_full=False), item_ids=ids, resume_from=tmp_path / "c")
    assert any(not torch.equal(resumed.best_state[k], v) for k, v in loaded.model.state_dict().items())


def test_refit_off_gives_the_selected_weights_and_no_refit_record(tmp_path):
    split = _chain_split(n_users=60)
    trainer = Trainer(split, _model(), _cfg(refit_full=False, checkpoint_dir=str(tmp_path / "c")))
    result = trainer.fit()
    assert result.refit_epochs == 0 and result.test_before_refit == {}
    assert json.loads((tmp_path / "c" / "config.json").read_text())["refit"] is None
    for k, v in trainer.best_state.items():
        assert torch.equal(trainer.model.state_dict()[k], v), k


@pytest.mark.parametrize("field,value", [("refit_epochs", -1), ("refit_epochs", 1.5), ("refit_full", "yes")])
def test_refit_config_rejects_bad_values(field, value):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**{field: value})
    assert e.value.field == field


def test_quick_configs_follow_the_dataset():
    from lumenrec.retriever.quick import quick_configs

    split = _chain_split()
    model, train = quick_configs(split, 30.0)
    lengths = [len(s) for s in split.train_full]
    assert model.num_items == N_ITEMS and model.max_len == max(10, int(np.percentile(lengths, 90)))
    assert train.max_time_s == 30.0 and train.refit_full
    with pytest.raises(ConfigError) as e:
        quick_configs(split, 0.0)
    assert e.value.field == "max_time_s"


def test_train_quick_on_synthetic_store_clearly_beats_popularity(tmp_path):
    """The issue's check: a retriever trained on the synthetic store is clearly better than popularity."""
    from lumenrec.data.registry import load_dataset
    from lumenrec.eval import PopularityScorer, evaluate
    from lumenrec.retriever.quick import train_quick

    ds = load_dataset("synthetic:num_items=500,num_users=800,num_conversations=0")
    split = leave_one_out(ds.interactions)
    pop = evaluate(PopularityScorer(split.train_full, split.num_items), split.test, (10,))
    test = train_quick(ds, split, tmp_path / "sasrec", max_time_s=20.0, num_threads=1)
    assert test["n"] == len(split.test)
    assert test["recall@10"] > 2 * pop["recall@10"] and test["ndcg@10"] > 2 * pop["ndcg@10"], (test, pop)
    loaded = SASRecRetriever.from_pretrained(tmp_path / "sasrec", ds.catalog)
    assert json.loads((tmp_path / "sasrec" / "config.json").read_text())["refit"]["epochs"] >= 1
    assert loaded.model.config.num_items == 500
