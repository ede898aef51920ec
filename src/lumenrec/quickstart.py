"""`lumenrec quickstart`: the main job on the offline default (the synthetic store).

It generates the synthetic store, fits the baselines, trains the sequential retriever for a short
budget, evaluates everything with full-catalogue ranking and prints one summary table; then it
replays the store's REGEN-style conversations turn by turn through the full offline agent and
prints the replay summary and where its report is. With `--data NAME` it runs the same on a real
dataset.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="run the main job on the offline default (synthetic store) and print a summary")
    p.add_argument("--data", default="synthetic", help="dataset name or path (default: the generated synthetic store)")
    p.add_argument("--out", default="runs/quickstart", help="where checkpoints and the summary JSON go")
    p.add_argument("--max-time", type=float, default=60.0, help="training budget in seconds")
    p.add_argument("--replay-limit", type=int, default=None, help="replay only the first N conversations")
    p.add_argument("--no-replay", action="store_true", help="skip the conversation replay")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lumenrec.data import leave_one_out
    from lumenrec.data.registry import load_dataset
    from lumenrec.eval import MarkovScorer, PopularityScorer, evaluate

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    ds = load_dataset(args.data)
    split = leave_one_out(ds.interactions)
    ks = (10, 20)
    rows = {
        "popularity": evaluate(PopularityScorer(split.train_full, split.num_items), split.test, ks),
        "markov": evaluate(MarkovScorer(split.train_full, split.num_items), split.test, ks),
    }
    from lumenrec.retriever.quick import train_quick

    rows["sasrec"] = train_quick(ds, split, out / "sasrec", max_time_s=args.max_time, progress=True)
    summary = {"dataset": ds.summary(), "test_metrics": rows, "wall_s": round(time.time() - t0, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"lumenrec quickstart on {ds.name}: {len(ds.catalog)} items, {len(ds.interactions)} users "
          f"(full-catalogue ranking, leave-one-out test)")
    print(f"{'model':<12} {'R@10':>7} {'N@10':>7} {'R@20':>7} {'MRR':>7}")
    for name, m in rows.items():
        print(f"{name:<12} {m['recall@10']:7.4f} {m['ndcg@10']:7.4f} {m['recall@20']:7.4f} {m['mrr']:7.4f}")
    print(f"summary written to {out / 'summary.json'}")
    if ds.conversations and not args.no_replay:
        _replay(args.data, out / "replay", args.replay_limit)
    return 0


def _replay(data: str, out: Path, limit: int | None) -> None:
    """Replay the dataset's conversations through the default offline agent; print the summary."""
    from lumenrec.eval.replay import ReplayConfig, ReplaySystem
    from lumenrec.eval.replay_commands import run_and_print

    print()
    print("conversation replay (opening turn, critique turn, and the critique removed), offline agent:")
    run_and_print(ReplayConfig(dataset=data, systems=[ReplaySystem.parse("offline")], out=str(out), resume=False,
                               limit=limit))
