"""Whole turns with ``--llm local`` (#19): the latency a shopper sees, beside the offline agent.

    lumenrec bench local_turn [--conversations 20] [--threads 1] [--model NAME]

The first ``--conversations`` dev conversations of ``office-2014`` (regen-office-dev), each replayed as
its opening then its critique, through two agents over the same catalogue and text retriever: the
offline default, and the same agent after :func:`~lumenrec.agent.hybrid.enable_local_llm` (hybrid
routing, the top item's narrative from the local model, prompt narrative-v3, streamed). Each
conversation's session is opened with the shopper's history first (``Recommender.open_session``: the
local agent evaluates the shopper's prompt prefix then, as an app does when a shopper logs in; timed on
its own, not in the turns). Per turn: total time, time to the first piece of the reply, the narrative's
first model token (from the start of the narrative) and first shown piece (from the start of the turn),
which routing path ran. Writes docs/results/local_turn.json and its
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from typing import Any

import numpy as np

from lumenrec.errors import ConfigError

__all__ = ["run_bench", "to_markdown", "main"]

log = logging.getLogger(__name__)


def _turn(rec, sid: str, text: str, history) -> dict[str, Any]:
    t0 = time.perf_counter()
    first = narrative_first = None
    reply = None
    after_item_line = False
    for ev in rec.chat_stream(sid, text, history):
        now = time.perf_counter() - t0
        if isinstance(ev, str):
            if first is None:
                first = now
            if after_item_line and narrative_first is None and ev.strip():
                narrative_first = now
            after_item_line = ev.endswith(" - ")  # the streamed narrative follows its item line
        else:
            reply = ev
    route = next((s for s in reply.trace if s.name == "route"), None)
    narrate = next((s for s in reply.trace if s.name == "narrate"), None)
    nd = narrate.details if narrate else {}
    return {"narrative_first_token_s": nd.get("first_token_s"), "narrative_generator": nd.get("generator"),
            "total_s": time.perf_counter() - t0, "first_piece_s": first, "narrative_first_piece_s": narrative_first,
            "path": (route.details.get("path", "rules") if route else None), "intent": reply.intent,
            "narrate_s": narrate.ms / 1000.0 if narrate else 0.0, "items": len(reply.items)}


def _pct(xs, q) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.percentile(xs, q)) if xs else None


def run_bench(conversations: int = 20, threads: int = 1, model: str | None = None,
              data: str = "office-2014") -> dict[str, Any]:
    from lumenrec.agent.hybrid import enable_local_llm
    from lumenrec.agent.recommender import Recommender
    from lumenrec.data.registry import load_dataset
    from lumenrec.retriever.text_retriever import TextRetriever

    if conversations < 1:
        raise ConfigError("conversations", conversations, "must be >= 1")
    ds = load_dataset(data)
    convs = [c for c in ds.conversations if c.opening and c.critique][:conversations]
    retriever = TextRetriever(ds.catalog)
    offline = Recommender(ds.catalog, retriever)
    local = enable_local_llm(Recommender(ds.catalog, retriever), model=model, threads=threads)
    offline.warmup()
    out: dict[str, list[dict[str, Any]]] = {"offline": [], "local": []}
    opened: dict[str, list[float]] = {"offline": [], "local": []}
    for name, rec in (("offline", offline), ("local", local)):
        for c in convs:
            sid = f"{name}-{c.user_id}"
            opened[name].append(rec.open_session(sid, c.history))
            for text in (c.opening, c.critique):
                out[name].append(_turn(rec, sid, text, c.history))
    summary = {}
    for name, rows in out.items():
        summary[name] = {
            "turns": len(rows),
            "total_p50_s": _pct([r["total_s"] for r in rows], 50), "total_p95_s": _pct([r["total_s"] for r in rows], 95),
            "first_piece_p50_s": _pct([r["first_piece_s"] for r in rows], 50),
            "narrative_first_piece_p50_s": _pct([r["narrative_first_piece_s"] for r in rows], 50),
            "narrative_first_token_p50_s": _pct([r["narrative_first_token_s"] for r in rows], 50),
            "narrative_first_token_p95_s": _pct([r["narrative_first_token_s"] for r in rows], 95),
            "rules_turn_p50_s": _pct([r["total_s"] for r in rows if r["path"] != "llm"], 50),
            "llm_turn_p50_s": _pct([r["total_s"] for r in rows if r["path"] == "llm"], 50),
            "session_open_p50_s": _pct(opened[name], 50),
            "llm_narratives": int(sum(str(r.get("narrative_generator") or "").startswith("llm") for r in rows)),
            "llm_path_share": float(np.mean([r["path"] == "llm" for r in rows])),
            "recommend_turns_with_items": int(sum(r["items"] > 0 for r in rows)),
        }
    return {"data": data, "conversations": len(convs), "threads": threads, "model": local.narrator.llm.model,
            "summary": summary, "turns": out, "machine": f"{os.cpu_count()} cpu, shared",
            "load_avg_end": list(os.getloadavg()),
            "command": f"lumenrec bench local_turn --conversations {conversations} --threads {threads}"}


def to_markdown(r: dict[str, Any]) -> str:
    lines = [f"{r['conversations']} dev conversations (opening, then critique) of `{r['data']}`; local model "
             f"`{r['model']}` on {r['threads']} thread(s), hybrid routing + the top item's narrative streamed.", "",
             "| agent | turns | turn p50 (s) | turn p95 (s) | rules-routed turn p50 | LLM-routed turn p50 | first piece p50 (s) "
             "| narrative first token p50 / p95 (s) | narrative first piece p50 (s) | LLM narratives | LLM-routed turns "
             "| session open p50 (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def f(v):
        return "-" if v is None else f"{v:.2f}"

    for name, s in r["summary"].items():
        lines.append(f"| {name} | {s['turns']} | {f(s['total_p50_s'])} | {f(s['total_p95_s'])} | {f(s['rules_turn_p50_s'])} "
                     f"| {f(s['llm_turn_p50_s'])} | {f(s['first_piece_p50_s'])} | {f(s['narrative_first_token_p50_s'])} / "
                     f"{f(s['narrative_first_token_p95_s'])} | {f(s['narrative_first_piece_p50_s'])} | {s['llm_narratives']} "
                     f"| {100 * s['llm_path_share']:.0f}% | {f(s['session_open_p50_s'])} |")
    lines.append(f"\nLoad average at the end of the run: {', '.join(f'{x:.1f}' for x in r['load_avg_end'])} (shared machine).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conversations", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default="office-2014")
    ap.add_argument("--no-docs", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    r = run_bench(a.conversations, a.threads, a.model, a.data)
    md = to_markdown(r)
    if not a.no_docs:
        from lumenrec.eval.report import publish

        publish("local_turn", r, md, "Agent: whole turns with the local LLM (#19)")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
