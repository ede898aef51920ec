"""`lumenrec eval ...` subcommands."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate models, baselines and conversation replays")
    esub = p.add_subparsers(dest="eval_command", metavar="ACTION")
    b = esub.add_parser("baselines", help="popularity and Markov baselines, full ranking, leave-one-out test")
    b.add_argument("name", help="dataset name or path")
    b.add_argument("--ks", default="1,5,10,20,50", help="comma-separated cut-offs")
    b.set_defaults(func=_baselines)


def _baselines(args: argparse.Namespace) -> int:
    from lumenrec.data import leave_one_out
    from lumenrec.data.registry import load_dataset
    from lumenrec.eval import MarkovScorer, PopularityScorer, evaluate

    ks = tuple(int(k) for k in args.ks.split(","))
    ds = load_dataset(args.name, with_conversations=False)
    split = leave_one_out(ds.interactions)
    out = {
        "dataset": ds.name,
        "popularity": evaluate(PopularityScorer(split.train_full, split.num_items), split.test, ks),
        "markov": evaluate(MarkovScorer(split.train_full, split.num_items), split.test, ks),
    }
    print(json.dumps(out, indent=2))
    return 0
