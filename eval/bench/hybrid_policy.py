"""Who should decide a turn's intent, the offline router or the local LLM? (#19: HybridConfig.llm_intent)

    lumenrec bench hybrid_policy [--data office-2014] [--model NAME] [--threads 1] [--no-docs]

On the labelled turns the router's intent models were trained on (every row of
:data:`lumenrec.agent.intent_model.SCENE_TRAINING_FILES`): each turn with items on screen is routed by
the offline router with a scene model trained on the other scenes (leave one scene out); each first
message by the shipped router, whose openings model never saw these files. The turns the hybrid would
send to the LLM (:meth:`HybridRouter.needs_llm`) get one LLM call each (the same prompt and cache as
``bench hybrid_router``). Reported per reason for sending, who decided offline (a rule or an intent
model) and confidence: how often the router's intent and the LLM's were right; and on the turns about a
named shown item, the item reference of the router vs the LLM's where both name the same intent.
Writes docs/results/hybrid_policy.json and its docs/benchmarks.md section.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter, defaultdict
from typing import Any

__all__ = ["run_bench", "to_markdown", "main"]

log = logging.getLogger(__name__)


def run_bench(data: str = "office-2014", model: str | None = None, threads: int = 1) -> dict[str, Any]:
    from lumenrec.agent import intent_model as im
    from lumenrec.agent.critique import CritiqueParser
    from lumenrec.agent.hybrid import ROUTE_PROMPT_VERSION, HybridRouter
    from lumenrec.agent.llm.backends import make_local_llm
    from lumenrec.agent.router import OfflineRouter
    from lumenrec.data.registry import cache_dir, load_dataset
    from lumenrec.eval.bench.hybrid_router import _llm_rows, _ref, _session
    from lumenrec.eval.bench.scene_router import REPO, _CachedEncoder, scene_rows
    from lumenrec.retriever.text_encoder import TextEncoder

    t0 = time.perf_counter()
    ds = load_dataset(data)
    parser = CritiqueParser(ds.catalog)
    router = OfflineRouter(parser=parser)
    scene = scene_rows(im.SCENE_TRAINING_FILES)
    general = im.read_rows([REPO / f for f in im.SCENE_GENERAL_FILES])
    openings = scene_rows(im.SCENE_TRAINING_FILES, on_screen=False)
    for r in scene + openings:  # ids are unique per file only
        r["id"] = r["file"].split(".")[0] + ":" + r["id"]
    enc = _CachedEncoder(TextEncoder())
    dec = {}
    for sc in sorted({r["scene"] for r in scene}):
        router._scene_model = im.train([r for r in scene if r["scene"] != sc] + general, im.SCENE_C, encoder=enc,
                                       word_weight=im.SCENE_WORD_WEIGHT)
        for r in scene:
            if r["scene"] == sc:
                dec[r["id"]] = router.route(r["text"], _session(r))
    for r in openings:
        dec[r["id"]] = router.route(r["text"], _session(r))
    llm = make_local_llm(model, num_threads=threads, fallback=False)
    hybrid = HybridRouter(llm, offline=router, parser=parser, catalog=ds.catalog)
    rows = scene + openings
    sent = [(r, w) for r in rows if (w := hybrid.needs_llm(dec[r["id"]], " ".join(r["text"].split()), _session(r)))]
    key = f"{llm.model}|{ROUTE_PROMPT_VERSION}"
    ans = _llm_rows(hybrid, [r for r, _ in sent], cache_dir() / "bench" / "hybrid_router.jsonl", key, threads)
    groups: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    refs = Counter()
    for r, why in sent:
        d, a = dec[r["id"]], ans[r["id"]]
        who = "intent model" if "model" in (d.reason + " " + d.note) else "rule"
        g = ("in a conversation" if r["shown"] else "first message", why.split(" (")[0], who,
             f"{min(int(d.confidence * 5), 4) / 5:.1f}-{min(int(d.confidence * 5), 4) / 5 + 0.2:.1f}")
        groups[g][0] += 1
        groups[g][1] += d.intent.value == r["intent"]
        groups[g][2] += a["intent"] == r["intent"]
        if r["ref"] is not None and d.intent.value == r["intent"]:
            agree = a["intent"] == d.intent.value
            refs["n"] += 1
            refs["router"] += _ref(d) == r["ref"]
            refs["llm_where_it_agrees_else_router"] += (a["ref"] if agree else _ref(d)) == r["ref"]
            refs["llm_agrees_on_intent"] += agree
    table = [{"where": g[0], "why_sent": g[1], "decided_by": g[2], "confidence": g[3], "n": v[0],
              "router_right": v[1], "llm_right": v[2]} for g, v in sorted(groups.items())]
    total = {w: {"n": sum(t["n"] for t in table if t["where"] == w),
                 "router_right": sum(t["router_right"] for t in table if t["where"] == w),
                 "llm_right": sum(t["llm_right"] for t in table if t["where"] == w)}
             for w in ("first message", "in a conversation")}
    return {"data": data, "model": llm.model, "prompt_version": ROUTE_PROMPT_VERSION, "threads": threads,
            "files": list(im.SCENE_TRAINING_FILES), "turns": len(rows), "sent": len(sent),
            "router_accuracy_all_turns": {
                "first message": sum(dec[r["id"]].intent.value == r["intent"] for r in openings) / max(len(openings), 1),
                "in a conversation": sum(dec[r["id"]].intent.value == r["intent"] for r in scene) / max(len(scene), 1)},
            "total": total, "groups": table, "item_refs": dict(refs), "seconds": round(time.perf_counter() - t0, 1),
            "command": "lumenrec bench hybrid_policy" + (f" --threads {threads}" if threads != 1 else "")}


def to_markdown(r: dict[str, Any]) -> str:
    acc = r["router_accuracy_all_turns"]
    lines = [f"{r['turns']} labelled turns ({', '.join(f.rsplit('/', 1)[-1] for f in r['files'])}); a turn with items "
             "on screen is routed with a scene model that never saw its scene, a first message by the shipped router "
             f"(its openings model never saw these files): router accuracy {acc['first message']:.3f} on first "
             f"messages, {acc['in a conversation']:.3f} in a conversation. The hybrid sends {r['sent']} of them to "
             f"`{r['model']}` (prompt `{r['prompt_version']}`, {r['threads']} thread(s)); on those:", "",
             "| where | sent | router's intent right | LLM's intent right |", "|---|---|---|---|"]
    for w, t in r["total"].items():
        if t["n"]:
            lines.append(f"| {w} | {t['n']} | {t['router_right']} ({t['router_right'] / t['n']:.2f}) | "
                         f"{t['llm_right']} ({t['llm_right'] / t['n']:.2f}) |")
    lines += ["", "| where | why sent | decided offline by | confidence | n | router right | LLM right |",
              "|---|---|---|---|---|---|---|"]
    for t in r["groups"]:
        lines.append(f"| {t['where']} | {t['why_sent']} | {t['decided_by']} | {t['confidence']} | {t['n']} | "
                     f"{t['router_right']} | {t['llm_right']} |")
    ir = r["item_refs"]
    if ir.get("n"):
        lines += ["", f"Item references ({ir['n']} sent turns about a named shown item whose intent the router got right): "
                      f"the router's item right {ir['router']}, the LLM's item where it names the same intent (else the "
                      f"router's) {ir['llm_where_it_agrees_else_router']}; the LLM agreed on the intent {ir['llm_agrees_on_intent']} times."]
    lines += ["", f"Command: `{r['command']}` ({r['seconds']} s; LLM answers cached with bench hybrid_router's)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="office-2014")
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-docs", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    r = run_bench(a.data, a.model, a.threads)
    md = to_markdown(r)
    if not a.no_docs:
        from lumenrec.eval.report import publish

        publish("hybrid_policy", r, md, "Agent: who decides the intent, router or local LLM (#19)")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
