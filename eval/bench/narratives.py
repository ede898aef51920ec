"""Narrative benchmark: the three REGEN narrative kinds on the 150 dev conversations, per generator.

Generators (``--generators``):
- ``offline``: the model-free :class:`~lumenrec.agent.narrative.OfflineNarrator`;
- ``smollm2-text``: SmolLM2-135M-Instruct with the text facts prompt (NarrativeGenerator: grounding
  check, one regeneration, repair, offline fallback);
- ``smollm2-ilm``: the same plus the item as ILM soft tokens (:mod:`lumenrec.agent.llm.soft_prompt`):
  the target's vector for purchase reasons and endorsements, the mean of the history's vectors for
  user summaries. The adaptor comes from ``--adaptor`` or is trained once into the cache;
- ``local`` (#19): the best installed local model on llama.cpp (``--local-model``; the 1.5B when
  assembled) with prompt ``--local-prompt`` (default ``narrative-v3``, the agent's), *streamed* as the
  agent shows it: checked sentences are released as the model finishes them (unsupported ones
  dropped), so each row also has the time to the model's first token and to the first piece shown.
  With v3 each conversation's shopper prefix is prepared first, as the agent does when a session
  opens (``prepare_s``, timed apart from the narratives);
- ``openai``: any OpenAI-compatible model, added when ``--base-url`` is given.

Metrics per (generator, kind), against the dev set's hand-written references: ROUGE-L F1 (mean
over cases, ``rouge-score`` with stemming), corpus BLEU (``sacrebleu``), cosine of MiniLM
embeddings, the share of texts with an unsupported claim before the checker (the LLM's first
answer) and after (the final text), the share that fell back to the offline narrator, mean length
in words, latency p50/p95 per narrative (all attempts), completion tokens per second
(SmolLM2's tokenizer counts the tokens of every backend), the template-repetition rate (share of
texts whose first four words open another text of the same generator and kind) and, for streamed
generators, p50 of the first token and of the first piece shown.

Resumable: every (generator, kind, user) result is appended to a JSONL cache (flushed + fsynced)
keyed with the prompt version, model and adaptor, so an interrupted run continues where it stopped
and ``--limit 10`` results are reused by the full run.

    python -m lumenrec.eval.bench.narratives --limit 10 --kinds endorsement
    lumenrec eval bench narratives --base-url http://127.0.0.1:8001/v1 --model my-model
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lumenrec.agent.narrative import LOCAL_PROMPT_VERSION, PROMPT_VERSIONS
from lumenrec.data.types import NARRATIVE_KINDS, Catalog, Conversation
from lumenrec.errors import ConfigError

__all__ = ["NarrativeBenchConfig", "run_bench", "score_rows", "main", "GENERATORS"]

log = logging.getLogger(__name__)

GENERATORS = ("offline", "smollm2-text", "smollm2-ilm", "local", "openai")


@dataclass
class NarrativeBenchConfig:
    """What the narrative benchmark runs."""

    data: str = "office-2014"  # a dataset whose conversations carry reference narratives (the dev set)
    limit: int | None = None  # first N conversations only (a smoke run); None = all 150
    start: int = 0  # skip the first N conversations: split a long generation run across processes (own --cache each)
    kinds: tuple[str, ...] = NARRATIVE_KINDS
    generators: tuple[str, ...] = ("offline", "smollm2-text", "smollm2-ilm")
    base_url: str | None = None  # adds the "openai" generator
    model: str | None = None  # the OpenAI-compatible model id
    local_model: str | None = None  # the "local" generator's model (registry name / .gguf); None = best installed
    local_threads: int = 1  # llama.cpp threads of the "local" generator
    local_prompt: str = LOCAL_PROMPT_VERSION  # the "local" generator's prompt version
    adaptor_dir: str | None = None  # soft-prompt adaptor; None = <cache>/models/softprompt-<source>, trained if missing
    ilm_checkpoint: str | None = None  # ILM item vectors; None = MiniLM stand-in vectors
    cache_path: str | None = None  # per-item JSONL cache; None = <cache>/bench/narratives.jsonl
    max_tokens: int = 120  # per LLM answer, as NarrativeGenerator's default
    write_docs: bool = True  # docs/results/<name>.json + a docs/benchmarks.md section
    # the results' name: "narratives" (the published SmolLM2 run) or another one, e.g. "narratives_local" for a
    # run of the local model beside the offline narrator that must not overwrite the published table
    name: str = "narratives"
    # score only narratives already in the cache, generate nothing (to publish a run stopped part-way;
    # each row then reports its own n and the run is labelled partial)
    cached_only: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        self.kinds = tuple(self.kinds)
        self.generators = tuple(self.generators)
        if not self.kinds or set(self.kinds) - set(NARRATIVE_KINDS):
            raise ConfigError("kinds", self.kinds, f"must be a non-empty subset of {NARRATIVE_KINDS}")
        if not self.generators or set(self.generators) - set(GENERATORS):
            raise ConfigError("generators", self.generators, f"must be a non-empty subset of {GENERATORS}")
        if self.base_url and "openai" not in self.generators:
            self.generators = self.generators + ("openai",)
        if "openai" in self.generators and not self.base_url:
            raise ConfigError("base_url", self.base_url, "the openai generator needs --base-url")
        if self.start < 0:
            raise ConfigError("start", self.start, "must be >= 0")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("limit", self.limit, "must be >= 1")
        if self.max_tokens < 1:
            raise ConfigError("max_tokens", self.max_tokens, "must be >= 1")
        if self.local_prompt not in PROMPT_VERSIONS:
            raise ConfigError("local_prompt", self.local_prompt, f"must be one of {PROMPT_VERSIONS}")


# ------------------------------------------------------------------------------------------ cache
class ResultCache:
    """Append-only JSONL of per-item results, keyed by ``key``; a torn last line is ignored and rewritten."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            raw = self.path.read_bytes()
            good = 0
            for line in raw.split(b"\n"):
                if not line.strip():
                    good += len(line) + 1
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    break  # a torn write: everything after it is dropped below
                self.rows[row["key"]] = row
                good += len(line) + 1
            if good < len(raw):
                with open(self.path, "r+b") as f:
                    f.truncate(min(good, len(raw)))
                log.warning("%s: dropped a torn last line", self.path)
            elif raw and not raw.endswith(b"\n"):
                with open(self.path, "ab") as f:
                    f.write(b"\n")

    def get(self, key: str) -> dict[str, Any] | None:
        return self.rows.get(key)

    def add(self, row: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.rows[row["key"]] = row


# ------------------------------------------------------------------------------------ generation
class _Counting:
    """Wraps an LLM: counts completion tokens (SmolLM2's tokenizer) of every answer it gives."""

    def __init__(self, llm, count_tokens) -> None:
        self.llm, self.count_tokens = llm, count_tokens
        self.name, self.model = getattr(llm, "name", "llm"), getattr(llm, "model", "?")
        self.tokens = 0
        if hasattr(llm, "warm") and hasattr(llm, "render"):  # a prefix-cached backend: prepare() reaches it
            self.warm, self.render = llm.warm, llm.render

    def generate(self, messages, max_tokens=128, temperature=0.0, stop=None):
        out = self.llm.generate(messages, max_tokens, temperature, stop)
        self.tokens += self.count_tokens(out)
        return out

    def stream(self, messages, max_tokens=128, temperature=0.0, stop=None):
        parts = []
        try:
            for piece in self.llm.stream(messages, max_tokens, temperature, stop):
                parts.append(piece)
                yield piece
        finally:
            self.tokens += self.count_tokens("".join(parts))


def _hist_vector(vecs: np.ndarray, catalog: Catalog, history: Sequence[str]) -> np.ndarray | None:
    idx = [catalog.index_of(h) for h in history if h in catalog]
    if not idx:
        return None
    v = vecs[idx].mean(0)
    return v / max(float(np.linalg.norm(v)), 1e-8)


def _default_adaptor_dir(source: str) -> Path:
    from lumenrec.data.registry import cache_dir

    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in source)[:60]
    return cache_dir() / "models" / f"softprompt-{safe}"


def run_bench(cfg: NarrativeBenchConfig, *, encoder=None) -> dict[str, Any]:
    """Generate (or reuse from the cache) every narrative, score them, write docs; returns the result dict.

    `encoder` embeds texts for the cosine metric (default: the frozen MiniLM TextEncoder).
    """
    from tqdm.auto import tqdm

    from lumenrec.agent.narrative import PROMPT_VERSION, NarrativeGenerator
    from lumenrec.data.registry import cache_dir, load_dataset

    ds = load_dataset(cfg.data)
    convs = [c for c in ds.conversations if c.target]
    if not convs:
        raise ConfigError("data", cfg.data, "has no conversations with reference narratives")
    if cfg.limit:
        convs = convs[: cfg.limit]
    convs = convs[cfg.start:]
    cat = ds.catalog
    cache = ResultCache(cfg.cache_path or cache_dir() / "bench" / "narratives.jsonl")

    base = None  # the local LLM, loaded once for both SmolLM2 variants
    tokenizer = None

    def local_llm():
        nonlocal base, tokenizer
        if base is None:
            from lumenrec.agent.llm.backends import TransformersLLM

            base = TransformersLLM(num_threads=1)
            tokenizer = base.tokenizer
        return base

    def count_tokens(text: str) -> int:
        if tokenizer is None:
            local_llm()
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    extra_info: dict[str, Any] = {}
    vecs = None
    keys: list[str] = []  # the cache rows of THIS configuration (the cache may hold other models' or adaptors' rows)
    missing = 0  # narratives not in the cache (cached_only)
    for gen_name in cfg.generators:
        soft = None
        if gen_name == "offline":
            narr, tag = NarrativeGenerator(None, cat), "offline"
        elif gen_name == "smollm2-text":
            llm = _Counting(local_llm(), count_tokens)
            narr, tag = NarrativeGenerator(llm, cat, max_tokens=cfg.max_tokens), f"{base.model}"
        elif gen_name == "smollm2-ilm":
            from lumenrec.agent.llm.soft_prompt import SoftPromptLLM, item_vectors, load_adaptor, train_adaptor

            vecs, source = item_vectors(cat, cfg.ilm_checkpoint)
            adir = Path(cfg.adaptor_dir) if cfg.adaptor_dir else _default_adaptor_dir(source)
            if not (adir / "model.safetensors").is_file():
                log.info("no soft-prompt adaptor at %s: training one (a few minutes)", adir)
                extra_info["adaptor_training"] = train_adaptor(cat, adir, ilm_checkpoint=cfg.ilm_checkpoint, llm=local_llm())
            adaptor, acfg = load_adaptor(adir)
            if acfg.get("vector_source") != source:
                log.warning("adaptor %s was trained on %s vectors, the benchmark uses %s", adir,
                            acfg.get("vector_source"), source)
            soft = SoftPromptLLM(local_llm(), adaptor)
            llm = _Counting(soft, count_tokens)
            sums = json.loads((adir / "checksums.json").read_text()) if (adir / "checksums.json").is_file() else {}
            tag = f"{soft.model}:{source}:{str(sums.get('model.safetensors', ''))[:12]}"
            extra_info["adaptor"] = {"dir": str(adir), "vector_source": acfg.get("vector_source"), "tag": tag}
            narr = NarrativeGenerator(llm, cat, max_tokens=cfg.max_tokens)
        elif gen_name == "local":
            from lumenrec.agent.llm.backends import make_local_llm

            local = make_local_llm(cfg.local_model, num_threads=cfg.local_threads, fallback=False)
            llm = _Counting(local, count_tokens)
            narr = NarrativeGenerator(llm, cat, max_tokens=90, prompt_version=cfg.local_prompt)
            tag = f"{local.model}:{cfg.local_prompt}:{cfg.local_threads}thr"
        else:
            from lumenrec.agent.llm.backends import OpenAILLM

            llm = _Counting(OpenAILLM(cfg.base_url, cfg.model or "default"), count_tokens)
            narr, tag = NarrativeGenerator(llm, cat, max_tokens=cfg.max_tokens), f"openai:{cfg.base_url}:{cfg.model}"
        todo = [(k, c) for c in convs for k in cfg.kinds]  # conversation by conversation: a partial run covers every kind
        bar = tqdm(todo, desc=f"narratives {gen_name}", unit="text", disable=not cfg.progress)
        prepared = None  # the conversation whose shopper prefix the local model holds
        for kind, conv in bar:
            key = f"{gen_name}|{tag}|{PROMPT_VERSION}|{cfg.max_tokens}|{kind}|{conv.user_id}|{conv.target}"
            if cache.get(key):
                keys.append(key)
                continue
            if cfg.cached_only:
                missing += 1
                continue
            keys.append(key)
            prepare_s = None
            if gen_name == "local" and prepared is not conv:  # a session opens: its shopper prefix first
                prepare_s = narr.prepare([cat.get(h) for h in conv.history if h in cat])
                prepared = conv
            row = _one(narr, soft, vecs, cat, conv, kind, gen_name, key)
            row["prepare_s"] = prepare_s
            cache.add(row)
        bar.close()

    rows = [cache.rows[k] for k in keys]
    refs = {(c.user_id, c.target): c for c in convs}
    result = {
        "benchmark": "narratives", "data": cfg.data, "conversations": len(convs),
        "run": (f"partial ({missing} of {len(keys) + missing} narratives not generated yet; n per row)" if missing
                else "full" if cfg.limit is None else f"smoke ({len(convs)} conversations)"),
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("progress", "write_docs")},
        "prompt_version": PROMPT_VERSION, **extra_info,
        "results": score_rows(rows, refs, encoder=encoder),
        # the question of ILM phase 2: soft tokens vs the same LLM with only text, on the SAME narratives
        "paired_ilm_vs_text": score_rows(_paired(rows, "smollm2-ilm", "smollm2-text"), refs, encoder=encoder),
    }
    from lumenrec.eval.report import machine_info

    result["machine"] = machine_info()
    if cfg.write_docs:
        _write_docs(result)
    return result


def _one(narr, soft, vecs, cat: Catalog, conv: Conversation, kind: str, gen_name: str, key: str) -> dict[str, Any]:
    import contextlib

    item = cat.get(conv.target)
    history = [cat.get(h) for h in conv.history if h in cat]
    ctx = contextlib.nullcontext()
    if soft is not None:
        v = _hist_vector(vecs, cat, conv.history) if kind == "user_summary" else vecs[cat.index_of(conv.target)]
        ctx = soft.bound(v)
    llm = narr.llm
    tokens_before = getattr(llm, "tokens", 0)
    t0 = time.perf_counter()
    with ctx:
        if gen_name == "local":  # streamed, as the agent shows it
            res = [e for e in narr.stream(kind, item, history, user_id=conv.user_id, critique=conv.critique)][-1]
        else:
            res = narr.generate(kind, item, history, user_id=conv.user_id, critique=conv.critique)
    latency = time.perf_counter() - t0
    after = res.report.unsupported if res.report else []
    if res.generator == "offline" and not res.attempts:
        before = len(after)  # no LLM answer: the offline text is what the checker saw
    else:
        before = res.unsupported_before
    return {"key": key, "generator": gen_name, "kind": kind, "user_id": conv.user_id, "target": conv.target,
            "text": res.text, "final_generator": res.generator, "unsupported_before": int(before),
            "unsupported_after": len(after), "unsupported_after_claims": [str(c.text) for c in after],
            "fallback_reason": res.fallback_reason, "attempts": len(res.attempts), "latency_s": latency,
            "first_token_s": res.first_token_s, "first_piece_s": res.first_piece_s,
            "completion_tokens": (getattr(llm, "tokens", 0) - tokens_before) if llm is not None else None}


# --------------------------------------------------------------------------------------- scoring
def score_rows(rows: Sequence[dict[str, Any]], refs: dict[tuple[str, str], Conversation],
               encoder=None) -> list[dict[str, Any]]:
    """Metrics per (generator, kind) of cached rows against the conversations' reference narratives."""
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["generator"], r["kind"]), []).append(r)
    if encoder is None:
        from lumenrec.retriever.text_encoder import TextEncoder

        encoder = TextEncoder()
    out = []
    for (gen, kind), rs in sorted(groups.items(), key=lambda x: (GENERATORS.index(x[0][0]) if x[0][0] in GENERATORS else 99, x[0][1])):
        hyps = [r["text"] for r in rs]
        ref = [getattr(refs[(r["user_id"], r["target"])].narratives, kind) for r in rs]
        rouge = [scorer.score(t, h)["rougeL"].fmeasure for t, h in zip(ref, hyps)]
        bleu = sacrebleu.corpus_bleu(hyps, [ref]).score
        e_h = np.asarray(encoder.encode(hyps), dtype=np.float32)
        e_r = np.asarray(encoder.encode(ref), dtype=np.float32)
        cos = (e_h * e_r).sum(1) / (np.linalg.norm(e_h, axis=1) * np.linalg.norm(e_r, axis=1) + 1e-9)
        lat = np.array([r["latency_s"] for r in rs], dtype=np.float64)
        toks = [r["completion_tokens"] for r in rs if r.get("completion_tokens") is not None]
        tok_time = sum(r["latency_s"] for r in rs if r.get("completion_tokens") is not None)
        out.append({
            "generator": gen, "kind": kind, "n": len(rs),
            "rougeL": float(np.mean(rouge)), "bleu": float(bleu), "cosine": float(cos.mean()),
            "unsupported_before": float(np.mean([r["unsupported_before"] > 0 for r in rs])),
            "unsupported_after": float(np.mean([r["unsupported_after"] > 0 for r in rs])),
            "offline_fallback": float(np.mean([r["final_generator"] == "offline" for r in rs])) if gen != "offline" else 0.0,
            "mean_words": float(np.mean([len(h.split()) for h in hyps])),
            "latency_p50_s": float(np.percentile(lat, 50)), "latency_p95_s": float(np.percentile(lat, 95)),
            "tokens_per_s": (float(sum(toks) / tok_time) if toks and sum(toks) and tok_time > 0 else None),
            "template_repetition": template_repetition(hyps),
            "first_token_p50_s": _p50([r.get("first_token_s") for r in rs]),
            "first_piece_p50_s": _p50([r.get("first_piece_s") for r in rs]),
            "first_token_p95_s": _pct([r.get("first_token_s") for r in rs], 95),
            # the shopper prefix evaluated when a session opens (v3), once per conversation
            "prepare_p50_s": _p50([r.get("prepare_s") for r in rs]),
        })
    return out


def template_repetition(texts: Sequence[str], n_words: int = 4) -> float:
    """Share of texts whose first `n_words` words (lowercased) also open another text of the list."""
    from collections import Counter

    heads = [" ".join(t.lower().split()[:n_words]) for t in texts]
    counts = Counter(heads)
    return float(np.mean([counts[h] > 1 for h in heads])) if heads else 0.0


def _pct(xs: Sequence[float | None], q: float) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.percentile(xs, q)) if xs else None


def _p50(xs: Sequence[float | None]) -> float | None:
    return _pct(xs, 50)


def _paired(rows: list[dict[str, Any]], a: str, b: str) -> list[dict[str, Any]]:
    """The rows of generators `a` and `b` for the (kind, user, target) cases that BOTH have."""
    have: dict[str, set] = {a: set(), b: set()}
    for r in rows:
        if r["generator"] in have:
            have[r["generator"]].add((r["kind"], r["user_id"], r["target"]))
    common = have[a] & have[b]
    return [r for r in rows if r["generator"] in have and (r["kind"], r["user_id"], r["target"]) in common]


def _write_docs(result: dict[str, Any]) -> None:
    from lumenrec.eval.report import markdown_table, update_section, write_json

    name = result["config"].get("name", "narratives")
    write_json(name, result)
    headers = ["generator", "kind", "n", "ROUGE-L", "BLEU", "cosine", "unsupp. before", "unsupp. after",
               "fallback", "words", "templ. rep.", "p50 s", "p95 s", "first token p50 / p95 s", "first piece p50 s", "tok/s",
               "session prepare p50 s"]
    rows = [[r["generator"], r["kind"], r["n"], r["rougeL"], r["bleu"], r["cosine"], r["unsupported_before"],
             r["unsupported_after"], r["offline_fallback"], round(r["mean_words"], 1), r.get("template_repetition"),
             round(r["latency_p50_s"], 3), round(r["latency_p95_s"], 3),
             None if r.get("first_token_p50_s") is None else
             f"{r['first_token_p50_s']:.2f} / {r['first_token_p95_s']:.2f}",
             None if r.get("first_piece_p50_s") is None else round(r["first_piece_p50_s"], 2),
             None if r["tokens_per_s"] is None else round(r["tokens_per_s"], 1),
             None if r.get("prepare_p50_s") is None else round(r["prepare_p50_s"], 2)]
            for r in result["results"]]
    local = "local" in result["config"]["generators"]
    note = (f"**{result['run']}** on `{result['data']}` dev conversations, prompt `{result['prompt_version']}`"
            + (f" (local generator: `{result['config'].get('local_prompt')}`, streamed"
               + (", each conversation's shopper prefix prepared first as a session opens: 'session prepare', "
                  "not in the narratives' latency" if result["config"].get("local_prompt") == "narrative-v3" else "")
               + ")" if local else "") + ". "
            "ROUGE-L: mean F1; BLEU: corpus sacrebleu; cosine: MiniLM embeddings vs the hand-written reference; "
            "unsupp. before/after: share of texts with an unsupported claim in the LLM's first answer / in the final "
            "text after the grounding checker (regenerate, repair, offline fallback); fallback: share that ended "
            "with the offline narrator. Latency covers all attempts of one narrative on 1 CPU thread.\n\n"
            "Command: `python -m lumenrec.eval.bench.narratives" + (f" --limit {result['config']['limit']}" if result['config']['limit'] else "")
            + (f" --generators {','.join(result['config']['generators'])} --name {name}" if name != "narratives" else "")
            + (f" --local-prompt {result['config'].get('local_prompt')}"
               if local and result["config"].get("local_prompt") != LOCAL_PROMPT_VERSION else "")
            + (" --kinds " + ",".join(result["config"]["kinds"]) if tuple(result["config"]["kinds"]) != NARRATIVE_KINDS else "")
            + (" --ilm-checkpoint ILM_DIR" if result["config"].get("ilm_checkpoint") else "")
            + (" --cached-only" if result["config"].get("cached_only") else "") + "`"
            + ("; ILM_DIR from `lumenrec train --data office-2014 --out SASREC_DIR --max-time 150 --threads 1` then "
               "`lumenrec ilm train --data office-2014 --seq-checkpoint SASREC_DIR --out ILM_DIR --epochs 30 --text-skip`"
               if result["config"].get("ilm_checkpoint") else "; smollm2-ilm uses MiniLM item vectors as a stand-in")
            + ". The soft-prompt adaptor is trained on first use (`python -m lumenrec.agent.llm.soft_prompt --help`).\n\n")
    paired = result.get("paired_ilm_vs_text") or []
    if paired:
        note_p = ("\n\nILM soft tokens vs text only, on the narratives both SmolLM2 generators produced "
                  "(same conversations and kinds):\n\n")
        prow = [[r["generator"], r["kind"], r["n"], r["rougeL"], r["bleu"], r["cosine"], r["unsupported_before"],
                 r["offline_fallback"]] for r in paired]
        tail = note_p + markdown_table(["generator", "kind", "n", "ROUGE-L", "BLEU", "cosine", "unsupp. before",
                                        "fallback"], prow, floatfmt=".3f")
    else:
        tail = ""
    update_section(name.replace("_", "-"), note + markdown_table(headers, rows, floatfmt=".3f") + tail,
                   title="Narratives (REGEN dev set)" if name == "narratives" else f"Narratives (REGEN dev set): {name}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_narratives", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="office-2014")
    p.add_argument("--limit", type=int, default=None, help="first N conversations (smoke run)")
    p.add_argument("--kinds", default=",".join(NARRATIVE_KINDS), help="comma-separated narrative kinds")
    p.add_argument("--generators", default="offline,smollm2-text,smollm2-ilm", help=f"comma-separated subset of {GENERATORS}")
    p.add_argument("--base-url", default=None, help="an OpenAI-compatible endpoint: adds the openai generator")
    p.add_argument("--model", default=None, help="model id for --base-url")
    p.add_argument("--local-model", default=None, help="the local generator's model (default: the best installed)")
    p.add_argument("--local-threads", type=int, default=1, help="llama.cpp threads of the local generator")
    p.add_argument("--local-prompt", default=LOCAL_PROMPT_VERSION, choices=PROMPT_VERSIONS,
                   help="the local generator's prompt version (default: the agent's)")
    p.add_argument("--adaptor", default=None, help="soft-prompt adaptor dir (default: cached, trained if missing)")
    p.add_argument("--ilm-checkpoint", default=None, help="ILM checkpoint for the item vectors (default: MiniLM stand-in)")
    p.add_argument("--cache", default=None, help="per-item JSONL cache (default <cache>/bench/narratives.jsonl)")
    p.add_argument("--max-tokens", type=int, default=120)
    p.add_argument("--no-docs", action="store_true", help="do not write docs/results and docs/benchmarks.md")
    p.add_argument("--name", default="narratives", help="results name (docs/results/NAME.json, its own section)")
    p.add_argument("--start", type=int, default=0,
                   help="skip the first N conversations (split generation across processes, each with its own --cache)")
    p.add_argument("--cached-only", action="store_true",
                   help="score only narratives already in the cache (publish a run stopped part-way)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = NarrativeBenchConfig(
        data=a.data, limit=a.limit, kinds=tuple(k.strip() for k in a.kinds.split(",") if k.strip()),
        generators=tuple(g.strip() for g in a.generators.split(",") if g.strip()), base_url=a.base_url, model=a.model,
        adaptor_dir=a.adaptor, ilm_checkpoint=a.ilm_checkpoint, cache_path=a.cache, max_tokens=a.max_tokens,
        local_model=a.local_model, local_threads=a.local_threads, local_prompt=a.local_prompt, name=a.name,
        write_docs=not a.no_docs, progress=not a.no_progress, cached_only=a.cached_only, start=a.start)
    res = run_bench(cfg)
    print(json.dumps(res["results"], indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
