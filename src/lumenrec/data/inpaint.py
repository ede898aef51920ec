"""REGEN-style inpainting: turn plain purchase sequences into conversations with critiques and narratives.

REGEN (Su et al. 2025) extends Amazon reviews by asking an LLM, per user, for
- a **critique** for each pair of consecutive purchases that are "sufficiently similar" (the Amazon
  category path is the proxy): the shopper's request that steers from the earlier item to the next;
- **narratives**: purchase reason, endorsement, user summary.

:class:`Inpainter` does the same for any :class:`~lumenrec.data.Dataset`. Per user it writes one
record in the dev ``conversations.jsonl`` format (``user_id, history, previous_item, target,
turns=[opening, critique(kind=critique)], narratives``) plus
- ``critiques``: every similar consecutive pair's critique (``position`` t means items t-1 -> t);
- ``provenance``: generator, model, prompt version, created_at, and which generator wrote each part.

Texts come from an LLM (any :class:`~lumenrec.agent.llm.backends.LLM`) or, offline, from
:mod:`lumenrec.retriever.critique_synth` (critiques) and :class:`~lumenrec.agent.narrative.OfflineNarrator`
(narratives, through :class:`~lumenrec.agent.narrative.NarrativeGenerator`, so LLM narratives are
grounding-checked and fall back to the offline narrator). A failed or unusable LLM critique (empty,
copies the target's title or model number) falls back to the offline critique and says so.

:func:`inpaint_to_file` is resumable: one JSON line per user, flushed and fsynced, so a crash or
Ctrl-C loses nothing already written; a re-run skips users already in the file, and a torn last
line (a write cut off mid-way) is detected and rewritten. Every user's texts depend only on the
seed and the user, so an interrupted-then-resumed run writes the same file as an uninterrupted one
(except ``created_at``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from lumenrec.data.types import Catalog, Dataset, Item, UserSequence
from lumenrec.errors import ConfigError, DataFormatError, LLMError

__all__ = ["INPAINT_PROMPT_VERSION", "InpaintConfig", "Inpainter", "InpaintSummary", "inpaint_to_file",
           "similar", "scan_done_users", "offline_opening", "critique_messages", "opening_messages"]

log = logging.getLogger(__name__)

# Bump when a critique/opening prompt or offline template changes; stored records name the version.
INPAINT_PROMPT_VERSION = "inpaint-v1"


@dataclass
class InpaintConfig:
    """What gets inpainted and how."""

    seed: int = 0  # every text depends only on (seed, user): resumed runs reproduce the same file
    # Leading category levels two consecutive items must share to get a critique. 1 = the top level,
    # REGEN's and the dev set's rule ("same top-level category"); more levels = stricter similarity.
    similar_prefix: int = 1
    # "all": a critique for every similar consecutive pair (REGEN); "last": only previous -> target
    # (one LLM call per user instead of ~10: the cheap choice for a slow local model).
    critique_positions: str = "all"
    # Offline critiques: REGEN generates several candidates and picks one at random; we do the same.
    candidates: int = 3
    min_sequence: int = 2  # a user needs a previous item and a target
    # Skip users the dataset's own conversations cover (the dev set): inpainted training data must
    # not contain the dev targets' narratives.
    exclude_conversation_users: bool = True
    critique_max_tokens: int = 48  # a critique is one short sentence
    opening_max_tokens: int = 48
    max_history_in_prompt: int = 8  # the most recent items shown to the LLM / used by the offline opening
    narrative_max_tokens: int = 120  # the LLM narrator's answer length
    narrative_prompt: str | None = None  # the LLM narrator's prompt version (None: the narrator's default)

    def __post_init__(self) -> None:
        if self.similar_prefix < 1:
            raise ConfigError("similar_prefix", self.similar_prefix, "must be >= 1 (category levels to share)")
        if self.critique_positions not in ("all", "last"):
            raise ConfigError("critique_positions", self.critique_positions, "must be 'all' or 'last'")
        if self.candidates < 1:
            raise ConfigError("candidates", self.candidates, "must be >= 1")
        if self.min_sequence < 2:
            raise ConfigError("min_sequence", self.min_sequence, "must be >= 2 (previous item + target)")
        for name in ("critique_max_tokens", "opening_max_tokens", "max_history_in_prompt", "narrative_max_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(name, getattr(self, name), "must be >= 1")


def similar(a: Item, b: Item, prefix: int = 1) -> bool:
    """REGEN's similarity proxy: the two category paths share their first `prefix` levels."""
    if len(a.categories) < prefix or len(b.categories) < prefix:
        return False
    return [c.lower() for c in a.categories[:prefix]] == [c.lower() for c in b.categories[:prefix]]


def _rng(*key: object) -> random.Random:
    """A random generator that depends only on the key (not on Python's hash seed)."""
    h = hashlib.sha256("|".join(str(k) for k in key).encode("utf-8")).digest()
    return random.Random(int.from_bytes(h[:8], "big"))


# ------------------------------------------------------------------------------------------ openings
_OPEN_CTX = ("I've been buying a lot of {a} lately", "most of what I get is {a}", "I keep stocking up on {a}",
             "I use a lot of {a} for work", "my desk runs on {a}")
_OPEN_ASK = ("Can you help me find what I need next?", "What would you suggest?", "Any ideas for what to get next?",
             "Can you help me pick something?", "I need a few more things.")
_OPEN_FMT = ("Hi! {ctx}. {ask}", "hey, {ctx}. {ask}", "Hello, {ctx}. {ask}", "{ctx_cap}. {ask}")


def _cat_name(name: str) -> str:
    return " ".join(w if (w.isupper() and len(w) > 1) else w.lower() for w in name.split())


def offline_opening(history: Sequence[Item], rng: random.Random) -> str:
    """A first chat message that fits the history and says nothing about the target."""
    cats = Counter(h.category for h in history if h.category)
    tops = [_cat_name(c) for c, _ in cats.most_common(2)]
    area = " and ".join(tops) if tops else "office supplies"
    ctx = rng.choice(_OPEN_CTX).format(a=area)
    return rng.choice(_OPEN_FMT).format(ctx=ctx, ctx_cap=ctx[0].upper() + ctx[1:], ask=rng.choice(_OPEN_ASK))


# ------------------------------------------------------------------------------------------- prompts
_CRITIQUE_SYSTEM = ("You imagine what online shoppers type to a shopping assistant. Reply with the shopper's message "
                    "only: one short casual sentence, no quotes.")
_OPENING_SYSTEM = ("You imagine what online shoppers type to a shopping assistant. Reply with the shopper's message "
                   "only: one or two short sentences, no quotes.")


def _facts(item: Item) -> str:
    lines = [f"- Title: {item.title}"]
    if item.brand:
        lines.append(f"- Brand: {item.brand}")
    if item.categories:
        lines.append(f"- Category: {' > '.join(item.categories)}")
    if item.description:
        lines.append(f"- Description: {item.description[:200]}")
    return "\n".join(lines)


def critique_messages(prev: Item, nxt: Item) -> list[dict]:
    """The LLM prompt for one critique: the two items' catalogue facts (INPAINT_PROMPT_VERSION)."""
    user = (f"The shopper just bought:\n{_facts(prev)}\n\nWhat they really want next is:\n{_facts(nxt)}\n\n"
            "Write the message the shopper types to ask for something like the second item instead of the first. "
            "Say what should be different (type, brand, colour, size or amount). Do not copy the second item's "
            "title or any model number.")
    return [{"role": "system", "content": _CRITIQUE_SYSTEM}, {"role": "user", "content": user}]


def opening_messages(history: Sequence[Item]) -> list[dict]:
    """The LLM prompt for the opening: the shopper's recent purchases only (never the target)."""
    lines = "\n".join(f"- {h.title}" for h in history)
    user = (f"A shopper's recent purchases, oldest first:\n{lines}\n\nWrite the first message this shopper sends "
            "to a shopping assistant: a hello and what kind of help they want, without naming a product.")
    return [{"role": "system", "content": _OPENING_SYSTEM}, {"role": "user", "content": user}]


_TOK = re.compile(r"[a-z0-9]+")


def _copies_target(text: str, target: Item, n: int = 5) -> bool:
    """True when the text reuses an n-word run of the target title or one of its model numbers (dev rules)."""
    from lumenrec.retriever.critique_synth import MODEL_NUMBER

    low = text.lower()
    for tok in MODEL_NUMBER.findall(target.title):
        if re.search(r"\b" + re.escape(tok.lower()) + r"\b", low) and not re.fullmatch(r"\d+(?:\.\d+)?x\d+(?:\.\d+)?", tok, re.I):
            return True
    tt, ct = _TOK.findall(target.title.lower()), _TOK.findall(low)
    grams = {tuple(tt[i:i + n]) for i in range(len(tt) - n + 1)}
    return any(tuple(ct[i:i + n]) in grams for i in range(len(ct) - n + 1))


def _clean_utterance(text: str) -> str:
    t = re.sub(r"[*#`]+", "", text or "")
    t = re.sub(r"^\s*(?:shopper|user|message|customer)\s*:\s*", "", t, flags=re.I)
    t = re.sub(r"\s+", " ", t).strip().strip('"').strip("'").strip()
    return t


# ------------------------------------------------------------------------------------------ inpainter
class Inpainter:
    """Builds one REGEN-style record per user sequence; `llm=None` means fully offline."""

    def __init__(self, catalog: Catalog, llm=None, config: InpaintConfig | None = None, *,
                 narrative_llm=None, narrator=None) -> None:
        from lumenrec.agent.narrative import NarrativeGenerator

        self.catalog, self.llm = catalog, llm
        self.config = config or InpaintConfig()
        # Narratives: the same LLM unless told otherwise; `narrator` may be a ready NarrativeGenerator.
        prompt = {"prompt_version": self.config.narrative_prompt} if self.config.narrative_prompt else {}
        self.narrator = narrator or NarrativeGenerator(narrative_llm if narrative_llm is not None else llm, catalog,
                                                       max_tokens=self.config.narrative_max_tokens, **prompt)

    @property
    def generator_name(self) -> str:
        return "offline" if self.llm is None else str(getattr(self.llm, "name", "llm"))

    @property
    def model_name(self) -> str | None:
        return None if self.llm is None else getattr(self.llm, "model", None)

    # -- texts --
    def _offline_critique(self, prev: Item, nxt: Item, user_id: str, t: int) -> str:
        from lumenrec.retriever.critique_synth import synthesize_critique

        cands = [synthesize_critique(prev, nxt, _rng(self.config.seed, user_id, t, "cand", v))
                 for v in range(self.config.candidates)]
        return _rng(self.config.seed, user_id, t, "pick").choice(cands)

    def critique(self, prev: Item, nxt: Item, user_id: str, t: int) -> tuple[str, str]:
        """(text, generator) of the critique steering from `prev` to `nxt` at position t."""
        if self.llm is not None:
            try:
                text = _clean_utterance(self.llm.generate(critique_messages(prev, nxt),
                                                          self.config.critique_max_tokens, 0.0))
                if len(text.split()) >= 3 and not _copies_target(text, nxt):
                    return text, "llm"
                log.debug("user %s pos %d: unusable LLM critique %r, offline instead", user_id, t, text)
            except LLMError as e:
                log.warning("user %s pos %d: LLM critique failed (%s), offline instead", user_id, t, e)
        return self._offline_critique(prev, nxt, user_id, t), "offline"

    def opening(self, history: Sequence[Item], target: Item, user_id: str) -> tuple[str, str]:
        recent = list(history)[-self.config.max_history_in_prompt:]
        if self.llm is not None:
            try:
                text = _clean_utterance(self.llm.generate(opening_messages(recent), self.config.opening_max_tokens, 0.0))
                if len(text.split()) >= 4 and not _copies_target(text, target):
                    return text, "llm"
            except LLMError as e:
                log.warning("user %s: LLM opening failed (%s), offline instead", user_id, e)
        return offline_opening(recent, _rng(self.config.seed, user_id, "opening")), "offline"

    # -- one record --
    def record(self, seq: UserSequence) -> dict[str, Any]:
        """The conversation record of one user: the last item is the target (leave-one-out)."""
        c = self.config
        if len(seq.items) < 2:
            raise ConfigError("min_sequence", len(seq.items), f"user {seq.user_id!r} has fewer than 2 items")
        items = [self.catalog[i] for i in seq.items]
        history, target, prev = items[:-1], items[-1], items[-2]
        parts: dict[str, str] = {}
        positions = range(1, len(items)) if c.critique_positions == "all" else [len(items) - 1]
        critiques = []
        for t in positions:
            a, b = items[t - 1], items[t]
            if a.id == b.id or not similar(a, b, c.similar_prefix):
                continue
            text, gen = self.critique(a, b, seq.user_id, t)
            critiques.append({"position": t, "previous_item": a.id, "item": b.id, "text": text, "generator": gen})
        opening, parts["opening"] = self.opening(history, target, seq.user_id)
        turns: list[dict[str, str]] = [{"role": "user", "text": opening}]
        final = critiques[-1] if critiques and critiques[-1]["position"] == len(items) - 1 else None
        if final is not None:
            turns.append({"role": "user", "text": final["text"], "kind": "critique"})
            parts["critique"] = final["generator"]
        narratives, models = {}, set()
        for kind in ("purchase_reason", "endorsement", "user_summary"):
            res = self.narrator.generate(kind, target, history, user_id=seq.user_id,
                                         critique=final["text"] if final else None)
            narratives[kind] = res.text
            parts[kind] = res.generator
            if res.model:
                models.add(res.model)
        from lumenrec.agent.narrative import PROMPT_VERSION

        return {
            "user_id": seq.user_id, "history": [h.id for h in history], "previous_item": prev.id,
            "target": target.id, "turns": turns, "narratives": narratives, "critiques": critiques,
            "provenance": {
                "generator": self.generator_name, "model": self.model_name,
                "prompt_version": f"{INPAINT_PROMPT_VERSION}+{PROMPT_VERSION}",
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "seed": c.seed, "parts": parts,
                **({"narrative_models": sorted(models)} if models else {}),
            },
        }

    def eligible(self, dataset: Dataset) -> list[UserSequence]:
        """The sequences to inpaint, in file order: long enough, and not the dataset's own conversation users."""
        skip = {cv.user_id for cv in dataset.conversations} if self.config.exclude_conversation_users else set()
        return [s for s in dataset.interactions if len(s.items) >= self.config.min_sequence and s.user_id not in skip]


# ------------------------------------------------------------------------------------------ the file
@dataclass
class InpaintSummary:
    """What one run of :func:`inpaint_to_file` did."""

    path: str
    written: int  # records written by this run
    skipped_done: int  # users already in the file from an earlier run
    total: int  # records in the file now
    repaired_torn_line: bool = False
    parts: dict[str, int] = field(default_factory=dict)  # "critique:llm" -> count, over this run's records

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def scan_done_users(path: str | Path) -> tuple[list[str], int, bool]:
    """(user ids already written, byte length of the good prefix, whether a torn last line was found).

    Only the LAST line may be torn (no trailing newline, or not valid JSON): that is what a crash
    mid-write leaves. A bad line anywhere else is real corruption: DataFormatError naming the line.
    """
    path = Path(path)
    if not path.exists():
        return [], 0, False
    data = path.read_bytes()
    users: list[str] = []
    good = 0
    lines = data.split(b"\n")
    for lineno, raw in enumerate(lines, 1):
        is_last = lineno == len(lines)
        if is_last and raw == b"":
            break  # the file ends with a newline: nothing torn
        try:
            obj = json.loads(raw.decode("utf-8"))
            if not isinstance(obj, dict) or "user_id" not in obj:
                raise ValueError("not a conversation record (no user_id)")
        except (ValueError, UnicodeDecodeError) as e:
            if is_last:  # a write cut off mid-line
                return users, good, True
            raise DataFormatError(str(path), lineno, f"corrupt record in the middle of the file: {e}") from e
        if is_last:  # valid JSON but no newline: the write was cut before the newline; rewrite it
            return users, good, True
        users.append(str(obj["user_id"]))
        good += len(raw) + 1
    return users, good, False


def inpaint_to_file(inpainter: Inpainter, sequences: Iterable[UserSequence], path: str | Path, *,
                    limit: int | None = None, progress: bool = True) -> InpaintSummary:
    """Append one record per user to `path` (JSONL), skipping users already there. Resumable.

    `limit` caps the number of records in the file (counting earlier runs'), so `--limit 100` run
    twice does not write 200.
    """
    from tqdm.auto import tqdm

    if limit is not None and limit < 0:
        raise ConfigError("limit", limit, "must be >= 0")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    done_list, good, torn = scan_done_users(path)
    if torn:
        log.warning("%s: the last line was cut off by an interrupted write; rewriting it", path)
        with open(path, "r+b") as f:
            f.truncate(good)
            f.flush()
            os.fsync(f.fileno())
    done = set(done_list)
    seqs = list(sequences)
    if limit is not None:
        seqs = seqs[:limit]
    todo = [s for s in seqs if s.user_id not in done]
    summary = InpaintSummary(str(path), 0, len(seqs) - len(todo), len(done_list), torn)
    bar = tqdm(total=len(seqs), initial=len(seqs) - len(todo), desc="inpaint", unit="user", disable=not progress)
    try:
        with open(path, "a", encoding="utf-8") as f:
            for s in todo:
                rec = inpainter.record(s)
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
                summary.written += 1
                summary.total += 1
                for part, gen in rec["provenance"]["parts"].items():
                    key = f"{part}:{gen}"
                    summary.parts[key] = summary.parts.get(key, 0) + 1
                bar.update(1)
    finally:
        bar.close()
    return summary
