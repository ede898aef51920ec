"""Grounded narratives of REGEN's three kinds, from an LLM when there is one, offline otherwise.

- ``purchase_reason``: why this user buys this item next, given their history and critique;
- ``endorsement``: the item pitched to this user;
- ``user_summary``: the user's tastes, from their history.

:class:`NarrativeGenerator` prompts the LLM with catalogue facts and the history only
(:data:`PROMPT_VERSION` names the prompt set), checks the answer with the grounding checker,
regenerates once with the unsupported claims pointed out, then repairs (drops unsupported sentences),
and falls back to :class:`OfflineNarrator` on LLMError or an empty/ungrounded result. The result
says which generator produced the text.

:class:`OfflineNarrator` needs no model: it fills one of several templates per sentence (picked by a
hash of user id, item id and kind, so output is deterministic yet varied) with facts only.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from lumenrec.agent.grounding import (BrandVocabulary, Facts, GroundingChecker, GroundingReport, check_text, repair,
                                      split_sentences)
from lumenrec.data.types import NARRATIVE_KINDS, Catalog, Conversation, Item
from lumenrec.errors import LLMError, ToolInputError

__all__ = ["PROMPT_VERSION", "PROMPT_VERSIONS", "NarrativeResult", "NarrativeGenerator", "OfflineNarrator", "GroundedNarrator",
           "build_messages", "shopper_voice", "cap_sentences", "MAX_SENTENCES", "LOCAL_PROMPT_VERSION", "max_sentences",
           "shopper_prefix", "history_block", "item_card",
           "short_title"]

log = logging.getLogger(__name__)

# Bump when a prompt changes: stored narratives and evaluation numbers name the version they used.
# v1 is the default (SmolLM2's published numbers); v2 (#19, the local 1.5B model) fixes what v1 let
# through: writing as the shopper ("I highly recommend them"), small inventions, running past the
# requested length (answers are cut to the requested number of sentences).
PROMPT_VERSION = "narrative-v1"
PROMPT_VERSIONS = ("narrative-v1", "narrative-v2", "narrative-v3")
# v3 (#19, the local model's default): the v2 rules, laid out for llama.cpp's prefix cache. Everything
# fixed (rules, the three tasks) sits in the system prompt; the shopper's past purchases come next (the
# same for every kind and every turn of a session: evaluated once, at session start, by
# NarrativeGenerator.prepare); only the request, a short item card and a one-line task follow, ~60-90
# tokens a narrative has to evaluate before its first token (v2: ~390).
LOCAL_PROMPT_VERSION = "narrative-v3"

_SYSTEM = ("You write short texts for an office-supplies shop. Use only the facts given. Never invent numbers, "
           "prices, pack sizes, sizes, colours or brand names. Write plain sentences: no lists, no headings.")

_TASKS = {
    "purchase_reason": "In one or two sentences, explain why this shopper bought the recommended item next.",
    "endorsement": "In two or three sentences, recommend the item to this shopper, speaking to them as 'you'.",
    "user_summary": "In three sentences, describe this shopper's tastes based on their past purchases.",
}


_SYSTEM_V2 = ("You write for an office-supplies shop, about or to one of its shoppers. Use only the facts given "
              "below. Never add a number, price, size, pack count, colour, material, feature or brand that is not in "
              "the facts. Plain sentences only: no lists, headings, quotes or emojis.")

_TASKS_V2 = {
    "purchase_reason": "In one or two sentences, explain why this shopper bought the recommended item next. Write "
                       "about them as 'this shopper' or 'they'.",
    "endorsement": "In two sentences, tell the shopper why this item suits them. Write as the shop, to the shopper "
                   "('you', 'your'); never write as the shopper ('I', 'my').",
    "user_summary": "In two or three sentences, describe this shopper's tastes from their past purchases. Write about "
                    "them as 'this shopper' or 'they'.",
}
_SYSTEM_V3 = _SYSTEM_V2 + (
    "\nYou write one of three texts, named on the last line:\n"
    "- purchase reason: one or two sentences on why this shopper bought the item next; about them as 'this "
    "shopper' or 'they'.\n"
    "- endorsement: two sentences telling the shopper why the item suits them; as the shop, to the shopper "
    "('you', 'your'), never as the shopper ('I', 'my').\n"
    "- user summary: two or three sentences on this shopper's tastes from their past purchases; about them as "
    "'this shopper' or 'they'.")
_TASKS_V3 = {"purchase_reason": "Write the purchase reason.", "endorsement": "Write the endorsement.",
             "user_summary": "Write the user summary."}
# the header of v3's shopper block (the part prepare() evaluates ahead of the turn), or its stand-in
_V3_HISTORY_HEAD = "Past purchases, oldest first:"
_V3_NO_HISTORY = "Past purchases: none known."
# v2: the most sentences kept per kind (the model sometimes runs on past the requested length)
MAX_SENTENCES = {"purchase_reason": 2, "endorsement": 3, "user_summary": 3}
# v3 asks for two sentences of endorsement and keeps two (v2 kept a third that ran past the request)
MAX_SENTENCES_V3 = {**MAX_SENTENCES, "endorsement": 2}


def max_sentences(kind: str, version: str) -> int:
    """The most sentences a narrative of `kind` keeps under prompt `version` (v1: no cap)."""
    if version == "narrative-v1":
        return 99
    return (MAX_SENTENCES_V3 if version == "narrative-v3" else MAX_SENTENCES).get(kind, 3)


# the shopper's own voice in a text the shop writes ("I highly recommend them", "my desk")
_SHOPPER_VOICE = re.compile(r"\bI\b|\bI'(?:m|ve|d|ll)\b|\b(?:my|me|mine|myself)\b", re.IGNORECASE)


def shopper_voice(text: str) -> bool:
    """Does the text speak as the shopper (first person singular)?"""
    return bool(_SHOPPER_VOICE.search(text or ""))


def cap_sentences(text: str, kind: str, version: str = "narrative-v2") -> str:
    """The text cut to the number of sentences prompt `version` asks for."""
    spans = split_sentences(text)
    n = max_sentences(kind, version)
    return text[: spans[n - 1][1]].strip() if len(spans) > n else text


# ---------------------------------------------------------------------------------------------- facts
def short_title(item: Item, max_words: int = 9) -> str:
    """A readable prefix of the title: cut at the first ' - ', ',' or '(' and at `max_words` words.

    A prefix of the title states nothing the title does not, so it stays grounded.
    """
    t = re.sub(r"\s+", " ", item.title).strip()
    for sep in (" - ", " -- ", ", ", " (", " | ", "; "):
        i = t.find(sep)
        if i > 0 and len(t[:i].split()) >= 2:
            t = t[:i]
    words = t.split()
    if len(words) > max_words:
        t = " ".join(words[:max_words])
    return t.rstrip(" ,;:-/&(").strip() or item.id


def _cat(name: str) -> str:
    """A category name for the middle of a sentence: lowercased unless a word is an acronym."""
    return " ".join(w if (w.isupper() and len(w) > 1) else w.lower() for w in name.split())


def _prose_sentence(text: str) -> str:
    """The first sentence of a description when it is prose (>= 4 words, starting with a letter) and the
    description is not flagged by the screening (catalogue text is data: never quote orders in it); else ""."""
    text = re.sub(r"\s+", " ", text or "").strip()
    spans = split_sentences(text)
    if not spans:
        return ""
    s = text[spans[0][0]:spans[0][1]].strip()
    if len(s.split()) < 4 or not s[0].isalpha():
        return ""
    from lumenrec.agent.intents import INJECTION_RX
    from lumenrec.data.screening import screen_text

    if INJECTION_RX.search(text) or screen_text(text).flagged:  # nothing of a flagged description is quoted
        return ""
    return s


def _first_sentence(text: str, max_chars: int = 180) -> str:
    """The description's first sentence, ended with a full stop; "" when it is longer than `max_chars`."""
    s = _prose_sentence(text)
    if len(s) > max_chars:
        return ""
    return s if not s or s[-1] in ".!?" else s + "."


def _join(names: Sequence[str]) -> str:
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def build_messages(kind: str, item: Item | None, history: Sequence[Item], critique: str | None = None,
                   max_history: int = 8, max_description_chars: int = 300,
                   version: str = PROMPT_VERSION) -> list[dict]:
    """The chat messages for one narrative: catalogue facts and history only (`version`, a PROMPT_VERSIONS)."""
    if version not in PROMPT_VERSIONS:
        raise ToolInputError(f"prompt version must be one of {', '.join(PROMPT_VERSIONS)}, got {version!r}")
    if kind not in NARRATIVE_KINDS:
        raise ToolInputError(f"narrative kind must be one of {', '.join(NARRATIVE_KINDS)}, got {kind!r}")
    if version == "narrative-v3":
        return _messages_v3(kind, item, history, critique)
    lines: list[str] = []
    if item is not None and kind != "user_summary":
        lines.append("Recommended item:")
        lines.append(f"- Title: {item.title}")
        if item.brand:
            lines.append(f"- Brand: {item.brand}")
        if item.categories:
            lines.append(f"- Category: {' > '.join(item.categories)}")
        for k, v in sorted(item.attributes.items()):
            lines.append(f"- {k}: {v}")
        if item.price is not None:
            lines.append(f"- Price: ${item.price:.2f}")
        if item.description:
            lines.append(f"- Description: {item.description[:max_description_chars]}")
    recent = list(history)[-max_history:]
    if recent:
        lines.append("The shopper's past purchases, oldest first:")
        lines += [f"- {h.title}" + (f" (brand: {h.brand})" if h.brand else "") for h in recent]
    if critique and kind != "user_summary":
        lines.append(f'The shopper asked: "{critique.strip()}"')
    lines.append("")
    v2 = version == "narrative-v2"
    lines.append((_TASKS_V2 if v2 else _TASKS)[kind])
    return [{"role": "system", "content": _SYSTEM_V2 if v2 else _SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def _brief(text: str, max_chars: int) -> str:
    """The description's first sentence (see _prose_sentence), cut at a word before `max_chars` ("..."
    marks a cut)."""
    s = _prose_sentence(text)
    if len(s) > max_chars:
        s = s[:max_chars].rsplit(" ", 1)[0].rstrip(" ,;:-(") + "..."
    return s


def history_block(history: Sequence[Item], max_history: int = 8) -> str:
    """v3's shopper block: the last `max_history` purchases as short titles (+ brand), one per line."""
    recent = list(history)[-max_history:]
    if not recent:
        return _V3_NO_HISTORY + "\n"
    return _V3_HISTORY_HEAD + "\n" + "".join(
        f"- {short_title(h, 14)}" + (f" (brand: {h.brand})" if h.brand else "") + "\n" for h in recent)


def item_card(item: Item, max_description_chars: int = 90) -> str:
    """v3's item facts on one line: a short title, brand, the leaf category and the description's start."""
    title = short_title(item, 12)
    parts = [f"Item: {title}."]
    low = title.lower()
    # brand and category only where the short title does not already say them (every token here is
    # one the first narrative token waits for)
    if item.brand and item.brand.lower() not in low:
        parts.append(f"Brand: {item.brand}.")
    if item.categories and not all(w.rstrip("s") in low for w in re.findall(r"[a-z]+", item.categories[-1].lower())
                                   if w not in ("and", "for", "of", "the")):
        parts.append(f"Category: {item.categories[-1]}.")
    for k, v in sorted(item.attributes.items())[:3]:
        parts.append(f"{k}: {v}.")
    if item.price is not None:
        parts.append(f"Price: ${item.price:.2f}.")
    about = _brief(item.description, max_description_chars)
    if about:
        parts.append(f"About: {about}")
    return " ".join(parts)


def _messages_v3(kind: str, item: Item | None, history: Sequence[Item], critique: str | None) -> list[dict]:
    # order matters: system, then the shopper block (shared by every kind and turn of a session), then
    # what is new this turn; the shopper block ends with a newline and what follows starts with a letter,
    # so the tokens of the shopper-block prompt are a prefix of every full prompt's (prepare() checks)
    user = history_block(history)
    if kind != "user_summary":
        if critique and critique.strip():
            user += f'Request: "{critique.strip()}"\n'
        if item is not None:
            user += item_card(item) + "\n"
    user += _TASKS_V3[kind]
    return [{"role": "system", "content": _SYSTEM_V3}, {"role": "user", "content": user}]


def shopper_prefix(render, history: Sequence[Item]) -> str:
    """The rendered v3 prompt text up to the end of the shopper block: what every narrative prompt of
    this shopper starts with. `render` turns chat messages into the model's prompt text."""
    block = history_block(history)
    full = render(_messages_v3("user_summary", None, history, None))
    cut = full.find(block)
    if cut < 0:  # pragma: no cover - a template that rewrites the user's text
        raise LLMError("the chat template changed the shopper block: no prefix to prepare")
    return full[:cut + len(block)]


_ECHO_RE = re.compile(r"^(?:the shopper asked:|recommended item:|the shopper's past purchases|- title:|past purchases|"
                      r"request:|item:)", re.IGNORECASE)


def _echoes_prompt(text: str) -> bool:
    """A small model sometimes just repeats the prompt's fact list or the quoted request."""
    return bool(_ECHO_RE.match(text.strip()))


def _clean_output(text: str) -> str:
    """Model output as one paragraph: no markdown, no half sentence at the end."""
    t = re.sub(r"[*#`_]+", "", text or "")
    t = re.sub(r"^\s*(?:sure|certainly|here is|here's)[^.:!\n]*[:!.]\s*", "", t, flags=re.IGNORECASE)
    t = re.sub(r"\s+", " ", t).strip().strip('"').strip()
    spans = split_sentences(t)
    if len(spans) > 1 and t[spans[-1][1] - 1] not in ".!?":
        t = t[:spans[-1][0]].strip()  # drop the unfinished last sentence (max_tokens cut it)
    return t


# --------------------------------------------------------------------------------------------- offline
_BORING_ATTRS = {"line", "pack", "colour", "color", "model", "sku"}
# request words that name no feature
_REQUEST_FILLER = {"need", "needs", "want", "wants", "looking", "something", "anything", "please", "thanks", "good",
                   "nice", "great", "really", "maybe", "some", "more", "other", "another", "again", "instead", "would",
                   "could", "should", "like", "kind", "sort", "thing", "things", "stuff", "office", "home", "work",
                   "cheaper", "cheap", "better", "best", "new", "next", "also", "still", "about", "around", "pack"}


def _request_reasons(item: Item, critique: str | None) -> list[str]:
    """Clauses stating which of the request's wishes the item meets, from the item's facts only."""
    if not critique:
        return []
    from lumenrec import polarity
    from lumenrec.agent.critique import COLOUR_ALIASES, COLOURS
    from lumenrec.agent.facts import item_colours, item_pack

    low = critique.lower()
    toks = polarity.tokenize(low)
    wanted, avoided = [], []
    for i, t in enumerate(toks):
        c = COLOUR_ALIASES.get(t.low, t.low)
        if t.low in COLOURS:
            (avoided if polarity.mention_polarity(toks, i, 1) == "exclude" else wanted).append(c)
    colours = item_colours(item)
    out = []
    hit = [c for c in wanted if c in colours]
    if hit:
        out.append(f"it comes in {_join(hit)}, as you asked")
    elif avoided and colours and not colours & set(avoided):
        out.append(f"it is {_join(sorted(colours))}, not {_join(avoided)}")
    brand = (item.brand or "").lower()
    if brand and re.search(rf"(?<![\w-]){re.escape(brand)}(?![\w-])", low):
        span = polarity.span_tokens(toks, low.index(brand), low.index(brand) + len(brand))
        if span is not None and polarity.mention_polarity(toks, *span) != "exclude":
            out.append(f"it is the {item.brand} you asked for")
    pack = item_pack(item)
    if pack is not None and re.search(rf"\b{pack}\b", low) and re.search(r"\b(pack|count|box|set|of)\b", low):
        out.append(f"it comes as a pack of {pack}")
    if item.price is not None and re.search(r"\b(cheap\w*|budget|afford\w*|inexpensive|under|less|price)\b", low):
        out.append(f"it costs ${item.price:.2f}")
    if len(out) < 2:  # features the shopper named that the title states ("wireless", "duplex", "refillable")
        from lumenrec.agent.critique import FUNCTION_WORDS

        title = set(re.findall(r"[a-z]+", item.title.lower()))
        cats = {w.rstrip("s") for w in re.findall(r"[a-z]+", " ".join(item.categories).lower())}
        said = {t.low for t in toks} - FUNCTION_WORDS - _REQUEST_FILLER - cats - set(COLOURS) - set(brand.split())
        hits = [w for w in dict.fromkeys(t.low for t in toks) if w in said and w in title and len(w) > 3 and w.isalpha()
                and w.rstrip("s") not in cats
                and polarity.mention_polarity(toks, next(i for i, t in enumerate(toks) if t.low == w), 1) != "exclude"]
        if hits:
            out.append(f"it has the {_join(hits[:2])} you asked for")
    return out[:3]


def _details(item: Item) -> str:
    """One or two facts the title does not lead with: structured attributes, else the title's tail."""
    attrs = [str(v) for k, v in sorted(item.attributes.items()) if k.lower() not in _BORING_ATTRS and v][:2]
    if attrs:
        return re.sub(r"[.!?](?=\s|$)", "", ", ".join(a.lower() if not any(ch.isdigit() for ch in a) else a for a in attrs))
    head = short_title(item)
    tail = item.title[len(head):] if item.title.startswith(head) else ""
    # split at commas that do not sit inside a number ("5,000 per box" stays whole)
    parts = [p.strip(" ,;-()") for p in re.split(r",(?!\d)|(?<!\d),|\(|\)| - ", tail) if p.strip(" ,;-()")]
    # no model codes, and not the "(item 859)" label a screened title is named by (no fact about the item)
    parts = [p for p in parts if 2 <= len(p) <= 40 and not re.fullmatch(r"[A-Z0-9-]{4,}", p) and p != f"item {item.id}"]
    # only what the grounding check supports
    facts = Facts([item])
    parts = [p for p in parts if not check_text(p, facts).unsupported][:2]
    return re.sub(r"[.!?](?=\s|$)", "", ", ".join(parts))  # "2 oz." must not end a sentence


def _pick(options: Sequence[str], *key: str) -> str:
    h = hashlib.md5("|".join(key).encode("utf-8")).digest()
    return options[int.from_bytes(h[:4], "big") % len(options)]


class OfflineNarrator:
    """Deterministic, model-free narratives that state only catalogue and history facts."""

    name = "offline"

    def narrate(self, kind: str, item: Item | None, history: Sequence[Item], *, user_id: str = "",
                critique: str | None = None) -> str:
        if kind not in NARRATIVE_KINDS:
            raise ToolInputError(f"narrative kind must be one of {', '.join(NARRATIVE_KINDS)}, got {kind!r}")
        if kind != "user_summary" and item is None:
            raise ToolInputError(f"a {kind} narrative needs the item it is about")
        key = (user_id, item.id if item is not None else "", kind)
        if kind == "purchase_reason":
            return self._purchase_reason(item, list(history), key, critique)
        if kind == "endorsement":
            return self._endorsement(item, list(history), key, critique)
        return self._user_summary(list(history), key)

    # -- purchase_reason: 1 to 3 sentences --
    def _purchase_reason(self, item: Item, history: list[Item], key: tuple, critique: str | None) -> str:
        it = short_title(item)
        prev = history[-1] if history else None
        cat = _cat(item.category) if item.category else "item"
        out = []
        if prev is None:
            out.append(_pick([f"The {it} was this shopper's first pick in {cat}.",
                              f"This shopper started with the {it}, an item in {cat}."], *key, "a"))
        else:
            pt = short_title(prev)
            if item.brand and prev.brand and item.brand.lower() == prev.brand.lower():
                out.append(_pick([
                    f"After the {pt}, this shopper stayed with {item.brand} and chose the {it} next.",
                    f"Happy with the {pt}, they went back to {item.brand} for the {it}.",
                    f"Having bought the {pt}, they picked another {item.brand} product: the {it}.",
                ], *key, "a"))
            elif item.category and item.category == prev.category:
                out.append(_pick([
                    f"After the {pt}, this shopper wanted another option in {cat} and chose the {it}.",
                    f"Still shopping in {cat} after the {pt}, they settled on the {it}.",
                    f"The {pt} left them looking for something else in {cat}, and the {it} filled that gap.",
                ], *key, "a"))
            else:
                out.append(_pick([
                    f"After the {pt}, this shopper's needs moved on to {cat}, so they bought the {it}.",
                    f"With the {pt} taken care of, they turned to {cat} and picked the {it}.",
                    f"Their next need after the {pt} was in {cat}, which is where the {it} comes in.",
                ], *key, "a"))
        if critique:
            out.append(_pick([
                "Their own request asked for something different from the last purchase, and this item answers it.",
                "What they asked for in the chat points straight at this item.",
                "It matches the change they described when they asked for something new.",
            ], *key, "b"))
        n_brand = sum(1 for h in history if item.brand and h.brand.lower() == item.brand.lower())
        if n_brand >= 2:
            out.append(_pick([f"{item.brand} is a brand they have bought more than once before.",
                              f"They have trusted {item.brand} repeatedly in the past."], *key, "c"))
        return " ".join(out[:3])

    # -- endorsement: 1 to 3 sentences, tied to the request --
    def _endorsement(self, item: Item, history: list[Item], key: tuple, critique: str | None = None) -> str:
        """Why this item, for this request: the wishes it meets (colour, brand, pack, price), a detail or two
        the title does not lead with, and how it relates to the last purchase. The title itself is not
        repeated (the list shows it) and descriptions are never quoted (catalogue text is data)."""
        cat = _cat(item.category) if item.category else "pick"
        reasons = _request_reasons(item, critique)
        b = item.brand
        # a noun phrase: it opens "<opener>: <reasons>." and "<opener> fits what you described." alike.
        # Answering a request (critique given), the item's title stands right beside the text: not repeated;
        # a standalone endorsement names the item by its short name.
        if critique is None:
            st = short_title(item)
            by = f" from {b}" if b and b.lower() not in st.lower() else ""
            opener = _pick([f"The {st}{by}", f"The {st}{by}, in {cat},"], *key, "a")
        else:
            opener = _pick([f"This {b} option" if b else "This option", f"This {b} pick in {cat}" if b else f"This pick in {cat}",
                            f"This pick from {b}'s {cat}" if b else f"This {cat} pick", f"This {cat} pick from {b}" if b else "This one"],
                           *key, "a")
        if reasons:
            first = f"{opener}: {_join(reasons)}."
        elif critique:
            first = _pick([f"{opener} fits what you described.", f"{opener} is a close match for your request.",
                           f"{opener} answers what you asked for."], *key, "b")
        elif history:
            first = _pick([f"{opener} suits your past orders.", f"{opener} is in line with what you buy.",
                           f"{opener} follows on from your recent orders."], *key, "b")
        else:
            first = _pick([f"{opener} is one of the closest matches.", f"{opener} ranks near the top for you.",
                           f"{opener} is a strong candidate."], *key, "b")
        out = [first[0].upper() + first[1:]]
        details = _details(item)
        if details:
            out.append(_pick([f"Key details: {details}.", f"Worth knowing: {details}.", f"Details: {details}."],
                             *key, "c"))
        prev = history[-1] if history else None
        if prev is not None:
            pt = short_title(prev)
            if item.brand and prev.brand and item.brand.lower() == prev.brand.lower():
                out.append(_pick([f"Same maker as the {pt} you bought last.",
                                  f"You know {item.brand} from the {pt}."], *key, "d"))
            elif item.category and item.category == prev.category:
                out.append(_pick([f"An alternative to the {pt} you already have.",
                                  f"Another option next to the {pt} you bought."], *key, "d"))
            else:
                out.append(_pick([f"It goes with the {pt} you bought last.",
                                  f"A different need from the {pt} you bought last."], *key, "d"))
        return " ".join(out[:3])

    # -- user_summary: 3 to 5 sentences --
    def _user_summary(self, history: list[Item], key: tuple) -> str:
        if not history:
            return "This shopper has no purchases on record yet. Their tastes will show after a first order. Any item is a fresh start."
        cats = Counter(h.category for h in history if h.category)
        brands = Counter(h.brand for h in history if h.brand)
        tops = [_cat(c) for c, _ in cats.most_common(2)]
        out = []
        if tops:
            out.append(_pick([f"This shopper mostly buys {_join(tops)}.",
                              f"Most of this shopper's orders are in {_join(tops)}.",
                              f"Their history centres on {_join(tops)}."], *key, "a"))
        else:
            out.append("This shopper buys across the catalogue.")
        top_brands = [b for b, _ in brands.most_common(3)]
        if top_brands and brands.most_common(1)[0][1] >= 2:
            out.append(_pick([f"{top_brands[0]} is the brand they return to most often.",
                              f"They come back to {top_brands[0]} again and again."], *key, "b"))
            if len(top_brands) > 1:
                out.append(_pick([f"They also buy from {_join(top_brands[1:])}.",
                                  f"Other brands in their orders include {_join(top_brands[1:])}."], *key, "c"))
        elif top_brands:
            out.append(_pick([f"They try different makers, such as {_join(top_brands)}.",
                              f"Their orders come from a spread of brands like {_join(top_brands)}."], *key, "b"))
        out.append(_pick([f"Their latest purchase was the {short_title(history[-1])}.",
                          f"Most recently they bought the {short_title(history[-1])}."], *key, "d"))
        if len(history) > 1 and len(out) < 4:
            out.append(_pick([f"One of their earlier orders was the {short_title(history[0])}.",
                              f"Early on they picked up the {short_title(history[0])}."], *key, "e"))
        if len(out) < 3:
            out.append("They seem to value practical, everyday tools.")
        return " ".join(out[:5])


# ------------------------------------------------------------------------------------------ generator
@dataclass
class NarrativeResult:
    """One narrative and how it came to be."""

    kind: str
    text: str
    generator: str  # "llm", "llm+regenerated", "llm+repaired" or "offline"
    model: str | None = None  # the LLM's model id when an LLM produced the text
    prompt_version: str = PROMPT_VERSION
    report: GroundingReport | None = None  # the check of the final text
    unsupported_before: int = 0  # unsupported claims in the LLM's first answer
    fallback_reason: str = ""  # why the offline narrator was used, when it was
    attempts: list[str] = field(default_factory=list)  # the raw LLM answers, for inspection
    first_token_s: float | None = None  # streamed: seconds to the model's first token
    first_piece_s: float | None = None  # streamed: seconds to the first checked piece shown


class NarrativeGenerator:
    """LLM narratives checked against the facts, with regeneration, repair and an offline fallback."""

    def __init__(self, llm=None, catalog: Catalog | None = None, *, checker: GroundingChecker | None = None,
                 max_tokens: int = 120, temperature: float = 0.0, regenerate: bool = True,
                 min_words: int = 6, prompt_version: str = PROMPT_VERSION, streaming: bool = False) -> None:
        if prompt_version not in PROMPT_VERSIONS:
            raise ToolInputError(f"prompt_version must be one of {', '.join(PROMPT_VERSIONS)}, got {prompt_version!r}")
        self.prompt_version = prompt_version
        # streaming: the recommender shows this generator's narratives piece by piece (stream()); otherwise
        # it calls generate() (regeneration and repair before anything is shown)
        self.streaming = bool(streaming)
        self.llm = llm
        self.catalog = catalog
        self.checker = checker or GroundingChecker(BrandVocabulary.from_catalog(catalog) if catalog else None)
        self.max_tokens, self.temperature = max_tokens, temperature
        self.regenerate, self.min_words = regenerate, min_words
        self.offline = OfflineNarrator()

    def prepare(self, history: Sequence[Item]) -> float:
        """Evaluate this shopper's prompt prefix (system prompt + past purchases) ahead of their turns, so a
        narrative then evaluates only its request, item card and task line before its first token.

        Only prompt narrative-v3 on an LLM with a prefix cache (``warm``: llama.cpp) has such a prefix;
        otherwise nothing happens. Returns seconds. Call it when a session opens (the shopper's history is
        known before their first message): :meth:`~lumenrec.agent.recommender.Recommender.open_session`.
        """
        if self.prompt_version != "narrative-v3" or self.llm is None or not hasattr(self.llm, "warm"):
            return 0.0
        t0 = time.perf_counter()
        try:
            self.llm.warm(shopper_prefix(self.llm.render, list(history)))
        except LLMError as e:  # a turn without the prefix only costs time
            log.warning("could not prepare the narrative prefix: %s", e)
        return time.perf_counter() - t0

    def facts(self, kind: str, item: Item | None, history: Sequence[Item], critique: str | None) -> Facts:
        items = [item] if item is not None and kind != "user_summary" else []
        extra = [critique] if critique and kind != "user_summary" else []
        return self.checker.facts(items, history, extra)

    def generate(self, kind: str, item: Item | None, history: Sequence[Item], *, user_id: str = "",
                 critique: str | None = None) -> NarrativeResult:
        history = list(history)
        facts = self.facts(kind, item, history, critique)
        if self.llm is None:
            return self._offline(kind, item, history, user_id, critique, facts, "no LLM configured")
        messages = build_messages(kind, item, history, critique, version=self.prompt_version)
        attempts: list[str] = []
        before = 0
        try:
            first = self._clean(self.llm.generate(messages, self.max_tokens, self.temperature), kind)
            attempts.append(first)
            rep1 = self.checker.check(first, facts)
            before = len(rep1.unsupported)
            if self._usable(first) and rep1.supported:
                return NarrativeResult(kind, first, "llm", self.llm.model, report=rep1, attempts=attempts)
            best, best_rep = (first, rep1) if self._usable(first) else ("", rep1)
            if self.regenerate and first:
                if rep1.unsupported:
                    bad = ", ".join(f'"{c.text}"' for c in rep1.unsupported)
                    feedback = f"These details are not in the facts: {bad}. Write it again and mention only facts listed above."
                elif self.prompt_version != PROMPT_VERSION and shopper_voice(first):
                    feedback = "Do not write as the shopper ('I', 'my'). " + _TASKS_V2[kind]
                else:
                    feedback = "Do not repeat the facts or the request. " + _TASKS[kind]
                retry = messages + [{"role": "assistant", "content": first}, {"role": "user", "content": feedback}]
                second = self._clean(self.llm.generate(retry, self.max_tokens, self.temperature), kind)
                attempts.append(second)
                rep2 = self.checker.check(second, facts)
                if self._usable(second) and rep2.supported:
                    return NarrativeResult(kind, second, "llm+regenerated", self.llm.model, report=rep2,
                                           unsupported_before=before, attempts=attempts)
                if self._usable(second):
                    best, best_rep = second, rep2
            repaired = _drop_sentences(best, best_rep)
            if self._usable(repaired):
                rep = self.checker.check(repaired, facts)
                if rep.supported:
                    return NarrativeResult(kind, repaired, "llm+repaired", self.llm.model, report=rep,
                                           unsupported_before=before, attempts=attempts)
            if best:
                reason = f"ungrounded LLM output ({best_rep.summary()})"
            else:
                reason = "empty LLM output" if not any(attempts) else "unusable LLM output (too short or echoes the prompt)"
        except LLMError as e:
            log.warning("narrative %s: LLM failed, using the offline narrator: %s", kind, e)
            reason = f"LLMError: {e}"
        res = self._offline(kind, item, history, user_id, critique, facts, reason)
        res.unsupported_before, res.attempts = before, attempts
        return res

    def _usable(self, text: str) -> bool:
        return (bool(text) and len(text.split()) >= self.min_words and not _echoes_prompt(text)
                and not (self.prompt_version != PROMPT_VERSION and shopper_voice(text)))

    def _clean(self, text: str, kind: str) -> str:
        t = _clean_output(text)
        return cap_sentences(t, kind, self.prompt_version) if self.prompt_version != PROMPT_VERSION else t

    def stream(self, kind: str, item: Item | None, history: Sequence[Item], *, user_id: str = "",
               critique: str | None = None) -> Iterator[str | NarrativeResult]:
        """The narrative as it is written: checked sentences as text pieces, then the NarrativeResult.

        A sentence is the unit the grounding checker can judge, so each one is released when the model
        finishes it and the checker supports it (an unsupported sentence, or one in the shopper's voice,
        is dropped, never shown). Nothing usable: the offline narrative, in one piece. The result's
        ``first_piece_s`` is the time to the first released piece, ``first_token_s`` the model's.
        """
        history = list(history)
        t0 = time.perf_counter()
        if self.llm is None or not hasattr(self.llm, "stream"):
            res = self.generate(kind, item, history, user_id=user_id, critique=critique)
            res.first_piece_s = res.first_token_s = time.perf_counter() - t0
            yield res.text
            yield res
            return
        facts = self.facts(kind, item, history, critique)
        messages = build_messages(kind, item, history, critique, version=self.prompt_version)
        limit = max_sentences(kind, self.prompt_version)
        kept: list[str] = []
        dropped: list[str] = []
        raw, buf = "", ""
        first_token = first_piece = None
        reason = ""

        def judge(sentence: str) -> str | None:
            sent = _clean_output(sentence)
            if not sent or _echoes_prompt(sent) or (self.prompt_version != PROMPT_VERSION and shopper_voice(sent)):
                return None
            return sent if self.checker.check(sent, facts).supported else None

        try:
            pieces = self.llm.stream(messages, self.max_tokens, self.temperature)
            try:
                for piece in pieces:
                    if first_token is None:
                        first_token = time.perf_counter() - t0
                    raw += piece
                    buf += piece
                    while len(kept) < limit:
                        m = re.search(r"[.!?]+(?=\s)", buf)
                        if not m:
                            break
                        sentence, buf = buf[:m.end()], buf[m.end():]
                        ok = judge(sentence)
                        if ok is None:
                            dropped.append(sentence.strip())
                            continue
                        kept.append(ok)
                        if first_piece is None:
                            first_piece = time.perf_counter() - t0
                        yield ok if len(kept) == 1 else " " + ok
                    if len(kept) >= limit:
                        break
            finally:
                close = getattr(pieces, "close", None)
                if close is not None:
                    close()  # stop the model once enough is written
            tail = buf.strip()
            if len(kept) < limit and tail and tail[-1] in ".!?":  # the last sentence, if it was finished
                ok = judge(tail)
                if ok is None:
                    dropped.append(tail)
                else:
                    kept.append(ok)
                    if first_piece is None:
                        first_piece = time.perf_counter() - t0
                    yield ok if len(kept) == 1 else " " + ok
        except LLMError as e:
            log.warning("narrative %s: LLM stream failed, using the offline narrator: %s", kind, e)
            reason = f"LLMError: {e}"
        text = " ".join(kept)
        if text and len(text.split()) >= self.min_words:
            res = NarrativeResult(kind, text, "llm+streamed" if not dropped else "llm+streamed+repaired",
                                  self.llm.model, prompt_version=self.prompt_version,
                                  report=self.checker.check(text, facts), attempts=[raw])
            res.unsupported_before = len(self.checker.check(_clean_output(raw), facts).unsupported) if raw else 0
        else:
            res = self._offline(kind, item, history, user_id, critique, facts,
                                reason or ("unusable LLM output" if raw else "empty LLM output"))
            res.attempts = [raw] if raw else []
            if text:  # a fragment was already shown: the offline narrative follows it
                res.text = text + " " + res.text
            yield res.text if not text else " " + res.text[len(text) + 1:]
            if first_piece is None:
                first_piece = time.perf_counter() - t0
        res.first_token_s = first_token
        res.first_piece_s = first_piece
        yield res

    def _offline(self, kind, item, history, user_id, critique, facts, reason) -> NarrativeResult:
        text = self.offline.narrate(kind, item, history, user_id=user_id, critique=critique)
        return NarrativeResult(kind, text, "offline", None, report=self.checker.check(text, facts),
                               fallback_reason=reason)

    def for_conversation(self, conv: Conversation, kind: str, catalog: Catalog | None = None) -> NarrativeResult:
        """The narrative of `kind` for a REGEN conversation (its target, history and critique)."""
        cat = catalog or self.catalog
        if cat is None:
            raise ToolInputError("for_conversation needs a catalogue (pass catalog= here or to the generator)")
        item = cat.get(conv.target) if conv.target else None
        history = [cat.get(i) for i in conv.history if i in cat]
        return self.generate(kind, item, history, user_id=conv.user_id, critique=conv.critique)


def _drop_sentences(text: str, report: GroundingReport) -> str:
    return repair(text, report) if text else ""


class GroundedNarrator:
    """Any narrator's texts checked against the catalogue facts before a shopper sees them.

    `inner` has ``narrate(kind, item, history, *, user_id, critique) -> str`` (e.g. the generative
    LUMEN narrator, whose model writes free text). Sentences with a claim the facts do not back
    (:class:`~lumenrec.agent.grounding.GroundingChecker`: numbers, packs, model codes, brands,
    colours, sizes) are dropped; a text speaking as the shopper, one with fewer than `min_words`
    words left, an empty one, or a kind the inner narrator cannot write goes to `fallback` (the
    offline narrator by default). ``last`` says what happened to the latest narrative.
    """

    def __init__(self, inner, catalog: Catalog, *, fallback=None, checker: GroundingChecker | None = None,
                 min_words: int = 6) -> None:
        self.inner, self.catalog = inner, catalog
        self.fallback = fallback or OfflineNarrator()
        self.checker = checker or GroundingChecker(BrandVocabulary.from_catalog(catalog))
        self.min_words = int(min_words)
        self.name = f"grounded:{getattr(inner, 'name', type(inner).__name__)}"
        self.last: dict[str, object] = {}

    def narrate(self, kind: str, item: Item | None, history: Sequence[Item], *, user_id: str = "",
                critique: str | None = None) -> str:
        history = list(history)
        items = [item] if item is not None and kind != "user_summary" else []
        facts = self.checker.facts(items, history, [critique] if critique and kind != "user_summary" else [])
        try:
            text = (self.inner.narrate(kind, item, history, user_id=user_id, critique=critique) or "").strip()
        except ToolInputError as e:  # a kind it was not trained for
            text, why = "", str(e)
        else:
            why = "empty"
        if text:
            fixed, report = self.checker.repair(cap_sentences(text, kind), facts)
            if len(fixed.split()) >= self.min_words and not shopper_voice(fixed):
                self.last = {"source": "model", "unsupported_before": len(report.unsupported),
                             "repaired": fixed != text}
                return fixed
            why = "speaks as the shopper" if shopper_voice(fixed) else "too little left after the fact check"
        self.last = {"source": "fallback", "why": why}
        return self.fallback.narrate(kind, item, history, user_id=user_id, critique=critique)
