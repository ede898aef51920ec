"""Benchmark of the agent's offline core: router intent accuracy and latency on the hand-labelled
set, critique-parser consistency on the dev critiques, and how the dev messages are routed.

    python -m lumenrec.eval.bench.agent_router [--dataset office-2014] [--backend tfidf|minilm]
                                               [--out docs/results/agent_router.json]

Writes a JSON report (no dataset texts in it, only counts) and prints a Markdown table.
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

__all__ = ["run_bench", "to_markdown", "main"]

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
LABELLED = REPO / "tests" / "agent" / "data" / "intents.jsonl"
# Written after the rules were frozen; first measured at 0.872 (34/39) before the rules saw it.
HOLDOUT = REPO / "tests" / "agent" / "data" / "intents_holdout.jsonl"
HOLDOUT_FIRST_ACCURACY = 34 / 39
# Shopper openings (chatty, indirect, typo'd) written by authors who never saw the router (issue #16).
# dev_a and dev_b were measured, and their errors read, while the router was being fixed; holdout and
# holdout2 were each measured once on a frozen router, then read while writing the product-noun rules
# (183c49f); holdout3 was measured once on those rules (0.873), holdout4 once on the first intent model
# (0.940). extra (700, weighted to the non-shopping intents) and persona (240 self-descriptions and
# look-alikes) were written as training data. All eight are training data of the router's intent model
# (lumenrec.agent.intent_model): their accuracy now is training accuracy, so each is also routed by a
# model trained without it ("left out"). holdout5 was written blind before the intent model was
# retrained on the eight sets and measured once after it was frozen (de49136): 0.943, and 0.910 with the
# router before that commit; then it became training data too. holdout6 and holdout7 were each written
# blind and measured once the same way, then became training data with extra2 (600 boundary openings
# written for training); holdout8 was written blind before that retraining (5f2ee97, word features
# beside the embedding) and measured once after it.
_D = REPO / "tests" / "agent" / "data"
OPENINGS = {
    "dev_a": (_D / "openings_dev_a.jsonl", "errors read while fixing; training data of the intent model"),
    "dev_b": (_D / "openings_dev_b.jsonl", "errors read while fixing; training data of the intent model"),
    "holdout": (_D / "openings_holdout.jsonl", "first 0.862 on a frozen router; then read while fixing; training data"),
    "holdout2": (_D / "openings_holdout2.jsonl", "first 0.873 on a frozen router; then read while fixing; training data"),
    "holdout3": (_D / "openings_holdout3.jsonl", "first 0.873 on the product-noun rules (183c49f); then training data"),
    "holdout4": (_D / "openings_holdout4.jsonl", "first 0.940 on the first intent model (53476cd); then training data"),
    "extra": (_D / "openings_extra.jsonl", "written as training data (non-shopping heavy); first 0.687 on 53476cd"),
    "persona": (_D / "openings_persona.jsonl", "written as training data (self-descriptions)"),
    "holdout5": (_D / "openings_holdout5.jsonl", "written blind; first 0.943 on de49136 (0.910 on the router before it); "
                 "then training data"),
    "holdout6": (_D / "openings_holdout6.jsonl", "written blind; first 0.940 on 5e36a00 (0.933 on de49136, 0.907 on the "
                 "router before that round); then training data"),
    "holdout7": (_D / "openings_holdout7.jsonl", "written blind (English only, asked after holdout6's misses); first 0.930 "
                 "on 52f5a05 (0.930 on the router before that round); then training data"),
    "extra2": (_D / "openings_extra2.jsonl", "written as training data (the boundaries: products not sold here, garbled "
               "messages, chit-chat about work)"),
    "extra3": (_D / "openings_extra3.jsonl", "written as training data (the boundaries the fresh hybrid sets' first "
               "messages were lost on: products not sold asked in free wording, services, chit-chat naming products)"),
    "extra4": (_D / "openings_extra4.jsonl", "written as training data after hybrid_holdout8 was measured (the same "
               "boundaries, and gifts, wishes mid-sentence, general facts)"),
    "extra5": (_D / "openings_extra5.jsonl", "written as training data while hybrid_holdout9 was measured (the same "
               "boundaries)"),
    "holdout8": (_D / "openings_holdout8.jsonl", "written blind (English) while the word features were built; first 0.973 "
                 "on 5f2ee97, the word features (0.940 on the router before it); not training data"),
    "holdout9": (_D / "openings_holdout9.jsonl", "written blind (English) after the word features were frozen; first 0.977 "
                 "on 5f2ee97 (0.947 on the router before it); its one explain error then led to the short-question "
                 "rule; not training data"),
}


def _left_out_models(router) -> dict[str, Any]:
    """Per openings set the shipped intent model was trained on: the same model trained without it."""
    from lumenrec.agent import intent_model as im

    if router.config.backend == "learned" or router.config.fallback != "model":
        return {}
    out = {}
    for f in im.TRAINING_FILES:
        name = Path(f).stem.removeprefix("openings_")
        if name in OPENINGS:
            out[name] = im.train(im.opening_training_rows(exclude=f), im.C, encoder=router.intent_model.encoder)
    return out


def openings_report(router, session=None, *, left_out: bool = True) -> dict[str, Any]:
    """Per openings set: accuracy, per-intent accuracy, and shopping openings routed away from recommend;
    for a set the intent model was trained on, also the accuracy with a model trained without it."""
    from lumenrec.agent.router import evaluate_router

    models = _left_out_models(router) if left_out else {}
    out = {}
    for name, (path, role) in OPENINGS.items():
        if not path.is_file():
            continue
        rows = [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
        loo = None
        if name in models:
            shipped = router.intent_model
            router._intent_model = models[name]
            try:
                r2 = evaluate_router(router, rows, session)
            finally:
                router._intent_model = shipped
            loo = {"accuracy": r2["accuracy"], "shopping_not_recommended": sum(e["gold"] == "recommend" for e in r2["errors"])}
        res = evaluate_router(router, rows, session)
        shopping = [r for r in rows if r["intent"] == "recommend"]
        lost = [e for e in res["errors"] if e["gold"] == "recommend"]
        out[name] = {"role": role, "n": res["n"], "accuracy": res["accuracy"],
                     "per_intent": {k: v for k, v in res["per_intent"].items() if v["n"]},
                     "shopping_n": len(shopping), "shopping_not_recommended": len(lost),
                     "shopping_to_smalltalk": sum(e["pred"] == "smalltalk" for e in lost), "left_out": loo}
    return out


def run_bench(dataset: str = "office-2014", backend: str = "tfidf", labelled: Path = LABELLED) -> dict[str, Any]:
    """Measure the router and the parser; returns the report dict."""
    from lumenrec.agent.critique import CritiqueParser, constraint_consistency
    from lumenrec.agent.router import OfflineRouter, OfflineRouterConfig, evaluate_router
    from lumenrec.agent.session import Session
    from lumenrec.data.registry import load_dataset

    ds = load_dataset(dataset)
    t0 = time.perf_counter()
    parser = CritiqueParser(ds.catalog)
    build_s = time.perf_counter() - t0
    router = OfflineRouter(parser=parser, config=OfflineRouterConfig(backend=backend))
    rows = [json.loads(l) for l in labelled.read_text(encoding="utf-8").splitlines() if l.strip()]
    session = Session(shown=[[ds.catalog.ids[i] for i in range(5)]])
    evaluate_router(router, rows[:20], session)  # warm-up (regex compile, caches)
    res = evaluate_router(router, rows, session)
    hold_rows = [json.loads(l) for l in HOLDOUT.read_text(encoding="utf-8").splitlines() if l.strip()] if HOLDOUT.is_file() else []
    hold = evaluate_router(router, hold_rows, session) if hold_rows else None
    cons = constraint_consistency(ds.conversations, ds.catalog, parser)
    cons.pop("failures")
    # common-word brands ("Universal", "Royal") matched in the dev openings/critiques: false positives
    amb = {parser.brand_display[k] for k in parser.ambiguous_brand_keys}
    amb_hits = 0
    for conv in ds.conversations:
        for t in (conv.opening or "", conv.critique or ""):
            c = parser.parse(t)
            amb_hits += bool(amb & set(c.include_brands + c.exclude_brands + c.mentioned_brands))
    dev_routes = {kind: dict(Counter(router.route(getattr(c, kind) or "").intent.value for c in ds.conversations))
                  for kind in ("opening", "critique")}
    synth = load_dataset("synthetic")
    synth_router = OfflineRouter(synth.catalog, config=OfflineRouterConfig(backend=backend))
    synth_openings = Counter(synth_router.route(c.turns[0].text).intent.value for c in synth.conversations)
    return {
        "dataset": dataset,
        "catalog_items": len(ds.catalog),
        "backend": backend,
        "labelled_set": str(labelled.relative_to(REPO)) if labelled.is_relative_to(REPO) else str(labelled),
        "labelled_n": res["n"],
        "accuracy": res["accuracy"],
        "per_intent": res["per_intent"],
        "confusion": res["confusion"],
        "latency_ms_p50": res["latency_ms_p50"],
        "latency_ms_p95": res["latency_ms_p95"],
        "router_errors": res["errors"],
        "holdout_n": len(hold_rows),
        "holdout_accuracy": hold["accuracy"] if hold else None,
        "holdout_first_accuracy": HOLDOUT_FIRST_ACCURACY,
        "common_word_brand_hits_dev": amb_hits,
        "parser_build_s": build_s,
        "parser_consistency_dev": cons,
        "dev_messages_routed": dev_routes,
        "openings": openings_report(router),
        "synthetic_openings_routed": dict(synth_openings),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, shared",
        "note": "The labelled set and the router rules were written by the same author, and it is training data of "
                "the intent model: its accuracy is optimistic. The openings sets are the independent check; "
                "holdout8 and holdout9 are the ones the intent model never saw (holdout9's one explain error "
                "was read and fixed in the rules after it was measured).",
    }


def to_markdown(r: dict[str, Any]) -> str:
    lines = ["| metric | value |", "|---|---|",
             f"| intent accuracy (n={r['labelled_n']}, {r['backend']}) | {r['accuracy']:.3f} |"]
    for k, v in r["per_intent"].items():
        lines.append(f"| accuracy: {k} (n={v['n']}) | {v['accuracy']:.3f} |")
    if r.get("holdout_n"):
        lines.append(f"| held-out set accuracy (n={r['holdout_n']}): first run / now | {r['holdout_first_accuracy']:.3f} / {r['holdout_accuracy']:.3f} |")
    lines += [f"| route() latency p50 / p95 (ms, {r['catalog_items']} items) | {r['latency_ms_p50']:.2f} / {r['latency_ms_p95']:.2f} |"]
    c = r["parser_consistency_dev"]
    lines += [f"| dev critiques with >= 1 brand/category constraint | {c['with_constraint']}/{c['n']} |",
              f"| constraint error rate (excludes the target), all critiques | {c['error_rate']:.3f} ({c['errors']}/{c['n']}) |",
              f"| constraint error rate among constrained critiques | {c['error_rate_among_constrained']:.3f} |",
              f"| dev messages (300) with a common-word brand matched | {r['common_word_brand_hits_dev']} |",
              f"| parse latency p50 / p95 (ms) | {c['parse_ms_p50']:.2f} / {c['parse_ms_p95']:.2f} |"]
    for kind, counts in r["dev_messages_routed"].items():
        tot = sum(counts.values())
        lines.append(f"| dev {kind}s routed to recommend | {counts.get('recommend', 0)}/{tot} |")
    if r.get("synthetic_openings_routed"):
        so = r["synthetic_openings_routed"]
        lines.append(f"| synthetic store openings routed to recommend (all state a need) | {so.get('recommend', 0)}/{sum(so.values())} |")
    if r.get("openings"):
        lines += ["", "Shopper openings written by authors who never saw the router (`tests/agent/data/openings_*.jsonl`):", "",
                  "| set | role | n | accuracy | left out of the intent model's training: accuracy (shopping lost) "
                  "| shopping openings not routed to recommend | of which to smalltalk | per intent |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, o in r["openings"].items():
            per = ", ".join(f"{k} {v['accuracy']:.2f} (n={v['n']})" for k, v in o["per_intent"].items())
            loo = o.get("left_out")
            loo_s = f"{loo['accuracy']:.3f} ({loo['shopping_not_recommended']})" if loo else "-"
            lines.append(f"| {name} | {o['role']} | {o['n']} | {o['accuracy']:.3f} | {loo_s} "
                         f"| {o['shopping_not_recommended']}/{o['shopping_n']} | {o['shopping_to_smalltalk']} | {per} |")
    return "\n".join(lines)



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="office-2014")
    ap.add_argument("--backend", default="tfidf", choices=["tfidf", "minilm", "learned"])
    a = ap.parse_args(argv)
    r = run_bench(a.dataset, a.backend)
    write_json("agent_router", r)
    update_section("agent-router", "Command: `python -m lumenrec.eval.bench.agent_router`\n\n" + to_markdown(r),
                   "Agent: offline router intents and critique-parser consistency")
    print(to_markdown(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
