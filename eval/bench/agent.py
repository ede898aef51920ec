"""Benchmark of the product surface: per-turn latency of ``Recommender.chat`` (offline router) and
catalogue validity over a replay of the dev conversations (opening, then critique).

    python -m lumenrec.eval.bench.agent [--dataset office-2014] [--model-dir DIR] [--limit N]
                                        [--out docs/results/agent.json]

Latency is reported two ways per turn: wall time of the whole ``chat`` call, and the same minus the
``narrate`` step (the target: p95 <= 100 ms at 2.4k items). Validity: every item id of every reply
is in the catalogue (target 100%). It also counts how often a critique's excluded brand still shows
up (should be 0), and hit@k of the conversation's target item after the critique (for context; the
text retriever is the floor here). The router's own numbers are copied from agent_router.json when
that file exists. Writes JSON (counts only, no dataset texts) and prints a Markdown table.
"""

from __future__ import annotations

import argparse

from lumenrec.eval.report import update_section, write_json
import json
import logging
import os
import platform
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

__all__ = ["run_bench", "to_markdown", "main"]

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
ROUTER_JSON = REPO / "docs" / "results" / "agent_router.json"


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs, dtype=np.float64), q)) if xs else float("nan")


def run_bench(dataset: str = "office-2014", model_dir: str | None = None, limit: int | None = None,
              warmup: int = 3, threads: int | None = 1) -> dict[str, Any]:
    """Replay each dev conversation (opening, then critique) through a fresh session; returns the report.

    `threads` sets torch's CPU threads for the run (None: leave as is). One thread is the serving
    setting: a single short query gains nothing from more, and on a shared machine extra threads
    contend (measured here: ~50 ms per query encoding with 1 thread, 200-1000 ms with 2 under load).
    """
    if threads is not None:
        import torch

        torch.set_num_threads(int(threads))
    from lumenrec.agent.critique import effective_brand, normalize_brand
    from lumenrec.agent.recommender import Recommender
    from lumenrec.data.registry import load_dataset

    t0 = time.perf_counter()
    rec = Recommender.from_pretrained(model_dir) if model_dir else Recommender.from_dataset(dataset)
    build_s = time.perf_counter() - t0
    convs = load_dataset(dataset).conversations
    convs = [c for c in convs if c.opening and c.critique][: limit or None]
    if not convs:
        raise ValueError(f"dataset {dataset!r} has no conversations with an opening and a critique")
    # Time the query text encoder separately (MiniLM forward): on a shared CPU it dominates a turn.
    enc_ms: list[float] = []
    encoder = getattr(rec.retriever, "encoder", None)
    if encoder is not None and hasattr(encoder, "encode"):
        raw_encode = encoder.encode

        def timed_encode(*a, **kw):
            t = time.perf_counter()
            try:
                return raw_encode(*a, **kw)
            finally:
                enc_ms.append((time.perf_counter() - t) * 1000.0)
        encoder.encode = timed_encode
    for i in range(warmup):  # load the text encoder, compile regexes, fill caches
        rec.chat(f"warmup-{i}", "I need some pens")
    brand_keys = rec.parser.brand_keys
    wall, no_narr, traced = {"opening": [], "critique": []}, {"opening": [], "critique": []}, []
    no_narr_enc: list[float] = []
    steps: dict[str, list[float]] = {}
    turns = valid_turns = items_total = items_valid = empty_recommend = 0
    excl_checked = excl_violations = hits = 0
    intents: Counter[str] = Counter()
    for n, conv in enumerate(tqdm(convs, desc="replay", unit="conv")):
        sid = f"dev-{n}"
        for kind, msg in (("opening", conv.opening), ("critique", conv.critique)):
            t = time.perf_counter()
            reply = rec.chat(sid, msg, history=conv.history if kind == "opening" else None)
            ms = (time.perf_counter() - t) * 1000.0
            narr = sum(s.ms for s in reply.trace if s.name == "narrate")
            wall[kind].append(ms)
            no_narr[kind].append(ms - narr)
            enc = sum(enc_ms)
            enc_ms.clear()
            no_narr_enc.append(ms - narr - enc)
            traced.append(reply.timing_ms(exclude=("narrate",)))
            for s in reply.trace:
                steps.setdefault(s.name, []).append(s.ms)
            turns += 1
            intents[f"{kind}:{reply.intent}"] += 1
            ok = [it["id"] in rec.catalog for it in reply.items]
            items_total += len(ok)
            items_valid += sum(ok)
            valid_turns += all(ok)
            if reply.intent == "recommend" and not reply.items:
                empty_recommend += 1
            if kind == "critique":
                cons = rec.store.get(sid).constraints
                if cons.exclude_brands:
                    excl_checked += 1
                    bad = {normalize_brand(b) for b in cons.exclude_brands}
                    excl_violations += any(normalize_brand(effective_brand(rec.catalog.get(it["id"]), brand_keys)) in bad
                                           for it in reply.items)
                hits += conv.target in reply.item_ids
    all_no_narr = no_narr["opening"] + no_narr["critique"]
    report: dict[str, Any] = {
        "dataset": dataset,
        "catalog_items": len(rec.catalog),
        "retriever": type(rec.retriever).__name__,
        "model_dir": model_dir,
        "router": "offline",
        "narrator": type(rec.narrator).__name__,
        "conversations": len(convs),
        "turns": turns,
        "latency_ms_excl_narrate": {"p50": _pct(all_no_narr, 50), "p95": _pct(all_no_narr, 95),
                                    "max": max(all_no_narr)},
        "latency_ms_excl_narrate_and_query_encoding": {"p50": _pct(no_narr_enc, 50), "p95": _pct(no_narr_enc, 95)},
        "latency_ms_excl_narrate_by_turn": {k: {"p50": _pct(v, 50), "p95": _pct(v, 95)} for k, v in no_narr.items()},
        "latency_ms_wall": {"p50": _pct(wall["opening"] + wall["critique"], 50),
                            "p95": _pct(wall["opening"] + wall["critique"], 95)},
        "latency_ms_traced_excl_narrate": {"p50": _pct(traced, 50), "p95": _pct(traced, 95)},
        "step_ms_p50": {k: _pct(v, 50) for k, v in steps.items()},
        "step_ms_p95": {k: _pct(v, 95) for k, v in steps.items()},
        "target_p95_ms": 100.0,
        "catalogue_validity_turns": valid_turns / turns,
        "catalogue_validity_items": items_valid / items_total if items_total else 1.0,
        "items_returned": items_total,
        "recommend_turns_without_items": empty_recommend,
        "intents": dict(sorted(intents.items())),
        "critiques_with_excluded_brand": excl_checked,
        "excluded_brand_violations": excl_violations,
        "k": rec.config.top_k,
        "hit_at_k_after_critique": hits / len(convs),
        "build_s": build_s,
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                    "torch_threads": threads},
        "command": f"python -m lumenrec.eval.bench.agent --dataset {dataset} --threads {threads}"
                   + (f" --model-dir {model_dir}" if model_dir else "") + (f" --limit {limit}" if limit else ""),
    }
    if ROUTER_JSON.is_file():
        r = json.loads(ROUTER_JSON.read_text(encoding="utf-8"))
        report["router_bench"] = {k: r.get(k) for k in ("labelled_n", "accuracy", "holdout_n", "holdout_accuracy",
                                                        "latency_ms_p50", "latency_ms_p95")}
    return report


_LOAD_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from lumenrec.agent.recommender import Recommender
t_import = time.perf_counter()
rec = Recommender.from_pretrained(sys.argv[1], warm=False)
t_load = time.perf_counter()
warm = rec.warmup()
t_warm = time.perf_counter()
first = []
for i, msg in enumerate(["I need gel pens for the office", "not BIC, something cheaper"]):
    t = time.perf_counter()
    rec.chat("first", msg)
    first.append((time.perf_counter() - t) * 1000.0)
print(json.dumps({"import_s": t_import - t0, "load_s": t_load - t_import, "warmup_s": warm,
                  "from_pretrained_s": t_warm - t_import, "first_turn_ms": first[0], "second_turn_ms": first[1],
                  "retriever": type(rec.retriever).__name__}))
"""


def startup_report(model_dir: str | None, repeats: int = 3) -> dict[str, Any]:
    """Fast starts, each in a fresh process: `lumenrec --help` and every subcommand's --help, and (with a
    built directory) Recommender.from_pretrained + warm-up, then the first turns after load."""
    import subprocess
    import sys

    import re

    top = subprocess.run([sys.executable, "-m", "lumenrec", "--help"], capture_output=True, text=True, timeout=60).stdout
    # the command list argparse prints under "positional arguments": "  COMMAND", then one line per command
    commands = re.findall(r"^    (\w[\w-]*)\s", top.split("positional arguments:", 1)[-1], flags=re.M)
    helps: dict[str, float] = {}
    for name in ["", *commands]:
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "lumenrec", *([name] if name else []), "--help"],
                           capture_output=True, check=False, timeout=60)
            best = min(best, time.perf_counter() - t)
        helps[name or "(none)"] = best
    out: dict[str, Any] = {"help_s": helps, "help_s_max": max(helps.values()), "help_target_s": 1.5}
    if model_dir:
        runs = []
        for _ in range(repeats):
            r = subprocess.run([sys.executable, "-c", _LOAD_CHILD, model_dir], capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                raise RuntimeError(f"loading {model_dir} failed: {r.stderr[-2000:]}")
            runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
        out["load"] = {k: _pct([x[k] for x in runs], 50) for k in runs[0] if k != "retriever"}
        out["load"]["retriever"] = runs[0]["retriever"]
        out["load"]["runs"] = len(runs)
        out["load_targets"] = {"from_pretrained_s": 10.0, "first_turn_ms": 300.0}
    return out


def to_markdown(r: dict[str, Any]) -> str:
    lat = r["latency_ms_excl_narrate"]
    rows = [
        ("Dataset / items", f"{r['dataset']} / {r['catalog_items']}"),
        ("Machine (CPUs, load avg 1 min, torch threads)",
         f"{r['machine']['cpu_count']}, {r['machine']['loadavg_1m']:.1f}, {r['machine']['torch_threads']}"),
        ("Retriever / narrator", f"{r['retriever']} / {r['narrator']}" + (f" ({r['model_dir']})" if r.get("model_dir") else "")),
        ("Conversations replayed (turns)", f"{r['conversations']} ({r['turns']})"),
        ("Turn latency excl. narrate p50 / p95 (ms)", f"{lat['p50']:.1f} / {lat['p95']:.1f} (target p95 <= {r['target_p95_ms']:.0f})"),
        ("... of which not the MiniLM query encoding, p50 / p95 (ms)",
         f"{r['latency_ms_excl_narrate_and_query_encoding']['p50']:.1f} / {r['latency_ms_excl_narrate_and_query_encoding']['p95']:.1f}"),
        ("Turn latency wall p50 / p95 (ms)", f"{r['latency_ms_wall']['p50']:.1f} / {r['latency_ms_wall']['p95']:.1f}"),
        ("Retrieve step p50 / p95 (ms)", f"{r['step_ms_p50'].get('retrieve', float('nan')):.1f} / {r['step_ms_p95'].get('retrieve', float('nan')):.1f}"),
        ("Catalogue validity (turns / items)", f"{100 * r['catalogue_validity_turns']:.1f}% / {100 * r['catalogue_validity_items']:.1f}%"),
        ("Excluded-brand violations", f"{r['excluded_brand_violations']} of {r['critiques_with_excluded_brand']} critiques"),
        ("Recommend turns without items", str(r["recommend_turns_without_items"])),
        (f"hit@{r['k']} of the target after the critique", f"{r['hit_at_k_after_critique']:.3f}"),
    ]
    st = r.get("startup")
    if st:
        rows.append(("`lumenrec --help` / slowest subcommand --help (s, fresh process, best of 3)",
                     f"{st['help_s']['(none)']:.2f} / {st['help_s_max']:.2f} (target <= {st['help_target_s']})"))
        if "load" in st:
            ld = st["load"]
            rows.append(("from_pretrained incl. warm-up, median of 3 fresh processes (s)",
                         f"{ld['from_pretrained_s']:.2f} (load {ld['load_s']:.2f} + warm-up {ld['warmup_s']:.2f}; "
                         f"python imports {ld['import_s']:.2f}; target <= 10)"))
            rows.append(("first / second turn after load (ms)",
                         f"{ld['first_turn_ms']:.0f} / {ld['second_turn_ms']:.0f} (target first <= 300)"))
    if "router_bench" in r:
        rb = r["router_bench"]
        rows.append(("Router accuracy (labelled / holdout)", f"{rb.get('accuracy')} / {rb.get('holdout_accuracy')}"))
    out = ["| Measure | Value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="office-2014")
    ap.add_argument("--model-dir", default=None, help="a directory with recommender.json (default: text retriever)")
    ap.add_argument("--limit", type=int, default=None, help="replay only the first N conversations")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the serving setting)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    report = run_bench(args.dataset, args.model_dir, args.limit, threads=args.threads)
    report["startup"] = startup_report(args.model_dir)
    write_json("agent", report)
    update_section("agent", f"Command: `{report['command']}`\n\n" + to_markdown(report),
                   "Agent: per-turn latency and catalogue validity (dev replay)")
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
