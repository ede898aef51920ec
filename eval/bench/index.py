"""Latency benchmark of the item index: one retrieval call = encode the query text + Chroma query + filters.

Measures p50/p95 per call, index build time and disk size, on the real Office catalogue (2,420
items, text-encoder vectors) and on N synthetic random unit vectors (384-d) with random brands and
categories, and compares Chroma-side `where` filtering with over-fetch + Python filtering.

    python -m lumenrec.eval.bench.index --sizes office,100000          # ~3-5 min on 2 busy cores
    python -m lumenrec.eval.bench.index --sizes 1000000 --out b.json   # the 1e6 point (slow)

Target: p95 <= 20 ms per call at 1e5 items.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lumenrec.data.types import Catalog, Item

__all__ = ["BenchConfig", "time_retrieval", "bench_catalog", "synthetic_catalog", "run", "publish", "main"]

log = logging.getLogger(__name__)

# Shopper-like query texts for the synthetic catalogue (its items have no meaningful text).
_QUERIES = ["black ink cartridge, not HP", "a cheaper stapler", "sticky notes in bright colours",
            "gel pens that do not smudge", "a bigger whiteboard for the office", "recycled printer paper",
            "label maker tape", "a sturdy binder for school", "something to organise my desk",
            "envelopes for mailing invoices"]


@dataclass
class BenchConfig:
    """What one benchmark run measures."""

    # Timed retrieval calls per setting: 200 gives a stable p95 (the 10th-worst call).
    num_queries: int = 200
    # Untimed calls first: the HNSW index loads lazily on the first query.
    warmup: int = 10
    k: int = 10
    # Chroma write batch: under Chroma's max batch size (5461 on the embedded store).
    batch_size: int = 5000
    seed: int = 0
    # Brand excluded in the filtered setting (a frequent constraint: "not HP").
    exclude_brand: str = "HP"
    # Torch threads of the query encoder: one short text gains nothing from more, and on a shared
    # machine extra threads spin and inflate the tail (measured: p50 57 ms at 1 vs ~1 s at 2, load 8).
    encoder_threads: int | None = 1
    # TextEncoderConfig.query_backend of the query encoder ("auto": ONNX Runtime when installed, else torch).
    # The texts are cycled, but no path caches anything: every call encodes its text from scratch.
    query_backend: str = "auto"

    def __post_init__(self) -> None:
        from lumenrec.errors import ConfigError

        for name in ("num_queries", "k", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(name, getattr(self, name), "must be >= 1")
        if self.warmup < 0:
            raise ConfigError("warmup", self.warmup, "must be >= 0")


def synthetic_catalog(n: int, *, num_brands: int = 200, num_categories: int = 30, seed: int = 0) -> Catalog:
    """`n` items with random brands (brand 0 is "HP"), 3-level categories and prices."""
    rng = np.random.default_rng(seed)
    brands = ["HP"] + [f"Brand{i}" for i in range(1, num_brands)]
    b = rng.integers(0, num_brands, n)
    c = rng.integers(0, num_categories, n)
    price = np.round(rng.uniform(1, 200, n), 2)
    return Catalog(Item(f"s{i}", f"synthetic item {i}", brands[b[i]], ["Office", f"Group{c[i] % 5}", f"Cat{c[i]}"],
                        price=float(price[i])) for i in range(n))


def _percentiles(ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "mean_ms": round(float(a.mean()), 2)}


def time_retrieval(index, encoder, texts: Sequence[str], k: int = 10, *, where: dict | None = None,
                   model_version: str | None = None, warmup: int = 10, filter_strategy: str = "where") -> dict[str, Any]:
    """p50/p95 of one full retrieval call (encode one text + index query with `where`), plus the
    encode-only and query-only parts. `texts` are cycled through."""
    total, enc_ms, q_ms = [], [], []
    for i in range(warmup + len(texts)):
        text = texts[i % len(texts)]
        t0 = time.perf_counter()
        vec = encoder.encode([text])[0]  # (d,)
        t1 = time.perf_counter()
        index.query(vec, k, where=where, model_version=model_version, filter_strategy=filter_strategy)
        t2 = time.perf_counter()
        if i >= warmup:
            total.append((t2 - t0) * 1e3)
            enc_ms.append((t1 - t0) * 1e3)
            q_ms.append((t2 - t1) * 1e3)
    return {**_percentiles(total), "encode": _percentiles(enc_ms), "query": _percentiles(q_ms), "calls": len(total)}


def _load() -> list[float]:
    """1/5/15-minute load averages: latency on a shared machine means little without them."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_catalog(name: str, catalog: Catalog, vectors: np.ndarray, model_version: str, texts: Sequence[str],
                  cfg: BenchConfig, encoder, workdir: Path) -> dict[str, Any]:
    """Build an embedded index of `catalog` under `workdir` and time retrieval with and without a filter."""
    from lumenrec.retriever.index import IndexConfig, ItemIndex, compare_filter_strategies, constraints_to_where

    path = workdir / name
    index = ItemIndex(IndexConfig(backend="persistent", path=str(path), batch_size=cfg.batch_size))
    t0 = time.perf_counter()
    index.build(catalog, vectors, model_version, progress=True)
    build_s = time.perf_counter() - t0
    qtexts = [texts[i % len(texts)] for i in range(cfg.num_queries)]
    where = constraints_to_where(exclude_brands=[cfg.exclude_brand])
    load_before = _load()
    out: dict[str, Any] = {
        "items": len(catalog), "dim": int(vectors.shape[1]), "build_s": round(build_s, 2),
        "query_backend": encoder.query_backend_in_use,
        "disk_mb": round(_dir_bytes(path) / 2**20, 1),
        "unfiltered": time_retrieval(index, encoder, qtexts, cfg.k, model_version=model_version, warmup=cfg.warmup),
        "filtered_where": time_retrieval(index, encoder, qtexts, cfg.k, where=where, model_version=model_version,
                                         warmup=cfg.warmup),
        "filtered_python": time_retrieval(index, encoder, qtexts, cfg.k, where=where, model_version=model_version,
                                          warmup=cfg.warmup, filter_strategy="python"),
    }
    qv = encoder.encode(list(texts[:50]))  # (50, d)
    out["filter_strategies"] = compare_filter_strategies(index, qv, cfg.k, where=where, repeats=1)
    out["load_avg"] = {"before": load_before, "after": _load()}
    log.info("%s: %s", name, out)
    return out


def run(sizes: Sequence[str], cfg: BenchConfig | None = None, workdir: str | None = None) -> dict[str, Any]:
    """Benchmark each size: "office" (real Office catalogue) or an integer N (synthetic vectors)."""
    from lumenrec.retriever.text_encoder import TextEncoder, TextEncoderConfig

    cfg = cfg or BenchConfig()
    encoder = TextEncoder(TextEncoderConfig(num_threads=cfg.encoder_threads, query_backend=cfg.query_backend))
    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="lumenrec-bench-index-"))
    results: dict[str, Any] = {"config": asdict(cfg)}
    try:
        for size in sizes:
            if size == "office":
                from lumenrec.data.registry import load_dataset

                ds = load_dataset("office-2014")
                texts = [c.critique or c.opening or "" for c in ds.conversations] or _QUERIES
                vecs = encoder.encode_items(ds.catalog)
                results["office"] = bench_catalog("office", ds.catalog, vecs, encoder.model_version, texts, cfg,
                                                  encoder, tmp)
            else:
                n = int(float(size))
                rng = np.random.default_rng(cfg.seed)
                vecs = rng.standard_normal((n, 384)).astype(np.float32)  # (n, 384)
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                results[f"synthetic-{n}"] = bench_catalog(f"synthetic-{n}", synthetic_catalog(n, seed=cfg.seed), vecs,
                                                          "synthetic-random", _QUERIES, cfg, encoder, tmp)
                del vecs
    finally:
        if not workdir:
            shutil.rmtree(tmp, ignore_errors=True)
    return results


def publish(res: dict[str, Any]) -> None:
    """Merge `res` into docs/results/index.json (sizes measured in earlier runs are kept, each with
    its own date) and rewrite the index section of docs/benchmarks.md from the merged file."""
    from lumenrec.eval.report import docs_dir, machine_info, markdown_table, update_section, write_json

    path = docs_dir() / "results" / "index.json"
    merged: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    stamp = {"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine_info()}
    merged.setdefault("sizes", {})
    for key, val in res.items():
        if key != "config":
            merged["sizes"][key] = {**val, **stamp, "config": res.get("config")}
    write_json("index", merged)
    rows = []
    for key, r in sorted(merged["sizes"].items(), key=lambda kv: kv[1]["items"]):
        fs = r.get("filter_strategies", {})
        rows.append([key, r["items"], r["dim"], (r.get("config") or {}).get("num_queries", "?"), r["build_s"], r["disk_mb"],
                     f"{r['unfiltered']['p50_ms']:.1f} / {r['unfiltered']['p95_ms']:.1f}",
                     f"{r['unfiltered']['encode']['p50_ms']:.1f} / {r['unfiltered']['query']['p50_ms']:.1f}",
                     f"{r['filtered_where']['p50_ms']:.1f} / {r['filtered_where']['p95_ms']:.1f}",
                     f"{r['filtered_python']['p50_ms']:.1f} / {r['filtered_python']['p95_ms']:.1f}",
                     f"{fs.get('faster', '?')} (overlap {fs.get('overlap', float('nan')):.2f})",
                     r.get("query_backend", "sentence-transformers"),
                     " / ".join(map(str, r.get("load_avg", {}).get("before", []))) or "?", r["measured"]])
    md = ("One retrieval call = MiniLM encoding of one shopper text (1 thread; \"encoder path\" = "
          "TextEncoderConfig.query_backend in use, every call encodes its text afresh) + Chroma query (embedded "
          "`PersistentClient`, HNSW cosine) + the brand filter, k = 10. p50 / p95 in ms over the number of "
          "calls in the `calls` column, after warm-up. Target: p95 <= 20 ms at 1e5 items. Each row keeps the date "
          "and load average of its own run.\n\n"
          "Command: `python -m lumenrec.eval.bench.index --sizes office,100000 --publish` "
          "(and `--sizes 1000000 --queries 50 --publish` for the 1e6 point: its build alone takes about an hour here).\n\n"
          + markdown_table(["catalogue", "items", "dim", "calls", "build s", "disk MB", "call p50/p95", "encode/query p50",
                            "`where` filter p50/p95", "python filter p50/p95", "faster filter", "encoder path",
                            "load 1/5/15 min", "measured"], rows,
                           floatfmt=".1f"))
    update_section("index", md, title="Item index latency (Chroma)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="office,100000", help="comma list of 'office' and/or item counts (e.g. 1e6)")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the query encoder (default 1)")
    p.add_argument("--query-backend", default="auto", help="query encoder path: auto, onnx, torch or sentence-transformers")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--workdir", help="keep the built stores here (default: a temp dir, removed after)")
    p.add_argument("--publish", action="store_true",
                   help="merge into docs/results/index.json and the index table of docs/benchmarks.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    res = run([s.strip() for s in args.sizes.split(",") if s.strip()], BenchConfig(num_queries=args.queries, encoder_threads=args.threads,
                                                                           query_backend=args.query_backend), args.workdir)
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.publish:
        publish(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
