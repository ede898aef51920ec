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

    bench = sub.add_parser("bench", help="run a benchmark script (eval/bench/<name>.py): losses, retrieval, agent, ...",
                           add_help=False)
    bench.add_argument("name", help="benchmark name, e.g. losses (runs python -m lumenrec.eval.bench.<name>)")
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="arguments passed to the benchmark (see its --help)")
    bench.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    import importlib

    from lumenrec.errors import ConfigError

    try:
        mod = importlib.import_module(f"lumenrec.eval.bench.{args.name}")
    except ModuleNotFoundError as e:
        if e.name == f"lumenrec.eval.bench.{args.name}":
            raise ConfigError("bench", args.name, "no such benchmark (see eval/bench/*.py)") from None
        raise
    return int(mod.main(args.rest) or 0)


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
