"""The loss benchmark's run planning and its plain-words target statements (no training here: the
benchmark itself is a command, see docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from lumenrec.errors import ConfigError
from lumenrec.eval.bench_losses import LossBenchConfig, converged_summary, parse_run_spec, run_key


@pytest.mark.parametrize("spec, expected", [
    ("softmax", ("softmax", None, None)),
    ("warp:16", ("warp", 16, "corrected")),
    ("lambdarank:64:naive", ("lambdarank", 64, "naive")),
    ("bpr:4", ("bpr", 4, None)),
])
def test_parse_run_spec(spec, expected):
    assert parse_run_spec(spec) == expected


@pytest.mark.parametrize("spec, fragment", [
    ("hinge:16", "unknown loss"), ("warp", "integer m"), ("warp:x", "integer m"), ("warp:0", "m must be"),
    ("warp:16:exact", "estimator"), ("bpr:16:naive", "no estimator"), ("softmax:16", "no m"),
])
def test_parse_run_spec_names_the_bad_spec(spec, fragment):
    with pytest.raises(ConfigError, match=fragment) as err:
        parse_run_spec(spec)
    assert spec in str(err.value)


def test_config_rejects_a_bad_converged_spec_at_construction():
    with pytest.raises(ConfigError, match="converged_runs"):
        LossBenchConfig(converged_runs=("softmax", "warp:sixteen"))


def test_converged_runs_have_their_own_keys_and_budgets():
    cfg = LossBenchConfig(datasets=("office-2014", "beauty-2014"), converged_runs=("softmax", "warp:16:corrected"),
                          converged_epochs={"office-2014": 200, "beauty-2014": 60})
    runs = cfg.converged()
    assert [(r["dataset"], r["loss"]) for r in runs] == [
        ("office-2014", "softmax"), ("office-2014", "warp"), ("beauty-2014", "softmax"), ("beauty-2014", "warp")]
    caps = {(r["dataset"], r["loss"]): r["budget_epochs"] for r in runs}
    assert caps[("beauty-2014", "softmax")] == 60
    assert caps[("beauty-2014", "warp")] == cfg.converged_sampled_epochs["beauty-2014"] == 150
    assert all(r["fusion"] for r in runs)
    grid_keys = {run_key(r) for r in cfg.runs()}
    assert not grid_keys & {run_key(r) for r in runs}, "a converged run must never be mistaken for a grid run"


def _run(loss, m, est, r10, n10, fusion=None):
    return {"loss": loss, "m": m, "estimator": est, "test": {"recall@10": r10, "ndcg@10": n10},
            **({"fusion": {"test": {"recall@10": fusion[0], "ndcg@10": fusion[1]}, "lam": 0.5}} if fusion else {})}


def test_converged_summary_states_targets_from_the_numbers():
    d = {"runs": [_run("softmax", None, None, 0.09, 0.050, fusion=(0.105, 0.064)),
                  _run("warp", 16, "corrected", 0.088, 0.048), _run("warp", 16, "naive", 0.07, 0.040)]}
    text = converged_summary("beauty-2014", d)
    assert "best model: full softmax + Markov, R@10 0.1050 / N@10 0.0640 (target 0.100 / 0.060: met)" in text
    assert "warp corrected m=16: N@10 0.0480 vs full softmax 0.0500 (-4.0%; target within -5%: met)" in text
    assert "warp naive m=16: N@10 0.0400 vs full softmax 0.0500 (-20.0%)" in text
    d["runs"][0]["fusion"]["test"]["recall@10"] = 0.099
    assert "(target 0.100 / 0.060: NOT met)" in converged_summary("beauty-2014", d)


def test_fuse_with_markov_tunes_on_validation_and_tests_the_refit_model():
    """Glue of the converged part: an untrained SASRec (random scores) + a Markov chain that knows the data.
    Every user walks i -> i+1, so the chain alone ranks each target first; the tuned mixture must use it."""
    import numpy as np
    import torch

    from lumenrec.data import Interactions, UserSequence, leave_one_out
    from lumenrec.eval.bench_losses import _fuse_with_markov
    from lumenrec.retriever.sasrec import SASRecConfig
    from lumenrec.retriever.train import TrainConfig, Trainer

    n = 30
    rng = np.random.default_rng(0)
    seqs = [UserSequence(f"u{u}", [int((s + k) % n) for k in range(int(rng.integers(4, 9)))])
            for u, s in enumerate(rng.integers(0, n, 120))]
    split = leave_one_out(Interactions(seqs, n))
    torch.manual_seed(0)
    trainer = Trainer(split, SASRecConfig(num_items=n, max_len=8, dim=16, num_layers=1, dropout=0.0),
                      TrainConfig(epochs=1, max_steps=1, lr=1e-9, batch_size=16, progress=False, num_threads=1,
                                  refit_full=False))
    trainer.fit()
    out = _fuse_with_markov(trainer, split)
    assert out["lam"] > 0.0
    assert out["valid_ndcg@10_by_lam"]["0.0"] < 0.5 < out["valid_ndcg@10_by_lam"][str(out["lam"])]
    assert out["test"]["mrr"] > 0.9 and out["test"]["n"] == len(split.test)
