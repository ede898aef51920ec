"""The in-conversation intent model (#19): which rules decide on their own once items are shown, and the
model's settings, chosen by leaving one scene out at a time.

    lumenrec bench scene_router [--data office-2014] [--no-docs]

Rows: the turns with items on screen of :data:`lumenrec.agent.intent_model.SCENE_TRAINING_FILES` (the
model's training rows; every scene is three office-2014 items). Reported:

- **rules**: per rule of the offline router (its decision's reason), how often it fired on these turns
  and how often its intent was right: the rules right on >= 95% of the turns they fired on are the ones
  that decide alone (:data:`lumenrec.agent.router.PRECISE_SCENE_RULES`);
- **leave one scene out**: for each scene, the model trained on the other scenes' rows routes that
  scene's turns through :func:`lumenrec.agent.router.scene_decision`; accuracy over all rows for a grid
  of inverse regularisation C, word-feature weight and the probability the model needs to replace the
  rules' intent, beside the rules alone on the same turns.

The fresh measurements are not here: ``lumenrec bench hybrid_router --turns tests/agent/data/hybrid_holdoutN.jsonl``
on the hybrid sets that are not in SCENE_TRAINING_FILES (each in four scenes none of these rows use). Writes docs/results/scene_router.json and its docs/benchmarks.md section.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["run_bench", "to_markdown", "main", "GRID_C", "GRID_WORD_WEIGHT", "GRID_MIN_PROBABILITY"]

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
GRID_C = (1.0, 4.0, 16.0, 64.0)
GRID_WORD_WEIGHT = (0.0, 1.5)
GRID_MIN_PROBABILITY = (0.3, 0.4, 0.5, 0.6, 0.7)


class _CachedEncoder:
    """The text encoder with a per-text cache (the grid trains many models on the same rows)."""

    def __init__(self, encoder: Any) -> None:
        self.encoder, self.cache = encoder, {}
        self.model_version = getattr(encoder, "model_version", "")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if todo:
            for t, v in zip(todo, self.encoder.encode(todo)):
                self.cache[t] = np.asarray(v, dtype=np.float32)
        return np.stack([self.cache[t] for t in texts])  # (n, d)


def scene_rows(files: Sequence[str], on_screen: bool = True) -> list[dict[str, Any]]:
    """The rows of `files` with items on screen (`on_screen=False`: the first messages, none shown), each
    with the name of its file ({text, intent, ref, shown, scene, file, ...})."""
    rows = []
    for f in files:
        for line in (REPO / f).read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                if bool(r.get("shown")) == on_screen:
                    rows.append({**r, "file": Path(f).name})
    return rows


def run_bench(data: str = "office-2014") -> dict[str, Any]:
    from lumenrec.agent import intent_model as im
    from lumenrec.agent.critique import CritiqueParser
    from lumenrec.agent.router import PRECISE_SCENE_RULES, OfflineRouter, OfflineRouterConfig, scene_decision
    from lumenrec.agent.session import Session
    from lumenrec.data.registry import load_dataset
    from lumenrec.retriever.text_encoder import TextEncoder

    t0 = time.perf_counter()
    ds = load_dataset(data)
    rows = scene_rows(im.SCENE_TRAINING_FILES)
    general = im.read_rows([REPO / f for f in im.SCENE_GENERAL_FILES])  # always in training, never scored
    router = OfflineRouter(parser=CritiqueParser(ds.catalog), config=OfflineRouterConfig(scene_model=False))
    rules, named = [], []
    for r in rows:
        s = Session(session_id="x", shown=[list(r["shown"])])
        rules.append(router.route(r["text"], s))
        text = " ".join(r["text"].split())
        named.append(router._named_shown(text, list(r["shown"])))
    gold = [r["intent"] for r in rows]
    # which rules are precise on in-scene turns
    fired: dict[str, list[bool]] = defaultdict(list)
    for d, g in zip(rules, gold):
        fired[d.reason.split(" (")[0]].append(d.intent.value == g)  # "nearest prototype (0.51)": one rule
    rule_table = {k: {"n": len(v), "precision": float(np.mean(v)), "decides_alone": k in PRECISE_SCENE_RULES}
                  for k, v in sorted(fired.items(), key=lambda kv: -len(kv[1]))}
    # leave one scene out
    enc = _CachedEncoder(TextEncoder())
    enc.encode([r["text"] for r in rows] + [r["text"] for r in general])
    scenes = sorted({r["scene"] for r in rows})
    rules_ok = [d.intent.value == g for d, g in zip(rules, gold)]
    grid = []
    for c in GRID_C:
        for ww in GRID_WORD_WEIGHT:
            probs: list[dict[str, float] | None] = [None] * len(rows)
            for sc in scenes:
                train = [{"text": r["text"], "intent": r["intent"]} for r in rows if r["scene"] != sc] + general
                model = im.train(train, c, encoder=enc, word_weight=ww)
                for i, r in enumerate(rows):
                    if r["scene"] == sc:
                        probs[i] = model.scores(r["text"])
            for t in GRID_MIN_PROBABILITY:
                ok = []
                for i, (d, g) in enumerate(zip(rules, gold)):
                    dec = d if d.reason in PRECISE_SCENE_RULES else scene_decision(d, probs[i], t, lambda i=i: named[i])
                    ok.append(dec.intent.value == g)
                per_scene = {sc: float(np.mean([o for o, r in zip(ok, rows) if r["scene"] == sc])) for sc in scenes}
                grid.append({"c": c, "word_weight": ww, "min_probability": t, "accuracy": float(np.mean(ok)),
                             "per_scene": per_scene})
    best = max(grid, key=lambda g: g["accuracy"])  # the first of equals: the smaller C, weight, probability
    return {
        "data": data, "files": list(im.SCENE_TRAINING_FILES), "general_files": list(im.SCENE_GENERAL_FILES),
        "general_rows": len(general), "n": len(rows), "scenes": scenes,
        "rules_alone_accuracy": float(np.mean(rules_ok)),
        "rules_alone_per_scene": {sc: float(np.mean([o for o, r in zip(rules_ok, rows) if r["scene"] == sc])) for sc in scenes},
        "rules": rule_table, "precise_scene_rules": sorted(PRECISE_SCENE_RULES),
        "leave_one_scene_out": grid, "best": best,
        "shipped": {"c": im.SCENE_C, "word_weight": im.SCENE_WORD_WEIGHT,
                    "min_probability": OfflineRouterConfig().scene_min_probability},
        "seconds": round(time.perf_counter() - t0, 1),
        "command": "lumenrec bench scene_router",
    }


def to_markdown(r: dict[str, Any]) -> str:
    lines = [f"{r['n']} turns with three items on screen ({', '.join(r['scenes'])}), the in-scene rows of "
             f"{', '.join(r['files'])}: the scene model's training rows, so every number here is leave-one-scene-out "
             "(the model that routes a scene's turns never saw that scene; the "
             f"{r['general_rows']} rows of {', '.join(r['general_files'])} always train, never scored). The fresh "
             "measurements are the hybrid_router sections of the sets not listed here (four other scenes each).", "",
             "| rule (reason) | fired | precision | decides alone |", "|---|---|---|---|"]
    for k, v in r["rules"].items():
        lines.append(f"| {k} | {v['n']} | {v['precision']:.3f} | {'yes' if v['decides_alone'] else ''} |")
    lines += ["", f"Rules alone: **{r['rules_alone_accuracy']:.3f}**. Leave one scene out, the rules above marked "
                  "'decides alone', every other turn through the scene model (best 8 of the grid):", "",
              "| C | word weight | min probability | accuracy | " + " | ".join(r["scenes"]) + " |",
              "|---|---|---|---|" + "---|" * len(r["scenes"])]
    s = r["shipped"]
    shipped = [g for g in r["leave_one_scene_out"] if all(g[k] == s[k] for k in s)]
    top = sorted(r["leave_one_scene_out"], key=lambda g: -g["accuracy"])[:8]
    for g in top + [g for g in shipped if g not in top]:
        lines.append(f"| {g['c']:g} | {g['word_weight']:g} | {g['min_probability']:g} | {g['accuracy']:.3f} | "
                     + " | ".join(f"{g['per_scene'][sc]:.2f}" for sc in r["scenes"]) + " |")
    lines += ["", f"Shipped (last row if not among the best): C {s['c']:g}, word weight {s['word_weight']:g}, min probability "
                  f"{s['min_probability']:g}: the best here among the settings that keep all 150 dev critiques recommend "
                  "(their openings first, three items on screen). "
                  f"Command: `{r['command']}` ({r['seconds']} s)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="office-2014")
    ap.add_argument("--no-docs", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    r = run_bench(a.data)
    md = to_markdown(r)
    if not a.no_docs:
        from lumenrec.eval.report import publish

        publish("scene_router", r, md, "Agent: the in-conversation intent model (#19)")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
