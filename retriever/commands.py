"""`lumenrec train`: train the sequential retriever (SASRec) and print its metrics as JSON.

The same options drive ``python -m lumenrec.retriever.train`` (what ``torchrun`` runs for
``--ddp``). This module only fills configs; the work lives in :mod:`lumenrec.retriever.train`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

__all__ = ["register", "add_train_arguments", "build_train_parser", "run_train", "configs_from_args"]

# option name -> namespace attribute, for re-building the command line handed to torchrun
_FORWARDED = ["data", "out", "split", "loss", "negatives", "estimator", "epochs", "max_time", "max_steps",
              "batch_size", "lr", "weight_decay", "patience", "eval_every", "seed", "threads", "dim", "layers",
              "heads", "dropout", "max_len", "resume", "refit_epochs"]


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    from lumenrec.retriever.configs import ESTIMATORS, LOSSES, SASRecConfig, TrainConfig  # no torch: --help stays fast

    t, m = TrainConfig(), SASRecConfig(num_items=1)
    p.add_argument("--data", required=True, help="dataset name (office-2014, beauty-2014, ...) or path")
    p.add_argument("--out", default=None, help="checkpoint directory to write (best weights + resume state)")
    p.add_argument("--split", default="leave_one_out", choices=["leave_one_out", "temporal"], help="evaluation split")
    p.add_argument("--loss", default=t.loss, choices=LOSSES, help="ranking loss (default %(default)s)")
    p.add_argument("--negatives", type=int, default=t.num_negatives, help="negatives per positive for sampled losses")
    p.add_argument("--estimator", default=t.estimator, choices=ESTIMATORS, help="rank-weight estimator of warp/lambdarank")
    p.add_argument("--epochs", type=int, default=t.epochs)
    p.add_argument("--max-time", type=float, default=None, help="wall-clock budget in seconds")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer-step budget")
    p.add_argument("--batch-size", type=int, default=t.batch_size, help="users per global step")
    p.add_argument("--lr", type=float, default=t.lr)
    p.add_argument("--weight-decay", type=float, default=t.weight_decay)
    p.add_argument("--patience", type=int, default=t.patience, help="evaluations without improvement before stopping")
    p.add_argument("--eval-every", type=int, default=t.eval_every, help="epochs between validation runs")
    p.add_argument("--seed", type=int, default=t.seed)
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    p.add_argument("--dim", type=int, default=m.dim)
    p.add_argument("--layers", type=int, default=m.num_layers)
    p.add_argument("--heads", type=int, default=m.num_heads)
    p.add_argument("--dropout", type=float, default=m.dropout)
    p.add_argument("--max-len", type=int, default=m.max_len)
    p.add_argument("--resume", default=None, help="checkpoint directory to continue training from")
    p.add_argument("--refit-epochs", type=int, default=t.refit_epochs,
                   help="after selection, epochs on train_full (seq[:-1]) for the final model (default %(default)s)")
    p.add_argument("--no-refit", action="store_true", help="keep the selected weights: no refit on train_full")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_train_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m lumenrec.retriever.train`` (torchrun workers)."""
    p = argparse.ArgumentParser(prog="python -m lumenrec.retriever.train", description="train SASRec (DDP-aware)")
    add_train_arguments(p)
    p.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    return p


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the sequential retriever (SASRec) and print metrics JSON")
    add_train_arguments(p)
    p.add_argument("--ddp", type=int, default=0, metavar="N",
                   help="data-parallel training on N CPU processes (gloo) via torchrun")
    p.set_defaults(func=_train)


def configs_from_args(args: argparse.Namespace, num_items: int):
    """(SASRecConfig, TrainConfig) from parsed options."""
    from lumenrec.retriever.configs import SASRecConfig, TrainConfig

    model = SASRecConfig(num_items=num_items, max_len=args.max_len, dim=args.dim, num_layers=args.layers,
                         num_heads=args.heads, dropout=args.dropout)
    train = TrainConfig(seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        weight_decay=args.weight_decay, loss=args.loss, num_negatives=args.negatives,
                        estimator=args.estimator, max_time_s=args.max_time, max_steps=args.max_steps,
                        eval_every=args.eval_every, patience=args.patience, checkpoint_dir=args.out,
                        num_threads=args.threads, progress=not args.no_progress,
                        refit_full=not args.no_refit, refit_epochs=args.refit_epochs)
    return model, train


def run_train(args: argparse.Namespace) -> int:
    """Load data, train, print the metrics JSON (rank 0). Bad input: one-line reason, exit 1."""
    from lumenrec.errors import LumenrecError

    try:
        from lumenrec.data import leave_one_out, temporal_split
        from lumenrec.data.registry import load_dataset
        from lumenrec.retriever.train import Trainer

        ds = load_dataset(args.data, with_conversations=False)
        split = leave_one_out(ds.interactions) if args.split == "leave_one_out" else temporal_split(ds.interactions)
        model_cfg, train_cfg = configs_from_args(args, split.num_items)
        trainer = Trainer(split, model_cfg, train_cfg, item_ids=ds.catalog.ids, dataset_name=ds.name,
                          resume_from=args.resume)
        result = trainer.fit()
    except (LumenrecError, ValueError, OSError) as e:
        print(f"lumenrec train: error: {e}", file=sys.stderr)
        return 1
    if trainer.rank == 0:
        out = {"dataset": ds.name, "split": args.split, **result.to_dict()}
        out.pop("history")
        print(json.dumps(out, indent=2))
    return 0


def _train(args: argparse.Namespace) -> int:
    if not args.ddp or args.ddp == 1:
        return run_train(args)
    argv = []
    for name in _FORWARDED:
        v = getattr(args, name)
        if v is not None:
            argv += [f"--{name.replace('_', '-')}", str(v)]
    if args.no_progress:
        argv.append("--no-progress")
    if args.no_refit:
        argv.append("--no-refit")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.ddp}",
           "-m", "lumenrec.retriever.train", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.call(cmd, env=env)
