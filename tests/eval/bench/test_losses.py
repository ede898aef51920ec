"""The loss benchmark's run planning and its plain-words target statements (no training here: the
benchmark itself is a command, see docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from lumenrec.errors import ConfigError
from lumenrec.eval.bench.losses import LossBenchConfig, converged_summary, parse_run_spec, run_key


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
    from lumenrec.eval.bench.losses import _fuse_with_markov, _selected_and_final
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
    out = _fuse_with_markov(*_selected_and_final([trainer]), split)
    assert out["lam"] > 0.0
    assert out["valid_ndcg@10_by_lam"]["0.0"] < 0.5 < out["valid_ndcg@10_by_lam"][str(out["lam"])]
    assert out["test"]["mrr"] > 0.9 and out["test"]["n"] == len(split.test)


# ------------------------------------------------------------------------------ part "search" --

def test_search_space_default_architecture_is_the_converged_softmax_run():
    """The {} candidate must reuse the converged part's softmax run (same key), every other candidate gets
    its own key, and a bad SASRecConfig field is refused at construction, naming the dataset."""
    cfg = LossBenchConfig(datasets=("office-2014",), search_space={"office-2014": ({}, {"dim": 128}, {"max_len": 50, "dim": 128})})
    runs = cfg.search()
    soft = cfg.converged_run("office-2014", "softmax")
    assert run_key(runs[0]) == run_key(soft)
    keys = [run_key(r) for r in runs]
    assert len(set(keys)) == 3
    assert keys[2].endswith("|model:dim=128,max_len=50")
    assert all(r["loss"] == "softmax" and r["fusion"] for r in runs)
    with pytest.raises(ConfigError, match=r"search_space\['office-2014'\].*unknown SASRecConfig fields \['width'\]"):
        LossBenchConfig(search_space={"office-2014": ({"width": 128},)})


def test_run_configs_applies_the_model_overrides():
    from lumenrec.data import Interactions, UserSequence, leave_one_out
    from lumenrec.eval.bench.losses import run_configs

    split = leave_one_out(Interactions([UserSequence(f"u{u}", [(u + k) % 40 for k in range(6)]) for u in range(50)], 40))
    cfg = {"max_time_s": 60.0, "seed": 3, "threads": 1, "refit_epochs": 1, "eval_every": 1}
    run = {"loss": "softmax", "m": None, "estimator": None, "budget_epochs": 7, "patience": 4, "refit_epochs": 3}
    base, tcfg = run_configs(run, cfg, split)
    wide, _ = run_configs({**run, "model_overrides": {"dim": 128, "num_layers": 2}}, cfg, split)
    assert (wide.dim, wide.num_layers, wide.max_len, wide.dropout) == (128, 2, base.max_len, base.dropout)
    assert (base.dim, base.num_layers) == (64, 1)
    assert (tcfg.epochs, tcfg.patience, tcfg.refit_epochs, tcfg.seed) == (7, 4, 3, 3)
    with pytest.raises(ConfigError, match="num_heads"):
        run_configs({**run, "model_overrides": {"dim": 65}}, cfg, split)  # 2 heads must divide dim


def _arch_run(dim, valid_alone, valid_fused, test_fused):
    return {"model": {"dim": dim, "num_layers": 1, "max_len": 13}, "epochs": 30, "best_epoch": 20, "train_time_s": 100.0,
            "best_valid": {"ndcg@10": valid_alone}, "test": {"recall@10": 0.09, "ndcg@10": 0.05},
            "fusion": {"lam": 0.3, "valid_ndcg@10_by_lam": {"0.0": valid_alone, "0.3": valid_fused},
                       "test": {"recall@10": test_fused[0], "ndcg@10": test_fused[1]}}}


def test_search_selects_on_validation_never_on_test():
    from lumenrec.eval.bench.losses import search_markdown, select_on_validation

    a = _arch_run(64, 0.060, 0.066, (0.105, 0.065))  # best TEST
    b = _arch_run(128, 0.062, 0.068, (0.099, 0.061))  # best fused VALIDATION
    c = _arch_run(32, 0.064, 0.064, (0.080, 0.050))  # best validation alone, worse fused
    assert select_on_validation([a, b, c]) is b
    assert select_on_validation([]) is None
    res = {"datasets": {"beauty-2014": {"baselines": {"markov": {"recall@10": 0.085, "ndcg@10": 0.054}},
                                       "runs": [a, b, c], "selected": 1}}}
    text = search_markdown(res)
    assert "dim 128, 1 block, max_len 13 **(selected)**" in text
    assert "dim 64, 1 block, max_len 13 **(selected)**" not in text
    assert "test R@10 0.0990 / N@10 0.0610 (target 0.100 / 0.060: NOT met)" in text


# ------------------------------------------------------------------ converged part, several seeds --

def test_extra_seeds_get_their_own_keys_and_seed_zero_keys_are_unchanged():
    one = LossBenchConfig(datasets=("office-2014",), converged_runs=("softmax",))
    three = LossBenchConfig(datasets=("office-2014",), converged_runs=("softmax",), extra_seeds=(2, 0, 1, 2))
    assert three.seeds() == (0, 2, 1)
    keys = [run_key(r) for r in three.converged()]
    assert keys[0] == run_key(one.converged()[0]) and "seed" not in keys[0]
    assert keys[1].endswith("|seed2") and keys[2].endswith("|seed1")
    assert [r["seed"] for r in three.converged()] == [0, 2, 1]


def _seed_run(loss, m, est, seed, n10, fused=None):
    return {"loss": loss, "m": m, "estimator": est, "seed": seed, "test": {"ndcg@10": n10},
            **({"fusion": {"test": {"ndcg@10": fused}}} if fused is not None else {})}


def test_across_seeds_compares_each_seed_with_its_own_softmax():
    from lumenrec.eval.bench.losses import across_seeds

    runs = [_seed_run("softmax", None, None, 0, 0.060, 0.068), _seed_run("softmax", None, None, 1, 0.050, 0.066),
            _seed_run("warp", 16, "corrected", 0, 0.057), _seed_run("warp", 16, "corrected", 1, 0.050),
            _seed_run("warp", 16, "naive", 0, 0.058), _seed_run("warp", 16, "naive", 1, 0.049)]
    rows = {(a["loss"], a["estimator"]): a for a in across_seeds(runs)}
    soft, corr = rows[("softmax", None)], rows[("warp", "corrected")]
    assert soft["seeds"] == [0, 1] and soft["ndcg@10_mean"] == pytest.approx(0.055)
    assert soft["ndcg@10_sd"] == pytest.approx(0.00707, abs=1e-5) and soft["markov_ndcg@10_mean"] == pytest.approx(0.067)
    assert corr["vs_softmax_by_seed"] == pytest.approx([-0.05, 0.0])  # -5% against seed 0's softmax, 0% against seed 1's
    assert corr["vs_softmax_mean"] == pytest.approx(-0.025)
    assert corr["corrected_ge_naive"] == "1/2" and corr["markov_ndcg@10_mean"] is None
    assert "corrected_ge_naive" not in rows[("warp", "naive")]


def test_train_one_ensemble_end_to_end_on_a_synthetic_store():
    """Real glue of the search part, end to end on a small generated store: two members trained with
    seeds 5 and 6, the run's metrics are those of their mean distribution, and the Markov weight is tuned."""
    from lumenrec.eval.bench.losses import _train_one

    ds = "synthetic:num_items=160,num_users=300,max_seq_len=20,num_conversations=0"
    cfg = LossBenchConfig(datasets=(ds,), search_space={ds: ({"dim": 16, "max_len": 12, "ensemble": 2},)},
                          converged_epochs={ds: 2}, converged_refit_epochs={ds: 1}, seed=5)
    (run,) = cfg.search()
    assert run["ensemble"] == 2 and run_key(run).endswith("|model:dim=16,max_len=12|ensemble2")
    out = _train_one((run, {**__import__("dataclasses").asdict(cfg), "threads": 1}))
    assert [m["seed"] for m in out["members"]] == [5, 6] and out["threads"] == 1
    assert out["model"]["dim"] == 16 and out["model"]["max_len"] == 12
    assert out["epochs"] == "2+2" and out["train_time_s"] == pytest.approx(sum(m["train_time_s"] for m in out["members"]))
    n10 = [m["test"]["ndcg@10"] for m in out["members"]]
    assert out["test"]["ndcg@10"] != n10[0]  # the ensemble's own metrics, not member 0's
    assert 0.0 < out["test"]["ndcg@10"] <= 1.0 and out["best_valid"]["n"] == out["test"]["n"] > 0
    assert 0.0 <= out["fusion"]["lam"] <= 1.0 and len(out["fusion"]["valid_ndcg@10_by_lam"]) == 11
    assert "mean of 2 seeds" in __import__("lumenrec.eval.bench.losses", fromlist=["arch_label"]).arch_label(out)


@pytest.mark.parametrize("bad", [(-1,), (1.5,), (True,)])
def test_extra_seeds_must_be_non_negative_integers(bad):
    with pytest.raises(ConfigError, match="extra_seeds"):
        LossBenchConfig(extra_seeds=bad)


def test_command_line_fills_the_config_and_it_validates():
    from lumenrec.eval.bench.losses import _parser, config_from_args

    cfg = config_from_args(_parser().parse_args(["--workers", "1", "--threads", "2", "--extra-seeds", "1,2",
                                                 "--datasets", "beauty-2014"]))
    assert (cfg.workers, cfg.threads, cfg.extra_seeds, cfg.datasets) == (1, 2, (1, 2), ("beauty-2014",))
    with pytest.raises(ConfigError, match="threads"):
        config_from_args(_parser().parse_args(["--threads", "0"]))
