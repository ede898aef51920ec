"""Training, checkpoints and resumption of the generative LUMEN model.

A checkpoint directory (written atomically by :func:`lumenrec.retriever.checkpoint.save_checkpoint`)::

    config.json          {"kind": "lumen_gen", "model": LumenGenConfig, "train": LumenGenTrainConfig,
                          "semantic_ids": {config, level_sizes, collision_level}, "backbone": {...}, ...}
    item_ids.json        catalogue ids, row i = item i of the codes
    model.safetensors    the trainable weights (LoRA, projection, row residuals) and the semantic IDs
    resume.safetensors   optimizer tensors;  resume.json: step, examples digest, optimizer groups
    metrics.json         loss history;  checksums.json

The backbone itself is not copied: the config names it (directory, vocabulary, width) and loading
checks it is the same shape. Training is resumable at any checkpoint: the batch at step s, the
dropout seed and the learning rate depend only on (seed, s), so a run cut into chunks trains the
same as one run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from lumenrec.agent.llm.lumen_gen import LR_SCHEDULES, PRECISIONS
from lumenrec.agent.llm.lumen_gen.examples import GenExample
from lumenrec.agent.llm.lumen_gen.model import (Encoded, GenerativeLumen, LumenGenConfig, LumenGenLoss, sids_from,
                                                sids_to_tensors)
from lumenrec.errors import CheckpointError, ConfigError

__all__ = ["LumenGenTrainConfig", "train_lumen_gen", "continued_stream_offset", "save_lumen_gen", "load_lumen_gen",
           "load_semantic_ids", "run_semantic_ids", "examples_digest", "peak_rss_mb"]

log = logging.getLogger(__name__)
KIND = "lumen_gen"


@dataclass
class LumenGenTrainConfig:
    """One training run (or one chunk of it: `steps` is the total, a resumed run continues to it)."""

    steps: int = 200  # optimizer steps in total; SmolLM2 + LoRA at batch 8 takes ~2-4 s a step on 2 cores
    batch_size: int = 8
    lr: float = 5e-4  # LoRA weights (AdamW)
    lr_items: float = 3e-3  # projection + new rows: fresh parameters, a higher rate
    weight_decay: float = 0.0
    warmup_steps: int = 10  # linear warm-up, then the schedule
    # "constant", or "cosine": from the warm-up's end down to min_lr_ratio x the rate at `steps` (so with
    # cosine, `steps` is part of the schedule: a run extended later decays again over its new length)
    lr_schedule: str = "constant"
    min_lr_ratio: float = 0.1
    narrative_weight: float = 0.5  # weight of the narrative loss beside the item loss
    # weight of the cross-entropy against a teacher's soft targets (train_lumen_gen's `teacher`; .distill) beside
    # the item loss; 0: no teacher
    distill_weight: float = 0.0
    # "fp32", or "bf16": the training forward under CPU autocast to bfloat16 (weights, optimizer and scoring stay
    # float32). On this 2-core AVX-512 BF16 CPU, SmolLM2 + LoRA at batch 8: 2.23 vs 2.48 s a step on average over
    # 1,000+ steps (~10%), for 5.2 vs 3.1 GiB peak memory
    precision: str = "fp32"
    checkpoint_every: int = 25  # steps between checkpoints (and at the end, and when the time budget stops a run)
    max_time_s: float | None = None  # wall-clock budget of this call; the run stops (checkpointed) before it
    max_grad_norm: float | None = 1.0
    num_threads: int | None = None  # torch intra-op threads; None = leave as is
    seed: int = 0
    # where step 0 starts in the seeded example stream (one permutation per epoch), in examples: a warm-started
    # stage on the same examples continues the stream after the batches its warm start trained on
    # (:func:`continued_stream_offset`) instead of replaying them; 0: from the start
    example_offset: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.example_offset, bool) or not isinstance(self.example_offset, (int, np.integer)) \
                or self.example_offset < 0:
            raise ConfigError("example_offset", self.example_offset, "must be an integer >= 0")
        for name in ("steps", "batch_size", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(name, v, "must be a positive integer")
        if self.warmup_steps < 0:
            raise ConfigError("warmup_steps", self.warmup_steps, "must be >= 0")
        for name in ("lr", "lr_items"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(name, v, "must be a positive finite number")
        for name in ("weight_decay", "narrative_weight", "distill_weight"):
            if not getattr(self, name) >= 0:
                raise ConfigError(name, getattr(self, name), "must be >= 0")
        if self.precision not in PRECISIONS:
            raise ConfigError("precision", self.precision, f"must be one of {PRECISIONS}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError("lr_schedule", self.lr_schedule, f"must be one of {LR_SCHEDULES}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError("min_lr_ratio", self.min_lr_ratio, "must be in [0, 1]")
        if self.max_time_s is not None and not self.max_time_s > 0:
            raise ConfigError("max_time_s", self.max_time_s, "must be > 0 seconds or None")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ConfigError("max_grad_norm", self.max_grad_norm, "must be > 0 or None")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError("num_threads", self.num_threads, "must be >= 1 or None")

    def resume_key(self) -> dict[str, Any]:
        """The fields a resumed run must share with the run it continues."""
        d = asdict(self)
        for k in ("steps", "max_time_s", "checkpoint_every", "num_threads", "progress"):
            d.pop(k)
        if self.lr_schedule == "constant":  # the key of runs saved before schedules existed
            d.pop("lr_schedule"), d.pop("min_lr_ratio")
        else:
            d["steps"] = self.steps  # the decay's length
        if not self.distill_weight:  # ... and before distillation existed
            d.pop("distill_weight")
        if self.precision == "fp32":  # ... and before bf16 existed
            d.pop("precision")
        if not self.example_offset:  # ... and before stream offsets existed
            d.pop("example_offset")
        return d

    def lr_factor(self, step: int) -> float:
        """The multiplier of the base rates at (0-based) `step`: linear warm-up, then the schedule."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.lr_schedule == "constant":
            return 1.0
        span = max(1, self.steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def examples_digest(examples: Sequence[GenExample]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.task, e.user_id, e.history, e.target, e.critique, e.narrative], ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def _encode(model: GenerativeLumen, e: GenExample, teacher: tuple[np.ndarray, np.ndarray] | None = None) -> Encoded:
    if e.task == "item":
        return model.encode_item_example(e.history, e.critique, e.target, teacher)
    if e.task == "narrative":
        return model.encode_narrative_example(e.history, e.critique, e.target, e.narrative or "")
    raise ValueError(f"unknown example task {e.task!r}")


def _batch_indices(n: int, step: int, batch_size: int, seed: int, offset: int = 0) -> np.ndarray:
    """The example indices of step `step`: consecutive slices of one seeded permutation per epoch, from
    example `offset` of that stream."""
    out = []
    start = offset + step * batch_size
    while len(out) < batch_size:
        epoch, off = divmod(start, n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        take = perm[off: off + batch_size - len(out)]
        out.extend(take.tolist())
        start += len(take)
    return np.asarray(out, dtype=np.int64)


def _optimizer(model: GenerativeLumen, cfg: LumenGenTrainConfig) -> torch.optim.Optimizer:
    lora = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("items.")]
    items = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("items.")]
    return torch.optim.AdamW([{"params": lora, "lr": cfg.lr, "base_lr": cfg.lr},
                              {"params": items, "lr": cfg.lr_items, "base_lr": cfg.lr_items}],
                             weight_decay=cfg.weight_decay)


def save_lumen_gen(directory: str | Path, model: GenerativeLumen, item_ids: Sequence[str], *,
                   train_config: LumenGenTrainConfig | None = None, optimizer: torch.optim.Optimizer | None = None,
                   step: int = 0, metrics: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint directory (see the module docstring); with `optimizer`, a resumable one."""
    from lumenrec.retriever.checkpoint import optimizer_to_flat, save_checkpoint

    if len(item_ids) != model.sids.num_items:
        raise ValueError(f"{len(item_ids)} item ids for {model.sids.num_items} items")
    state = {f"weights.{k}": v for k, v in model.trainable_state().items()}
    state.update(sids_to_tensors(model.sids))
    cfg = {"kind": KIND, "model": model.config.to_dict(),
           "train": asdict(train_config) if train_config else None,
           "semantic_ids": {"config": model.sids.config.to_dict(), "level_sizes": model.sids.level_sizes,
                            "collision_level": model.sids.collision_level},
           "backbone": {"dir": model.backbone_dir, "vocab": model.vocab, "hidden": int(model.word_emb.weight.shape[1])},
           **(extra or {})}
    resume_t = resume_i = None
    if optimizer is not None:
        resume_t, info = optimizer_to_flat(optimizer.state_dict())
        resume_i = {"step": int(step), "optimizer": info}
        if extra and "examples_digest" in extra:
            resume_i["examples_digest"] = extra["examples_digest"]
    return save_checkpoint(directory, model_state=state, config=cfg, item_ids=list(item_ids), metrics=metrics or {},
                           resume_tensors=resume_t, resume_info=resume_i)


def load_lumen_gen(directory: str | Path, *, model: GenerativeLumen | None = None, backbone=None,
                   request_encoder: Callable[[list[str]], np.ndarray] | None = None):
    """(model, item ids, config dict) from a checkpoint directory.

    `model`: load the weights into this already-built model (same backbone and semantic IDs) instead
    of building one; `backbone`: a ``(lm, tokenizer)`` pair to build on instead of loading the one the
    config names (tests, or a backbone moved to another path); `request_encoder`: the request vectors'
    text encoder of a built model (default: MiniLM, see ``LumenGenConfig.request_vector``).
    """
    from safetensors.torch import load_file

    from lumenrec.retriever.checkpoint import MODEL_FILE, read_json, verify_checkpoint

    directory = Path(directory)
    verify_checkpoint(directory)
    cfg = read_json(directory / "config.json")
    if cfg.get("kind") != KIND:
        raise CheckpointError(f"{directory}: not a generative LUMEN checkpoint (kind={cfg.get('kind')!r})")
    item_ids = [str(i) for i in read_json(directory / "item_ids.json")]
    tensors = load_file(str(directory / MODEL_FILE))
    try:
        sids = sids_from(tensors, cfg["semantic_ids"])
        mcfg = LumenGenConfig.from_dict(cfg["model"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{directory}: bad semantic IDs or model config ({e})") from e
    if sids.num_items != len(item_ids):
        raise CheckpointError(f"{directory}: {len(item_ids)} item ids but codes for {sids.num_items} items")
    if model is None:
        if backbone is not None:
            model = GenerativeLumen(mcfg, sids, backbone[0], backbone[1], backbone_dir=cfg["backbone"].get("dir"),
                                    request_encoder=request_encoder)
        else:
            model = GenerativeLumen.from_backbone(mcfg, sids, request_encoder=request_encoder)
    elif not np.array_equal(model.sids.codes, sids.codes):
        raise CheckpointError(f"{directory}: the model's semantic IDs differ from the checkpoint's")
    bb = cfg["backbone"]
    if (bb["vocab"], bb["hidden"]) != (model.vocab, int(model.word_emb.weight.shape[1])):
        raise CheckpointError(f"{directory}: trained on a backbone with vocab {bb['vocab']} / width {bb['hidden']}, "
                              f"this one has {model.vocab} / {int(model.word_emb.weight.shape[1])}")
    model.load_trainable({k[len("weights."):]: v for k, v in tensors.items() if k.startswith("weights.")})
    model.eval()
    return model, item_ids, cfg


def load_semantic_ids(directory: str | Path):
    """The semantic IDs stored in a checkpoint directory, or None when there is no checkpoint there.

    A resumed run must reuse them: codes recomputed from item vectors that changed in the meantime
    (another text encoder, another ILM checkpoint) would silently mean other items for the trained rows.
    """
    from safetensors.torch import load_file

    from lumenrec.retriever.checkpoint import MODEL_FILE, read_json, verify_checkpoint

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        return None
    verify_checkpoint(directory)
    cfg = read_json(directory / "config.json")
    if cfg.get("kind") != KIND:
        raise CheckpointError(f"{directory}: not a generative LUMEN checkpoint (kind={cfg.get('kind')!r})")
    return sids_from(load_file(str(directory / MODEL_FILE)), cfg["semantic_ids"])


def run_semantic_ids(directory: str | Path, config, num_items: int, item_vectors: Callable[[], np.ndarray]):
    """The semantic IDs of the run checkpointed in `directory`: the checkpoint's own when it has one (a
    continued run keeps the codes its rows were trained for), else assigned with `config` from
    ``item_vectors()`` (called only then). A checkpoint of other codes or another catalogue size is refused."""
    from lumenrec.agent.llm.lumen_gen.semantic_ids import assign_semantic_ids

    sids = load_semantic_ids(directory)
    if sids is None:
        return assign_semantic_ids(item_vectors(), config)
    if sids.config != config or sids.num_items != num_items:
        raise ConfigError("out", str(directory), f"holds a run with other semantic IDs ({sids.config}); use another --out")
    return sids


def continued_stream_offset(init_from: str | Path, examples: Sequence[GenExample], seed: int) -> int:
    """The ``example_offset`` at which a stage warm-started from the checkpoint `init_from` continues its
    example stream: where that run stopped (its own offset + steps x batch size) when it trained on the same
    examples with the same seed; 0 otherwise (another stream: nothing to continue)."""
    from lumenrec.retriever.checkpoint import read_json

    init_from = Path(init_from)
    if not (init_from / "resume.json").is_file():
        raise CheckpointError(f"{init_from}: no resumable checkpoint (resume.json) to continue the example stream of")
    end = _stream_end(init_from, read_json(init_from / "resume.json"), examples_digest(examples), seed)
    if not end:
        log.info("%s trained on other examples or another seed: this stage's stream starts at 0", init_from)
    return end


def _stream_end(init_from: Path, state: dict, digest: str, seed: int) -> int:
    """Where the run in `init_from` (its resume.json `state`) stopped in the example stream of (`digest`, `seed`);
    0 when it trained on another stream."""
    from lumenrec.retriever.checkpoint import read_json

    train = read_json(init_from / "config.json").get("train") or {}
    if state.get("examples_digest") != digest or train.get("seed", 0) != seed:
        return 0
    return int(train.get("example_offset", 0)) + int(state["step"]) * int(train["batch_size"])


def _model_key(d: dict) -> dict:
    """A model configuration as a resumed run must match it: every field but the backbone's path (a moved
    backbone is checked by shape on load); fields added later take their defaults."""
    return {k: v for k, v in LumenGenConfig.from_dict(d).to_dict().items() if k != "backbone"}


def _same_warm_start(a: dict | None, b: dict | None) -> bool:
    """Do two records of a warm start name the same run: the same step and, where both recorded it, the same
    examples (their directories may differ: a moved build still resumes)."""
    if a is None or b is None:
        return a is None and b is None
    da, db = a.get("examples_digest"), b.get("examples_digest")
    return a.get("step") == b.get("step") and (da is None or db is None or da == db)


def train_lumen_gen(model: GenerativeLumen, examples: Sequence[GenExample], item_ids: Sequence[str],
                    config: LumenGenTrainConfig | None = None, *, out: str | Path | None = None,
                    extra: dict[str, Any] | None = None, init_from: str | Path | None = None,
                    teacher: Sequence[tuple[np.ndarray, np.ndarray] | None] | None = None) -> dict[str, Any]:
    """Train (or resume training in `out`) to `config.steps`; returns steps, wall, losses, peak RSS.

    With `out`, a checkpoint is written every `checkpoint_every` steps and at the end; a later call
    with the same examples and config continues from the last one.

    `init_from`: a warm start: the trainable weights of another run's checkpoint (same backbone and
    semantic IDs) before step 0, with a fresh optimizer and schedule, e.g. a second stage on another
    example mix. It is recorded in the checkpoint and a resumed run must name the same one.

    `teacher`: per example, a teacher's (items, probabilities) or None (:func:`.distill.teacher_targets`),
    trained towards with weight ``config.distill_weight``; its digest is recorded and a resumed run must
    bring the same soft targets.
    """
    from lumenrec.retriever.checkpoint import load_resume_state, optimizer_from_flat
    from lumenrec.retriever.ilm import torch_threads

    cfg = config or LumenGenTrainConfig()
    if not examples:
        raise ConfigError("examples", 0, "no training examples")
    digest = examples_digest(examples)
    extra = {**(extra or {}), "examples_digest": digest, "resume_key": cfg.resume_key()}
    if (teacher is not None) != (cfg.distill_weight > 0):
        raise ConfigError("distill_weight", cfg.distill_weight, "a teacher's soft targets need distill_weight > 0, "
                                                                "and distill_weight > 0 needs a teacher")
    if teacher is not None:
        from lumenrec.agent.llm.lumen_gen.distill import teacher_digest

        if len(teacher) != len(examples):
            raise ConfigError("teacher", len(teacher), f"soft targets for {len(examples)} examples expected")
        extra["teacher_digest"] = teacher_digest(teacher)
    if init_from is not None:  # named by its run (examples, step), not its path: a moved directory still resumes
        init_state = json.loads((Path(init_from) / "resume.json").read_text()) \
            if (Path(init_from) / "resume.json").is_file() else {}
        extra["init_from"] = {"dir": str(init_from), "step": init_state.get("step"),
                              "examples_digest": init_state.get("examples_digest")}
        if init_state and not cfg.example_offset and _stream_end(Path(init_from), init_state, digest, cfg.seed):
            log.warning("%s trained on these examples: this stage starts their stream again from the beginning "
                        "(example_offset=0), replaying its warm start's first batches; continued_stream_offset() "
                        "gives the offset that continues after them", init_from)
    opt = _optimizer(model, cfg)
    step, history, wall_before = 0, [], 0.0
    if out is not None and (Path(out) / "resume.json").is_file():
        model_, _, saved = load_lumen_gen(out, model=model)
        if not _same_warm_start(saved.get("init_from"), extra.get("init_from")):
            raise CheckpointError(f"{out}: holds a run warm-started from {saved.get('init_from')}, not "
                                  f"{extra.get('init_from')}; use another directory")
        if _model_key(saved.get("model") or {}) != _model_key(model.config.to_dict()):
            raise CheckpointError(f"{out}: holds a run of another model configuration ({saved.get('model')}); "
                                  "use another directory")
        if saved.get("teacher_digest") != extra.get("teacher_digest"):
            raise CheckpointError(f"{out}: holds a run with other teacher soft targets; use another directory")
        if saved.get("resume_key") != cfg.resume_key() or saved.get("examples_digest") != digest:
            raise CheckpointError(f"{out}: holds a run with other examples or settings; use another directory "
                                  f"(saved {saved.get('resume_key')}, {saved.get('examples_digest')})")
        tensors, info = load_resume_state(out)
        opt.load_state_dict(optimizer_from_flat(tensors, info["optimizer"]))
        step = int(info["step"])
        saved_metrics = json.loads((Path(out) / "metrics.json").read_text())
        history = saved_metrics.get("history", [])
        wall_before = saved_metrics.get("train_wall_s_total")  # None: written before this field existed
        log.info("resuming generative LUMEN training in %s at step %d of %d", out, step, cfg.steps)
    elif init_from is not None:
        load_lumen_gen(init_from, model=model)  # refuses other semantic IDs or another backbone
        model.train()
        log.info("warm start from %s (its step %s)", init_from, extra["init_from"]["step"])
    if model.config.request_vector:  # every critique's sentence vector, in one batch before the first step
        model.encode_requests([e.critique for e in examples if e.critique])
    loss_fn = LumenGenLoss(cfg.narrative_weight, cfg.distill_weight)
    t0 = time.perf_counter()
    start_step = step
    params = [p for p in model.parameters() if p.requires_grad]

    def save() -> None:
        if out is not None:
            total = None if wall_before is None else wall_before + time.perf_counter() - t0
            save_lumen_gen(out, model, item_ids, train_config=cfg, optimizer=opt, step=step,
                           metrics={"history": history, "step": step, "train_wall_s_total": total}, extra=extra)

    with torch_threads(cfg.num_threads):
        model.train()
        bar = tqdm(total=cfg.steps, initial=step, desc="generative LUMEN", disable=not cfg.progress, unit="step")
        while step < cfg.steps:
            spent = time.perf_counter() - t0
            if cfg.max_time_s is not None and step > start_step and spent * (step - start_step + 1) / (step - start_step) > cfg.max_time_s:
                log.info("stopping at step %d: the %.0f s budget would not fit another step", step, cfg.max_time_s)
                break
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * cfg.lr_factor(step)
            torch.manual_seed(cfg.seed * 1_000_003 + step)  # LoRA dropout: a function of the step
            batch = [_encode(model, examples[i], None if teacher is None else teacher[i])
                     for i in _batch_indices(len(examples), step, cfg.batch_size, cfg.seed, cfg.example_offset)]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                loss, parts = model.batch_loss(batch, loss_fn)
            opt.zero_grad()
            loss.backward()
            if cfg.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            step += 1
            history.append({"step": step, "loss": float(loss.detach()), **parts})
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            if step % cfg.checkpoint_every == 0:
                save()
        bar.close()
        model.eval()
    wall = time.perf_counter() - t0
    if out is not None and (step % cfg.checkpoint_every or step == start_step):
        save()
    tail = history[-min(len(history), 20):]
    return {"steps_total": step, "steps_this_run": step - start_step, "resumed_from": start_step, "wall_s": wall,
            "wall_s_total": None if wall_before is None else wall_before + wall,
            "s_per_step": wall / max(1, step - start_step), "peak_rss_mb": peak_rss_mb(),
            "loss_first": history[0]["loss"] if history else None,
            "loss_last20": float(np.mean([h["loss"] for h in tail])) if tail else None,
            "item_loss_last20": float(np.mean([h["item"] for h in tail if "item" in h])) if any("item" in h for h in tail) else None,
            "distill_loss_last20": float(np.mean([h["distill"] for h in tail if "distill" in h]))
            if any("distill" in h for h in tail) else None,
            "examples": len(examples), "examples_digest": digest, "init_from": extra.get("init_from")}
