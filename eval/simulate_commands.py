"""`lumenrec eval simulate`: simulated shoppers with hidden targets talk to the systems (iEvaLM protocol)."""

from __future__ import annotations

import argparse

from lumenrec.eval.replay_commands import _eval_subparsers


def register(sub: argparse._SubParsersAction) -> None:
    esub = _eval_subparsers(sub)
    s = esub.add_parser("simulate", help="simulated shoppers with a hidden target critique each list, up to 5 turns: "
                                         "success@turn, turns to success, constraint violations")
    s.add_argument("--data", default="synthetic", help="dataset name or path (default synthetic)")
    s.add_argument("--targets", default="conversations", choices=("conversations", "test"),
                   help="conversations: the dataset's REGEN-style cases (office-2014: the 150 dev targets); "
                        "test: leave-one-out test users (last item = target), sampled with --seed")
    s.add_argument("--num-targets", type=int, default=500, help="test users sampled (--targets test; default 500)")
    s.add_argument("--limit", type=int, default=None, help="only the first N targets")
    s.add_argument("--system", action="append", default=None, metavar="SPEC",
                   help="a system to compare, NAME[:key=value,...] with keys recommender_dir, mode (agent|history), "
                        "paged, router, narrator, llm_base_url, llm_model, top_k, narrate_top (repeatable; default: "
                        "the text-only agent); e.g. built:recommender_dir=runs/office, history:mode=history")
    s.add_argument("--shopper", default="rule", choices=("rule", "llm"),
                   help="rule (offline, default) or llm: a model at --shopper-llm-base-url words the rule shopper's points")
    s.add_argument("--shopper-llm-base-url", default="http://127.0.0.1:8001/v1", help="OpenAI-compatible endpoint")
    s.add_argument("--shopper-llm-model", default="SmolLM2-135M-Instruct", help="model id at that endpoint")
    s.add_argument("--max-turns", type=int, default=5, help="turns per shopper, the opening included (default 5)")
    s.add_argument("--facts-per-turn", type=int, default=2, help="points per critique (default 2)")
    s.add_argument("--seed", type=int, default=0, help="the shoppers' seed (and the test-user sample's)")
    s.add_argument("--out", default="runs/simulate", help="run folder: records.jsonl and the reports")
    s.add_argument("--no-resume", action="store_true", help="start over instead of skipping finished shoppers")
    s.set_defaults(func=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    from lumenrec.eval.simulate import SimSystem, SimulateConfig, run_simulation
    from lumenrec.eval.simulate_report import success_table, write_report

    systems = [SimSystem.parse(x) for x in (args.system or ["text-only"])]
    cfg = SimulateConfig(dataset=args.data, targets=args.targets, num_targets=args.num_targets, limit=args.limit,
                         systems=systems, shopper=args.shopper, shopper_llm_base_url=args.shopper_llm_base_url,
                         shopper_llm_model=args.shopper_llm_model, max_turns=args.max_turns,
                         facts_per_turn=args.facts_per_turn, seed=args.seed, out=args.out, resume=not args.no_resume)
    summary = run_simulation(cfg)
    paths = write_report(summary, cfg.out)
    print(success_table(summary))
    for name, s in summary["systems"].items():
        print(f"{name}: {s['violations']['count']} constraint violations in {s['violations']['items_shown']} items shown")
    print(f"report: {paths['html']}")
    return 0
