"""ILM phase 2: item vectors enter a FROZEN local LLM as a few soft tokens through a trained adaptor.

ILM (Yang et al. 2024) feeds its Q-Former item representation through a linear projection adaptor
into a frozen LLM, as soft tokens at an ``{item}`` slot of the prompt; only the encoder and the
adaptor train. Here:

- the item vector is 384-d: the ILM item vector (:func:`lumenrec.retriever.ilm.ilm_vectors_from_checkpoint`)
  when an ILM checkpoint is given, else the frozen MiniLM embedding of the item text
  (``TextEncoder.encode_items``) as a stand-in. ILM vectors are trained into the same MiniLM
  space (ITC loss), so the code path is identical; the config records which source was used, and
  an adaptor should be retrained when the source changes;
- :class:`SoftPromptAdaptor`: Linear 384 -> n_tokens x hidden (or a small MLP), each soft token
  rescaled to the mean norm of the LLM's word embeddings, so soft tokens look like word embeddings
  in magnitude from step 0;
- :class:`SoftPromptTrainer`: item -> text generation (the item's title, its brand and category,
  the first sentence of its description), teacher-forced LM loss on the target tokens only, through
  ``inputs_embeds``; the LLM's parameters have ``requires_grad=False`` and are checked unchanged;
- :class:`SoftPromptLLM`: the :class:`~lumenrec.agent.llm.backends.LLM` protocol over a TransformersLLM plus an
  adaptor; while an item vector is bound, the first user message gets an ``Item: {item}`` line and
  the soft tokens are spliced into the prompt embeddings at the slot. It plugs into
  :class:`~lumenrec.agent.narrative.NarrativeGenerator` unchanged (grounding check included).

Training cost on this project's shared CPUs (1 torch thread, SmolLM2-135M, batch 8, ~45 tokens
per example): ~5-7 s per step, because the gradient must flow back through all 30 frozen layers
to the soft tokens. The default of 40 steps keeps a run under ~5 minutes; more steps help.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lumenrec.data.types import Catalog, Item
from lumenrec.errors import CheckpointError, ConfigError, LLMError

__all__ = ["SLOT", "SoftPromptConfig", "SoftPromptAdaptor", "SoftPromptTrainer", "SoftPromptLLM", "item_text_targets",
           "item_vectors", "lm_loss", "LMLoss", "save_adaptor", "load_adaptor", "param_fingerprint", "splice"]

log = logging.getLogger(__name__)

SLOT = "{item}"  # where the soft tokens go in a prompt
TASKS = ("title", "facts", "description")
_INSTRUCTIONS = {
    "title": "What is the product title of this item?",
    "facts": "Which brand and category is this item?",
    "description": "Describe this item in one sentence.",
}
_SYSTEM = "You describe shop items."  # short on purpose: every prompt token costs training time


@dataclass
class SoftPromptConfig:
    """The adaptor's shape and its (cheap) training run."""

    n_tokens: int = 4  # soft tokens per item; ILM uses the Q-Former's query count, 4 is enough for a 384-d vector
    item_dim: int = 384  # MiniLM / ILM item-vector width
    adaptor: str = "mlp"  # "linear" (ILM's projection) or "mlp" (one hidden GELU layer: a bit more capacity)
    mlp_hidden: int = 512  # width of the MLP's hidden layer
    steps: int = 40  # ~5-7 s each on one shared CPU thread (backprop through 30 frozen layers): ~4-5 min
    batch_size: int = 8
    lr: float = 3e-3  # AdamW; only ~2M parameters train, a large rate converges within a few dozen steps
    weight_decay: float = 0.0
    max_target_tokens: int = 20  # targets are cut to this many tokens (titles are ~15)
    tasks: tuple[str, ...] = TASKS  # item -> text tasks sampled per example (when the item has the field)
    seed: int = 0
    num_threads: int | None = 1  # 1 torch thread is fastest on the oversubscribed shared machine; None = leave
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("n_tokens", "item_dim", "mlp_hidden", "steps", "batch_size", "max_target_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(name, v, "must be a positive integer")
        if self.adaptor not in ("linear", "mlp"):
            raise ConfigError("adaptor", self.adaptor, "must be 'linear' or 'mlp'")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError("lr", self.lr, "must be a positive finite number")
        self.tasks = tuple(self.tasks)
        bad = [t for t in self.tasks if t not in TASKS]
        if not self.tasks or bad:
            raise ConfigError("tasks", self.tasks, f"must be a non-empty subset of {TASKS}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError("num_threads", self.num_threads, "must be >= 1 or None")


class SoftPromptAdaptor(nn.Module):
    """(B, item_dim) item vectors -> (B, n_tokens, hidden) soft-token embeddings."""

    def __init__(self, config: SoftPromptConfig, hidden: int, embed_norm: float = 1.0) -> None:
        super().__init__()
        c = self.config = config
        self.hidden = int(hidden)
        out = c.n_tokens * self.hidden
        if c.adaptor == "linear":
            self.proj = nn.Linear(c.item_dim, out)
        else:
            self.proj = nn.Sequential(nn.Linear(c.item_dim, c.mlp_hidden), nn.GELU(), nn.Linear(c.mlp_hidden, out))
        # A learned per-token norm, started at the mean norm of the LLM's word embeddings.
        self.scale = nn.Parameter(torch.full((c.n_tokens, 1), float(embed_norm)))

    def forward(self, v: Tensor) -> Tensor:
        if v.ndim != 2 or v.shape[1] != self.config.item_dim:
            raise ValueError(f"item vectors must be (B, {self.config.item_dim}), got {tuple(v.shape)}")
        x = self.proj(v).view(v.shape[0], self.config.n_tokens, self.hidden)  # (B, n, H)
        return F.normalize(x, dim=-1) * self.scale  # (B, n, H)


# ------------------------------------------------------------------------------------------- loss
def lm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean next-token cross-entropy over positions whose label is not -100.

    `logits` (B, T, V) predict the token at t+1 from position t; `labels` (B, T) hold the token ids
    of the sequence with -100 on prompt, soft-token and padding positions.
    """
    if logits.ndim != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(f"logits must be (B, T, V) and labels (B, T), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    shift_logits = logits[:, :-1]  # (B, T-1, V)
    shift_labels = labels[:, 1:]  # (B, T-1)
    if not (shift_labels != -100).any():
        raise ValueError("labels mark no target token (all -100)")
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=-100)


class LMLoss(nn.Module):
    """Teacher-forced LM loss on target tokens only (see :func:`lm_loss`)."""

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return lm_loss(logits, labels)


# ------------------------------------------------------------------------------------------- data
def _first_sentence(text: str, max_words: int = 25) -> str:
    t = re.sub(r"\s+", " ", text or "").strip()
    m = re.search(r"(?<=[.!?])\s", t)
    s = t[:m.start()] if m else t
    return " ".join(s.split()[:max_words])


def item_text_targets(item: Item, tasks: Sequence[str] = TASKS) -> dict[str, str]:
    """The item -> text targets this item supports: title, 'Brand: X. Category: a > b.', first description sentence."""
    out = {}
    if "title" in tasks and item.title:
        out["title"] = item.title
    if "facts" in tasks and (item.brand or item.categories):
        parts = ([f"Brand: {item.brand}."] if item.brand else []) + (
            [f"Category: {' > '.join(item.categories)}."] if item.categories else [])
        out["facts"] = " ".join(parts)
    if "description" in tasks and _first_sentence(item.description):
        out["description"] = _first_sentence(item.description)
    return out


def item_vectors(catalog: Catalog, ilm_checkpoint: str | Path | None = None, encoder=None) -> tuple[np.ndarray, str]:
    """(N, 384) item vectors aligned with `catalog` and their source name.

    With an ILM checkpoint: the ILM Q-Former vectors. Without: the MiniLM text embeddings of the
    items (the stand-in until ILM vectors exist; ILM is trained into the same space).
    """
    if ilm_checkpoint is not None:
        from lumenrec.retriever.ilm import ilm_vectors_from_checkpoint

        v, version = ilm_vectors_from_checkpoint(ilm_checkpoint, catalog)
        return np.asarray(v, dtype=np.float32), version
    from lumenrec.retriever.text_encoder import TextEncoder

    enc = encoder or TextEncoder()
    return np.asarray(enc.encode_items(catalog, progress=False), dtype=np.float32), f"minilm:{enc.model_version}"


def param_fingerprint(module: nn.Module) -> str:
    """A hash of every parameter's bytes: equal before and after training proves the LLM stayed frozen."""
    h = hashlib.sha256()
    for name, p in sorted(module.named_parameters(), key=lambda x: x[0]):
        h.update(name.encode())
        h.update(p.detach().contiguous().view(-1).to(torch.float32).numpy().tobytes())
    return h.hexdigest()


# -------------------------------------------------------------------------------------- splicing
def _render(tokenizer, messages: list[dict]) -> str:
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def _slot_ids(tokenizer, text: str) -> tuple[list[int], list[int]]:
    """Token ids before and after the single {item} slot of a rendered prompt."""
    if text.count(SLOT) != 1:
        raise ValueError(f"the prompt must contain the slot {SLOT!r} exactly once, found {text.count(SLOT)}")
    pre, post = text.split(SLOT)
    enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"] if s else []  # noqa: E731
    return enc(pre), enc(post)


def splice(embed: nn.Embedding, pre: list[int], soft: Tensor, post: list[int]) -> Tensor:
    """[embed(pre); soft; embed(post)] for one example: (len(pre) + n + len(post), H)."""
    dev = soft.device
    parts = [embed(torch.tensor(pre, dtype=torch.long, device=dev))] if pre else []
    parts.append(soft)  # (n, H)
    if post:
        parts.append(embed(torch.tensor(post, dtype=torch.long, device=dev)))
    return torch.cat(parts, dim=0)


# -------------------------------------------------------------------------------------- training
class SoftPromptTrainer:
    """Trains a :class:`SoftPromptAdaptor` for a frozen causal LM (a ``TransformersLLM``'s model)."""

    def __init__(self, llm, config: SoftPromptConfig | None = None, adaptor: SoftPromptAdaptor | None = None) -> None:
        self.llm, self.config = llm, config or SoftPromptConfig()
        self.model, self.tokenizer = llm.hf_model, llm.tokenizer
        for p in self.model.parameters():  # frozen: only the adaptor learns
            p.requires_grad_(False)
        self.model.eval()  # no dropout in the frozen LLM
        emb = self.model.get_input_embeddings()
        torch.manual_seed(self.config.seed)
        self.adaptor = adaptor or SoftPromptAdaptor(self.config, emb.weight.shape[1],
                                                    float(emb.weight.detach().norm(dim=-1).mean()))
        self.history: list[dict[str, float]] = []
        self._prompts = {t: _slot_ids(self.tokenizer, _render(self.tokenizer, [
            {"role": "system", "content": _SYSTEM}, {"role": "user", "content": f"Item: {SLOT}\n{_INSTRUCTIONS[t]}"}]))
            for t in TASKS}

    def examples(self, catalog: Catalog, vectors: np.ndarray) -> list[tuple[int, str, str]]:
        """(item index, task, target text) for every item and task it supports."""
        if len(vectors) != len(catalog):
            raise ValueError(f"vectors has {len(vectors)} rows for {len(catalog)} items")
        return [(i, t, txt) for i, it in enumerate(catalog) for t, txt in item_text_targets(it, self.config.tasks).items()]

    def batch(self, vecs: Tensor, tasks: Sequence[str], targets: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
        """(inputs_embeds (B, T, H), attention_mask (B, T), labels (B, T)), right-padded."""
        emb = self.model.get_input_embeddings()
        soft = self.adaptor(vecs)  # (B, n, H)
        eos = self.tokenizer.eos_token_id
        rows, labels = [], []
        for b, (task, text) in enumerate(zip(tasks, targets)):
            pre, post = self._prompts[task]
            tgt = self.tokenizer(text, add_special_tokens=False)["input_ids"][: self.config.max_target_tokens] + [eos]
            x = splice(emb, pre, soft[b], post + tgt)  # (T_b, H)
            rows.append(x)
            labels.append([-100] * (x.shape[0] - len(tgt)) + tgt)
        T = max(r.shape[0] for r in rows)
        H = rows[0].shape[1]
        embeds = soft.new_zeros(len(rows), T, H)  # (B, T, H)
        mask = torch.zeros(len(rows), T, dtype=torch.long)
        lab = torch.full((len(rows), T), -100, dtype=torch.long)
        for b, (r, l) in enumerate(zip(rows, labels)):
            embeds[b, : r.shape[0]] = r
            mask[b, : r.shape[0]] = 1
            lab[b, : r.shape[0]] = torch.tensor(l)
        return embeds, mask, lab

    def loss(self, vecs: Tensor, tasks: Sequence[str], targets: Sequence[str]) -> Tensor:
        embeds, mask, labels = self.batch(vecs, tasks, targets)
        logits = self.model(inputs_embeds=embeds, attention_mask=mask).logits  # (B, T, V)
        return lm_loss(logits, labels)

    def fit(self, catalog: Catalog, vectors: np.ndarray, steps: int | None = None) -> list[dict[str, float]]:
        """Train the adaptor for `steps` (default config.steps) batches sampled from the catalogue."""
        from tqdm.auto import tqdm

        from lumenrec.retriever.ilm import torch_threads

        c = self.config
        steps = c.steps if steps is None else int(steps)
        ex = self.examples(catalog, vectors)
        if not ex:
            raise ConfigError("tasks", c.tasks, "no item in the catalogue has a target text for these tasks")
        V = torch.from_numpy(np.asarray(vectors, dtype=np.float32))
        rng = random.Random(c.seed)
        before = param_fingerprint(self.model)
        opt = torch.optim.AdamW(self.adaptor.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / max(1, steps // 10)))
        self.adaptor.train()
        t0 = time.perf_counter()
        with torch_threads(c.num_threads):
            bar = tqdm(range(steps), desc="soft-prompt adaptor", unit="step", disable=not c.progress)
            for step in bar:
                pick = [ex[rng.randrange(len(ex))] for _ in range(c.batch_size)]
                idx = torch.tensor([p[0] for p in pick])
                loss = self.loss(V[idx], [p[1] for p in pick], [p[2] for p in pick])
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.adaptor.parameters(), 1.0)
                opt.step()
                sched.step()
                self.history.append({"step": step + 1, "loss": float(loss.detach())})
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            bar.close()
        self.adaptor.eval()
        if param_fingerprint(self.model) != before:  # pragma: no cover - would be a bug
            raise RuntimeError("the frozen LLM's parameters changed during adaptor training")
        log.info("soft-prompt adaptor: %d steps in %.1f s, loss %.3f -> %.3f", steps, time.perf_counter() - t0,
                 self.history[0]["loss"] if self.history else float("nan"),
                 self.history[-1]["loss"] if self.history else float("nan"))
        return self.history

    @torch.no_grad()
    def eval_loss(self, catalog: Catalog, vectors: np.ndarray, examples: Sequence[tuple[int, str, str]] | None = None) -> float:
        """Mean loss over `examples` (default: every example), in batches; no gradient."""
        ex = list(examples) if examples is not None else self.examples(catalog, vectors)
        V = torch.from_numpy(np.asarray(vectors, dtype=np.float32))
        tot, n = 0.0, 0
        bs = self.config.batch_size
        for s in range(0, len(ex), bs):
            part = ex[s: s + bs]
            tot += float(self.loss(V[torch.tensor([p[0] for p in part])], [p[1] for p in part], [p[2] for p in part])) * len(part)
            n += len(part)
        return tot / max(1, n)


# -------------------------------------------------------------------------------------- save/load
def save_adaptor(adaptor: SoftPromptAdaptor, directory: str | Path, *, llm_model: str, vector_source: str,
                 history: list[dict[str, float]] | None = None) -> Path:
    """config.json + model.safetensors (+ metrics.json, checksums.json), written atomically."""
    from lumenrec.retriever.checkpoint import save_checkpoint

    cfg = {"kind": "soft_prompt", "soft_prompt": asdict(adaptor.config), "hidden": adaptor.hidden,
           "llm_model": llm_model, "vector_source": vector_source, "slot": SLOT, "system": _SYSTEM}
    cfg["soft_prompt"]["tasks"] = list(adaptor.config.tasks)
    return save_checkpoint(directory, model_state=dict(adaptor.state_dict()), config=cfg, item_ids=[],
                           metrics={"history": history or []})


def load_adaptor(directory: str | Path) -> tuple[SoftPromptAdaptor, dict[str, Any]]:
    """The adaptor and its saved config (llm_model, vector_source, ...); CheckpointError when it does not fit."""
    from safetensors.torch import load_file

    from lumenrec.retriever.checkpoint import MODEL_FILE, read_json, verify_checkpoint

    directory = Path(directory)
    verify_checkpoint(directory)
    cfg = read_json(directory / "config.json")
    if cfg.get("kind") != "soft_prompt":
        raise CheckpointError(f"{directory}: not a soft-prompt adaptor (kind={cfg.get('kind')!r})")
    sp = dict(cfg["soft_prompt"])
    sp["tasks"] = tuple(sp.get("tasks") or TASKS)
    adaptor = SoftPromptAdaptor(SoftPromptConfig(**sp), int(cfg["hidden"]))
    try:
        adaptor.load_state_dict(load_file(str(directory / MODEL_FILE)))
    except RuntimeError as e:
        raise CheckpointError(f"{directory}: weights do not fit the adaptor config: {e}") from e
    adaptor.eval()
    return adaptor, cfg


# -------------------------------------------------------------------------------------- generation
class SoftPromptLLM:
    """The LLM protocol over a TransformersLLM + adaptor: prompts carry the bound item as soft tokens.

    ``with soft.bound(vec): narrator.generate(...)`` - every ``generate`` call inside puts an
    ``Item: {item}`` line at the top of the first user message and splices the soft tokens there.
    With nothing bound it is the plain LLM.
    """

    name = "transformers+softprompt"

    def __init__(self, llm, adaptor: SoftPromptAdaptor) -> None:
        hidden = llm.hf_model.get_input_embeddings().weight.shape[1]
        if adaptor.hidden != hidden:
            raise CheckpointError(f"the adaptor was trained for hidden size {adaptor.hidden}, the LLM has {hidden}")
        self.llm, self.adaptor = llm, adaptor.eval()
        self.model = f"{llm.model}+softprompt"
        self.tokenizer = llm.tokenizer
        self._vec: Tensor | None = None
        self.last_usage: dict[str, int] = {}

    @contextlib.contextmanager
    def bound(self, vector: np.ndarray | Tensor | None) -> Iterator["SoftPromptLLM"]:
        old = self._vec
        self._vec = None if vector is None else torch.as_tensor(np.asarray(vector, dtype=np.float32)).view(1, -1)
        try:
            yield self
        finally:
            self._vec = old

    def _with_slot(self, messages: list[dict]) -> list[dict]:
        out, done = [], False
        for m in messages:
            if not done and m["role"] == "user":
                m = {"role": "user", "content": f"Item: {SLOT}\n{m['content']}"}
                done = True
            out.append(m)
        return out

    @torch.no_grad()
    def generate(self, messages: list[dict], max_tokens: int = 128, temperature: float = 0.0,
                 stop: list[str] | None = None) -> str:
        from lumenrec.agent.llm.backends import _check_generation_args, _cut_at_stop, check_messages

        if self._vec is None:
            return self.llm.generate(messages, max_tokens, temperature, stop)
        _check_generation_args(max_tokens, temperature)
        msgs = self._with_slot(check_messages(messages))
        pre, post = _slot_ids(self.tokenizer, _render(self.tokenizer, msgs))
        hf = self.llm.hf_model
        soft = self.adaptor(self._vec)[0]  # (n, H)
        embeds = splice(hf.get_input_embeddings(), pre, soft, post)[None]  # (1, T, H)
        kw: dict[str, Any] = dict(inputs_embeds=embeds, attention_mask=torch.ones(1, embeds.shape[1], dtype=torch.long),
                                  max_new_tokens=int(max_tokens), pad_token_id=self.tokenizer.pad_token_id)
        if temperature > 0:
            kw.update(do_sample=True, temperature=float(temperature), top_p=0.95)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with self.llm._lock:
            try:
                out = hf.generate(**kw)  # (1, new): with inputs_embeds only new tokens come back
            except Exception as e:
                raise LLMError(f"{self.model}: generation failed: {type(e).__name__}: {e}") from e
        self.last_usage = {"prompt_tokens": int(embeds.shape[1]), "completion_tokens": int(out.shape[1])}
        text, _ = _cut_at_stop(self.tokenizer.decode(out[0], skip_special_tokens=True), stop)
        return text.strip()

    def stream(self, messages: list[dict], max_tokens: int = 128, temperature: float = 0.0,
               stop: list[str] | None = None) -> Iterator[str]:
        yield self.generate(messages, max_tokens, temperature, stop)

    def describe(self, vector: np.ndarray, task: str = "title", max_tokens: int = 24) -> str:
        """What the LLM says about an item from its soft tokens alone (the training prompt)."""
        with self.bound(vector):
            return self.generate([{"role": "system", "content": _SYSTEM},
                                  {"role": "user", "content": _INSTRUCTIONS[task]}], max_tokens)


# -------------------------------------------------------------------------------------- one-call training
def train_adaptor(catalog: Catalog, out: str | Path, *, ilm_checkpoint: str | Path | None = None,
                  config: SoftPromptConfig | None = None, llm=None, holdout: int = 32) -> dict[str, Any]:
    """Train an adaptor for SmolLM2 on `catalog` and save it to `out`; returns a summary with losses.

    The last `holdout` examples (a fixed random sample) are kept out of training and scored before
    and after, so the summary shows whether the soft tokens carry item information beyond the prompt.
    """
    from lumenrec.agent.llm.backends import TransformersLLM

    cfg = config or SoftPromptConfig()
    llm = llm or TransformersLLM(num_threads=cfg.num_threads or 1)
    vecs, source = item_vectors(catalog, ilm_checkpoint)
    tr = SoftPromptTrainer(llm, cfg)
    ex = tr.examples(catalog, vecs)
    rng = random.Random(cfg.seed + 1)
    held = rng.sample(ex, min(holdout, max(0, len(ex) // 5)))
    held_items = {i for i, _, _ in held}
    train_cat_idx = [i for i in range(len(catalog)) if i not in held_items]
    sub = Catalog([catalog[i] for i in train_cat_idx])
    t0 = time.perf_counter()
    before = tr.eval_loss(catalog, vecs, held) if held else float("nan")
    tr.fit(sub, vecs[train_cat_idx])
    after = tr.eval_loss(catalog, vecs, held) if held else float("nan")
    seconds = time.perf_counter() - t0
    save_adaptor(tr.adaptor, out, llm_model=llm.model, vector_source=source, history=tr.history)
    summary = {"out": str(out), "vector_source": source, "steps": cfg.steps, "batch_size": cfg.batch_size,
               "heldout_examples": len(held), "heldout_loss_before": before, "heldout_loss_after": after,
               "train_loss_first": tr.history[0]["loss"] if tr.history else None,
               "train_loss_last": tr.history[-1]["loss"] if tr.history else None, "seconds": round(seconds, 1)}
    log.info("soft-prompt adaptor saved: %s", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python -m lumenrec.agent.llm.soft_prompt --data office-2014 --out DIR [--ilm-checkpoint DIR --steps N]``."""
    import argparse
    import json

    from lumenrec.data.registry import load_dataset

    p = argparse.ArgumentParser(description="train the ILM phase-2 soft-prompt adaptor for the frozen SmolLM2")
    p.add_argument("--data", default="office-2014")
    p.add_argument("--out", required=True)
    p.add_argument("--ilm-checkpoint", default=None, help="ILM checkpoint dir (default: MiniLM vectors stand in)")
    p.add_argument("--steps", type=int, default=SoftPromptConfig.steps)
    p.add_argument("--batch-size", type=int, default=SoftPromptConfig.batch_size)
    p.add_argument("--adaptor", default=SoftPromptConfig.adaptor, choices=["linear", "mlp"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ds = load_dataset(args.data, with_conversations=False)
    cfg = SoftPromptConfig(steps=args.steps, batch_size=args.batch_size, adaptor=args.adaptor, seed=args.seed)
    print(json.dumps(train_adaptor(ds.catalog, args.out, ilm_checkpoint=args.ilm_checkpoint, config=cfg), indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
