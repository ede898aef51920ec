"""Benchmark of the ranking losses (issue: Retriever I).

Trains the SASRec retriever with every loss on real datasets under ONE fixed wall-clock budget per
run, evaluates it with full-catalogue ranking (leave-one-out test, history masked), and reports
R@10, N@10, MRR, train wall time and peak memory beside the Markov and popularity baselines of the
same run. A second part times one training step of full softmax vs sampled losses on synthetic
catalogues of 1e4..1e6 items.

    python -m lumenrec.eval.bench.losses                      # both parts, defaults below
    python -m lumenrec.eval.bench.losses --part grid --datasets office-2014 --epochs 5
    python -m lumenrec.eval.bench.losses --part scaling

Each run is a fresh subprocess (so its peak memory is its own); `--workers` runs go at once with
`--threads` torch threads each. Finished runs are appended to `runs/bench_losses/runs.jsonl` and
skipped when the command is run again (resumable). Results: docs/results/losses.json,
docs/results/loss_scaling.json, docs/loss_scaling.png and sections of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import multiprocessing as mp
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lumenrec.errors import ConfigError

log = logging.getLogger(__name__)

SAMPLED = ("sampled_softmax", "bpr", "warp", "lambdarank")
TARGETS = {"beauty-2014": (0.100, 0.060), "office-2014": (0.120, 0.070)}  # the best-model R@10 / N@10


def target_verdict(ds: str, recall10: float, ndcg10: float) -> str:
    """'(target 0.100 / 0.060: met)' or '... NOT met)' for dataset `ds` (which must be in TARGETS)."""
    tr, tn = TARGETS[ds]
    return f"(target {tr:.3f} / {tn:.3f}: {'met' if recall10 >= tr and ndcg10 >= tn else 'NOT met'})"


@dataclass
class LossBenchConfig:
    """What the loss benchmark runs. Defaults are the committed benchmark's settings.

    The budget of a run is a fixed number of EPOCHS per dataset (so that contention on the shared
    machine changes the wall time column, not the quality), with early stopping on validation
    NDCG@10 and a wall-clock safety cap. Model settings come from
    :func:`lumenrec.retriever.quick.quick_configs` (tuned on Office/Beauty: 1 block, dim 64,
    dropout 0.5, lr 2e-3, batch 128, max_len = 90th percentile of history lengths).
    """

    datasets: tuple[str, ...] = ("office-2014", "beauty-2014")  # the two real datasets
    ms: tuple[int, ...] = (4, 16, 64, 256)  # negatives per positive for the sampled losses
    losses: tuple[str, ...] = ("softmax", "sampled_softmax", "bpr", "warp", "lambdarank")
    epochs: dict[str, int] = field(default_factory=lambda: {"office-2014": 30, "beauty-2014": 8})
    #   one fixed epoch budget per run and dataset; Beauty epochs are ~10x the cost of Office ones
    default_epochs: int = 10  # budget for datasets not named in `epochs`
    refit_epochs: int = 1  # epochs on train_full after selection (TrainConfig.refit_full); same for all
    eval_every: int = 1  # validation evaluations (full ranking) every this many epochs
    max_time_s: float = 1500.0  # safety cap per run; a run that hits it says so in its `stopped` column
    workers: int = 2  # runs at once (the machine has 2 cores)
    threads: int = 1  # torch threads per run (1 is fastest per core on this machine)
    seed: int = 0  # same seed for every run: same init, same data order
    run_dir: str = "runs/bench_losses"  # resumable per-run results (not committed)
    # -- part "converged": train to convergence (early stopping), not to an equal epoch budget --
    converged_runs: tuple[str, ...] = ("softmax", "warp:16:corrected", "warp:16:naive", "lambdarank:16:corrected",
                                       "lambdarank:16:naive")
    #   loss[:m[:estimator]] specs; m=16 is the "within 5% of full softmax" point
    converged_epochs: dict[str, int] = field(default_factory=lambda: {"office-2014": 200, "beauty-2014": 60})
    #   upper bounds for full softmax; early stopping on validation NDCG@10 ends the runs (Beauty: ~30-60 s per epoch)
    converged_sampled_epochs: dict[str, int] = field(default_factory=lambda: {"office-2014": 200, "beauty-2014": 150})
    #   upper bounds for the sampled losses: m=16 of 12k items learns less per epoch (Beauty runs were still improving
    #   at 60 epochs) but an epoch costs ~7 s instead of 30-60 s
    converged_eval_every: dict[str, int] = field(default_factory=lambda: {"office-2014": 1, "beauty-2014": 2})
    #   Beauty validation costs ~5 s per evaluation, so every 2nd epoch
    converged_patience: dict[str, int] = field(default_factory=lambda: {"office-2014": 10, "beauty-2014": 5})
    #   evaluations without a better valid NDCG@10 before stopping: 10 epochs on both (Beauty evaluates every 2nd);
    #   Office validation N@10 is noisy from epoch to epoch, and patience 5 stopped softmax at epoch 32
    converged_max_time_s: float = 5400.0  # safety cap per converged run
    converged_refit_epochs: dict[str, int] = field(default_factory=lambda: {"office-2014": 3, "beauty-2014": 3})
    #   refit epochs on train_full: 3 is the library default (TrainConfig, quick_configs); the equal-epoch grid uses 1
    extra_seeds: tuple[int, ...] = ()  # the converged part also runs with these seeds (mean +- sd across seeds,
    #   each sampled loss compared with the full softmax of the SAME seed)
    # -- part "search": which SASRec architecture is the best model? full softmax, converged budgets, chosen on VALIDATION --
    search_space: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=lambda: {
        "office-2014": (*({k: v for k, v in (("dim", d), ("num_layers", n), ("max_len", L)) if v is not None}
                           for d in (None, 128) for n in (None, 2) for L in (None, 50)),
                        {"ensemble": 3}, {"max_len": 50, "ensemble": 3}),
        "beauty-2014": ({}, {"max_len": 50}, {"dim": 128, "max_len": 50}, {"ensemble": 3}, {"ensemble": 5})})
    #   SASRecConfig overrides of the quick_configs model ({} = the model of every other part), plus "ensemble": n
    #   (the mean distribution of n models trained with seeds seed..seed+n-1, n times the cost). Office: a full 2x2x2
    #   factorial of width/depth/window (1-4 min a run) and two 3-seed ensembles; Beauty (15-40 min a model): a longer
    #   window, a longer window + width, and 3- and 5-seed ensembles of the default model (the 5-seed one was added
    #   after the first search had been read, see the reading in docs/benchmarks.md; it is chosen on validation too)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError("workers", self.workers, "must be >= 1")
        if self.threads < 1:
            raise ConfigError("threads", self.threads, "must be >= 1")
        if any(m < 1 for m in self.ms):
            raise ConfigError("ms", self.ms, "every m must be >= 1")
        bad = set(self.losses) - {"softmax", *SAMPLED}
        if bad:
            raise ConfigError("losses", sorted(bad), "unknown loss names")
        if any(e < 1 for e in self.epochs.values()) or self.default_epochs < 1:
            raise ConfigError("epochs", self.epochs, "every epoch budget must be >= 1")
        for spec in self.converged_runs:
            parse_run_spec(spec)  # raises ConfigError naming the bad spec
        if any(p < 1 for p in self.converged_patience.values()):
            raise ConfigError("converged_patience", self.converged_patience, "every patience must be >= 1")
        if any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in self.extra_seeds):
            raise ConfigError("extra_seeds", self.extra_seeds, "seeds must be integers >= 0")
        from lumenrec.retriever.sasrec import SASRecConfig

        known = set(SASRecConfig.__dataclass_fields__) - {"num_items"}
        for ds, space in self.search_space.items():
            for over in space:
                n = over.get("ensemble", 1)
                if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                    raise ConfigError(f"search_space[{ds!r}]", over, "'ensemble' (members trained with seeds seed, "
                                      "seed+1, ...) must be an integer >= 1")
                bad = set(over) - known - {"ensemble"}
                if bad:
                    raise ConfigError(f"search_space[{ds!r}]", over, f"unknown SASRecConfig fields {sorted(bad)}; "
                                      f"known: {sorted(known)}")

    def budget(self, dataset: str) -> int:
        return int(self.epochs.get(dataset, self.default_epochs))

    def runs(self) -> list[dict[str, Any]]:
        """Every (dataset, loss, m, estimator) run of the grid."""
        out = []
        for ds in self.datasets:
            for loss in self.losses:
                if loss == "softmax":
                    out.append({"dataset": ds, "loss": loss, "m": None, "estimator": None})
                    continue
                for m in self.ms:
                    ests = ("naive", "corrected") if loss in ("warp", "lambdarank") else (None,)
                    for est in ests:
                        out.append({"dataset": ds, "loss": loss, "m": m, "estimator": est})
        for r in out:
            r["budget_epochs"] = self.budget(r["dataset"])
        return out

    def seeds(self) -> tuple[int, ...]:
        """`seed` first, then the extra seeds of the converged part."""
        return (self.seed, *dict.fromkeys(s for s in self.extra_seeds if s != self.seed))

    def converged(self) -> list[dict[str, Any]]:
        """Every (seed, dataset, spec) run of the converged part, with its budget, patience and Markov fusion."""
        return [self.converged_run(ds, spec, seed) for seed in self.seeds() for ds in self.datasets
                for spec in self.converged_runs]

    def converged_run(self, ds: str, spec: str, seed: int | None = None) -> dict[str, Any]:
        """One run of the converged part: `spec` on dataset `ds` with that dataset's budgets."""
        loss, m, est = parse_run_spec(spec)
        return {"dataset": ds, "loss": loss, "m": m, "estimator": est, "seed": self.seed if seed is None else seed,
                "budget_epochs": int((self.converged_epochs if loss == "softmax"
                                      else self.converged_sampled_epochs).get(ds, 200)),
                "eval_every": int(self.converged_eval_every.get(ds, 1)),
                "patience": int(self.converged_patience.get(ds, 10)), "max_time_s": self.converged_max_time_s,
                "refit_epochs": int(self.converged_refit_epochs.get(ds, 3)),
                "fusion": True, "part": "converged"}

    def search(self) -> list[dict[str, Any]]:
        """Every (dataset, architecture) run of the search part: full softmax with the converged part's budgets.
        The {} architecture IS the converged part's softmax run (same key), so it is trained once."""
        out = []
        for ds in self.datasets:
            for over in self.search_space.get(ds, ({},)):
                r = self.converged_run(ds, "softmax")
                arch = {k: v for k, v in over.items() if k != "ensemble"}
                if arch:
                    r["model_overrides"] = dict(sorted(arch.items()))
                if over.get("ensemble", 1) > 1:
                    r["ensemble"] = int(over["ensemble"])
                out.append(r)
        return out


def parse_run_spec(spec: str) -> tuple[str, int | None, str | None]:
    """'softmax' | 'loss:m' | 'loss:m:estimator' -> (loss, m, estimator)."""
    parts = spec.split(":")
    loss = parts[0]
    if loss not in ("softmax", *SAMPLED):
        raise ConfigError("converged_runs", spec, f"unknown loss {loss!r}")
    if loss == "softmax":
        if len(parts) != 1:
            raise ConfigError("converged_runs", spec, "softmax takes no m or estimator")
        return loss, None, None
    try:
        m = int(parts[1])
    except (IndexError, ValueError):
        raise ConfigError("converged_runs", spec, "sampled losses need 'loss:m' with an integer m") from None
    if m < 1:
        raise ConfigError("converged_runs", spec, "m must be >= 1")
    est = parts[2] if len(parts) > 2 else ("corrected" if loss in ("warp", "lambdarank") else None)
    if loss in ("warp", "lambdarank") and est not in ("naive", "corrected"):
        raise ConfigError("converged_runs", spec, "estimator must be naive or corrected")
    if loss not in ("warp", "lambdarank") and len(parts) > 2:
        raise ConfigError("converged_runs", spec, f"{loss} has no estimator")
    return loss, m, est


def run_key(r: dict[str, Any]) -> str:
    key = f"{r['dataset']}|{r['loss']}|{r['m']}|{r['estimator']}|{r['budget_epochs']}"
    if r.get("part") != "converged":
        return key
    key += f"|converged|p{r['patience']}|refit{r.get('refit_epochs', 1)}"
    if r.get("seed", 0):
        key += f"|seed{r['seed']}"  # seed 0 keys stay as they were before seeds were part of the key
    if r.get("model_overrides"):
        key += "|model:" + ",".join(f"{k}={v}" for k, v in sorted(r["model_overrides"].items()))
    if r.get("ensemble", 1) > 1:
        key += f"|ensemble{r['ensemble']}"
    return key


def arch_label(r: dict[str, Any]) -> str:
    """'dim 64, 1 block, max_len 13' from the run's model config."""
    m = r["model"]
    ens = f", mean of {r['ensemble']} seeds" if r.get("ensemble", 1) > 1 else ""
    return f"dim {m['dim']}, {m['num_layers']} block{'s' if m['num_layers'] > 1 else ''}, max_len {m['max_len']}{ens}"


def label(r: dict[str, Any]) -> str:
    if r["loss"] == "softmax":
        return "full softmax"
    est = f" {r['estimator']}" if r.get("estimator") else ""
    return f"{r['loss']}{est} m={r['m']}"


# ---------------------------------------------------------------------------------------- grid --

def _train_one(args: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    """One run, in its own process: train under the budget, evaluate on the test cases."""
    run, cfg = args
    import torch

    torch.set_num_threads(cfg["threads"])
    from lumenrec.data import leave_one_out
    from lumenrec.data.registry import load_dataset
    from lumenrec.retriever.train import Trainer

    ds = load_dataset(run["dataset"], with_conversations=False)
    split = leave_one_out(ds.interactions)
    t0 = time.time()
    trainers, fits = [], []
    for i in range(int(run.get("ensemble", 1))):  # an ensemble trains its members with seeds seed, seed+1, ...
        mcfg, tcfg = run_configs({**run, "seed": run.get("seed", cfg["seed"]) + i}, cfg, split)
        trainers.append(Trainer(split, mcfg, tcfg, item_ids=ds.catalog.ids, dataset_name=ds.name))
        fits.append(trainers[-1].fit())
    res = fits[0]
    out = {**run, "model": mcfg.to_dict(), "test": res.test, "test_before_refit": res.test_before_refit,
           "refit_epochs": res.refit_epochs, "best_valid": res.best_valid, "epochs": res.epochs, "best_epoch": res.best_epoch,
           "stopped": res.stopped, "train_time_s": res.train_time_s, "wall_time_s": round(time.time() - t0, 1),
           "steps_per_s": res.steps_per_s, "sequences_per_s": res.sequences_per_s,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "threads": cfg["threads"],
           "history": [{k: h.get(k) for k in ("epoch", "loss", "ndcg@10", "recall@10")} for h in res.history]}
    selected, final = _selected_and_final(trainers)
    if len(trainers) > 1:
        out.update(_ensemble_metrics(selected, final, trainers, fits, split))
    if run.get("fusion"):
        out["fusion"] = _fuse_with_markov(selected, final, split)
    return out


def _selected_and_final(trainers) -> tuple[list, list]:
    """Per trainer: a copy of the model with its selected (pre-refit) weights, and the final model."""
    import copy

    selected = []
    for t in trainers:
        m = copy.deepcopy(t.model)
        m.load_state_dict(t.best_state)
        selected.append(m)
    return selected, [t.model for t in trainers]


def _seq_scorer(models):
    """One SASRec's scores, or the mean next-item distribution of several (lumenrec.retriever.fusion)."""
    from lumenrec.retriever.fusion import mean_distribution
    from lumenrec.retriever.sasrec import score_histories

    fs = [lambda h, m=m: score_histories(m, h) for m in models]
    return fs[0] if len(fs) == 1 else mean_distribution(fs)


def _ensemble_metrics(selected, final, trainers, fits, split) -> dict[str, Any]:
    """The run's metrics for an ensemble of seeds: validation and pre-refit test of the mean distribution
    of the selected weights, test of the refit ones; each member's own numbers are kept under `members`."""
    from lumenrec.eval import evaluate

    return {"best_valid": evaluate(_seq_scorer(selected), split.valid), "test_before_refit": evaluate(_seq_scorer(selected), split.test),
            "test": evaluate(_seq_scorer(final), split.test),
            "epochs": "+".join(str(f.epochs) for f in fits), "best_epoch": "+".join(str(f.best_epoch) for f in fits),
            "stopped": ",".join(f.stopped for f in fits), "train_time_s": sum(f.train_time_s for f in fits),
            "members": [{"seed": t.config.seed, "test": f.test, "best_valid": f.best_valid, "epochs": f.epochs,
                         "best_epoch": f.best_epoch, "train_time_s": f.train_time_s} for t, f in zip(trainers, fits)]}


def run_configs(run: dict[str, Any], cfg: dict[str, Any], split) -> tuple[Any, Any]:
    """(SASRecConfig, TrainConfig) of one benchmark run: quick_configs' model with the run's
    `model_overrides`, and the run's loss, negatives, estimator and budgets."""
    import dataclasses

    from lumenrec.retriever.quick import quick_configs

    mcfg, tcfg = quick_configs(split, run.get("max_time_s", cfg["max_time_s"]), seed=run.get("seed", cfg["seed"]),
                              num_threads=cfg["threads"])
    if run.get("model_overrides"):
        mcfg = dataclasses.replace(mcfg, **run["model_overrides"])  # __post_init__ re-validates
    tcfg = dataclasses.replace(tcfg, loss=run["loss"], num_negatives=run["m"] or 16,
                               estimator=run["estimator"] or "corrected", epochs=run["budget_epochs"],
                               refit_epochs=run.get("refit_epochs", cfg["refit_epochs"]),
                               eval_every=run.get("eval_every", cfg["eval_every"]),
                               patience=run.get("patience", tcfg.patience), progress=False)
    return mcfg, tcfg


def _fuse_with_markov(selected, final, split) -> dict[str, Any]:
    """SASRec + Markov mixture (lumenrec.retriever.fusion): the weight is tuned on VALIDATION with the
    `selected` (pre-refit) models and a Markov chain fitted on split.train; the test uses the `final`
    (refit) models and a chain fitted on split.train_full, as every test row of this benchmark does.
    Several models (an ensemble) are one component: the mean of their distributions."""
    from lumenrec.eval import MarkovScorer, evaluate
    from lumenrec.retriever.fusion import MixtureScorer, tune_mixture

    lam, valid_by_lam = tune_mixture(_seq_scorer(selected), MarkovScorer(split.train, split.num_items), split.valid)
    test = evaluate(MixtureScorer(_seq_scorer(final), MarkovScorer(split.train_full, split.num_items), lam),
                    split.test, (10, 20))
    return {"lam": lam, "valid_ndcg@10_by_lam": {str(k): v for k, v in valid_by_lam.items()}, "test": test}


@functools.lru_cache(maxsize=None)
def baselines(dataset: str) -> dict[str, dict[str, float]]:
    from lumenrec.data import leave_one_out
    from lumenrec.data.registry import load_dataset
    from lumenrec.eval import MarkovScorer, PopularityScorer, evaluate

    ds = load_dataset(dataset, with_conversations=False)
    split = leave_one_out(ds.interactions)
    ks = (10, 20)
    return {"popularity": evaluate(PopularityScorer(split.train_full, split.num_items), split.test, ks),
            "markov": evaluate(MarkovScorer(split.train_full, split.num_items), split.test, ks)}


def _run_all(cfg: LossBenchConfig, runs: list[dict[str, Any]], done_path: Path) -> dict[str, dict[str, Any]]:
    """Run every run not yet in `done_path` (JSON lines, appended as runs finish); return all, by key."""
    from tqdm.auto import tqdm

    done_path.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if done_path.exists():
        for line in done_path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[run_key(r)] = r
    todo = [r for r in runs if run_key(r) not in done]
    log.info("%d runs, %d already done, %d to go", len(runs), len(runs) - len(todo), len(todo))
    if not todo:
        return done
    cdict = asdict(cfg)
    # longest budgets first so the two workers finish together
    todo.sort(key=lambda r: (r["dataset"] != "beauty-2014", r["loss"] != "softmax"))
    ctx = mp.get_context("spawn")
    with ctx.Pool(min(cfg.workers, len(todo)), maxtasksperchild=1) as pool:
        for r in tqdm(pool.imap_unordered(_train_one, [(r, cdict) for r in todo]), total=len(todo), desc="loss runs"):
            done[run_key(r)] = r
            _append_line(done_path, json.dumps(r))
            log.info("%s %s: test N@10 %.4f (%s after %s epochs)", r["dataset"], label(r), r["test"]["ndcg@10"],
                     r["stopped"], r["epochs"])
    return done


def _append_line(path: Path, line: str) -> None:
    """Append one line with ONE write(2) on an O_APPEND descriptor, so that two benchmark commands sharing a
    runs file (e.g. --part search and --part converged) never interleave their lines."""
    import os

    data = (line + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"short write to {path}: {written} of {len(data)} bytes")
    finally:
        os.close(fd)


def run_grid(cfg: LossBenchConfig) -> dict[str, Any]:
    """The equal-epoch grid: every loss and m, one epoch budget per dataset."""
    done = _run_all(cfg, cfg.runs(), Path(cfg.run_dir) / "runs.jsonl")
    results = {"config": asdict(cfg), "datasets": {}}
    for ds in cfg.datasets:
        runs = [done[run_key(r)] for r in cfg.runs() if r["dataset"] == ds]
        results["datasets"][ds] = {"baselines": baselines(ds), "runs": runs, "budget_epochs": cfg.budget(ds)}
    return results


def run_converged(cfg: LossBenchConfig) -> dict[str, Any]:
    """Runs trained to convergence (early stopping), each also mixed with the Markov chain."""
    done = _run_all(cfg, cfg.converged(), Path(cfg.run_dir) / "converged.jsonl")
    results = {"config": asdict(cfg), "datasets": {}}
    for ds in cfg.datasets:
        runs = [done[run_key(r)] for r in cfg.converged() if r["dataset"] == ds and run_key(r) in done]
        results["datasets"][ds] = {"baselines": baselines(ds), "runs": [r for r in runs if r.get("seed", 0) == cfg.seed],
                                   "other_seeds": [r for r in runs if r.get("seed", 0) != cfg.seed]}
        if results["datasets"][ds]["other_seeds"]:
            results["datasets"][ds]["across_seeds"] = across_seeds(runs)
    return results


def across_seeds(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per loss spec: test N@10 mean and sd over seeds, alone and + Markov, the gap to full softmax OF THE
    SAME SEED, and in how many seeds corrected >= naive."""
    by = {(r["loss"], r["m"], r["estimator"], r.get("seed", 0)): r for r in runs}
    specs = list(dict.fromkeys((r["loss"], r["m"], r["estimator"]) for r in runs))
    out = []
    for loss, m, est in specs:
        seeds = sorted(s for (l2, m2, e2, s) in by if (l2, m2, e2) == (loss, m, est))
        n10 = np.array([by[(loss, m, est, s)]["test"]["ndcg@10"] for s in seeds])
        fused = np.array([by[(loss, m, est, s)].get("fusion", {}).get("test", {}).get("ndcg@10", np.nan) for s in seeds])
        row = {"loss": loss, "m": m, "estimator": est, "seeds": seeds, "ndcg@10_mean": float(n10.mean()),
               "ndcg@10_sd": float(n10.std(ddof=1)) if len(seeds) > 1 else 0.0,
               "markov_ndcg@10_mean": float(np.nanmean(fused)) if np.isfinite(fused).any() else None}
        soft = [by[("softmax", None, None, s)]["test"]["ndcg@10"] for s in seeds if ("softmax", None, None, s) in by]
        if loss != "softmax" and len(soft) == len(seeds):
            rel = n10 / np.array(soft) - 1.0
            row["vs_softmax_mean"], row["vs_softmax_by_seed"] = float(rel.mean()), [float(x) for x in rel]
        if est == "corrected":
            pairs = [(by[(loss, m, est, s)]["test"]["ndcg@10"], by[(loss, m, "naive", s)]["test"]["ndcg@10"])
                     for s in seeds if (loss, m, "naive", s) in by]
            row["corrected_ge_naive"] = f"{sum(c >= n for c, n in pairs)}/{len(pairs)}"
        out.append(row)
    return out


def run_search(cfg: LossBenchConfig) -> dict[str, Any]:
    """Full-softmax SASRec of every architecture in `cfg.search_space`, trained like the converged part
    (its runs file is shared, so the default architecture is not trained twice); the selected one is the
    run with the best VALIDATION NDCG@10 of SASRec + Markov (the system the benchmark reports as best)."""
    done = _run_all(cfg, cfg.search(), Path(cfg.run_dir) / "converged.jsonl")
    results = {"config": asdict(cfg), "datasets": {}}
    for ds in cfg.datasets:
        runs = [done[run_key(r)] for r in cfg.search() if r["dataset"] == ds and run_key(r) in done]
        sel = select_on_validation(runs)
        results["datasets"][ds] = {"baselines": baselines(ds), "runs": runs,
                                   "selected": None if sel is None else runs.index(sel)}
    return results


def fused_valid_ndcg(r: dict[str, Any]) -> float:
    """Validation NDCG@10 of the run's SASRec + Markov mixture at its chosen weight (pre-refit weights)."""
    fu = r.get("fusion") or {}
    by = fu.get("valid_ndcg@10_by_lam") or {}
    return max(by.values()) if by else r["best_valid"]["ndcg@10"]


def select_on_validation(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run with the best validation NDCG@10 of SASRec + Markov; never looks at test metrics."""
    return max(runs, key=fused_valid_ndcg, default=None)


def search_markdown(results: dict[str, Any]) -> str:
    from lumenrec.eval.report import markdown_table

    parts = [
        "Command: `python -m lumenrec.eval.bench.losses --part search`: full-softmax SASRec with the "
        "architectures of `LossBenchConfig.search_space` (everything else as in the converged part: lr 2e-3, "
        "batch 128, dropout 0.5, early stopping on validation NDCG@10, 3 refit epochs on train_full, Markov "
        "mixture weight chosen on validation). The **selected** row is the one with the best VALIDATION NDCG@10 "
        "of SASRec + Markov; test metrics play no part in the choice, and every candidate's test row is shown."]
    for ds, d in results["datasets"].items():
        rows = [[name, "", "", "", m["recall@10"], m["ndcg@10"], "", ""] for name, m in d["baselines"].items()]
        for i, r in enumerate(d["runs"]):
            ft = (r.get("fusion") or {}).get("test", {})
            rows.append([arch_label(r) + (" **(selected)**" if i == d["selected"] else ""),
                         f"{r['epochs']} (best {r['best_epoch']})", f"{r['train_time_s']:.0f}",
                         f"{r['best_valid']['ndcg@10']:.4f} / {fused_valid_ndcg(r):.4f}",
                         r["test"]["recall@10"], r["test"]["ndcg@10"], ft.get("recall@10", ""), ft.get("ndcg@10", "")])
        parts.append(f"### {ds}: architecture search (full softmax)\n\n" + markdown_table(
            ["model", "epochs", "train s", "valid N@10 alone / + Markov", "test R@10", "test N@10",
             "+ Markov R@10", "+ Markov N@10"], rows))
        if d["selected"] is not None and ds in TARGETS:
            r = d["runs"][d["selected"]]
            ft = r["fusion"]["test"]
            parts.append(f"- selected on validation: {arch_label(r)} + Markov, test R@10 {ft['recall@10']:.4f} / "
                         f"N@10 {ft['ndcg@10']:.4f} {target_verdict(ds, ft['recall@10'], ft['ndcg@10'])}.")
    return "\n\n".join(parts)


def converged_markdown(results: dict[str, Any]) -> str:
    from lumenrec.eval.report import markdown_table

    cfg = results["config"]

    def per_ds(d: dict[str, int]) -> str:
        return ", ".join(f"{ds} {v}" for ds, v in d.items())

    parts = [
        "Command: `python -m lumenrec.eval.bench.losses --part converged"
        + (f" --extra-seeds {','.join(map(str, cfg['extra_seeds']))}" if cfg.get("extra_seeds") else "")
        + f"` (same SASRec settings as the grid; tables of seed {cfg['seed']}"
        + (", then means across seeds" if cfg.get("extra_seeds") else "") + "; each run trains until validation NDCG@10 has not improved for a patience of "
        f"{per_ds(cfg['converged_patience'])} evaluations, validation every {per_ds(cfg['converged_eval_every'])} "
        f"epochs, epoch caps {per_ds(cfg['converged_epochs'])} for softmax and {per_ds(cfg['converged_sampled_epochs'])} "
        "for the sampled losses (stop `epochs` = the cap ended the run), then "
        f"refit epochs on train_full {per_ds(cfg['converged_refit_epochs'])}; 1 torch thread per run on the shared 2-core machine, so "
        "times are upper bounds). **+ Markov** mixes the model's next-item distribution with the Markov chain's "
        "(`lumenrec.retriever.fusion`): the weight lam is chosen on validation with the selected weights, then "
        "the test uses the refit weights. Full ranking, history masked, leave-one-out test."]
    for ds, d in results["datasets"].items():
        rows = [[name, m["recall@10"], m["ndcg@10"], m["mrr"], "", "", "", "", ""] for name, m in d["baselines"].items()]
        for r in d["runs"]:
            t, fu = r["test"], r.get("fusion") or {}
            ft = fu.get("test", {})
            rows.append([label(r), t["recall@10"], t["ndcg@10"], t["mrr"], f"{r['train_time_s']:.0f}",
                         f"{r['epochs']} (best {r['best_epoch']}, {r['stopped']})",
                         ft.get("recall@10", ""), ft.get("ndcg@10", ""),
                         f"{fu['lam']:.1f}" if "lam" in fu else ""])
        parts.append(f"### {ds}, trained to convergence\n\n" + markdown_table(
            ["model", "R@10", "N@10", "MRR", "train s", "epochs (best, stop)", "+ Markov R@10", "+ Markov N@10", "lam"],
            rows))
        parts.append(converged_summary(ds, d))
        if d.get("across_seeds"):
            rows = [[label(a), ", ".join(map(str, a["seeds"])), f"{a['ndcg@10_mean']:.4f} ± {a['ndcg@10_sd']:.4f}",
                     "" if a["markov_ndcg@10_mean"] is None else f"{a['markov_ndcg@10_mean']:.4f}",
                     "" if "vs_softmax_mean" not in a else f"{a['vs_softmax_mean']:+.1%} ("
                     + ", ".join(f"{x:+.1%}" for x in a["vs_softmax_by_seed"]) + ")",
                     a.get("corrected_ge_naive", "")] for a in d["across_seeds"]]
            parts.append(f"#### {ds}, across seeds\n\n" + markdown_table(
                ["model", "seeds", "test N@10 mean ± sd", "+ Markov N@10 mean", "vs softmax of the same seed (each seed)",
                 "corrected >= naive"], rows))
    return "\n\n".join(parts)


def converged_summary(ds: str, d: dict[str, Any]) -> str:
    """The issue's targets in words: best model vs the dataset target; corrected m=16 vs full softmax."""
    cands = []
    for r in d["runs"]:
        cands.append((r["test"]["ndcg@10"], r["test"]["recall@10"], label(r)))
        if r.get("fusion"):
            cands.append((r["fusion"]["test"]["ndcg@10"], r["fusion"]["test"]["recall@10"], label(r) + " + Markov"))
    lines = []
    if cands:
        n, rc, name = max(cands)
        if ds in TARGETS:
            lines.append(f"- best model: {name}, R@10 {rc:.4f} / N@10 {n:.4f} {target_verdict(ds, rc, n)}.")
    by = {(r["loss"], r["m"], r["estimator"]): r["test"]["ndcg@10"] for r in d["runs"]}
    soft = by.get(("softmax", None, None))
    for (loss, m, est), v in sorted(by.items(), key=lambda kv: str(kv[0])):
        if loss in ("warp", "lambdarank") and soft:
            rel = (v - soft) / soft
            lines.append(f"- {loss} {est} m={m}: N@10 {v:.4f} vs full softmax {soft:.4f} ({rel:+.1%}"
                         + ("; target within -5%: " + ("met" if rel >= -0.05 else "NOT met") if est == "corrected" and m == 16 else "")
                         + ").")
    return "\n".join(lines)


def grid_markdown(results: dict[str, Any]) -> str:
    from lumenrec.eval.report import markdown_table

    parts = []
    cfg = results["config"]
    parts.append(
        "Command: `python -m lumenrec.eval.bench.losses --part grid` (SASRec settings of "
        "`lumenrec.retriever.quick.quick_configs`: 1 block, dim 64, dropout 0.5, lr 2e-3, batch 128; "
        f"seed {cfg['seed']}; {cfg['workers']} runs at once with {cfg['threads']} torch thread each on the 2-core "
        "CPU machine, which other jobs shared, so wall times are upper bounds). Every run of a dataset has the same "
        "budget of epochs (early stopping on validation NDCG@10), then "
        f"{cfg['refit_epochs']} refit epoch on train_full, and is tested with full-catalogue ranking (leave-one-out, "
        "history masked). Baselines are fitted in the same command.")
    for ds, d in results["datasets"].items():
        rows = []
        for name, m in d["baselines"].items():
            rows.append([name, m["recall@10"], m["ndcg@10"], m["mrr"], "", "", "", ""])
        for r in d["runs"]:
            t = r["test"]
            rows.append([label(r), t["recall@10"], t["ndcg@10"], t["mrr"], f"{r['train_time_s']:.0f}",
                         f"{r['epochs']} ({r['stopped']})", f"{r['sequences_per_s']:.0f}", f"{r['peak_rss_mb']:.0f}"])
        parts.append(f"### {ds} (budget {d['budget_epochs']} epochs per run)\n\n" + markdown_table(
            ["model", "R@10", "N@10", "MRR", "train s", "epochs (stop)", "seq/s", "peak MB"], rows))
        parts.append(corrected_vs_naive(d["runs"]))
    return "\n\n".join(parts)


def corrected_vs_naive(runs: list[dict[str, Any]]) -> str:
    """Plain statements of the two targets: corrected within 5% of softmax at m=16; corrected >= naive."""
    by = {(r["loss"], r["m"], r["estimator"]): r["test"]["ndcg@10"] for r in runs}
    soft = by.get(("softmax", None, None))
    lines = []
    for loss in ("warp", "lambdarank"):
        c16 = by.get((loss, 16, "corrected"))
        if soft and c16 is not None:
            rel = (c16 - soft) / soft
            lines.append(f"- {loss} corrected m=16: N@10 {c16:.4f} vs full softmax {soft:.4f} ({rel:+.1%}; target within -5%: "
                         f"{'met' if rel >= -0.05 else 'NOT met'}).")
        for m in sorted({r['m'] for r in runs if r['loss'] == loss}):
            c, n = by.get((loss, m, "corrected")), by.get((loss, m, "naive"))
            if c is not None and n is not None and m <= 64:
                lines.append(f"- {loss} m={m}: corrected {c:.4f} vs naive {n:.4f} -> "
                             f"{'corrected >= naive' if c >= n else 'corrected < naive'}.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- scaling --

def _step_time(args: tuple[int, str, int, int, int, int]) -> dict[str, Any]:
    """Time of one optimizer step of SASRec with `loss` on a synthetic catalogue of N items."""
    n_items, loss, m, batch, max_len, threads = args
    import torch

    torch.set_num_threads(threads)
    from lumenrec.retriever.losses import make_loss
    from lumenrec.retriever.sasrec import SASRec, SASRecConfig

    torch.manual_seed(0)
    out: dict[str, Any] = {"items": n_items, "loss": loss, "m": m if loss != "softmax" else None, "batch_users": batch,
                           "max_len": max_len}
    try:
        model = SASRec(SASRecConfig(num_items=n_items, max_len=max_len, dim=64, dropout=0.0))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        lf = make_loss(loss, n_items, num_negatives=m)
        seqs = torch.randint(1, n_items + 1, (batch, max_len + 1))  # (B, L+1) model indices
        times = []
        for step in range(4):
            t0 = time.perf_counter()
            h = model(seqs[:, :-1])  # (B, L, d)
            q = h.reshape(-1, h.shape[-1])  # (M, d)
            pos = (seqs[:, 1:].reshape(-1) - 1)  # (M,) catalogue indices
            loss_v = lf(q, pos, model.item_embeddings())
            opt.zero_grad()
            loss_v.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        out["step_ms"] = 1000 * sorted(times[1:])[len(times[1:]) // 2]  # median after one warm-up step
        out["status"] = "ok"
    except (RuntimeError, MemoryError) as e:  # out of memory at 1e6 items for full softmax
        out["status"] = f"failed: {type(e).__name__}: {str(e)[:120]}"
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out


def run_scaling(items=(10_000, 100_000, 1_000_000), m: int = 64, batch: int = 64, max_len: int = 50,
                threads: int = 2) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    rows = []
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        for n in items:
            for loss in ("softmax", "sampled_softmax", "warp", "lambdarank"):
                r = pool.apply(_step_time, ((n, loss, m, batch, max_len, threads),))
                log.info("scaling %s", r)
                rows.append(r)
    return {"m": m, "batch_users": batch, "max_len": max_len, "threads": threads, "rows": rows}


def scaling_markdown(res: dict[str, Any]) -> str:
    from lumenrec.eval.report import markdown_table

    rows = [[f"{r['items']:,}", r["loss"] + (f" m={r['m']}" if r["m"] else ""),
             f"{r['step_ms']:.0f}" if r.get("status") == "ok" else r.get("status"), f"{r['peak_rss_mb']:.0f}"]
            for r in res["rows"]]
    return (f"Command: `python -m lumenrec.eval.bench.losses --part scaling`: one optimizer step of SASRec (dim 64, "
            f"{res['batch_users']} users x {res['max_len']} positions = {res['batch_users'] * res['max_len']} queries per "
            f"step, {res['threads']} threads), median of 3 steps after a warm-up, on random synthetic catalogues. Peak "
            "memory is the process's peak RSS (model, Adam state and the step).\n\n"
            + markdown_table(["items", "loss", "step ms", "peak MB"], rows)
            + "\n\n![step time and memory vs catalogue size](loss_scaling.png)")


def plot_scaling(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for loss in sorted({r["loss"] for r in res["rows"]}):
        rs = [r for r in res["rows"] if r["loss"] == loss and r.get("status") == "ok"]
        lab = loss + ("" if loss == "softmax" else f" (m={res['m']})")
        axes[0].plot([r["items"] for r in rs], [r["step_ms"] for r in rs], marker="o", label=lab)
        axes[1].plot([r["items"] for r in rs], [r["peak_rss_mb"] for r in rs], marker="o", label=lab)
    for ax, yl in zip(axes, ("ms per training step", "peak RSS (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("catalogue size (items)")
        ax.set_ylabel(yl)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Cost of one training step vs catalogue size: full softmax vs sampled losses (m={res['m']})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lumenrec.eval.bench.losses", description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=("grid", "converged", "search", "scaling", "all"), default="all")
    p.add_argument("--datasets", default=None, help="comma-separated (default: office-2014,beauty-2014)")
    p.add_argument("--ms", default=None, help="comma-separated negatives per positive (default 4,16,64,256)")
    p.add_argument("--losses", default=None, help="comma-separated subset of the losses")
    p.add_argument("--epochs", type=int, default=None, help="one epoch budget for every dataset")
    p.add_argument("--workers", type=int, default=2, help="runs trained at once (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run (use a separate --run-dir per seed)")
    p.add_argument("--extra-seeds", default=None,
                   help="comma-separated seeds the converged part also runs (mean +- sd across seeds, gap to the softmax "
                        "of the same seed)")
    p.add_argument("--run-dir", default="runs/bench_losses", help="where finished runs are kept (resumable)")
    p.add_argument("--converged-runs", default=None,
                   help="comma-separated loss[:m[:estimator]] specs of the converged part (default: softmax and m=16 "
                        "WARP/LambdaRank, naive and corrected)")
    p.add_argument("--scaling-items", default="10000,100000,1000000")
    return p


def config_from_args(args: argparse.Namespace) -> LossBenchConfig:
    """The command line only fills LossBenchConfig; its __post_init__ validates."""
    kw: dict[str, Any] = {"workers": args.workers, "threads": args.threads, "seed": args.seed, "run_dir": args.run_dir}
    if args.datasets:
        kw["datasets"] = tuple(args.datasets.split(","))
    if args.ms:
        kw["ms"] = tuple(int(x) for x in args.ms.split(","))
    if args.losses:
        kw["losses"] = tuple(args.losses.split(","))
    if args.epochs:
        kw["epochs"], kw["default_epochs"] = {}, args.epochs
    if args.extra_seeds:
        kw["extra_seeds"] = tuple(int(x) for x in args.extra_seeds.split(","))
    if args.converged_runs:
        kw["converged_runs"] = tuple(args.converged_runs.split(","))
    return LossBenchConfig(**kw)


def main(argv: list[str] | None = None) -> int:
    from lumenrec.eval.report import docs_dir, machine_info, update_section, write_json

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = config_from_args(args)
    parts = {"grid": (run_grid, "losses", grid_markdown, "Ranking losses: SASRec on Amazon 2014 (full ranking)"),
             "converged": (run_converged, "losses_converged", converged_markdown,
                           "Ranking losses: trained to convergence, and + Markov"),
             "search": (run_search, "losses_search", search_markdown,
                        "Ranking losses: SASRec architecture chosen on validation (full softmax + Markov)")}
    for part, (run, name, markdown, title) in parts.items():
        if args.part in (part, "all"):
            t0 = time.time()
            res = run(cfg)
            res["machine"] = machine_info()
            res["bench_wall_s"] = round(time.time() - t0, 1)
            write_json(name, res)
            update_section(name.replace("_", "-"), markdown(res), title)
    if args.part in ("scaling", "all"):
        res = run_scaling(tuple(int(x) for x in args.scaling_items.split(",")))
        res["machine"] = machine_info()
        write_json("loss_scaling", res)
        plot_scaling(res, docs_dir() / "loss_scaling.png")
        update_section("loss-scaling", scaling_markdown(res), "Ranking losses: cost per training step vs catalogue size")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
