"""Reports of a simulation run: ``summary.json``, ``report.html`` (self-contained, inline PNG plots:
success by turn per system, critiques followed per kind) and ``summary.md``, under the run's out dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lumenrec.eval.replay_report import _atomic, _png, _table, html_page

__all__ = ["success_table", "followed_table", "markdown_summary", "plot_pngs", "html_report", "write_report"]


def success_table(summary: dict[str, Any]) -> str:
    """Per system: success@turn, success within the run's turns, mean turns to success, violations."""
    turns = [str(t) for t in range(1, summary["max_turns"] + 1)]
    rows = []
    for name, s in summary["systems"].items():
        rows.append([name, s["targets"], *[s["success_at_turn"][t] for t in turns], s["mean_turns_to_success"],
                     s["violations"]["count"]])
    return _table(["system", "targets", *[f"success@{t}" for t in turns], "mean turns to success",
                   "constraint violations"], rows)


def followed_table(summary: dict[str, Any]) -> str:
    kinds = sorted({k for s in summary["systems"].values() for k in s["critiques_followed"]})
    rows = []
    for k in kinds:
        row: list[Any] = [k]
        for s in summary["systems"].values():
            m = s["critiques_followed"].get(k)
            row.append(f"{m['rate']:.2f} ({m['followed']}/{m['n']})" if m else "-")
        rows.append(row)
    return _table(["critique", *summary["systems"]], rows)


def markdown_summary(summary: dict[str, Any], title: str = "Simulated shoppers") -> str:
    """Every table of the report in Markdown."""
    run = summary.get("run") or {}
    parts = [f"# {title}" if title else "", "",
             f"{summary['num_targets']} simulated shoppers on `{run.get('dataset')}` (targets: {run.get('targets')}, "
             f"shopper: {run.get('shopper')}, seed {run.get('seed')}). success@t: the hidden target is among the items "
             f"shown by turn t (turn 1 is the opening). Violations: shown items that break a hard constraint the agent "
             "itself reports (excluded/included brands, excluded categories, price bounds, avoided colours); 0 for a "
             "correct agent.",
             "", "## Success by turn", "", success_table(summary), ""]
    rows = []
    for name, s in summary["systems"].items():
        for d, m in s["success_by_difficulty"].items():
            rows.append([name, d, m["n"], m["success"]])
    if rows:
        parts += ["## Success by difficulty", "", _table(["system", "difficulty", "n", "success"], rows), ""]
    parts += ["## Critiques followed", "",
              "Share of the shopper's points that the list shown in reply followed: an exclude is followed when no "
              "shown item breaks it, an include when at least half the shown items satisfy it, \"cheaper\" when the "
              "median shown price went down, \"something else\" when no item is shown again.", "",
              followed_table(summary), ""]
    rows = []
    for name, s in summary["systems"].items():
        v = s["violations"]
        rows.append([name, v["count"], ", ".join(f"{k} {n}" for k, n in sorted(v["by_constraint"].items())) or "-",
                     v["turns_checked"], v["items_shown"]])
    parts += ["## Constraint violations", "", _table(["system", "violations", "by constraint", "turns checked",
                                                      "items shown"], rows), ""]
    rows = []
    for name, s in summary["systems"].items():
        for v in s["violations"]["list"][:20]:
            rows.append([name, v["target_index"], v["turn"], v["constraint"], v["value"], v["title"]])
    if rows:
        parts += ["First violations (up to 20 per system):", "", _table(["system", "target", "turn", "constraint",
                                                                          "value", "shown item"], rows), ""]
    rows = []
    for name, s in summary["systems"].items():
        for t, c in s["intents_by_turn"].items():
            rows.append([name, t, ", ".join(f"{k} {v}" for k, v in sorted(c.items()))])
    parts += ["## Intents by turn", "", _table(["system", "turn", "intents"], rows), ""]
    rows = [[name, s["latency_ms"]["n"], s["latency_ms"]["p50"], s["latency_ms"]["p95"]]
            for name, s in summary["systems"].items()]
    parts += ["## Latency per turn (ms)", "", _table(["system", "turns", "p50", "p95"], rows), ""]
    fb = {name: s["shopper_fallbacks"] for name, s in summary["systems"].items() if s.get("shopper_fallbacks")}
    if fb:
        parts += ["## LLM shopper fallbacks to the rule text", "",
                  _table(["system", "reasons"], [[k, ", ".join(f"{r} {n}" for r, n in v.items())] for k, v in fb.items()]), ""]
    return "\n".join(parts).lstrip("\n")


def plot_pngs(summary: dict[str, Any]) -> dict[str, str]:
    """{name: base64 PNG}: success by turn per system; critiques followed per kind and system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    systems = summary["systems"]
    turns = list(range(1, summary["max_turns"] + 1))
    out: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, s in systems.items():
        ax.plot(turns, [s["success_at_turn"][str(t)] for t in turns], marker="o", label=name)
    ax.set_xticks(turns)
    ax.set_xlabel("turn (1 = opening)")
    ax.set_ylabel("success (target shown by turn t)")
    ax.set_ylim(0, 1)
    ax.set_title("Success by turn")
    ax.legend()
    out["success_by_turn"] = _png(fig)
    kinds = sorted({k for s in systems.values() for k in s["critiques_followed"]})
    if kinds:
        fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(kinds)), 3.5))
        width = 0.8 / max(1, len(systems))
        x = np.arange(len(kinds))
        for i, (name, s) in enumerate(systems.items()):
            ax.bar(x + i * width, [s["critiques_followed"].get(k, {}).get("rate", 0.0) for k in kinds], width, label=name)
        ax.set_xticks(x + width * (len(systems) - 1) / 2, kinds, rotation=30, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel("share followed")
        ax.set_title("Critiques followed by the next list")
        ax.legend(fontsize=7)
        out["critiques_followed"] = _png(fig)
    return out


def html_report(summary: dict[str, Any], title: str = "lumenrec simulated shoppers") -> str:
    captions = {"success_by_turn": "Success by turn", "critiques_followed": "Critiques followed, per kind"}
    return html_page(title, markdown_summary(summary, title=""), plot_pngs(summary), captions, summary.get("run"))


def write_report(summary: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write summary.json, report.html and summary.md under `out`; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "summary.json", "html": out / "report.html", "md": out / "summary.md"}
    _atomic(paths["json"], json.dumps(summary, indent=2, default=float) + "\n")
    _atomic(paths["html"], html_report(summary))
    _atomic(paths["md"], markdown_summary(summary) + "\n")
    return paths
