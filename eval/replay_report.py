"""Reports of a replay run: ``summary.json`` (machines), ``report.html`` (self-contained, inline PNG
plots) and ``summary.md`` (people), all under the run's out dir; plus the docs/ publication.

Plots (matplotlib, Agg backend, embedded as base64 so the HTML opens anywhere offline):
recall@K by turn per system, with vs without the critique per system, latency per stage.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["write_report", "summary_table", "markdown_summary", "html_report", "html_page", "publish", "plot_pngs"]

STAGES = ("route", "parse", "retrieve", "narrate", "total")


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    out += ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def _rank_cols(ks: Sequence[int]) -> list[str]:
    return [f"recall@{k}" for k in ks] + [f"ndcg@{k}" for k in ks if k in (10, 20)] + ["mrr"]


def summary_table(summary: dict[str, Any]) -> str:
    """The headline table: per system and turn, ranking metrics of the target (Markdown)."""
    cols = _rank_cols(summary["ks"])
    rows = []
    for name, s in summary["systems"].items():
        for turn, m in s["per_turn"].items():
            rows.append([name, turn, m["n"], *[m[c] for c in cols]])
        if s["ablation"]:
            m = s["ablation"]["without_critique"]
            rows.append([name, "critique removed", m["n"], *[m[c] for c in cols]])
            if s["ablation"].get("retriever_alone"):
                m = s["ablation"]["retriever_alone"]
                rows.append([name, "retriever alone (history + critique)", m["n"], *[m[c] for c in cols]])
    return _table(["system", "turn", "n", *cols], rows)


def markdown_summary(summary: dict[str, Any], title: str = "Conversation replay") -> str:
    """Every table of the report in Markdown."""
    parts = [f"# {title}" if title else "", "",
             f"{summary['num_conversations']} conversations; dataset `{(summary.get('run') or {}).get('dataset')}`. "
             "Ranks are full-catalogue ranks of the target in what the agent retrieved at that turn "
             "(a turn without retrieval counts as a miss).", "", "## Ranking by turn", "", summary_table(summary), ""]
    rows = []
    for name, s in summary["systems"].items():
        if s["ablation"]:
            a = s["ablation"]
            rows.append([name, a["n"], a["with_critique"]["recall@10"], a["without_critique"]["recall@10"],
                         a["delta"]["recall@10"], a["with_critique"]["mrr"], a["without_critique"]["mrr"]])
    if rows:
        parts += ["## Critique ablation", "", _table(["system", "n", "R@10 with", "R@10 without", "delta R@10",
                                                      "MRR with", "MRR without"], rows), ""]
    rows = []
    for name, s in summary["systems"].items():
        for kind, m in s["narratives"].items():
            if m.get("n"):
                rows.append([name, kind, m["n"], m.get("rougeL"), m.get("bleu"), m.get("minilm_cos"),
                             m.get("template_repetition"), m.get("unsupported_claim_rate")])
    if rows:
        parts += ["## Narratives vs references", "",
                  "`reply`: the agent's narrative of its last recommendation vs the reference endorsement; the "
                  "others: the narrator's REGEN narrative of the target item vs the reference.", "",
                  _table(["system", "kind", "n", "ROUGE-L", "BLEU", "MiniLM cos", "template repetition",
                          "unsupported claims"], rows), ""]
    rows = []
    for name, s in summary["systems"].items():
        g = s["grounding_reply_items"]
        rows.append([name, s["validity"]["items"], s["validity"]["rate"], g["claims"], g["unsupported_claim_rate"],
                     s["fallbacks"]])
    parts += ["## Validity and grounding of reply items", "",
              _table(["system", "items shown", "catalogue validity", "claims checked", "unsupported claim rate",
                      "LLM fallbacks"], rows), ""]
    rows = []
    for name, s in summary["systems"].items():
        for turn, c in s["router"].items():
            rows.append([name, turn, ", ".join(f"{k} {v}" for k, v in sorted(c.items()))])
    parts += ["## Router decisions", "", _table(["system", "turn", "intents"], rows), ""]
    rows = []
    for name, s in summary["systems"].items():
        for st in STAGES:
            m = s["latency_ms"].get(st)
            if m:
                rows.append([name, st, m["n"], m["p50"], m["p95"]])
    parts += ["## Latency per stage (ms)", "",
              "Per shopper turn, from the Reply trace. `parse` is 0 when the router already parsed the critique "
              "(that time is in `route`); `total` is the sum of the traced steps.", "", _table(["system", "stage", "n", "p50", "p95"], rows), ""]
    return "\n".join(parts).lstrip("\n")


# -------------------------------------------------------------------------------------------- plots
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_pngs(summary: dict[str, Any], records: Sequence[dict[str, Any]]) -> dict[str, str]:
    """{name: base64 PNG} for recall by turn, with vs without critique, latency per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = summary["ks"]
    k = 10 if 10 in ks else ks[-1]
    out: dict[str, str] = {}
    systems = summary["systems"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, s in systems.items():
        turns = list(s["per_turn"])
        ax.plot(range(1, len(turns) + 1), [s["per_turn"][t][f"recall@{k}"] for t in turns], marker="o", label=name)
        ax.set_xticks(range(1, len(turns) + 1), turns)
    ax.set_xlabel("turn")
    ax.set_ylabel(f"recall@{k}")
    ax.set_ylim(0, 1)
    ax.set_title(f"Recall@{k} of the target by turn")
    ax.legend()
    out["recall_by_turn"] = _png(fig)

    with_abl = {n: s["ablation"] for n, s in systems.items() if s["ablation"]}
    if with_abl:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        width = 0.8 / (2 * len(with_abl))
        x = np.arange(len(ks))
        for i, (name, a) in enumerate(with_abl.items()):
            ax.bar(x + (2 * i) * width, [a["with_critique"][f"recall@{kk}"] for kk in ks], width, label=f"{name} with critique")
            ax.bar(x + (2 * i + 1) * width, [a["without_critique"][f"recall@{kk}"] for kk in ks], width,
                   label=f"{name} critique removed", alpha=0.6)
        ax.set_xticks(x + width * (len(with_abl) - 0.5), [f"R@{kk}" for kk in ks])
        ax.set_ylim(0, 1)
        ax.set_title("With vs without the critique")
        ax.legend(fontsize=7)
        out["critique_ablation"] = _png(fig)

    data, labels = [], []
    for name in systems:
        for st in STAGES:
            vals = [sum(t["ms"].values()) if st == "total" else t["ms"][st]
                    for r in records if r["system"] == name for t in r["turns"]
                    if "ms" in t and (st == "total" or st in t["ms"])]
            if vals:
                data.append(vals)
                labels.append(f"{name}\n{st}" if len(systems) > 1 else st)
    if data:
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(data)), 3.5))
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("ms per turn")
        ax.set_title("Latency per stage")
        out["latency"] = _png(fig)
    return out


def html_report(summary: dict[str, Any], records: Sequence[dict[str, Any]], title: str = "lumenrec replay") -> str:
    """A self-contained HTML page: the Markdown tables as HTML tables and the plots inline."""
    captions = {"recall_by_turn": "Recall by turn", "critique_ablation": "With vs without critique",
                "latency": "Latency distribution per stage"}
    return html_page(title, markdown_summary(summary, title=""), plot_pngs(summary, records), captions, summary.get("run"))


def html_page(title: str, md: str, imgs: dict[str, str], captions: dict[str, str], run: Any) -> str:
    """A self-contained HTML page from a report's Markdown (tables, ``## `` headings, paragraphs), its
    inline base64 PNG plots (after the first paragraph) and the run's settings (JSON at the end)."""
    body: list[str] = []
    table: list[str] = []

    def flush() -> None:
        if not table:
            return
        rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in table if not set(ln) <= set("|- ")]
        h = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
        b = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
        body.append(f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>")
        table.clear()

    for ln in md.splitlines():
        if ln.startswith("|"):
            table.append(ln)
            continue
        flush()
        if ln.startswith("## "):
            body.append(f"<h2>{html.escape(ln[3:])}</h2>")
        elif ln.strip():
            body.append("<p>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(ln)) + "</p>")
    flush()
    figs = "".join(f'<figure><img alt="{k}" src="data:image/png;base64,{v}"><figcaption>{captions.get(k, k)}</figcaption></figure>'
                   for k, v in imgs.items())
    css = ("body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2em;max-width:1100px}"
           "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}"
           "th{background:#f3f3f3}figure{display:inline-block;margin:0.5em}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{css}</style>"
            f"</head><body><h1>{html.escape(title)}</h1>{''.join(body[:1])}<h2>Plots</h2>{figs}{''.join(body[1:])}"
            f"<h2>Run</h2><pre>{html.escape(json.dumps(run, indent=1))}</pre></body></html>")


def write_report(summary: dict[str, Any], records: Sequence[dict[str, Any]], out: str | Path) -> dict[str, Path]:
    """Write summary.json, report.html and summary.md under `out`; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "summary.json", "html": out / "report.html", "md": out / "summary.md"}
    _atomic(paths["json"], json.dumps(summary, indent=2, default=float) + "\n")
    _atomic(paths["html"], html_report(summary, records))
    _atomic(paths["md"], markdown_summary(summary) + "\n")
    return paths


def publish(summary: dict[str, Any], command: str, name: str = "replay") -> tuple[Path, Path]:
    """docs/results/NAME.json and the NAME section of docs/benchmarks.md (default: `replay`)."""
    from lumenrec.eval.report import machine_info, update_section, write_json

    jpath = write_json(name, {**summary, "command": command, "machine": machine_info()})
    md = markdown_summary(summary, title="").replace("## ", "### ")
    title = "Conversation replay (full agent)" + ("" if name == "replay" else f": {name}")
    spath = update_section(name.replace("_", "-"), f"Command: `{command}`\n\n{md}", title=title)
    return jpath, spath
