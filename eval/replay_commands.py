"""`lumenrec eval replay`: offline replay of conversations through the agent."""

from __future__ import annotations

import argparse
import shlex
import sys


def _eval_subparsers(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The `eval` command's sub-actions (created by lumenrec.eval.commands; made here if absent)."""
    p = sub.choices.get("eval")
    if p is None:
        p = sub.add_parser("eval", help="evaluate models, baselines and conversation replays")
        return p.add_subparsers(dest="eval_command", metavar="ACTION")
    for a in p._actions:  # argparse keeps sub-actions only here
        if isinstance(a, argparse._SubParsersAction):
            return a
    return p.add_subparsers(dest="eval_command", metavar="ACTION")


def register(sub: argparse._SubParsersAction) -> None:
    esub = _eval_subparsers(sub)
    r = esub.add_parser("replay", help="replay conversations turn by turn through the full agent and score every turn")
    r.add_argument("--data", default="synthetic", help="dataset name or path (default synthetic)")
    r.add_argument("--conversations", default=None, help="a dev-format conversations .jsonl (default: the dataset's)")
    r.add_argument("--system", action="append", default=None, metavar="SPEC",
                   help="an agent to compare, NAME[:key=value,...] with keys recommender_dir, router, narrator, "
                        "llm_base_url, llm_model, top_k, narrate_top (repeatable; default: offline)")
    r.add_argument("--ks", default="1,5,10,20", help="comma-separated cut-offs")
    r.add_argument("--workers", type=int, default=1, help="replaying processes (results identical to 1)")
    r.add_argument("--out", default="runs/replay", help="run folder: records.jsonl and the reports")
    r.add_argument("--no-resume", action="store_true", help="start over instead of skipping finished conversations")
    r.add_argument("--limit", type=int, default=None, help="only the first N conversations")
    r.add_argument("--no-semantic", action="store_true", help="skip the MiniLM cosine of narratives")
    r.add_argument("--publish", action="store_true", help="also write docs/results/NAME.json and docs/benchmarks.md")
    r.add_argument("--name", default="replay", help="results name when publishing (a run beside the main replay gets its own)")
    r.set_defaults(func=_replay)


def _replay(args: argparse.Namespace) -> int:
    from lumenrec.eval.replay import ReplayConfig, ReplaySystem
    from lumenrec.eval.replay_report import publish

    systems = [ReplaySystem.parse(s) for s in (args.system or ["offline"])]
    cfg = ReplayConfig(dataset=args.data, conversations=args.conversations, systems=systems,
                       ks=tuple(int(k) for k in args.ks.split(",")), workers=args.workers, out=args.out,
                       resume=not args.no_resume, limit=args.limit, semantic=not args.no_semantic)
    summary = run_and_print(cfg)
    if args.publish:
        cmd = "lumenrec " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "lumenrec eval replay"
        j, m = publish(summary, cmd, args.name)
        print(f"published: {j} and {m}")
    return 0


def run_and_print(cfg) -> dict:
    """Run a replay, write its reports, print the summary table and where the HTML report is."""
    from pathlib import Path

    from lumenrec.eval.replay import RECORDS, load_records, run_replay
    from lumenrec.eval.replay_report import summary_table, write_report

    summary = run_replay(cfg)
    paths = write_report(summary, load_records(Path(cfg.out) / RECORDS), cfg.out)
    print(summary_table(summary))
    for name, s in summary["systems"].items():
        print(f"{name}: catalogue validity {s['validity']['rate']:.1%}, "
              f"unsupported claim rate {s['grounding_reply_items']['unsupported_claim_rate']:.3f}")
    print(f"report: {paths['html']}")
    return summary
