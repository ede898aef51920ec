"""Benchmark of `lumenrec build` and of retrieval through the built system, per catalogue size.

    python -m lumenrec.eval.bench.build --system office=runs/office --system synthetic=runs/quickstart/system \\
        --build "synthetic-1e5=synthetic:num_items=100000,num_users=20000,num_conversations=50" --max-time 1800

For each system directory (built before, or built here by ``--build NAME=DATA`` into
``runs/bench_build/NAME``, resumable): the time and disk of every stage (from ``build.json`` and the
stage directories), then the latency of one retrieval call through the built system (LUMEN query
tower + Chroma index + sparse boosts, what a shopper's turn pays) beside the same query scored in
memory over the whole catalogue (the baseline), on the same queries: test histories with the
synthetic critiques of held-out users. Target: p95 <= 20 ms at 1e5 items.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from lumenrec.eval.report import machine_info, markdown_table, update_section, write_json

__all__ = ["measure_system", "main"]

log = logging.getLogger(__name__)


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _pct(xs, q) -> float:
    return float(np.percentile(np.asarray(xs, dtype=np.float64), q))


def measure_system(directory: str | Path, *, queries: int = 200, warmup: int = 10, seed: int = 0) -> dict[str, Any]:
    """Stage times and disk, and retrieval-call latency (through Chroma and in memory) of one system."""
    import torch

    from lumenrec.agent.recommender import Recommender
    from lumenrec.retriever.base import Query

    torch.set_num_threads(1)  # the serving setting
    d = Path(directory)
    state = json.loads((d / "build.json").read_text())
    stages = {name: {"seconds": rec["seconds"], "metrics": rec["metrics"]} for name, rec in state["stages"].items()}
    disk = {"sasrec": _du(d / "sasrec"), "ilm": _du(d / "ilm"), "lumen": _du(d / "lumen"), "index": _du(d / "index"),
            "catalog": _du(d / "catalog.jsonl")}
    t0 = time.perf_counter()
    rec = Recommender.from_pretrained(d, warm=True)
    load_s = time.perf_counter() - t0
    ix = rec.retriever
    cat = rec.catalog
    rng = np.random.default_rng(seed)
    texts = ["gel pens, not BIC", "a cheaper stapler", "printer ink for my Canon", "sticky notes in yellow",
             "a label maker", "black toner cartridge", "spiral notebooks, college ruled", "a paper shredder",
             "binders, 2 inch", "envelopes for mailing"]
    qs = []
    for i in range(queries + warmup):
        hist = [cat.ids[int(j)] for j in rng.choice(len(cat), size=int(rng.integers(1, 8)), replace=False)]
        qs.append(Query(history=hist, text=texts[i % len(texts)] if i % 3 else None))
    # two separate loops: the in-memory baseline streams the whole (N, D) item matrix through the CPU
    # caches on every call, so interleaving it would slow the Chroma call after it (measured at 1e5:
    # p95 21.1 ms interleaved, ~19 ms alone), which a server answering retrievals never pays
    through, memory, rounds, got_lists = [], [], [], []
    for i, q in enumerate(qs):
        t = time.perf_counter()
        got, _ = ix.retrieve(q, 10)
        dt = (time.perf_counter() - t) * 1000.0
        if i >= warmup:
            through.append(dt)
            got_lists.append(got)
            rounds.append(ix.last_stats.get("rounds", 1))
    same = 0
    for i, q in enumerate(qs):
        t = time.perf_counter()
        want, _ = ix.lumen.retrieve(q, 10)
        dm = (time.perf_counter() - t) * 1000.0
        if i >= warmup:
            memory.append(dm)
            same += got_lists[i - warmup] == want
    return {
        "directory": str(d), "items": len(cat), "dataset": state.get("config", {}).get("data"),
        "stages": stages, "disk_bytes": disk, "disk_total_bytes": _du(d),
        "from_pretrained_s": load_s,
        "retrieve_ms_chroma": {"p50": _pct(through, 50), "p95": _pct(through, 95)},
        "retrieve_ms_in_memory": {"p50": _pct(memory, 50), "p95": _pct(memory, 95)},
        "top10_equal_in_memory": f"{same}/{len(through)}",
        "refetch_rounds_mean": float(np.mean(rounds)),
        "queries": len(through), "target_p95_ms": 20.0,
        "load_average_1min_after": round(os.getloadavg()[0], 2),  # a busy 2-core box moves the p95 by ms
    }


def to_markdown(rows: list[dict[str, Any]]) -> str:
    head = ["system", "items", "build s (sasrec / ilm / lumen / index)", "disk MB (models / index)",
            "from_pretrained s", "retrieve p50 / p95 ms: Chroma", "in memory (baseline)", "top-10 = in memory",
            "load avg (1 min)"]
    body = []
    for r in rows:
        st = r["stages"]
        secs = " / ".join(f"{st.get(k, {}).get('seconds', float('nan')):.0f}" for k in ("sasrec", "ilm", "lumen", "index"))
        models = (r["disk_bytes"]["sasrec"] + r["disk_bytes"]["ilm"] + r["disk_bytes"]["lumen"]) / 2**20
        body.append([r["name"], r["items"], secs, f"{models:.0f} / {r['disk_bytes']['index'] / 2**20:.0f}",
                     f"{r['from_pretrained_s']:.1f}",
                     f"{r['retrieve_ms_chroma']['p50']:.1f} / {r['retrieve_ms_chroma']['p95']:.1f}",
                     f"{r['retrieve_ms_in_memory']['p50']:.1f} / {r['retrieve_ms_in_memory']['p95']:.1f}",
                     r["top10_equal_in_memory"], f"{r['load_average_1min_after']:.2f}" if "load_average_1min_after" in r else "-"])
    return markdown_table(head, body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lumenrec bench build", description=__doc__.split("\n\n")[0])
    ap.add_argument("--system", action="append", default=[], metavar="NAME=DIR", help="an already built system directory")
    ap.add_argument("--build", action="append", default=[], metavar="NAME=DATA",
                    help="build DATA into runs/bench_build/NAME first (resumable)")
    ap.add_argument("--max-time", type=float, default=None, help="training budget of each --build")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--no-publish", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    systems = [tuple(s.split("=", 1)) for s in args.system]
    for spec in args.build:
        name, data = spec.split("=", 1)
        from lumenrec.build import BuildConfig, build

        out = Path("runs/bench_build") / name
        build(BuildConfig(data=data, out=str(out), max_time_s=args.max_time))
        systems.append((name, str(out)))
    rows = []
    for name, d in systems:
        r = measure_system(d, queries=args.queries)
        r["name"] = name
        rows.append(r)
        print(to_markdown([r]), flush=True)
    report = {"systems": rows, "machine": machine_info(),
              "command": "lumenrec bench build " + " ".join(f"--system {n}={d}" for n, d in systems)}
    if not args.no_publish:
        write_json("build", report)
        update_section("build", f"Command: `{report['command']}`\n\n" + to_markdown(rows) +
                       "\n\nRetrieval: one call = LUMEN query tower + index search + sparse boosts, 1 torch thread; "
                       "the baseline scores the same query in memory over the whole catalogue (timed in a loop of "
                       "its own). Top-10 = in memory: lists equal to in-memory LUMEN (at 1e5 the HNSW ef_search of "
                       "1000 trades exact lists for latency). Load avg: the 1-minute load average after the run "
                       "(the bench itself is ~1); on a 2-core box the 1e5 p95 moves by a few ms with other jobs.",
                       "Build and retrieval through the built system, by catalogue size")
    print(to_markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
