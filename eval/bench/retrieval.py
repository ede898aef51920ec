"""Retrieval benchmark on Office 2014 with the 150 hand-written REGEN-style dev conversations.

Everything is trained on the TRAINING part of the Office 2014 sequences only (leave-one-out: the
sequential model and ILM see ``Split.train`` = seq[:-2]; LUMEN learns from synthetic critiques on
the held-out position seq[-2], which those models have not seen). The dev conversations' target is
each user's last item (seq[-1]) and is never trained on. Each dev case: history = the given
history, query text = the critique, target = the given target; full ranking over the catalogue,
history masked.

Rows (side by side, one run): popularity; sequential model only; text-only (MiniLM, query =
critique); ILM vectors with the critique; LUMEN with and without the critique; ILM ablations
(ITC, ITC+II, ITC+II+UI), each as ILM-with-critique and as the item space of a LUMEN retriever.

    python -m lumenrec.eval.bench.retrieval [--seq-checkpoint DIR] [--out docs/results/retrieval.json]
"""

from __future__ import annotations

import argparse

from lumenrec.eval.report import update_section, write_json
import logging
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lumenrec.eval.metrics import mask_history, metrics_from_ranks, ranks_from_scores

__all__ = ["run_benchmark", "markdown_table", "target_summary", "main"]

log = logging.getLogger(__name__)

KS = (1, 5, 10, 20, 50)


def _metrics(scores: np.ndarray, histories: list[np.ndarray], targets: np.ndarray) -> dict[str, float]:
    s = np.array(scores, dtype=np.float64, copy=True)  # (B, N)
    mask_history(s, histories)
    return metrics_from_ranks(ranks_from_scores(s, targets), KS)


def _encode_texts_cached(encoder, texts: list[str]) -> np.ndarray:
    from lumenrec.retriever.ilm import _encode_cached

    return _encode_cached(encoder, texts)


def _train_sasrec(split, catalog, out_dir: Path, max_time_s: float, seed: int):
    """A SASRec fitted on split.train (full softmax: 2.4k items make it cheap), via the project trainer."""
    import torch.nn.functional as F
    from torch import nn

    from lumenrec.retriever.sasrec import SASRecConfig
    from lumenrec.retriever.train import TrainConfig, Trainer

    class _Softmax(nn.Module):
        def forward(self, q, p, e):
            return F.cross_entropy(q @ e.T, p)

    cfg = TrainConfig(seed=seed, epochs=200, patience=5, max_time_s=max_time_s, checkpoint_dir=str(out_dir), progress=True,
                      num_threads=1)  # one thread: far faster than contended threads on shared CPUs
    tr = Trainer(split, SASRecConfig(num_items=len(catalog)), cfg, item_ids=catalog.ids, dataset_name="office-2014",
                 loss_fn=_Softmax())
    res = tr.fit()
    log.info("SASRec: best valid %s at epoch %d (%s)", res.best_valid, res.best_epoch, res.stopped)
    return tr.retriever(catalog)


def run_benchmark(*, seq_checkpoint: str | None = None, work_dir: str | None = None, seed: int = 0,
                  ilm_epochs: int = 10, lumen_epochs: int = 20, lumen_per_ablation: bool = False, losses: tuple[str, ...] = ("softmax", "warp", "lambdarank"),
                  sasrec_time_s: float = 150.0, progress: bool = True) -> dict:
    """Train what is needed, evaluate every row on the dev conversations, return the results dict."""
    import torch

    from lumenrec.data.registry import load_dataset
    from lumenrec.data.split import leave_one_out
    from lumenrec.retriever.critique_synth import CritiqueSynthConfig, synthesize_examples
    from lumenrec.retriever.ilm import ILMConfig, ILMEncoder, ILMRetriever, build_text_features
    from lumenrec.retriever.lumen import LumenConfig, LumenRetriever, critique_focus, transition_matrix
    from lumenrec.retriever.sasrec import SASRecRetriever
    from lumenrec.retriever.text_encoder import TextEncoder
    from lumenrec.retriever.text_retriever import TextRetriever

    t_start = time.monotonic()
    torch.manual_seed(seed)
    work = Path(work_dir or tempfile.mkdtemp(prefix="lumenrec-bench-"))
    ds = load_dataset("office-2014")
    cat = ds.catalog
    convs = [c for c in ds.conversations if c.target and c.critique]
    if not convs:
        raise RuntimeError("office-2014 has no dev conversations attached (regen-office-dev missing?)")
    split = leave_one_out(ds.interactions)
    hist = [cat.indices_of([h for h in c.history if h in cat]) for c in convs]
    tgt = cat.indices_of([c.target for c in convs])
    crit = [c.critique for c in convs]
    # leakage guard: a dev target must not be a training target of its user
    seqs = {u: s for u, s in zip(split.train_users, split.train_full)}
    leaks = sum(int(t in seqs.get(c.user_id, np.zeros(0))[len(h):]) for c, h, t in zip(convs, hist, tgt))
    if leaks:
        log.warning("%d dev targets appear in their user's training continuation", leaks)

    timings: dict[str, float] = {}
    t0 = time.monotonic()
    if seq_checkpoint:
        seq = SASRecRetriever.from_pretrained(seq_checkpoint, cat)
    else:
        seq = _train_sasrec(split, cat, work / "sasrec", sasrec_time_s, seed)
    timings["sasrec_s"] = time.monotonic() - t0

    enc = TextEncoder()
    text_tokens, text_mask, T = build_text_features(cat, enc)
    popularity = split.train_popularity().astype(np.float64)

    rows: dict[str, dict] = {}
    rows["popularity"] = _metrics(np.tile(popularity, (len(convs), 1)), hist, tgt)
    rows["sequential (SASRec, no text)"] = _metrics(seq.score_indices(hist), hist, tgt)
    M = transition_matrix(split.train, len(cat))  # item co-occurrence prior from training sequences only
    recent = np.zeros((len(hist), len(cat)))
    for i, h in enumerate(hist):
        for k, j in enumerate(h[::-1][:3]):
            recent[i, j] += 0.5 ** k
    rows["co-occurrence prior (no text)"] = _metrics(recent @ M + 1e-6 * np.log1p(popularity), hist, tgt)
    from lumenrec.retriever.base import Query

    queries = [Query(history=list(c.history), text=c.critique) for c in convs]
    rows["text-only (MiniLM, critique)"] = _metrics(TextRetriever(cat, enc, T).score(queries), hist, tgt)
    # the same with only the critique's closing sentences (critique_focus): the part LUMEN's focus term embeds
    focus_queries = [Query(history=list(c.history), text=critique_focus(c.critique)) for c in convs]
    rows["text-only (MiniLM, critique focus)"] = _metrics(TextRetriever(cat, enc, T).score(focus_queries), hist, tgt)

    # training critiques for LUMEN: held-out position of each training sequence
    syn_cfg = CritiqueSynthConfig(seed=seed, variants=2)
    ex = synthesize_examples(split.train_full, cat, syn_cfg, users=split.train_users, positions="last")
    dev_users = {c.user_id for c in convs}
    n_dev_ex = sum(e.user_id in dev_users for e in ex)  # allowed: their seq[-2], not the dev target
    ex_vecs = _encode_texts_cached(enc, [e.text for e in ex])
    ex_focus = _encode_texts_cached(enc, [critique_focus(e.text) for e in ex])  # the need, without the opening
    log.info("%d synthetic training critiques (%d from users who also have a dev case, targets differ)", len(ex), n_dev_ex)

    cf = seq.item_embeddings()
    # ILM ablations; the last one adds our text skip (text-aligned vectors, see lumenrec.retriever.ilm)
    variants = {"itc": dict(use_ii=False, use_ui=False), "itc+ii": dict(use_ui=False), "itc+ii+ui": {},
                "itc+ii+ui, text skip": dict(text_skip=True)}
    ilm_info, lumen_info = {}, {}
    full_lumen = None
    for name, kw in variants.items():
        t0 = time.monotonic()
        ilm = ILMEncoder(ILMConfig(epochs=ilm_epochs, seed=seed, progress=progress, **kw), cat.ids, cf, text_tokens, text_mask, T)
        ilm.fit(split.train)
        V = ilm.item_vectors()
        timings[f"ilm_{name}_s"] = time.monotonic() - t0
        ilm_info[name] = {"config": asdict(ilm.config), "last_epoch": ilm.history[-1]}
        own = float((np.argmax(V @ T.T, axis=1) == np.arange(len(cat))).mean())
        ilm_info[name]["own_text_top1"] = own
        rows[f"ILM[{name}] vectors + critique"] = _metrics(ILMRetriever(cat, V, enc).score(queries), hist, tgt)
        loss_list = losses if name == "itc+ii+ui" else (("softmax",) if lumen_per_ablation else ())
        for loss in loss_list:
            try:
                t0 = time.monotonic()
                lum = LumenRetriever(cat, V, T, seq=seq, text_encoder=enc, popularity=popularity, transitions=M,
                                     config=LumenConfig(loss=loss, epochs=lumen_epochs, seed=seed, progress=progress))
                lum.fit([e.history for e in ex], [e.text for e in ex], [e.target for e in ex], text_vecs=ex_vecs,
                        focus_vecs=ex_focus, popularity=popularity)
                timings[f"lumen_{name}_{loss}_s"] = time.monotonic() - t0
            except Exception as e:  # noqa: BLE001 -- a failing loss variant is reported, not fatal to the table
                log.warning("LUMEN loss %s unavailable: %s", loss, e)
                rows[f"LUMEN[{name}, {loss}] + critique"] = {"error": str(e)}
                continue
            w = _metrics(lum.score_indices(hist, crit), hist, tgt)
            wo = _metrics(lum.score_indices(hist, [None] * len(hist)), hist, tgt)
            rows[f"LUMEN[{name}, {loss}] + critique"] = w
            rows[f"LUMEN[{name}, {loss}] no critique"] = wo
            lumen_info[f"{name}/{loss}"] = {"mix": lum.mix_weights(), "last_epoch": lum.history[-1]}
            if name == "itc+ii+ui" and loss == "softmax":
                full_lumen = lum
    if full_lumen is not None:
        full_lumen.save(work / "lumen")
    by_diff = {}
    if full_lumen is not None:
        s = full_lumen.score_indices(hist, crit)
        for d in ("easy", "medium", "hard"):
            idx = [i for i, c in enumerate(convs) if c.meta.get("difficulty") == d]
            if idx:
                by_diff[d] = _metrics(s[idx], [hist[i] for i in idx], tgt[idx])
    return {
        "dataset": "office-2014 + regen-office-dev",
        "cases": len(convs),
        "num_items": len(cat),
        "protocol": "full ranking over the catalogue, history masked; models trained on leave-one-out train only",
        "rows": rows,
        "lumen_softmax_full_by_difficulty": by_diff,
        "ilm": ilm_info,
        "lumen": lumen_info,
        "training_critiques": len(ex),
        "timings_s": timings,
        "total_s": time.monotonic() - t_start,
        "seed": seed,
        "work_dir": str(work),
    }


def markdown_table(result: dict) -> str:
    lines = ["| retriever | R@1 | R@10 | R@50 | N@10 | MRR |", "|---|---|---|---|---|---|"]
    for name, m in result["rows"].items():
        if "error" in m:
            lines.append(f"| {name} | n/a ({m['error'][:40]}) | | | | |")
            continue
        lines.append(f"| {name} | {m['recall@1']:.3f} | {m['recall@10']:.3f} | {m['recall@50']:.3f} | "
                     f"{m['ndcg@10']:.3f} | {m['mrr']:.3f} |")
    return "\n".join(lines)


def target_summary(result: dict) -> str:
    """The issue's targets against the best LUMEN row of this run, in words."""
    rows = result["rows"]
    lumen = {k: v for k, v in rows.items() if k.startswith("LUMEN[") and k.endswith("+ critique") and "error" not in v}
    if not lumen:
        return "No LUMEN row in this run."
    best = max(lumen, key=lambda k: (lumen[k]["recall@10"], lumen[k]["ndcg@10"]))
    b, no = lumen[best], rows.get(best.replace("+ critique", "no critique"), {})
    text, focus = rows["text-only (MiniLM, critique)"], rows.get("text-only (MiniLM, critique focus)")
    lines = [f"Best LUMEN row: **{best}**: R@10 {b['recall@10']:.3f}, N@10 {b['ndcg@10']:.3f} "
             f"(targets 0.50 / 0.30).",
             f"- vs text-only over the whole critique (R@10 {text['recall@10']:.3f}): "
             f"{b['recall@10'] / max(text['recall@10'], 1e-9):.2f}x (target >= 1.5x)."]
    if focus:
        lines.append(f"- vs text-only over the critique's closing sentences (R@10 {focus['recall@10']:.3f}, a stronger "
                     f"baseline we added): {b['recall@10'] / max(focus['recall@10'], 1e-9):.2f}x.")
    if no:
        lines.append(f"- with vs without the critique: R@10 {b['recall@10']:.3f} vs {no['recall@10']:.3f} = "
                     f"{b['recall@10'] / max(no['recall@10'], 1e-9):.1f}x (target >= 2x).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lumenrec.eval.bench.retrieval", description=__doc__.split("\n")[0])
    p.add_argument("--seq-checkpoint", default=None, help="a SASRec checkpoint dir (trained on split.train); default: train one")
    p.add_argument("--work-dir", default=None, help="where trained models go (default: a temp dir)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ilm-epochs", type=int, default=10)
    p.add_argument("--lumen-per-ablation", action="store_true", help="also train a LUMEN on each ILM ablation")
    p.add_argument("--lumen-epochs", type=int, default=20)
    p.add_argument("--losses", default="softmax,warp,lambdarank", help="LUMEN losses to compare (comma-separated)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    res = run_benchmark(seq_checkpoint=a.seq_checkpoint, work_dir=a.work_dir, seed=a.seed, ilm_epochs=a.ilm_epochs,
                        lumen_epochs=a.lumen_epochs, lumen_per_ablation=a.lumen_per_ablation, losses=tuple(x for x in a.losses.split(",") if x),
                        progress=not a.no_progress)
    out = write_json("retrieval", res)
    update_section("retrieval", "Command: `python -m lumenrec.eval.bench.retrieval --lumen-per-ablation`\n\n"
                   + markdown_table(res) + "\n\n" + target_summary(res),
                   "Retrieval with critiques: Office 2014 + regen-office-dev (150 conversations)")
    print(markdown_table(res))
    print(f"\nwritten to {out} ({res['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
