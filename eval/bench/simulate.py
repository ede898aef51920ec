"""Benchmark: simulated shoppers (iEvaLM / InteRecAgent protocol) against the systems we ship.

    lumenrec bench simulate --office-dir runs/office --synthetic-dir runs/quickstart/system
                            [--parts dev,test,synthetic] [--num-test 500] [--out-root runs/simulate]

Parts: ``dev``: office-2014, the 150 regen-office-dev targets; ``test``: office-2014, 500 leave-one-out
test users (last item = target, history before it; dev users left out); ``synthetic``: the synthetic
store's conversations; ``dev-leaf``: the dev targets with an opening that names the target's leaf
category instead of its parent (how much a vague opening costs); ``dev-hybrid``: the dev targets, the
built agent with the offline router beside the same agent with the hybrid router (rules + the local
LLM in this process, 1 thread: #19). Every part compares, on identical simulated shoppers (rule shopper, seed 0, up
to 5 turns): the retriever on the history alone (no critique; the same top 5 each turn, and paged: the
next 5 each turn), the text-only agent, and the built LUMEN agent (``Recommender.from_pretrained``).
Each part is a resumable ``lumenrec eval simulate`` run under ``--out-root/<part>`` (its HTML report
is there); the parts are published together in docs/results/simulate.json and the ``simulate``
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from lumenrec.eval.report import markdown_table, machine_info, update_section, write_json
from lumenrec.eval.simulate import SimSystem, SimulateConfig, run_simulation
from lumenrec.eval.simulate_report import followed_table, success_table, write_report

__all__ = ["PARTS", "part_config", "run_bench", "to_markdown", "publishable", "main"]

log = logging.getLogger(__name__)

PARTS = ("dev", "test", "synthetic", "dev-leaf", "dev-hybrid")


def part_config(part: str, built_dir: str, out_root: str, num_test: int = 500, seed: int = 0,
                limit: int | None = None, synthetic_data: str = "synthetic", resume: bool = True) -> SimulateConfig:
    """The run of one part: its dataset and targets, the four systems, its folder."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; parts: {', '.join(PARTS)}")
    systems = [SimSystem(name="history-only", mode="history", recommender_dir=built_dir),
               SimSystem(name="history-paged", mode="history", recommender_dir=built_dir, paged=True),
               SimSystem(name="text-only"),
               SimSystem(name="built", recommender_dir=built_dir)]
    if part == "dev-leaf":  # the history systems ignore the opening: their rows would repeat dev's
        systems = systems[2:]
    if part == "dev-hybrid":  # the built agent, offline and with the hybrid router (rules + the local LLM, #19)
        systems = [systems[3], SimSystem(name="hybrid", recommender_dir=built_dir, router="hybrid")]
    data = synthetic_data if part == "synthetic" else "office-2014"
    targets = "test" if part == "test" else "conversations"
    opening = "leaf" if part == "dev-leaf" else "parent"
    return SimulateConfig(dataset=data, targets=targets, num_targets=num_test, systems=systems, seed=seed,
                          limit=limit, opening=opening, out=str(Path(out_root) / part), resume=resume)


def run_bench(parts: dict[str, str], out_root: str, num_test: int = 500, seed: int = 0,
              limit: int | None = None, synthetic_data: str = "synthetic", resume: bool = True) -> dict[str, Any]:
    """Run (or resume) every part; {part: summary}. `parts` maps a part to its built directory."""
    out: dict[str, Any] = {}
    for part, built in parts.items():
        cfg = part_config(part, built, out_root, num_test, seed, limit, synthetic_data, resume)
        log.info("simulate part %s: %s", part, cfg.out)
        summary = run_simulation(cfg)
        paths = write_report(summary, cfg.out)
        summary["report"] = str(paths["html"])
        out[part] = summary
    return out


_TITLES = {"dev": "Office 2014, the 150 dev targets", "test": "Office 2014, 500 test users",
           "dev-hybrid": "Office 2014, the 150 dev targets: the built agent with the offline and the hybrid router",
           "synthetic": "Synthetic store, its conversations",
           "dev-leaf": "Office 2014 dev targets, the opening naming the leaf category (ablation)"}


def to_markdown(results: dict[str, Any]) -> str:
    parts = ["Simulated shoppers with a hidden target (rule shopper, seed 0): the opening names the target's "
             "category one level above its leaf, each later turn critiques the list shown (product type, brand, "
             "colour, size, pack, price, a feature word), up to 5 turns; success@t = the target is among the 5 "
             "items shown by turn t. Systems on identical shoppers: `history-only` (the built retriever on the "
             "history alone, no critique, the same 5 items each turn), `history-paged` (the next 5 of that "
             "ranking each turn), `text-only` (the agent over MiniLM), `built` (the agent over the built LUMEN "
             "system). Violations: shown items breaking a hard constraint the agent itself reports.", ""]
    for part, s in results.items():
        parts += [f"### {_TITLES.get(part, part)}", "", success_table(s), ""]
        routed = {n: m for n, m in s["systems"].items() if m.get("route_paths")}
        if routed:
            rows = [[n, m["latency_ms"]["n"], m["route_paths"].get("llm", 0),
                     f"{m['route_paths'].get('llm', 0) / max(m['latency_ms']['n'], 1):.1%}",
                     f"{m['latency_ms']['p50']:.0f} / {m['latency_ms']['p95']:.0f}"] for n, m in routed.items()]
            parts += ["Turns the hybrid router handed to the local LLM (one forced tool call each), and turn latency:", "",
                      markdown_table(["system", "turns", "decided by the LLM", "share", "turn p50 / p95 ms"], rows), ""]
        parts += ["Critiques followed by the list shown in reply (excludes: no shown item breaks it; includes: at "
                  "least half the shown items satisfy it; cheaper: the median shown price went down):", "",
                  followed_table(s), ""]
        b = s["systems"].get("built")
        if b and b["not_followed_examples"]:
            rows = []
            for kind, exs in b["not_followed_examples"].items():
                for e in exs[:2]:
                    rows.append([kind, e["message"], "; ".join(e["shown"][:3])[:160]])
            parts += ["Critiques the built agent did not follow (first examples per kind):", "",
                      markdown_table(["critique", "shopper said", "first items shown in reply"], rows), ""]
        parts += [f"HTML report: `{s.get('report')}`", ""]
    return "\n".join(parts)


def publishable(results: dict[str, Any], examples: int = 3) -> dict[str, Any]:
    """The results as published: examples of critiques not followed only for the agents (the history
    systems never read a critique), `examples` per kind."""
    out = json.loads(json.dumps(results, default=float))
    for s in out.values():
        modes = {x["name"]: x.get("mode", "agent") for x in (s.get("run") or {}).get("systems", [])}
        for name, m in s["systems"].items():
            if modes.get(name) == "history":
                m.pop("not_followed_examples", None)
            else:
                m["not_followed_examples"] = {k: v[:examples] for k, v in m.get("not_followed_examples", {}).items()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lumenrec bench simulate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--office-dir", default="runs/office", help="a `lumenrec build --data office-2014` directory")
    ap.add_argument("--synthetic-dir", default="runs/quickstart/system", help="a `lumenrec build --data synthetic` directory")
    ap.add_argument("--synthetic-data", default="synthetic",
                    help="the store --synthetic-dir was built from (default: the generated synthetic store)")
    ap.add_argument("--parts", default="dev,test,synthetic", help=f"comma-separated parts of {', '.join(PARTS)}")
    ap.add_argument("--num-test", type=int, default=500, help="office-2014 test users sampled (default 500)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="only the first N targets per part (quick looks)")
    ap.add_argument("--out-root", default="runs/simulate", help="one resumable run folder per part under it")
    ap.add_argument("--no-resume", action="store_true",
                    help="start every part over (a run of other code, builds or settings is never resumed)")
    ap.add_argument("--no-publish", action="store_true", help="do not write docs/results/simulate.json and docs/benchmarks.md")
    ap.add_argument("--name", default="simulate",
                    help="published as docs/results/NAME.json and the NAME section of docs/benchmarks.md (default simulate)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    wanted = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in wanted if p not in PARTS]
    if bad:
        ap.error(f"unknown parts {bad}; parts: {', '.join(PARTS)}")
    parts = {p: args.synthetic_dir if p == "synthetic" else args.office_dir for p in wanted}
    results = run_bench(parts, args.out_root, args.num_test, args.seed, args.limit, args.synthetic_data,
                        resume=not args.no_resume)
    md = to_markdown(results)
    print(md)
    if not args.no_publish:
        command = "lumenrec bench simulate " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        write_json(args.name, {"command": command, "machine": machine_info(), "parts": publishable(results)})
        title = "Interactive evaluation: simulated shoppers (iEvaLM protocol)"
        update_section(args.name, f"Command: `{command.strip()}`\n\n{md}",
                       title=title if args.name == "simulate" else f"{title}: {', '.join(results)}")
        print(f"published: docs/results/{args.name}.json and docs/benchmarks.md (section {args.name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
