"""Offline replay: run recorded conversations turn by turn through the full agent and score every turn.

For each configured agent (a :class:`ReplaySystem`: retriever, router, narrator) and each
conversation, a fresh session is seeded with the conversation's history and the shopper's turns
(opening, critique, follow-ups) are sent to :meth:`Recommender.chat` one by one. Per turn we keep:

- the **full-catalogue rank** of the target in what the agent retrieved (Recall/NDCG@K, MRR).
  Hook: the replay wraps the recommender's ``retriever.score`` on that instance (:class:`RankTap`)
  and keeps the last ``(queries, scores)`` of the turn -- the exact :class:`Query` the agent used
  (history, rejected items, constraint mask; after a relaxation, the relaxed one). The same masks
  as :meth:`BaseRetriever.retrieve` are applied and the target's rank is the number of items with
  a strictly higher score. A turn that retrieved nothing (clarify, smalltalk, ...) is a miss
  (rank N). Should a retriever ever bypass ``score``, the Reply trace's top-k ids are used instead.
- the **critique-removed ablation** (REGEN): the conversation replayed without its critique turns;
  the rank at its last turn is compared with the rank at the critique turn. When the critique
  turns all come after the other turns, that replay is the prefix already run (deterministic), so
  its rank is reused instead of replaying again; with no other turn, the history alone is scored.
- catalogue validity of the reply items, the router's decision, the narratives (the reply's and
  the narrator's REGEN narratives of the target) with their grounding check, stage latencies.

Text metrics (ROUGE-L, BLEU, MiniLM cosine) are computed once over all stored texts in
:func:`aggregate`, so a parallel run gives exactly the serial run's numbers. Results are appended
per (system, conversation) to ``records.jsonl`` under the run's out dir; a rerun with ``resume``
skips the pairs already there (a truncated last line from a crash is dropped).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from lumenrec.errors import ConfigError

__all__ = ["ReplaySystem", "ReplayConfig", "RankTap", "build_recommender", "replay_conversation", "run_replay",
           "aggregate", "load_records", "strip_timings", "records_digest", "RECORDS", "RUN_INFO"]

log = logging.getLogger(__name__)

RECORDS = "records.jsonl"
RUN_INFO = "run.json"
STAGES = ("route", "parse", "retrieve", "narrate")
NARRATIVE_KINDS = ("purchase_reason", "endorsement", "user_summary")


# ------------------------------------------------------------------------------------------ configs
@dataclass
class ReplaySystem:
    """One agent configuration to replay. Compare several on identical inputs."""

    # Shown in tables and plots; must be unique within a run.
    name: str = "offline"
    # A `Recommender.from_pretrained` directory (trained retriever); None: the text retriever over the dataset.
    recommender_dir: str | None = None
    # "offline" rules, or "llm" (tool-calling router at llm_base_url, offline fallback).
    router: str = "offline"
    # "offline" narrator, or "llm" (NarrativeGenerator over llm_base_url, grounded, offline fallback).
    narrator: str = "offline"
    # OpenAI-compatible endpoint and model for the llm router / narrator.
    llm_base_url: str = "http://127.0.0.1:8001/v1"
    llm_model: str = "SmolLM2-135M-Instruct"
    # Items per reply and narrated items: the deployment defaults (ranks are full-catalogue anyway).
    top_k: int = 5
    narrate_top: int = 5

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_.+" for c in self.name):
            raise ConfigError("name", self.name, "must be non-empty letters, digits or -_.+")
        if self.router not in ("offline", "llm"):
            raise ConfigError("router", self.router, "must be offline or llm")
        if self.narrator not in ("offline", "llm"):
            raise ConfigError("narrator", self.narrator, "must be offline or llm")
        if self.recommender_dir is not None and not Path(self.recommender_dir).is_dir():
            raise ConfigError("recommender_dir", self.recommender_dir, "is not a directory")

    @classmethod
    def parse(cls, spec: str) -> "ReplaySystem":
        """From ``NAME`` or ``NAME:key=value,key=value`` (e.g. ``top10:top_k=10,narrator=llm``)."""
        name, _, rest = spec.partition(":")
        kw: dict[str, Any] = {"name": name.strip()}
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            k, eq, v = part.partition("=")
            k = k.strip()
            if not eq or k not in types or k == "name":
                raise ConfigError("system", spec, f"expected key=value with keys {', '.join(t for t in types if t != 'name')}")
            kw[k] = int(v) if k in ("top_k", "narrate_top") else v.strip()
        return cls(**kw)


@dataclass
class ReplayConfig:
    """What to replay, how, and where the results go."""

    # Registered dataset name or path (its catalogue is what the agents rank).
    dataset: str = "synthetic"
    # A dev-format conversations .jsonl; None: the dataset's own conversations.
    conversations: str | None = None
    # Agent configurations compared on identical inputs.
    systems: list[ReplaySystem] = field(default_factory=lambda: [ReplaySystem()])
    # Cut-offs of the ranking metrics.
    ks: tuple[int, ...] = (1, 5, 10, 20)
    # Processes replaying in parallel (1: in this process). Results are identical either way.
    workers: int = 1
    # Where records.jsonl and the reports go.
    out: str = "runs/replay"
    # Skip (system, conversation) pairs already in records.jsonl (crash recovery); False starts over.
    resume: bool = True
    # Replay only the first N conversations (quick looks); None: all.
    limit: int | None = None
    # MiniLM cosine of narratives to references (loads the local MiniLM once at aggregation).
    semantic: bool = True
    # Torch threads per replaying process: the same in serial and parallel runs so scores match bit for bit.
    torch_threads: int = 1

    def __post_init__(self) -> None:
        self.ks = tuple(int(k) for k in self.ks)
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError("ks", self.ks, "must be positive cut-offs")
        if int(self.workers) != self.workers or self.workers < 1:
            raise ConfigError("workers", self.workers, "must be an integer >= 1")
        if not self.systems:
            raise ConfigError("systems", self.systems, "need at least one system to replay")
        self.systems = [s if isinstance(s, ReplaySystem) else ReplaySystem(**s) for s in self.systems]
        names = [s.name for s in self.systems]
        if len(set(names)) != len(names):
            raise ConfigError("systems", names, "system names must be unique")
        if self.conversations is not None and not Path(self.conversations).is_file():
            raise ConfigError("conversations", self.conversations, "file does not exist")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("limit", self.limit, "must be >= 1 or None")
        if self.torch_threads < 1:
            raise ConfigError("torch_threads", self.torch_threads, "must be >= 1")

    def fingerprint(self) -> dict[str, Any]:
        """What makes two runs comparable (resume refuses to mix runs that differ here)."""
        return {"dataset": self.dataset, "conversations": self.conversations, "ks": list(self.ks),
                "limit": self.limit, "systems": [asdict(s) for s in self.systems]}


# ------------------------------------------------------------------------------------------ the hook
class RankTap:
    """Keeps the last query a retriever ranked (and the raw scores when its ``score`` produced them), on
    that instance only, so that the replay can score the target's full-catalogue rank.

    A retriever that serves its top-k without ``score`` (an index-backed one) is ranked afterwards by
    calling its ``score`` on the captured query: evaluation is full-catalogue, serving stays top-k.
    """

    def __init__(self, retriever) -> None:
        self.retriever = retriever
        self.inner = retriever.score
        self.inner_retrieve = getattr(retriever, "retrieve", None)
        self.last: tuple[list, np.ndarray] | None = None
        self.last_query = None
        retriever.score = self  # instance attributes shadow the methods for this object only
        if self.inner_retrieve is not None:
            retriever.retrieve = self._retrieve

    def __call__(self, queries):
        s = self.inner(queries)
        self.last = (list(queries), np.array(s, dtype=np.float64, copy=True))
        return s

    def _retrieve(self, query, *args, **kwargs):
        from lumenrec.retriever.base import Query

        if isinstance(query, Query):
            self.last_query = query
        return self.inner_retrieve(query, *args, **kwargs)

    def clear(self) -> None:
        self.last = None
        self.last_query = None

    def query(self):
        """The last single query ranked, or None."""
        if self.last is not None:
            return self.last[0][-1]
        return self.last_query

    def full_scores(self) -> np.ndarray | None:
        """(N,) scores of the last query after the same masks as BaseRetriever.retrieve, or None."""
        if self.last is None and self.last_query is not None:
            self([self.last_query])
        if self.last is None:
            return None
        queries, scores = self.last
        q, s = queries[-1], scores[-1].copy()  # (N,)
        cat = self.retriever.catalog
        drop = [d for d in list(q.exclude_ids) + list(q.history) if d in cat]
        if drop:
            s[cat.indices_of(drop)] = -np.inf
        if q.allowed is not None:
            s[~np.asarray(q.allowed, dtype=bool)] = -np.inf
        return s


def _rank_of(scores: np.ndarray, j: int) -> int:
    t = scores[j]
    if not np.isfinite(t) and t < 0:
        return int(len(scores))
    return int((scores > t).sum())


# ---------------------------------------------------------------------------------- building agents
def build_recommender(system: ReplaySystem, catalog):
    """A Recommender for `system` over `catalog` (a from_pretrained directory must use the same catalogue)."""
    from lumenrec.agent.recommender import Recommender, RecommenderConfig

    cfg = RecommenderConfig(router=system.router, top_k=system.top_k, narrate_top=system.narrate_top,
                            llm_base_url=system.llm_base_url, llm_model=system.llm_model)
    narrator = None
    if system.narrator == "llm":
        from lumenrec.agent.llm.backends import OpenAILLM
        from lumenrec.agent.narrative import NarrativeGenerator

        narrator = NarrativeGenerator(OpenAILLM(system.llm_base_url, system.llm_model, timeout_s=30.0, max_retries=0),
                                      catalog)
    if system.recommender_dir:
        rec = Recommender.from_pretrained(system.recommender_dir, config=cfg, narrator=narrator)
        if list(rec.catalog.ids) != list(catalog.ids):
            raise ConfigError("recommender_dir", system.recommender_dir,
                              "its catalogue differs from the replayed dataset's (ids must match in order)")
        return rec
    from lumenrec.retriever.text_retriever import TextRetriever

    return Recommender(catalog, TextRetriever(catalog), config=cfg, narrator=narrator)


def _narrate(rec, kind: str, item, history, user_id: str, critique: str | None) -> str:
    n = rec.narrator
    if hasattr(n, "generate") and not hasattr(n, "narrate"):
        return n.generate(kind, item, history, user_id=user_id, critique=critique).text
    return n.narrate(kind, item, history, user_id=user_id, critique=critique)


def _checker(catalog):
    from lumenrec.agent.grounding import BrandVocabulary, GroundingChecker

    return GroundingChecker(BrandVocabulary.from_catalog(catalog))


def _grounding(checker, text: str, items, history, extra=()) -> dict[str, int]:
    if not text:
        return {"claims": 0, "unsupported": 0}
    rep = checker.check(text, items, history, [e for e in extra if e])
    return {"claims": len(rep.claims), "unsupported": len(rep.unsupported)}


# ------------------------------------------------------------------------------------ one conversation
def _run_turns(rec, tap: RankTap, sid: str, conv, turns, catalog) -> list[dict[str, Any]]:
    """Send `turns` in a fresh session seeded with the conversation's history; one row per turn."""
    from lumenrec.agent.session import Session

    rec.store.put(Session(session_id=sid, user_id=conv.user_id, history=[h for h in conv.history if h in catalog]))
    tj = catalog.index_of(conv.target) if conv.target and conv.target in catalog else None
    rows = []
    for t in turns:
        tap.clear()
        reply = rec.chat(sid, t.text)
        ret = next((s for s in reversed(reply.trace) if s.name == "retrieve"), None)
        route = next((s for s in reply.trace if s.name == "route"), None)
        rank, source = len(catalog), "none"
        q = tap.query()
        removed = bool(ret is not None and tj is not None and q is not None and q.allowed is not None
                       and not np.asarray(q.allowed, dtype=bool)[tj])
        if ret is not None and tj is not None:
            full = tap.full_scores()
            if full is not None:
                rank, source = _rank_of(full, tj), "scores"
            else:  # a retriever that bypasses score(): only its top-k is known
                ids = list(ret.details.get("ids", []))
                rank, source = (ids.index(conv.target) if conv.target in ids else len(catalog)), "topk"
        ms: dict[str, float] = defaultdict(float)
        for s in reply.trace:
            ms[s.name] += float(s.ms)
        rows.append({"text": t.text, "kind": t.kind, "intent": reply.intent,
                     "router": (route.details.get("router") if route else None),
                     "route_reason": (route.details.get("reason") if route else None),
                     "fallback_used": bool(reply.fallback_used), "retrieved": ret is not None, "rank_source": source,
                     "rank": int(rank), "relaxed": bool(ret.details.get("relaxed")) if ret else False,
                     "target_removed": removed,
                     "items": [{"id": it["id"], "title": it["title"], "why": it.get("why", "")} for it in reply.items],
                     "narrative": reply.narrative, "ms": dict(ms)})
    return rows


def replay_conversation(rec, tap: RankTap, conv, index: int, system: str, catalog, checker) -> dict[str, Any]:
    """Replay one conversation with one agent; a JSON-able record (see the module docstring)."""
    turns = [t for t in conv.turns if t.role == "user"]
    sid = f"replay-{system}-{index}"
    rows = _run_turns(rec, tap, sid, conv, turns, catalog)
    hist_items = [catalog.get(h) for h in conv.history if h in catalog]
    critique = conv.critique
    # grounding + validity of every reply item
    for r in rows:
        r["valid"] = [it["id"] in catalog for it in r["items"]]
        g = {"claims": 0, "unsupported": 0, "texts": 0, "texts_unsupported": 0}
        for it in r["items"]:
            if it["why"] and it["id"] in catalog:
                one = _grounding(checker, it["why"], catalog.get(it["id"]), hist_items, [r["text"]])
                g["claims"] += one["claims"]
                g["unsupported"] += one["unsupported"]
                g["texts"] += 1
                g["texts_unsupported"] += int(one["unsupported"] > 0)
        r["grounding"] = g
    # ablation: the conversation without its critique turns
    ablation = None
    crit_pos = [i for i, t in enumerate(turns) if t.kind == "critique"]
    if crit_pos and conv.target in catalog:
        with_rank = rows[crit_pos[-1]]["rank"]
        rest = [t for t in turns if t.kind != "critique"]
        if not rest:
            from lumenrec.retriever.base import Query

            tap.clear()
            hist = [h for h in conv.history if h in catalog]
            rec.retriever.retrieve(Query(history=hist), k=1)
            full = tap.full_scores()
            without, how = _rank_of(full, catalog.index_of(conv.target)), "history only"
        elif len(rest) <= crit_pos[0] and all(t.kind != "critique" for t in turns[:len(rest)]):
            without, how = rows[len(rest) - 1]["rank"], "prefix reused"
        else:
            without, how = _run_turns(rec, tap, sid + "-nocrit", conv, rest, catalog)[-1]["rank"], "replayed"
        # the retriever alone: history + the critique as typed, no agent constraints or carried text
        from lumenrec.retriever.base import Query

        hist = [h for h in conv.history if h in catalog]
        tap.clear()
        alone = np.array(rec.retriever.score([Query(history=hist, text=critique)])[0], dtype=np.float64)
        alone[catalog.indices_of(hist)] = -np.inf
        ablation = {"with_critique": int(with_rank), "without_critique": int(without), "how": how,
                    "retriever_alone": _rank_of(alone, catalog.index_of(conv.target)),
                    "target_removed": bool(rows[crit_pos[-1]].get("target_removed"))}
    # narratives: the reply's (last turn with a narrative) and the narrator's REGEN narratives of the target
    refs = conv.narratives.as_dict()
    narr: dict[str, Any] = {}
    last = next((r for r in reversed(rows) if r["narrative"]), None)
    if last is not None and refs.get("endorsement"):
        narr["reply"] = {"hyp": last["narrative"], "ref": refs["endorsement"]}
    if conv.target in catalog:
        target = catalog.get(conv.target)
        for kind in NARRATIVE_KINDS:
            if not refs.get(kind):
                continue
            hyp = _narrate(rec, kind, target if kind != "user_summary" else None, hist_items,
                           conv.user_id, critique if kind == "purchase_reason" else None)
            items = [target] if kind != "user_summary" else []
            narr[kind] = {"hyp": hyp, "ref": refs[kind],
                          "grounding": _grounding(checker, hyp, items, hist_items, [critique or ""] if items else [])}
    return {"system": system, "conv": index, "user_id": conv.user_id, "target": conv.target,
            "num_items": len(catalog), "difficulty": conv.meta.get("difficulty"), "turns": rows,
            "ablation": ablation, "narratives": narr}


def strip_timings(record: dict[str, Any]) -> dict[str, Any]:
    """A copy without wall-clock fields (the only part of a record that differs between runs)."""
    r = json.loads(json.dumps(record))
    for t in r.get("turns", []):
        t.pop("ms", None)
    return r


# ------------------------------------------------------------------------------------------ running
_WORKER: dict[str, Any] = {}


def _setup(cfg: ReplayConfig) -> dict[str, Any]:
    """Load the dataset, conversations and agents (once per process)."""
    import torch

    from lumenrec.data.registry import load_dataset

    torch.set_num_threads(cfg.torch_threads)
    ds = load_dataset(cfg.dataset, with_conversations=cfg.conversations is None)
    if cfg.conversations is not None:
        from lumenrec.data.benchmark import load_conversations

        convs = load_conversations(cfg.conversations, ds.catalog)
    else:
        convs = list(ds.conversations)
    if cfg.limit is not None:
        convs = convs[: cfg.limit]
    return {"catalog": ds.catalog, "convs": convs, "systems": {s.name: s for s in cfg.systems},
            "recs": {}, "checker": _checker(ds.catalog)}


def _agent(state: dict[str, Any], name: str):
    if name not in state["recs"]:
        rec = build_recommender(state["systems"][name], state["catalog"])
        state["recs"][name] = (rec, RankTap(rec.retriever))
    return state["recs"][name]


def _do(state: dict[str, Any], name: str, index: int) -> dict[str, Any]:
    rec, tap = _agent(state, name)
    return replay_conversation(rec, tap, state["convs"][index], index, name, state["catalog"], state["checker"])


def _worker_init(cfg_dict: dict[str, Any]) -> None:
    logging.getLogger().setLevel(logging.WARNING)
    _WORKER["state"] = _setup(_config_from_dict(cfg_dict))


def _worker_task(name: str, index: int) -> dict[str, Any]:
    return _do(_WORKER["state"], name, index)


def _config_from_dict(d: dict[str, Any]) -> ReplayConfig:
    d = dict(d)
    d["systems"] = [ReplaySystem(**s) for s in d["systems"]]
    return ReplayConfig(**d)


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a records.jsonl; a truncated last line (a crash mid-write) is dropped with a warning."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines):
                log.warning("%s: dropping a truncated last line (crash mid-write)", path)
                continue
            from lumenrec.errors import DataFormatError

            raise DataFormatError(str(path), i, "not a JSON record")
    return out


def _prepare_out(cfg: ReplayConfig) -> tuple[Path, list[dict[str, Any]]]:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    info_path, rec_path = out / RUN_INFO, out / RECORDS
    fp = cfg.fingerprint()
    done: list[dict[str, Any]] = []
    if cfg.resume and info_path.is_file() and rec_path.is_file():
        old = json.loads(info_path.read_text(encoding="utf-8")).get("fingerprint")
        if old != fp:
            raise ConfigError("resume", str(out), "the run there used other inputs or systems; "
                              "use another --out or start over (resume=False)")
        done = load_records(rec_path)
        # rewrite without a truncated tail, so appends start on a clean line
        tmp = rec_path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in done), encoding="utf-8")
        os.replace(tmp, rec_path)
    else:
        rec_path.unlink(missing_ok=True)
    tmp = info_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"fingerprint": fp}, indent=2), encoding="utf-8")
    os.replace(tmp, info_path)
    return rec_path, done


def run_replay(cfg: ReplayConfig, *, progress: bool = True) -> dict[str, Any]:
    """Replay every (system, conversation) pair not yet done, then aggregate. Returns the summary dict
    (see :func:`aggregate`); the records are in ``<out>/records.jsonl``."""
    from tqdm.auto import tqdm

    rec_path, done = _prepare_out(cfg)
    done_keys = {(r["system"], r["conv"]) for r in done}
    state = None
    if cfg.workers == 1:
        state = _setup(cfg)
        n_convs = len(state["convs"])
    else:
        n_convs = len(_setup_convs_only(cfg))
    todo = [(s.name, i) for i in range(n_convs) for s in cfg.systems if (s.name, i) not in done_keys]
    log.info("replay: %d conversations x %d systems, %d pairs to do (%d done)", n_convs, len(cfg.systems),
             len(todo), len(done_keys))
    bar = tqdm(total=len(todo), desc="replay", unit="conv", disable=not progress)
    with open(rec_path, "a", encoding="utf-8") as f:
        def write(r: dict[str, Any]) -> None:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            bar.update(1)

        if cfg.workers == 1:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(cfg.torch_threads)
            try:
                for name, i in todo:
                    write(_do(state, name, i))
            finally:
                torch.set_num_threads(threads)
        elif todo:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            d = asdict(cfg)
            with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=mp.get_context("spawn"),
                                     initializer=_worker_init, initargs=(d,)) as ex:
                futs = [ex.submit(_worker_task, name, i) for name, i in todo]
                for fut in as_completed(futs):
                    write(fut.result())
    bar.close()
    records = load_records(rec_path)
    return aggregate(records, cfg)


def _setup_convs_only(cfg: ReplayConfig) -> list:
    """The conversations (for counting) without building agents."""
    from lumenrec.data.registry import load_dataset

    ds = load_dataset(cfg.dataset, with_conversations=cfg.conversations is None)
    if cfg.conversations is not None:
        from lumenrec.data.benchmark import load_conversations

        convs = load_conversations(cfg.conversations, ds.catalog)
    else:
        convs = list(ds.conversations)
    return convs[: cfg.limit] if cfg.limit is not None else convs


# -------------------------------------------------------------------------------------- aggregating
def _pct(xs: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(xs, dtype=np.float64), q)) if len(xs) else None


def template_repetition(texts: Sequence[str], n_words: int = 5) -> float:
    """Share of texts whose first `n_words` words (lower case) are also the first words of another text."""
    heads = [" ".join(t.lower().split()[:n_words]) for t in texts if t.strip()]
    if not heads:
        return 0.0
    counts = Counter(heads)
    return sum(c for c in counts.values() if c > 1) / len(heads)


def _text_metrics(pairs: list[tuple[str, str]], encoder=None) -> dict[str, Any]:
    """ROUGE-L F1 (mean), corpus BLEU (sacrebleu) and MiniLM cosine (mean) of hyp/ref pairs."""
    if not pairs:
        return {"n": 0}
    import sacrebleu
    from rouge_score import rouge_scorer

    hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
    sc = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge = float(np.mean([sc.score(r, h)["rougeL"].fmeasure for h, r in pairs]))
    bleu = float(sacrebleu.corpus_bleu(hyps, [refs]).score)
    out: dict[str, Any] = {"n": len(pairs), "rougeL": rouge, "bleu": bleu,
                           "template_repetition": template_repetition(hyps),
                           "words_mean": float(np.mean([len(h.split()) for h in hyps]))}
    if encoder is not None:
        a, b = encoder.encode(hyps), encoder.encode(refs)  # (n, d) each, unit rows
        out["minilm_cos"] = float(np.mean(np.sum(a * b, axis=1)))
    return out


def aggregate(records: Iterable[dict[str, Any]], cfg: ReplayConfig | None = None) -> dict[str, Any]:
    """The summary of a run: per system, metrics per turn, the ablation, narratives, validity, routing, latency.

    Deterministic in the records' content (they are sorted first), so serial and parallel runs agree.
    """
    from lumenrec.eval.metrics import metrics_from_ranks

    ks = tuple(cfg.ks) if cfg else (1, 5, 10, 20)
    recs = sorted(records, key=lambda r: (r["system"], r["conv"]))
    order = [s.name for s in cfg.systems] if cfg else sorted({r["system"] for r in recs})
    encoder = None
    if cfg is None or cfg.semantic:
        try:
            from lumenrec.retriever.text_encoder import TextEncoder

            encoder = TextEncoder()
        except Exception as e:  # the model is optional for the report
            log.warning("MiniLM unavailable, no cosine metric: %s", e)
    systems: dict[str, Any] = {}
    for name in order:
        rs = [r for r in recs if r["system"] == name]
        if not rs:
            continue
        by_turn: dict[str, list[int]] = defaultdict(list)
        intents: dict[str, Counter] = defaultdict(Counter)
        lat: dict[str, list[float]] = defaultdict(list)
        n_items = n_valid = 0
        g = Counter()
        fallbacks = 0
        for r in rs:
            for ti, t in enumerate(r["turns"]):
                key = f"{ti + 1}:{t['kind']}"
                by_turn[key].append(t["rank"])
                intents[key][t["intent"]] += 1
                n_items += len(t["valid"])
                n_valid += sum(t["valid"])
                fallbacks += int(t["fallback_used"])
                for k2, v in t["grounding"].items():
                    g[k2] += v
                for st in STAGES:
                    if st in t.get("ms", {}):
                        lat[st].append(t["ms"][st])
                if "ms" in t:
                    lat["total"].append(sum(t["ms"].values()))
        per_turn = {k: metrics_from_ranks(np.asarray(v), ks) for k, v in sorted(by_turn.items(), key=lambda kv: int(kv[0].split(":")[0]))}
        for k, m in per_turn.items():
            for kk in [x for x in m if x.startswith("hr@")]:
                del m[kk]
        final = metrics_from_ranks(np.asarray([r["turns"][-1]["rank"] for r in rs if r["turns"]]), ks)
        abl = [r["ablation"] for r in rs if r["ablation"]]
        ablation = None
        if abl:
            w = metrics_from_ranks(np.asarray([a["with_critique"] for a in abl]), ks)
            wo = metrics_from_ranks(np.asarray([a["without_critique"] for a in abl]), ks)
            ablation = {"n": len(abl), "with_critique": _drop_hr(w), "without_critique": _drop_hr(wo),
                        "delta": {k: w[k] - wo[k] for k in w if k not in ("n",) and not k.startswith("hr@")},
                        "how": dict(Counter(a["how"] for a in abl))}
            if all("retriever_alone" in a for a in abl):
                ablation["retriever_alone"] = _drop_hr(metrics_from_ranks(np.asarray([a["retriever_alone"] for a in abl]), ks))
                removed = sum(bool(a.get("target_removed")) for a in abl)
                ablation["target_removed_by_constraints"] = {"n": removed, "rate": removed / len(abl)}
        narr = {}
        for kind in ("reply", *NARRATIVE_KINDS):
            pairs = [(r["narratives"][kind]["hyp"], r["narratives"][kind]["ref"]) for r in rs if kind in r["narratives"]]
            m = _text_metrics(pairs, encoder)
            gs = [r["narratives"][kind]["grounding"] for r in rs if kind in r["narratives"] and "grounding" in r["narratives"][kind]]
            if gs:
                claims = sum(x["claims"] for x in gs)
                uns = sum(x["unsupported"] for x in gs)
                m["unsupported_claim_rate"] = uns / claims if claims else 0.0
                m["texts_with_unsupported"] = sum(x["unsupported"] > 0 for x in gs) / len(gs)
            narr[kind] = m
        systems[name] = {
            "conversations": len(rs),
            "per_turn": per_turn,
            "final_turn": _drop_hr(final),
            "ablation": ablation,
            "narratives": narr,
            "grounding_reply_items": {"claims": g["claims"], "unsupported": g["unsupported"],
                                      "unsupported_claim_rate": g["unsupported"] / g["claims"] if g["claims"] else 0.0,
                                      "texts": g["texts"], "texts_with_unsupported": g["texts_unsupported"]},
            "validity": {"items": n_items, "valid": n_valid, "rate": (n_valid / n_items) if n_items else 1.0},
            "router": {k: dict(v) for k, v in sorted(intents.items(), key=lambda kv: int(kv[0].split(":")[0]))},
            "fallbacks": fallbacks,
            "latency_ms": {st: {"p50": _pct(v, 50), "p95": _pct(v, 95), "n": len(v)} for st, v in lat.items()},
        }
    return {"run": cfg.fingerprint() if cfg else None, "ks": list(ks),
            "num_conversations": len({r["conv"] for r in recs}), "systems": systems}


def _drop_hr(m: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in m.items() if not k.startswith("hr@")}


def records_digest(records: Iterable[dict[str, Any]]) -> str:
    """A hash of the records without timings, sorted: equal digests mean identical replays."""
    rs = sorted((strip_timings(r) for r in records), key=lambda r: (r["system"], r["conv"]))
    return hashlib.sha256(json.dumps(rs, sort_keys=True).encode("utf-8")).hexdigest()
