"""Generative LUMEN (issue 20): train the item-vocabulary LLM in resumable chunks, then rank the whole catalogue.

    lumenrec bench lumen_gen --data synthetic:num_items=300,num_users=1500,num_conversations=50 \\
        --steps 150 --max-time 420 --out runs/lumen_gen/synth300

1. the dataset's leave-one-out split; item vectors: ILM vectors (``--ilm-checkpoint``) or MiniLM item-text vectors;
2. semantic IDs (``--mode rq``: residual k-means + a collision code; ``--mode atomic``: one token per item);
3. training examples from the TRAINING sequences of users outside the dataset's conversations
   (history -> item, with and without a synthetic critique; item -> narrative from the inpainting narrator);
4. training of SmolLM2 (or ``--backbone``) + LoRA + item rows to ``--steps`` steps, checkpointed every
   ``--checkpoint-every`` steps in ``--out`` (a re-run resumes there), at most ``--max-time`` s per call;
5. full-catalogue metrics on ``--eval-users`` leave-one-out test users (history masked): the model's
   log-probability of every item's codes, beside popularity and the Markov chain on the same cases;
   without and with a synthetic critique of the (last item -> target) move; constrained beam search's
   top-10 validity.

A second stage (``--init-from`` another run) trains on from that run's weights with a fresh optimizer, e.g. on a
critique-heavy mix (``--history-only-fraction``), a decaying rate (``--lr-schedule cosine``) and LLM-written
narratives (``--narratives FILE`` from ``lumenrec llm training-narratives``); ``--continue-stream`` starts it
where the warm start stopped in the seeded example stream (same examples and seed) instead of replaying the
batches that run trained on. ``--distill-from DIR`` adds a teacher:
the LUMEN tower of a built system scores every critique example and its top items become soft targets
(:mod:`lumenrec.agent.llm.lumen_gen.distill`); ``--request-vector`` puts the request's MiniLM vector in the prompt.

A run that stops before ``--steps`` is published as what it is (steps done, wall, peak RSS), never as
a converged model.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lumenrec.agent.llm.lumen_gen.semantic_ids import LEAVES, MODES  # numpy only: --help stays torch-free
from lumenrec.agent.llm.lumen_gen import LR_SCHEDULES, PRECISIONS
from lumenrec.eval.report import machine_info, markdown_table, publish

__all__ = ["main", "run"]

log = logging.getLogger(__name__)


def _item_vectors(catalog, ilm_checkpoint: str | None) -> tuple[np.ndarray, str]:
    if ilm_checkpoint:
        from lumenrec.retriever.ilm import ilm_vectors_from_checkpoint

        vecs, version = ilm_vectors_from_checkpoint(ilm_checkpoint, catalog)
        return vecs, f"ilm ({version})"
    from lumenrec.retriever.text_encoder import TextEncoder

    return TextEncoder().encode_items(catalog, progress=False), "minilm item text"


def _critiques(cases, catalog, seed: int) -> list[str | None]:
    """A synthetic critique of each case's (last history item -> target) move (None when not similar)."""
    from lumenrec.retriever.critique_synth import synthesize_critique

    out = []
    for u, h, t in zip(cases.users, cases.histories, cases.targets):
        prev, nxt = catalog[int(h[-1])], catalog[int(t)]
        same = prev.categories[:1] == nxt.categories[:1]
        out.append(synthesize_critique(prev, nxt, random.Random(f"eval:{seed}:{u}")) if same else None)
    return out


def _narratives(model, ds, n: int) -> dict[str, Any]:
    """Purchase reasons for the store's conversations (never trained on) vs their references, ROUGE-L F1:
    the model's (greedy, conditioned on its item tokens) beside the offline narrator's, same cases."""
    from rouge_score import rouge_scorer

    from lumenrec.data.inpaint import Inpainter

    cat = ds.catalog
    convs = [c for c in ds.conversations if c.target in cat and c.narratives.purchase_reason and c.history][:n]
    if not convs:
        return {"cases": 0}
    offline = Inpainter(cat).narrator
    sc = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rows: dict[str, list[float]] = {"lumen_gen": [], "offline narrator": []}
    examples = []
    for c in convs:
        hist = [cat.index_of(h) for h in c.history if h in cat]
        ref = c.narratives.purchase_reason
        gen = model.narrate(hist, cat.index_of(c.target), c.critique)
        off = offline.generate("purchase_reason", cat.get(c.target), [cat[i] for i in hist], user_id=c.user_id,
                               critique=c.critique).text
        rows["lumen_gen"].append(sc.score(ref, gen)["rougeL"].fmeasure)
        rows["offline narrator"].append(sc.score(ref, off)["rougeL"].fmeasure)
        if len(examples) < 3:
            examples.append({"user_id": c.user_id, "lumen_gen": gen, "offline": off, "reference": ref})
    return {"cases": len(convs), "rougeL": {k: float(np.mean(v)) for k, v in rows.items()}, "examples": examples}


def _rank_metrics(scores: np.ndarray, histories, targets) -> dict[str, float]:
    """Full-catalogue metrics of (B, N) scores: each row's history masked, then the target's rank."""
    from lumenrec.eval.metrics import mask_history, metrics_from_ranks, ranks_from_scores

    s = np.array(scores, dtype=np.float64, copy=True)
    mask_history(s, histories)
    return metrics_from_ranks(ranks_from_scores(s, targets), ks=(1, 5, 10, 20))


def _dev_critiques(model, ds, tower: str | None, pop, markov) -> dict[str, Any]:
    """The dataset's conversations (the dev set: never trained on) as the critique turn: history + the
    shopper's critique -> the target, full-catalogue ranks (history masked) for every scorer on the same
    cases: generative LUMEN with and without the critique, and, with ``tower`` (a built system
    directory), its LUMEN tower in memory and its SASRec, beside the whole-critique text retriever."""
    from lumenrec.retriever.base import Query
    from lumenrec.retriever.text_retriever import TextRetriever

    cat = ds.catalog
    convs = [c for c in ds.conversations if c.critique and c.target in cat]
    hists = [np.array([cat.index_of(h) for h in c.history if h in cat], dtype=np.int64) for c in convs]
    targets = np.array([cat.index_of(c.target) for c in convs])

    def m(scores: np.ndarray) -> dict[str, float]:
        return _rank_metrics(scores, hists, targets)

    rows: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    rows["lumen_gen (+ critique)"] = m(np.stack([model.score_items(model.prompt(list(h), c.critique))
                                                  for h, c in zip(hists, convs)]))
    rows["lumen_gen (history only)"] = m(np.stack([model.score_items(model.prompt(list(h), None)) for h in hists]))
    gen_s = time.perf_counter() - t0
    rows["text-only (whole critique)"] = m(TextRetriever(cat).score([Query(text=c.critique) for c in convs]))
    if tower:
        from lumenrec.build import tower_teacher
        from lumenrec.retriever.sasrec import SASRecRetriever

        lumen = tower_teacher(tower, cat)
        rows["tower LUMEN (+ critique)"] = m(lumen.score([Query(history=list(c.history), text=c.critique) for c in convs]))
        rows["tower LUMEN (history only)"] = m(lumen.score([Query(history=list(c.history)) for c in convs]))
        sas = Path(tower) / "sasrec"
        if sas.is_dir():
            rows["SASRec (history only)"] = m(SASRecRetriever.from_pretrained(sas, cat).score(
                [Query(history=list(c.history)) for c in convs]))
    rows["markov (history only)"] = m(markov(hists))
    rows["popularity"] = m(pop(hists))
    return {"cases": len(convs), "metrics": rows, "lumen_gen_seconds": gen_s, "tower": tower}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from lumenrec.agent.llm.lumen_gen.examples import ExampleConfig, build_examples
    from lumenrec.agent.llm.lumen_gen.model import GenerativeLumen, LumenGenConfig
    from lumenrec.agent.llm.lumen_gen.semantic_ids import SemanticIDConfig
    from lumenrec.agent.llm.lumen_gen.train import (LumenGenTrainConfig, continued_stream_offset, peak_rss_mb,
                                                     run_semantic_ids, train_lumen_gen)
    from lumenrec.data.registry import load_dataset
    from lumenrec.data.split import leave_one_out
    from lumenrec.eval.baselines import MarkovScorer, PopularityScorer
    from lumenrec.retriever.ilm import torch_threads

    t_all = time.perf_counter()
    ds = load_dataset(args.data)
    cat = ds.catalog
    split = leave_one_out(ds.interactions)
    conv_users = {c.user_id for c in ds.conversations}
    vecs, vec_source = _item_vectors(cat, args.ilm_checkpoint)
    out = Path(args.out)
    sid_cfg = SemanticIDConfig(mode=args.mode, levels=args.levels, codebook_size=args.codebook_size, leaf=args.leaf,
                               seed=args.seed)
    sids = run_semantic_ids(out / "model", sid_cfg, len(cat), lambda: vecs)
    narrator = None
    if args.narratives:  # LLM narratives written beforehand (lumenrec llm training-narratives)
        from lumenrec.agent.llm.lumen_gen.narratives import FileNarrator

        narrator = FileNarrator(args.narratives, cat)
    examples = build_examples(split.train, split.train_users, cat,
                              ExampleConfig(positions_per_user=args.positions, seed=args.seed,
                                            history_only_fraction=args.history_only_fraction,
                                            narrative_repeats=args.narrative_repeats),
                              exclude_users=conv_users, narrator=narrator)
    narrators = sorted({e.narrator for e in examples if e.narrator})
    narrative_file = None if narrator is None else {"path": args.narratives, **narrator.stats()}
    model = GenerativeLumen.from_backbone(LumenGenConfig(backbone=args.backbone, seed=args.seed,
                                                         request_vector=args.request_vector), sids)
    init_from = None
    if args.init_from:  # a second stage: another run's weights, this run's examples and schedule
        init_from = Path(args.init_from)
        init_from = init_from / "model" if (init_from / "model" / "config.json").is_file() else init_from
    # --continue-stream: the example stream goes on after the batches the warm start trained on
    offset = continued_stream_offset(init_from, examples, args.seed) if args.continue_stream else 0
    tcfg = LumenGenTrainConfig(steps=args.steps, batch_size=args.batch_size, max_time_s=args.max_time,
                               checkpoint_every=args.checkpoint_every, num_threads=args.threads, seed=args.seed,
                               lr_schedule=args.lr_schedule, precision=args.precision, example_offset=offset,
                               distill_weight=args.distill_weight if args.distill_from else 0.0,
                               **{k: v for k in ("lr", "lr_items", "warmup_steps")  # None: the config's default
                                  if (v := getattr(args, k)) is not None})
    teacher = None
    if args.distill_from:  # the tower's soft targets for the critique examples (cached in OUT/teacher.npz)
        from lumenrec.build import tower_soft_targets

        teacher = tower_soft_targets(args.distill_from, cat, examples, out / "teacher.npz", top_k=args.distill_top_k,
                                     temperature=args.distill_temperature)
    train = train_lumen_gen(model, examples, cat.ids, tcfg, out=out / "model",
                            extra={"data": args.data, "item_vectors": vec_source}, init_from=init_from, teacher=teacher)
    log.info("training: %s", train)
    # the run's directory is a system every entry point loads: `lumenrec chat --model OUT`, replay's
    # recommender_dir=OUT, Recommender.from_pretrained(OUT)
    from lumenrec.agent.recommender import write_manifest

    write_manifest(out, dataset_name=args.data, retriever_kind="lumen_gen", checkpoint="model", narrator="lumen_gen")

    # evaluation: a seeded sample of leave-one-out test users
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(len(split.test), size=min(args.eval_users, len(split.test)), replace=False))
    cases = split.test.subset(pick)
    crit = _critiques(cases, cat, args.seed)
    t_eval = time.perf_counter()
    rows: dict[str, dict[str, float]] = {}

    def metrics(scores: np.ndarray, idx: list[int]) -> dict[str, float]:
        return _rank_metrics(scores, [cases.histories[i] for i in idx], cases.targets[idx])

    all_idx = list(range(len(cases)))
    pop = PopularityScorer(split.train_full, len(cat))
    markov = MarkovScorer(split.train_full, len(cat))
    rows["popularity"] = metrics(pop(cases.histories), all_idx)
    rows["markov"] = metrics(markov(cases.histories), all_idx)
    with torch_threads(args.threads):
        plain = np.stack([model.score_items(model.prompt(h, None)) for h in cases.histories])  # (B, N)
        rows["lumen_gen (history only)"] = metrics(plain, all_idx)
        with_c = [i for i, c in enumerate(crit) if c]
        if with_c:
            sc = np.stack([model.score_items(model.prompt(cases.histories[i], crit[i])) for i in with_c])
            rows["lumen_gen (+ critique)"] = metrics(sc, with_c)
            rows["lumen_gen (history only, same cases)"] = metrics(plain[with_c], with_c)
            rows["popularity (same cases)"] = metrics(pop([cases.histories[i] for i in with_c]), with_c)
        beams = [model.beam_search(model.prompt(h, None), 10) for h in cases.histories[: args.beam_users]]
        narratives = _narratives(model, ds, args.narrative_cases)
        dev = _dev_critiques(model, ds, args.tower, pop, markov) \
            if args.dev_critiques and ds.conversations else None
    valid = sum(len(b) for b in beams)
    eval_s = time.perf_counter() - t_eval
    epochs = train["steps_total"] * args.batch_size / len(examples)
    short = train["steps_total"] < args.steps or epochs < 1.0  # stopped by the budget, or not one pass over the data
    return {
        "data": args.data, "items": len(cat), "users": len(ds.interactions), "conversation_users_excluded": len(conv_users),
        "item_vectors": vec_source, "semantic_ids": {"mode": args.mode, "leaf": args.leaf, "levels": sids.num_levels,
                                                     "level_sizes": sids.level_sizes, "collision_level": sids.collision_level},
        "model": model.describe(), "backbone_dir": model.backbone_dir,
        "examples": {"total": len(examples), "item": sum(e.task == "item" for e in examples),
                     "with_critique": sum(e.task == "item" and e.critique is not None for e in examples),
                     "narrative": sum(e.task == "narrative" for e in examples), "narrators": narrators,
                     "history_only_fraction": args.history_only_fraction, "narrative_repeats": args.narrative_repeats,
                     "narrative_file": narrative_file},
        "train": train, "train_config": {"steps": args.steps, "batch_size": args.batch_size, "threads": args.threads,
                                         "max_time_s": args.max_time, "checkpoint_every": args.checkpoint_every,
                                         "lr": tcfg.lr, "lr_items": tcfg.lr_items, "lr_schedule": tcfg.lr_schedule,
                                         "warmup_steps": tcfg.warmup_steps, "precision": tcfg.precision,
                                         "example_offset": tcfg.example_offset},
        "init_from": None if init_from is None else {k: train["init_from"][k] for k in ("dir", "step")},
        "distill": None if teacher is None else {
            "from": args.distill_from, "weight": args.distill_weight, "temperature": args.distill_temperature,
            "top_k": args.distill_top_k, "examples_with_targets": sum(t is not None for t in teacher)},
        "short_run": short, "epochs": epochs,
        "eval": {"cases": len(cases), "cases_with_critique": len(with_c), "seconds": eval_s, "metrics": rows,
                 "beam_top10": {"users": len(beams), "items_returned": valid,
                                "valid_catalogue_items": sum(1 for b in beams for i, _ in b if 0 <= i < len(cat))},
                 "narratives": narratives, "dev_critiques": dev},
        "peak_rss_mb": peak_rss_mb(), "wall_s": time.perf_counter() - t_all, "torch_threads": torch.get_num_threads(),
        "machine": machine_info(),
    }


def to_markdown(r: dict[str, Any]) -> str:
    t, tc = r["train"], r["train_config"]
    head = ["scorer", "cases", "R@10", "N@10", "R@1", "MRR"]
    body = [[k, v["n"], v["recall@10"], v["ndcg@10"], v["recall@1"], v["mrr"]] for k, v in r["eval"]["metrics"].items()]
    b = r["eval"]["beam_top10"]
    label = (f"SHORT RUN ({r['epochs']:.2f} epochs: a loop check, not a trained model)" if r["short_run"]
             else f"{r['epochs']:.2f} epochs")
    sid = r["semantic_ids"]
    leaf_note = ("last level: each item's own token" if sid.get("leaf") == "item"
                 else f"collision level: {sid['collision_level']}")
    return "\n".join([
        f"**{label}**: {t['steps_total']} steps of batch {r['train_config']['batch_size']} "
        f"({t['steps_this_run']} in this call, resumed from {t['resumed_from']}), {t['wall_s']:.0f} s training in this call "
        f"({t['s_per_step']:.2f} s/step, {r['train_config']['threads']} torch threads; training wall over all calls: "
        f"{'not recorded by an earlier call' if t.get('wall_s_total') is None else format(t['wall_s_total'], '.0f') + ' s'}), "
        f"peak RSS {r['peak_rss_mb']:.0f} MiB, "
        f"whole command {r['wall_s']:.0f} s. Loss {t['loss_first']:.3f} at step 1, mean of the last 20 steps "
        f"{t['loss_last20']:.3f}.",
        "",
        *([f"Warm start from `{r['init_from']['dir']}` (its step {r['init_from']['step']}): a second stage with a fresh "
           f"optimizer; the steps and epochs above are this stage's"
           + (f", its examples from number {off:,} of the seeded stream on (where the warm start stopped)."
              if (off := r["train_config"].get("example_offset", 0)) else "."), ""] if r.get("init_from") else []),
        *([f"Distillation: the LUMEN tower of `{d['from']}` scored {d['examples_with_targets']} critique examples; its "
           f"top {d['top_k']} items (softmax at temperature {d['temperature']:g}, history removed) are soft targets per "
           f"code position, weight {d['weight']:g} beside the cross-entropy on the true item (training only).", ""]
          if (d := r.get("distill")) else []),
        f"Rates: LoRA {tc.get('lr', 5e-4):g}, item rows {tc.get('lr_items', 3e-3):g}, {tc.get('warmup_steps', 10)} "
        f"warm-up steps, then {tc.get('lr_schedule', 'constant')}"
        + (" (down to 0.1x at the last step)" if tc.get("lr_schedule") == "cosine" else "")
        + ("; training forward in bf16 autocast (weights and scoring float32)" if tc.get("precision") == "bf16" else "")
        + ".",
        "",
        f"Data `{r['data']}`: {r['items']} items; item vectors: {r['item_vectors']}; semantic IDs {r['semantic_ids']['mode']} "
        f"with level sizes {r['semantic_ids']['level_sizes']} ({leaf_note}); "
        f"{r['model']['trainable_params']:,} trainable of {r['model']['total_params']:,} parameters"
        + ("; the request's MiniLM vector is one more prompt token (through the item rows' projection)"
           if r["model"].get("request_vector") else "") + ". "
        f"Examples from training sequences only ({r['conversation_users_excluded']} conversation users left out): "
        f"{r['examples']['item']} item ({r['examples']['with_critique']} with a synthetic critique), "
        f"{r['examples']['narrative']} narrative (narrator: {', '.join(r['examples']['narrators']) or 'none'}"
        + (f"; from `{nf['path']}`, {nf['in_file']} narratives in the file, {nf['missing']} examples without one"
           if (nf := r["examples"].get("narrative_file")) else "") + ")"
        + (f"; each narrative example {nr}x" if (nr := r["examples"].get("narrative_repeats", 1)) > 1 else "")
        + (f"; history-only examples thinned to a seeded {hf:g} share" if (hf := r["examples"].get("history_only_fraction", 1.0)) < 1 else "")
        + ".",
        "",
        "Full-catalogue ranking of leave-one-out test targets (history masked), the same seeded sample of test users "
        "for every row; '+ critique' = a synthetic critique of the last item -> target move, on the cases where one exists:",
        "",
        markdown_table(head, body),
        "",
        f"Constrained beam search (width 10): {b['valid_catalogue_items']} of {b['items_returned']} returned items are "
        f"catalogue items, over {b['users']} users. Evaluation took {r['eval']['seconds']:.0f} s.",
    ] + ([
        "",
        f"Purchase reasons for {nv['cases']} of the store's conversations (never trained on) vs their references, "
        f"ROUGE-L F1: generative LUMEN {nv['rougeL']['lumen_gen']:.3f}, the offline narrator "
        + ("(which wrote its training narratives) " if r["examples"]["narrators"] == ["offline"] else "")
        + f"{nv['rougeL']['offline narrator']:.3f}.",
    ] if (nv := r["eval"].get("narratives", {})).get("cases") else []) + ([
        "",
        f"The dataset's {dv['cases']} conversations (never trained on) as the critique turn: history + the shopper's "
        f"critique -> the target, full-catalogue ranks (history masked), every row on the same cases"
        + (f"; tower = the LUMEN tower of `{dv['tower']}` in memory" if dv.get("tower") else "")
        + f" (generative LUMEN scoring: {dv['lumen_gen_seconds']:.0f} s):",
        "",
        markdown_table(["scorer", "R@10", "N@10", "R@1", "MRR"],
                       [[k, v["recall@10"], v["ndcg@10"], v["recall@1"], v["mrr"]] for k, v in dv["metrics"].items()]),
    ] if (dv := r["eval"].get("dev_critiques")) else []))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lumenrec bench lumen_gen", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="synthetic:num_items=300,num_users=1500,num_conversations=50")
    ap.add_argument("--out", default="runs/lumen_gen/synth300", help="checkpoint directory root (resumable)")
    ap.add_argument("--backbone", default=None, help="HF model dir or .gguf (default: SmolLM2-135M-Instruct)")
    ap.add_argument("--ilm-checkpoint", default=None, help="ILM checkpoint for the item vectors (default: MiniLM text)")
    ap.add_argument("--mode", default="rq", choices=MODES)
    ap.add_argument("--levels", type=int, default=2)
    ap.add_argument("--codebook-size", type=int, default=16)
    ap.add_argument("--leaf", default="collision", choices=LEAVES,
                    help="last code of an RQ tuple: a collision index (TIGER) or the item's own token")
    ap.add_argument("--positions", type=int, default=3, help="last transitions per training user")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=None, help="LoRA learning rate (default: LumenGenTrainConfig's)")
    ap.add_argument("--lr-items", type=float, default=None,
                    help="learning rate of the projection and item rows (default: LumenGenTrainConfig's)")
    ap.add_argument("--lr-schedule", default="constant", choices=LR_SCHEDULES,
                    help="after the warm-up: constant, or cosine down to 0.1x at --steps")
    ap.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up steps (default: LumenGenTrainConfig's)")
    ap.add_argument("--init-from", default=None,
                    help="warm start: another run's directory (or its model/ checkpoint) with the same semantic IDs; "
                         "this run trains on from its weights with a fresh optimizer (a second stage)")
    ap.add_argument("--continue-stream", action="store_true",
                    help="with --init-from a run on the same examples and seed: start after the examples that run "
                         "trained on (default: the seeded stream from its start, replaying its first batches)")
    ap.add_argument("--history-only-fraction", type=float, default=1.0,
                    help="seeded share of the history-only examples kept (lower: a critique-heavy mix)")
    ap.add_argument("--narrative-repeats", type=int, default=1,
                    help="copies of each narrative example (more exposure when the file holds few narratives)")
    ap.add_argument("--narratives", default=None,
                    help="a file of LLM training narratives (lumenrec llm training-narratives); examples without "
                         "a line there get no narrative example")
    ap.add_argument("--request-vector", action="store_true",
                    help="the request's MiniLM sentence vector as one more prompt token (through the item rows' "
                         "projection); needs the MiniLM item vectors (not --ilm-checkpoint)")
    ap.add_argument("--distill-from", default=None,
                    help="a built system directory (lumenrec build) whose LUMEN tower scores every critique example: "
                         "its top items are soft targets beside the true item (knowledge distillation)")
    ap.add_argument("--distill-weight", type=float, default=1.0, help="with --distill-from: the soft targets' weight")
    ap.add_argument("--distill-temperature", type=float, default=1.0, help="with --distill-from: softmax temperature")
    ap.add_argument("--distill-top-k", type=int, default=100, help="with --distill-from: teacher items kept per example")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS,
                    help="the training forward: float32, or bf16 autocast (~10%% faster steps, ~2 GiB more memory here)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--checkpoint-every", type=int, default=25)
    ap.add_argument("--max-time", type=float, default=420.0, help="training seconds in this call")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-users", type=int, default=100)
    ap.add_argument("--beam-users", type=int, default=30)
    ap.add_argument("--narrative-cases", type=int, default=20, help="store conversations whose purchase reason is written")
    ap.add_argument("--dev-critiques", action="store_true",
                    help="also rank the targets of the dataset's conversations (the dev set) from history + critique")
    ap.add_argument("--tower", default=None, help="with --dev-critiques: a built system directory (lumenrec build) "
                                                  "whose LUMEN tower and SASRec score the same cases")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="lumen_gen", help="results name (docs/results/NAME.json)")
    ap.add_argument("--no-publish", action="store_true")
    args = ap.parse_args(argv)
    if args.continue_stream and not args.init_from:
        ap.error("--continue-stream continues the example stream of an --init-from run; name one")
    if args.request_vector and args.ilm_checkpoint:
        ap.error("--request-vector embeds the request with MiniLM: it needs the MiniLM item vectors, not --ilm-checkpoint")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    r = run(args)
    r["command"] = "lumenrec bench lumen_gen " + " ".join(argv if argv is not None else sys.argv[1:])
    md = to_markdown(r)
    print(md)
    if not args.no_publish:
        title = "Generative LUMEN (issue 20): item tokens in the LLM's vocabulary"
        publish(args.name, r, md, title + (", one token per item" if args.mode == "atomic" else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
