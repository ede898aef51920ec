"""The critique parser: a shopper's message -> structured constraints, offline, from the catalogue's words.

A critique such as "not sharpie this time, something cheaper in blue, a dozen" becomes a
:class:`Critique`: brands to include/exclude, categories to include/exclude, attributes (colour,
size, pack), a price direction, a reference to a shown item ("the second one") and an
accept/reject signal. The retriever gets the message minus the words of excluded things
(`Critique.text`), so that "not Sharpie" does not pull Sharpie items closer in embedding space.

How it works (:class:`CritiqueParser`):

- **Vocabulary from the catalogue**: brand names (``Catalog.brands()`` plus brand names found at
  the start of titles of brand-less items), category names split into head nouns ("D-Ring Binders"
  -> "binder"), colours and sizes from a small English lexicon. Everything is precomputed into
  dicts keyed by token n-grams, so a parse is a few dict look-ups per token (< 1 ms typical).
- **Typos**: a token that is not a known word of the catalogue is matched against brand/category
  tokens through a character-trigram index and ``difflib`` ratio ("Sharpy" -> Sharpie).
- **Brands that are common words** ("Universal", "Smart", "Office", "Royal"): detected as brands
  whose name appears in lower case in other brands' titles/descriptions; they only count when
  typed capitalised (not as the first word) or in a brand context ("by X", "X brand").
- **Polarity** per mention, inside its clause (clauses split at punctuation and "but"):
  a negation cue before the mention ("not", "no more", "anything but", "instead of", "other than",
  "don't want", "sick of") or a complaint after it ("isn't working", "too expensive") -> exclude;
  a determiner or possessive before it ("the kodak", "my canon", "for my printer") means an item
  the shopper owns or was shown -> no hard constraint (kept as a soft mention); a category that is
  the subject of a statement ("binders done", "toner's stocked") -> no constraint; otherwise a
  bare brand mention ("Epson preferred", "same Mead line", "HP is fine") -> include.
- **LLM path** (optional): ``parse(message, llm=...)`` asks for JSON matching
  :meth:`Critique.json_schema`, validates it against the catalogue and falls back to the offline
  parse on any failure.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import re
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Protocol, Sequence

from lumenrec.data.types import Catalog, Conversation, Item
from lumenrec.errors import ConfigError, LLMError
from lumenrec.polarity import (NEG_BEFORE, NEG_BEFORE_PHRASES, Token as _Tok, clause_context, cue_after,
                                negated_before, tokenize)

__all__ = [
    "Critique",
    "CritiqueParser",
    "CritiqueParserConfig",
    "LLM",
    "constraint_consistency",
    "effective_brand",
    "normalize_brand",
]

log = logging.getLogger(__name__)


class LLM(Protocol):
    """The one LLM interface the agent speaks (implemented in lumenrec.agent.llm.backends)."""

    def generate(self, messages: list[dict], max_tokens: int, temperature: float) -> str: ...


# ----------------------------------------------------------------------------------------------
# The result
# ----------------------------------------------------------------------------------------------

SIGNALS = ("accept", "reject")
PRICE_DIRECTIONS = ("cheaper", "pricier")


@dataclass
class Critique:
    """What one shopper message asks for. Brands/categories are catalogue names, exactly spelled.

    `item_ref` is a 0-based index into the most recently shown list (-1: the last one);
    `ref_relation` says how the message relates to it ("about", "cheaper_than", "pricier_than",
    "like", "unlike"). `mentioned_brands` are soft mentions (an owned item: "ink for my Canon"),
    never used as hard filters.
    """

    text: str = ""
    original: str = ""
    include_brands: list[str] = field(default_factory=list)
    exclude_brands: list[str] = field(default_factory=list)
    include_categories: list[str] = field(default_factory=list)
    exclude_categories: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    avoid_attributes: dict[str, str] = field(default_factory=dict)
    price_direction: str | None = None
    max_price: float | None = None
    min_price: float | None = None
    item_ref: int | None = None
    ref_relation: str | None = None
    signal: str | None = None
    mentioned_brands: list[str] = field(default_factory=list)
    source: str = "offline"

    def __post_init__(self) -> None:
        if self.price_direction is not None and self.price_direction not in PRICE_DIRECTIONS:
            raise ValueError(f"Critique.price_direction must be one of {PRICE_DIRECTIONS} or None, got {self.price_direction!r}")
        if self.signal is not None and self.signal not in SIGNALS:
            raise ValueError(f"Critique.signal must be one of {SIGNALS} or None, got {self.signal!r}")

    @property
    def has_constraints(self) -> bool:
        """True when the message constrains brands, categories, attributes or price."""
        return bool(self.include_brands or self.exclude_brands or self.include_categories
                    or self.exclude_categories or self.attributes or self.avoid_attributes
                    or self.price_direction or self.max_price is not None or self.min_price is not None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Critique":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})

    @staticmethod
    def json_schema() -> dict[str, Any]:
        """The JSON schema an LLM must follow to return a critique (validated afterwards)."""
        str_list = {"type": "array", "items": {"type": "string"}}
        num = {"type": ["number", "null"]}
        return {
            "type": "object",
            "properties": {
                "include_brands": str_list,
                "exclude_brands": str_list,
                "include_categories": str_list,
                "exclude_categories": str_list,
                "attributes": {"type": "object", "additionalProperties": {"type": "string"},
                               "description": "keys: colour, size, pack"},
                "avoid_attributes": {"type": "object", "additionalProperties": {"type": "string"}},
                "price_direction": {"type": ["string", "null"], "enum": ["cheaper", "pricier", None]},
                "max_price": num,
                "min_price": num,
                "item_ref": {"type": ["integer", "null"], "description": "0-based index into the shown items, -1 = last"},
                "signal": {"type": ["string", "null"], "enum": ["accept", "reject", None]},
            },
            "additionalProperties": False,
        }


# ----------------------------------------------------------------------------------------------
# Lexicons (general English, not taken from any evaluation text)
# ----------------------------------------------------------------------------------------------

COLOURS = {
    "black", "white", "blue", "red", "green", "yellow", "orange", "purple", "pink", "brown", "gray",
    "grey", "silver", "gold", "beige", "teal", "navy", "violet", "magenta", "cyan", "turquoise",
    "tan", "ivory", "maroon", "lavender", "burgundy", "charcoal", "clear", "neon", "pastel",
    "transparent", "aqua", "lime", "berry", "cream", "bronze", "copper", "multicolor", "assorted",
}
COLOUR_ALIASES = {"grey": "gray", "transparent": "clear", "multicolour": "multicolor"}
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                "nine": 9, "ten": 10, "twelve": 12, "twenty": 20, "fifty": 50, "hundred": 100,
                "dozen": 12, "couple": 2, "pair": 2}

# Determiners/possessives: "the kodak", "my canon" refer to an item owned or shown.
DETERMINERS = {"the", "teh", "my", "that", "this", "these", "those", "our", "her", "his", "their", "your", "its"}
# A mention after "same"/"matching"/"again": include even after a determiner.
POSITIVE_BEFORE = {"same", "matching", "genuine", "real", "original", "prefer", "preferably", "only",
                   "stick", "love", "like", "want", "from", "by", "another", "more"}
# "X done", "X's stocked": the subject of a statement about something already handled.
DONE_AFTER = {"done", "set", "sorted", "handled", "stocked", "covered", "replaced", "finished",
              "check", "taken", "plenty", "enough", "in", "good", "great", "fine", "works", "working",
              "is", "are", "was", "were", "s", "have", "has", "ok", "okay", "nice", "cute", "lovely",
              "already", "for", "just", "pretty", "comfy"}
# A category after these (within 6 tokens) is the object of a purpose phrase, not the wanted thing.
PURPOSE_WORDS = {"for", "on", "to", "into", "in", "onto", "inside", "with"}
WANT_VERBS = {"get", "buy", "order", "try", "find", "see", "look", "have", "grab", "pick", "switch"}
# One-word heads that mean other things in shopper talk ("carts" = cartridges or a shopping cart).
AMBIGUOUS_HEADS = {"cart"}
SOFT_CUES = {"bonus", "better", "nice", "cool"}
FUNCTION_WORDS = {
    "a", "an", "the", "and", "or", "but", "for", "to", "of", "in", "on", "at", "with", "that", "which",
    "is", "are", "was", "were", "be", "it", "i", "me", "my", "you", "we", "they", "this", "these",
    "those", "so", "too", "pls", "please", "plz", "thanks", "now", "then", "again", "instead", "like",
    "if", "as", "from", "by", "can", "could", "would", "should", "will", "do", "does", "did", "not",
    "no", "s", "all", "any", "some", "there", "here", "just", "only", "also", "please", "maybe",
    "either", "next", "time", "this", "one", "ones", "d", "ll", "ve", "re", "m", "t", "lol", "haha",
    "since", "because", "cause", "when", "where", "while", "than", "into", "up", "down", "out", "off",
    "over", "under", "about", "around", "made", "has", "have", "had", "get", "got", "need", "want",
    "keep", "keeps", "stay", "stays", "go", "goes", "won", "work", "works", "fit", "fits",
}
# Head nouns too generic to stand for a category.
GENERIC_HEADS = {"system", "systems", "product", "products", "supply", "supplies", "accessory",
                 "accessories", "material", "materials", "device", "devices", "equipment", "other",
                 "basic", "colored", "general", "item", "items", "set", "sets", "kit", "standard",
                 "office", "school", "electronics", "furniture", "lighting", "financial", "business",
                 "personal", "display", "displays", "education", "crafts", "ink", "paper"}
# General shopping words that name a category by another word.
CATEGORY_SYNONYMS = {
    "whiteboard": ["dry erase board"], "white board": ["dry erase board"],
    "dry erase board": ["dry erase board"], "corkboard": ["bulletin board"], "cork board": ["bulletin board"],
    "sticky note": ["self-stick note"], "post it note": ["self-stick note"], "postit": ["self-stick note"],
    "cartridge": ["inkjet printer ink", "laser printer toner", "toner"], "toner": ["toner"],
    "ink cartridge": ["inkjet printer ink"], "printer ink": ["inkjet printer ink"],
    "phone": ["telephone"], "telephone": ["telephone"], "label maker": ["label printer", "label maker"],
    "pencil sharpener": ["pencil sharpener"], "sharpener": ["pencil sharpener"],
    "shredder": ["shredder"], "stapler": ["stapler"], "envelope": ["envelope"],
    "highlighter": ["highlighter"], "marker": ["marker"], "pen": ["pen"], "pencil": ["pencil"],
    "notebook": ["notebook"], "binder": ["binder"], "folder": ["folder"], "label": ["label"],
    "printer": ["printer"], "scanner": ["scanner"], "calculator": ["calculator"],
}
PSEUDO_BRANDS = {"generic", "unknown", "various", "compatible", "non oem", "compatible remanufactured ink",
                 "ink refills", "number 1 in service", "generic labels", "none", "n a"}
BRAND_CONTEXT_AFTER = {"brand", "brands", "made", "make", "ones", "again"}
BRAND_CONTEXT_BEFORE = {"by", "from", "brand"}
STOP_BRAND_TOKENS = {"the", "office", "products", "product", "brands", "brand", "corporation", "corp",
                     "inc", "co", "llc", "company", "international", "american", "and", "of", "ltd",
                     "supply", "supplies", "solutions", "industries", "group", "reg", "usa", "direct"}
# Common English words (and places) that are also brand names: always treated as ambiguous, on top
# of the brands the catalogue itself writes in lower case.
_BRAND_TRULY_COMMON = {"universal", "smart", "office", "basics", "premier", "royal", "national", "max",
                       "cross", "command", "duck", "expo", "tops", "array", "apache", "beacon", "clover",
                       "spectrum", "trimmer", "classics", "the classics", "clarity", "sharp", "aurora",
                       "arrow", "platinum", "cardinal", "master", "brother", "uni", "fisher", "cambridge",
                       "oxford", "wolverine", "winsome", "tartan", "boise", "various", "array", "compatible",
                       "generic", "welcom", "integra", "staples", "elite", "avenue", "pioneer", "target"}
_NEG_SPAN_WORDS = NEG_BEFORE | {w for p in NEG_BEFORE_PHRASES for w in p} | DETERMINERS | {"do", "does", "want", "any"}
_OTHER_BRAND_RX = re.compile(r"\b(different|another|other|new) (brand|make|manufacturer)s?\b|\bswitch(?:ing)? brands\b")
ORDINALS = {"first": 0, "1st": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2, "fourth": 3, "4th": 3,
            "fifth": 4, "5th": 4, "last": -1, "top": 0}

_TOKEN = re.compile(r"[a-z0-9]+")


def normalize_brand(name: str) -> str:
    """The matching key of a brand name: lower case, no HTML entities/marks, words joined by spaces."""
    s = re.sub(r"&[a-z]+;|[®™]", " ", name.lower())
    return " ".join(_TOKEN.findall(s.replace("&", " and ")))


def _singular(tok: str) -> str:
    if len(tok) > 4 and tok.endswith("ies"):
        return tok[:-3] + "y"
    if len(tok) > 4 and tok.endswith(("ches", "shes", "sses", "xes")):
        return tok[:-2]
    if len(tok) > 3 and tok.endswith("s") and not tok.endswith(("ss", "us", "is")):
        return tok[:-1]
    return tok


def _trigrams(s: str) -> set[str]:
    s = f"  {s} "
    return {s[i:i + 3] for i in range(len(s) - 2)}


@dataclass
class CritiqueParserConfig:
    """How tolerant the offline parser is."""

    # difflib ratio a typo must reach to count as a brand/category/colour (0.75 accepts "sharpy").
    fuzzy_threshold: float = 0.75
    # Shorter tokens are never fuzzy-matched: short words collide too easily.
    fuzzy_min_len: int = 5
    # A brand word seen this often in lower case in other items' text is a common word (needs a capital).
    common_word_min_count: int = 3
    # Tokens between a negation cue and a mention for the negation to still apply.
    negation_window: int = 4
    # Include filters name the parent of the matched category (0: the category itself); catalogue
    # taxonomies scatter one product type over sibling leaves, and a hard filter must not lose the target.
    include_parent_levels: int = 1
    # A one-word category head ("stapler") needs this many catalogue titles containing it ...
    head_min_titles: int = 2
    # ... and this share of them inside its categories, else it is too generic ("box", "sheet").
    head_min_precision: float = 0.5

    def __post_init__(self) -> None:
        if not 0.5 <= self.fuzzy_threshold <= 1.0:
            raise ConfigError("fuzzy_threshold", self.fuzzy_threshold, "must be in [0.5, 1]")
        if self.fuzzy_min_len < 3:
            raise ConfigError("fuzzy_min_len", self.fuzzy_min_len, "must be >= 3")
        if self.common_word_min_count < 1:
            raise ConfigError("common_word_min_count", self.common_word_min_count, "must be >= 1")
        if self.include_parent_levels < 0:
            raise ConfigError("include_parent_levels", self.include_parent_levels, "must be >= 0")
        if self.head_min_titles < 0:
            raise ConfigError("head_min_titles", self.head_min_titles, "must be >= 0")
        if not 0.0 <= self.head_min_precision <= 1.0:
            raise ConfigError("head_min_precision", self.head_min_precision, "must be in [0, 1]")
        if self.negation_window < 1:
            raise ConfigError("negation_window", self.negation_window, "must be >= 1")


def effective_brand(item: Item, brand_keys: dict[str, str] | None = None, max_tokens: int = 3) -> str:
    """The item's brand, or for a brand-less item the catalogue brand its title starts with."""
    if item.brand and normalize_brand(item.brand) not in PSEUDO_BRANDS:
        return item.brand
    if not brand_keys:
        return item.brand
    toks = _TOKEN.findall(normalize_brand(item.title[:60]))
    for n in range(min(max_tokens, len(toks)), 0, -1):
        key = " ".join(toks[:n])
        if key in brand_keys:
            return brand_keys[key]
    return item.brand


class CritiqueParser:
    """Offline critique parser over one catalogue's vocabulary (build once, parse many)."""

    def __init__(self, catalog: Catalog, config: CritiqueParserConfig | None = None) -> None:
        self.catalog = catalog
        self.config = config or CritiqueParserConfig()
        t0 = time.perf_counter()
        self._build()
        log.debug("critique parser vocabulary built in %.1f ms", 1000 * (time.perf_counter() - t0))

    # -- vocabulary ---------------------------------------------------------------------------
    def _build(self) -> None:
        cat = self.catalog
        # Words of the catalogue (lower case), and how often each is typed in lower case in a text:
        # a brand name written in lower case inside other items' text is an English word ("universal").
        word_counts: Counter[str] = Counter()
        lower_counts: Counter[str] = Counter()
        for it in cat:
            txt = it.title + " " + it.description[:300]
            word_counts.update(set(_TOKEN.findall(txt.lower())))
            lower_counts.update(set(re.findall(r"\b[a-z][a-z0-9]+\b", txt)))
        self.known_words = set(word_counts)

        # Brand families: key -> catalogue spellings ("scotch" -> {"Scotch", "Scotch&reg;"}).
        raw_brands = [b for b in cat.brands() if normalize_brand(b) and normalize_brand(b) not in PSEUDO_BRANDS]
        self.brand_spellings: dict[str, set[str]] = defaultdict(set)
        for b in raw_brands:
            self.brand_spellings[normalize_brand(b)].add(b)
        # canonical display name per key: the most common spelling among items
        brand_freq = Counter(it.brand for it in cat if it.brand)
        self.brand_display = {k: max(v, key=lambda s: (brand_freq[s], s)) for k, v in self.brand_spellings.items()}
        self.brand_keys = {k: self.brand_display[k] for k in self.brand_spellings}
        self.ambiguous_brand_keys: set[str] = set()
        for key in self.brand_spellings:
            if key in _BRAND_TRULY_COMMON or (" " not in key and lower_counts[key] >= self.config.common_word_min_count):
                self.ambiguous_brand_keys.add(key)
        # Mention index: token tuple -> brand keys it names. Full names, joined forms ("papermate"),
        # and a family's distinctive tokens ("bostitch" -> "stanley bostitch", "bostitch").
        self.brand_index: dict[tuple[str, ...], set[str]] = defaultdict(set)
        for key in self.brand_spellings:
            toks = tuple(key.split())
            self.brand_index[toks].add(key)
            if len(toks) > 1:
                self.brand_index[("".join(toks),)].add(key)
        for key in self.brand_spellings:
            toks = key.split()
            if len(toks) > 1:
                for i, t in enumerate(toks):
                    if (t,) in self.brand_index and t not in STOP_BRAND_TOKENS:
                        self.brand_index[(t,)].add(key)  # "swingline" also names "swingline gbc"
        self.max_brand_len = max((len(k) for k in self.brand_index), default=1)
        # Families: a brand key -> all keys whose tokens start with it ("five star" family).
        self.brand_family: dict[str, set[str]] = {k: {k} for k in self.brand_spellings}
        for k in self.brand_spellings:
            for k2 in self.brand_spellings:
                if k2 != k and (k2.startswith(k + " ") or k2.endswith(" " + k)) and k.split()[0] not in STOP_BRAND_TOKENS:
                    self.brand_family[k].add(k2)

        # Categories: phrase (singular tokens) -> category names; head nouns likewise.
        self.cat_paths: dict[str, set[tuple[str, ...]]] = defaultdict(set)
        for it in cat:
            for i, c in enumerate(it.categories):
                self.cat_paths[c].add(tuple(it.categories[: i + 1]))
        self.cat_phrase: dict[tuple[str, ...], set[str]] = defaultdict(set)
        for c in self.cat_paths:
            for part in re.split(r"\s*(?:&|,|:|/|\band\b)\s*", c.lower()):
                toks = tuple(_singular(t) for t in _TOKEN.findall(part.replace("-", " ")))
                if not toks:
                    continue
                self.cat_phrase[toks].add(c)
                head = toks[-1]
                if head not in GENERIC_HEADS:
                    self.cat_phrase[(head,)].add(c)
                    if len(toks) >= 2:
                        self.cat_phrase[toks[-2:]].add(c)
                # "dry erase boards" also indexed as "dry erase board"; "self stick note" etc.
        # A one-word head stands for its categories only where the catalogue agrees: most items whose
        # title has the word sit in those categories ("stapler" yes; "box", "sheet", "card" no).
        title_heads: dict[str, list[int]] = defaultdict(list)
        for idx, it in enumerate(cat):
            for w in {_singular(t) for t in _TOKEN.findall(it.title.lower())}:
                title_heads[w].append(idx)
        self.head_precision: dict[str, float] = {}
        for key in [k for k in self.cat_phrase if len(k) == 1]:
            names = self.cat_phrase[key]
            idxs = title_heads.get(key[0], [])
            hits = sum(1 for j in idxs if names & set(cat[j].categories))
            self.head_precision[key[0]] = hits / len(idxs) if idxs else 0.0
            if len(idxs) < self.config.head_min_titles or hits / len(idxs) < self.config.head_min_precision \
                    or key[0] in AMBIGUOUS_HEADS:
                del self.cat_phrase[key]
        for syn, targets in CATEGORY_SYNONYMS.items():
            stoks = tuple(_singular(t) for t in _TOKEN.findall(syn))
            names: set[str] = set()
            for tgt in targets:
                ttoks = tuple(_singular(t) for t in _TOKEN.findall(tgt.replace("-", " ")))
                names |= self.cat_phrase.get(ttoks, set())
                if not names:  # fall back: any category whose name contains the phrase
                    names |= {c for c in self.cat_paths if tgt in c.lower()}
            if names:
                self.cat_phrase[stoks] = set(self.cat_phrase.get(stoks, set())) | names
        self.max_cat_len = max((len(k) for k in self.cat_phrase), default=1)

        # Fuzzy index over single-token brand and category words and colours.
        self._fuzzy_targets: dict[str, tuple[str, str]] = {}
        for toks in self.brand_index:  # brand names typed as one word; not joined forms ("packit")
            if len(toks) == 1 and len(toks[0]) >= self.config.fuzzy_min_len and toks[0] in self.brand_spellings \
                    and toks[0] not in self.ambiguous_brand_keys:
                self._fuzzy_targets.setdefault(toks[0], ("brand", toks[0]))
        for toks in self.cat_phrase:
            if len(toks) == 1 and len(toks[0]) >= self.config.fuzzy_min_len:
                self._fuzzy_targets.setdefault(toks[0], ("cat", toks[0]))
        for c in COLOURS:
            if len(c) >= self.config.fuzzy_min_len:
                self._fuzzy_targets.setdefault(c, ("colour", c))
        self._tri_index: dict[str, set[str]] = defaultdict(set)
        for w in self._fuzzy_targets:
            for g in _trigrams(w):
                self._tri_index[g].add(w)
        self._fuzzy_cache: dict[str, str | None] = {}
        # words never fuzzy-corrected: known catalogue words, function words, lexicon words
        self._no_fuzzy = self.known_words | FUNCTION_WORDS | set(NUMBER_WORDS) | COLOURS | DONE_AFTER | NEG_BEFORE

    def _fuzzy(self, tok: str) -> str | None:
        """The vocabulary word a typo most likely means, or None."""
        if tok in self._fuzzy_cache:
            return self._fuzzy_cache[tok]
        best = None
        if len(tok) >= self.config.fuzzy_min_len and tok not in self._no_fuzzy and _singular(tok) not in self._no_fuzzy \
                and not tok.isdigit():
            cands: Counter[str] = Counter()
            for g in _trigrams(tok):
                for w in self._tri_index.get(g, ()):
                    cands[w] += 1
            best_r = self.config.fuzzy_threshold
            for w, _ in cands.most_common(12):
                if w[:2] != tok[:2] or abs(len(w) - len(tok)) > 2:
                    continue
                r = difflib.SequenceMatcher(None, tok, w).ratio()
                if r >= best_r:
                    best, best_r = w, r
        self._fuzzy_cache[tok] = best
        return best

    # -- tokenising ---------------------------------------------------------------------------
    def _tokenize(self, message: str) -> list[_Tok]:
        return tokenize(message)

    # -- parsing ------------------------------------------------------------------------------
    def parse(self, message: str, shown: Sequence[str] | None = None, llm: LLM | None = None) -> Critique:
        """Parse one message. `shown` are the item ids shown last (resolves "cheaper than that");
        `llm` (optional) is asked first, with the offline parse as the fallback on any failure."""
        if not isinstance(message, str):
            raise TypeError(f"message must be a str, got {type(message).__name__}")
        offline = self._parse_offline(message, shown)
        if llm is None:
            return offline
        try:
            return self._parse_llm(message, llm, offline)
        except Exception as e:  # any failure of the LLM path -> the offline parse
            log.warning("LLM critique parse failed (%s); using the offline parse", e)
            return offline

    def _parse_offline(self, message: str, shown: Sequence[str] | None) -> Critique:
        toks = self._tokenize(message)
        low = [t.low for t in toks]
        n = len(toks)
        crit = Critique(original=message)
        drop_spans: list[tuple[int, int]] = []  # token ranges removed from the retriever text
        used = [False] * n

        # 1) brands (longest match first)
        i = 0
        while i < n:
            hit = None
            for L in range(min(self.max_brand_len, n - i), 0, -1):
                key = tuple(low[i:i + L])
                if key in self.brand_index and all(toks[i + k].clause == toks[i].clause for k in range(L)):
                    hit = (L, self.brand_index[key])
                    break
            if hit is None and len(low[i]) >= self.config.fuzzy_min_len:
                fz = self._fuzzy(low[i])
                if fz is not None and self._fuzzy_targets[fz][0] == "brand":
                    hit = (1, self.brand_index[(fz,)])
            if hit is None:
                i += 1
                continue
            L, keys = hit
            if not self._brand_mention_ok(toks, i, L, keys):
                i += L
                continue
            pol = self._polarity(toks, i, L, kind="brand")
            names = sorted({self.brand_display[k2] for k in keys for k2 in self.brand_family.get(k, {k})})
            if pol == "exclude":
                crit.exclude_brands.extend(n_ for n_ in names if n_ not in crit.exclude_brands)
                drop_spans.append(self._neg_span(toks, i, L))
            elif pol == "include":
                crit.include_brands.extend(n_ for n_ in names if n_ not in crit.include_brands)
            else:
                crit.mentioned_brands.extend(n_ for n_ in names if n_ not in crit.mentioned_brands)
            for k in range(i, i + L):
                used[k] = True
            i += L
        # "a different brand", "switch brands": the brands the shopper only referred to are out
        if crit.mentioned_brands and _OTHER_BRAND_RX.search(message.lower()):
            crit.exclude_brands.extend(b for b in crit.mentioned_brands if b not in crit.exclude_brands and b not in crit.include_brands)
        crit.include_brands = [b for b in crit.include_brands if b not in crit.exclude_brands]

        # 2) categories
        sing = [_singular(t) for t in low]
        i = 0
        while i < n:
            if used[i]:
                i += 1
                continue
            hit = None
            for L in range(min(self.max_cat_len, n - i), 0, -1):
                key = tuple(sing[i:i + L])
                if key in self.cat_phrase and not any(used[i:i + L]):
                    hit = (L, self.cat_phrase[key])
                    break
            if hit is None and len(low[i]) >= self.config.fuzzy_min_len:
                fz = self._fuzzy(sing[i])
                if fz is not None and self._fuzzy_targets[fz][0] == "cat":
                    hit = (1, self.cat_phrase[(fz,)])
            if hit is None:
                i += 1
                continue
            L, names = hit
            nxt = low[i + L] if i + L < n else ""
            nxt_same_clause = i + L < n and toks[i + L].clause == toks[i].clause
            # a modifier ("paper cutter", "label roll"), not the head of its noun phrase: skip
            if nxt_same_clause and nxt and nxt not in FUNCTION_WORDS and nxt not in DONE_AFTER and not nxt.isdigit() \
                    and nxt not in COLOURS and (nxt,) not in self.cat_phrase:
                i += L
                continue
            pol = self._polarity(toks, i, L, kind="category")
            if pol == "exclude":  # exclude narrowly: the most specific of the named categories
                crit.exclude_categories.extend(c for c in sorted(self._leaf_categories(names)) if c not in crit.exclude_categories)
                drop_spans.append(self._neg_span(toks, i, L))
            elif pol == "include":  # include broadly: one level up (sibling leaves are often mixed)
                wide_set = self._broaden(self._leaf_categories(names))
                crit.include_categories.extend(c for c in sorted(wide_set) if c not in crit.include_categories)
            for k in range(i, i + L):
                used[k] = True
            i += L
        crit.include_categories = [c for c in crit.include_categories if c not in crit.exclude_categories]

        # 3) attributes, price, references, signals
        self._attributes(message, toks, used, crit, drop_spans)
        self._price(message, low, crit)
        self._reference(message, low, crit, shown)
        self._signal(message.lower(), low, crit)
        crit.text = self._free_text(message, toks, drop_spans)
        return crit

    def _brand_mention_ok(self, toks: list[_Tok], i: int, L: int, keys: set[str]) -> bool:
        """Ambiguous brands ("Universal", "Royal") count only capitalised mid-sentence or in brand context."""
        if not any(k in self.ambiguous_brand_keys for k in keys):
            return True
        orig = toks[i].orig
        before = toks[i - 1].low if i > 0 else ""
        after = toks[i + L].low if i + L < len(toks) else ""
        if before in BRAND_CONTEXT_BEFORE or after in BRAND_CONTEXT_AFTER:
            return True
        # typed with a capital, not at the start of a sentence, not shouted in all caps
        return bool(orig) and orig[0].isupper() and not orig.isupper() and not toks[i].sent_start

    def _polarity(self, toks: list[_Tok], i: int, L: int, kind: str) -> str:
        """'include', 'exclude' or 'mention' for the mention toks[i:i+L] (see the module docstring)."""
        before, after = clause_context(toks, i, L, self.config.negation_window)
        # negation before (nearest cue within the window, not cancelled: "don't mind HP")
        if negated_before(before, kind):
            return "exclude"
        cue = cue_after(after)
        if cue == "complaint":
            # a complaint about a brand drops the brand; about a product type ("the remover is
            # useless") it asks for a better one of the same type: no constraint
            return "exclude" if kind == "brand" else "mention"
        if cue == "prefer":  # "X instead", "X again" ("instead of X" is a negation before)
            return "include"
        clause = toks[i].clause
        prev = before[-1] if before else ""
        prev2 = before[-2] if len(before) >= 2 else ""
        positive = prev in POSITIVE_BEFORE or prev2 in {"same", "matching", "genuine", "real"}
        if kind == "brand":
            if positive:
                return "include"
            if prev in DETERMINERS or prev2 in DETERMINERS and prev not in {"a", "an"}:
                return "mention"
            if prev in {"for", "with", "fits", "fit", "compatible"}:
                return "mention"
            if after and after[0] in {"done", "set", "sorted", "handled", "stocked", "covered", "replaced", "finished", "carts", "cartridges"} \
                    and any(a in {"done", "set", "sorted", "handled", "stocked", "covered", "replaced", "finished"} for a in after[:3]):
                return "mention"
            return "include"
        # categories: need a want-reading; subjects of a statement, owned things and objects of a
        # purpose phrase ("labels for my printer", "tape for sealing envelopes") are mentions
        if prev in DETERMINERS or prev2 in DETERMINERS or prev in {"for", "with", "fits", "fit"}:
            return "mention"
        wide = [t.low for t in toks[max(0, i - 6):i] if t.clause == clause]
        for j, w in enumerate(wide):
            if w in PURPOSE_WORDS and not (w == "to" and j + 1 < len(wide) and wide[j + 1] in WANT_VERBS):
                return "mention"
        if prev == "like" or "than" in wide:  # "like folders but ...", "sturdier than a folder"
            return "mention"
        if after and after[0] in DONE_AFTER:
            return "mention"
        if any(a in SOFT_CUES for a in after[:4]) and any(a in {"even", "would", "bonus"} for a in after[:5]):
            return "mention"
        if prev in {"got", "have", "own", "bought", "ordered"} or prev2 in {"got", "have", "own", "bought"}:
            return "mention"
        return "include"

    def _neg_span(self, toks: list[_Tok], i: int, L: int) -> tuple[int, int]:
        """The token range to drop from the retriever text: the mention and its negation cue."""
        j = i
        while j > 0 and i - j < self.config.negation_window and toks[j - 1].clause == toks[i].clause \
                and toks[j - 1].low in _NEG_SPAN_WORDS:
            j -= 1
        return (j, i + L)

    def _minimal_categories(self, names: Iterable[str]) -> set[str]:
        """Drop categories whose every path already passes through another category of the set."""
        names = set(names)
        out = set()
        for c in names:
            paths = self.cat_paths.get(c, set())
            covered = paths and all(any(a in names for a in p[:-1]) for p in paths)
            if not covered:
                out.add(c)
        return out

    def _broaden(self, names: Iterable[str]) -> set[str]:
        """Each category's parent (config.include_parent_levels up), never above path depth 1."""
        out: set[str] = set()
        for c in names:
            for p in self.cat_paths.get(c, ()):
                depth = max(len(p) - 1 - self.config.include_parent_levels, min(1, len(p) - 1))
                out.add(p[depth])
        return self._minimal_categories(out)

    def _leaf_categories(self, names: Iterable[str]) -> set[str]:
        """Keep categories that are not an ancestor of another category of the set."""
        names = set(names)
        ancestors = {a for c in names for p in self.cat_paths.get(c, ()) for a in p[:-1]}
        return names - ancestors

    def _attributes(self, message: str, toks: list[_Tok], used: list[bool], crit: Critique,
                    drop_spans: list[tuple[int, int]]) -> None:
        low = [t.low for t in toks]
        for i, t in enumerate(low):
            c = t if t in COLOURS else None
            if c is None and len(t) >= self.config.fuzzy_min_len and t not in self._no_fuzzy:
                fz = self._fuzzy(t)
                if fz is not None and self._fuzzy_targets[fz][0] == "colour":
                    c = fz
            if c is None or used[i]:
                continue
            c = COLOUR_ALIASES.get(c, c)
            pol = self._polarity(toks, i, 1, kind="brand")
            # a colour right before an owned/shown thing ("the blue one") is just a mention
            prev = low[i - 1] if i else ""
            if pol == "exclude":
                crit.avoid_attributes["colour"] = ",".join(filter(None, [crit.avoid_attributes.get("colour"), c]))
                drop_spans.append(self._neg_span(toks, i, 1))
            elif prev in DETERMINERS and pol != "include":
                continue
            elif "colour" not in crit.attributes:
                crit.attributes["colour"] = c
            elif c not in crit.attributes["colour"].split(","):
                crit.attributes["colour"] += "," + c
        text = message.lower()
        m = re.search(r"\b(\d+(?:\.\d+)?|\d+\s*/\s*\d+|\d+\s+\d+/\d+)\s*(?:-|\s)?(inch(?:es)?|in\b|\"|”|mm|cm|ft|foot|feet)", text)
        if m:
            unit = {"in": "inch", "inches": "inch", '"': "inch", "”": "inch", "feet": "ft", "foot": "ft"}.get(m.group(2), m.group(2))
            crit.attributes["size"] = f"{m.group(1).replace(' ', '')} {unit}"
        m = re.search(r"\b(\d+(?:\.\d+)?)\s*(?:x|by)\s*(\d+(?:\.\d+)?)\b", text)
        if m and "size" not in crit.attributes:
            crit.attributes["size"] = f"{m.group(1)}x{m.group(2)}"
        m = re.search(r"\b(letter|legal|tabloid|a4|a5|half[- ]size|half[- ]sheet|pocket)[- ]?(?:size|sized)?\b", text)
        if m and "paper_size" not in crit.attributes and m.group(1) in {"letter", "legal", "tabloid", "a4", "a5"}:
            crit.attributes["paper_size"] = m.group(1)
        for word in ("small", "large", "big", "tiny", "huge", "compact", "mini", "medium", "slim", "thin", "wide", "narrow"):
            # "nothing huge", "not too big": a negated size word is no wish for that size
            if re.search(rf"\b(?:nothing|not|no|never)\s+(?:too\s+|so\s+|very\s+|that\s+)?{word}\b", text):
                continue
            if re.search(rf"\b{word}\b", text) and "size_word" not in crit.attributes:
                crit.attributes["size_word"] = {"big": "large", "huge": "large", "tiny": "small", "mini": "small", "thin": "slim"}.get(word, word)
        pack = None
        m = re.search(r"\b(\d+)\s*(?:-|\s)?(?:pack|pk|count|ct|pcs|pieces|rolls|pads|sheets|pens|pencils|markers|boxes|labels|envelopes)\b", text) \
            or re.search(r"\b(?:pack|box|set|case|bag) of (?:about |around |like )?(\d+)\b", text) \
            or re.search(r"\b(\d+)\s*(?:-)?pack\b", text)
        if m:
            pack = m.group(1)
        else:
            m = re.search(r"\b(?:a|one|half a)\s+(dozen|couple|pair)\b|\b(two|three|four|five|six|ten|twelve|twenty|fifty|hundred)\s+(?:pack|of (?:each|them)|rolls|boxes|pens|packs)\b", text)
            if m:
                w = m.group(1) or m.group(2)
                pack = str(NUMBER_WORDS[w] // (2 if "half a" in m.group(0) else 1))
        if pack:
            crit.attributes["pack"] = pack
        if re.search(r"\b(generic|compatible|knock[- ]?offs?|off[- ]brand|third[- ]party|remanufactured)\b", text) \
                and not re.search(r"\b(not|no|don't|dont|never)\s+(?:\w+\s+)?(generic|compatible|knock[- ]?offs?|off[- ]brand|third[- ]party)\b", text):
            crit.attributes["oem"] = "no"
        elif re.search(r"\b(genuine|original|oem|real\s+\w+\s+cartridges?)\b", text):
            crit.attributes["oem"] = "yes"

    _PRICE_RX = re.compile(r"(under|below|less than|no more than|at most|max(?:imum)?|up to|cheaper than|over|above|more than|at least|min(?:imum)?)\s*(?:of\s*)?(?:about\s*|around\s*)?\$?\s*(\d+(?:\.\d+)?)\s*(?:\$|dollars|bucks|usd)?")

    _MAX_PRICE = 1e7  # larger amounts ("under $999...9") are not a usable bound: ignored, not inf

    @classmethod
    def _money(cls, s: str) -> float | None:
        v = float(s)
        return v if math.isfinite(v) and 0 <= v <= cls._MAX_PRICE else None

    def _price(self, message: str, low: list[str], crit: Critique) -> None:
        text = message.lower()
        for m in self._PRICE_RX.finditer(text):
            if "$" not in m.group(0) and not re.search(r"dollars|bucks|usd", m.group(0)) and not re.search(r"\b(price|cost|budget|spend|pay)", text):
                continue
            v = self._money(m.group(2))
            if v is None:
                continue
            if m.group(1) in {"over", "above", "more than", "at least", "min", "minimum"}:
                crit.min_price = v
            else:
                crit.max_price = v
        m = re.search(r"between\s*\$?(\d+(?:\.\d+)?)\s*(?:and|-|to)\s*\$?(\d+(?:\.\d+)?)", text)
        if m and (re.search(r"\$|dollars|bucks|price|budget", text)):
            crit.min_price, crit.max_price = self._money(m.group(1)), self._money(m.group(2))
        m = re.search(r"\bbudget (?:is |of )?\$?(\d+(?:\.\d+)?)", text)
        if m and crit.max_price is None:
            crit.max_price = self._money(m.group(1))
        if re.search(r"\b(cheaper|cheapest|less expensive|lower price|budget|inexpensive|affordable|cheap|not (?:so |too )?expensive|more affordable|save money|bargain|too (?:expensive|pricey)|costs? too much)\b", text):
            crit.price_direction = "cheaper"
        elif re.search(r"\b(pricier|more expensive|higher[- ]end|premium|fancier|splurge|luxury|top of the line|best quality|higher quality|nicer)\b", text):
            crit.price_direction = "pricier"

    def _reference(self, message: str, low: list[str], crit: Critique, shown: Sequence[str] | None) -> None:
        text = message.lower()
        ref = None
        m = re.search(r"(?:#|number|no\.|item|option)\s*(\d{1,2})\b", text)
        if m:
            ref = int(m.group(1)) - 1
        else:
            m = re.search(r"\b(first|1st|second|2nd|third|3rd|fourth|4th|fifth|5th|last|top)\s+(one|item|option|pick|choice|suggestion|recommendation)\b", text) \
                or re.search(r"\bthe\s+(first|second|third|fourth|fifth|last)\b", text)
            if m:
                ref = ORDINALS[m.group(1)]
            elif re.search(r"\b(that one|this one|that|it|this|those|these|the one you)\b", text) and \
                    re.search(r"\b(than that|than this|than it|like that|like this|like it|that one|this one|not that|not this|about it|about that|about this|the one you|why (?:that|this|it))\b", text):
                ref = 0
        if ref is not None and shown is not None and len(shown):
            if ref >= len(shown):
                ref = None
            elif ref < 0:
                ref = len(shown) + ref
        crit.item_ref = ref
        if ref is None:
            return
        if re.search(r"cheaper than|less expensive than|lower price than|less than (?:that|this|it)", text):
            crit.ref_relation, crit.price_direction = "cheaper_than", "cheaper"
        elif re.search(r"pricier than|more expensive than|better than|nicer than", text):
            crit.ref_relation = "pricier_than"
            crit.price_direction = crit.price_direction or "pricier"
        elif re.search(r"\b(why|explain|tell me (?:more )?about|what about|how about|details|what makes)\b", text):
            crit.ref_relation = "about"
        elif re.search(r"\b(like|similar to|more like)\b", text):
            crit.ref_relation = "like"
        elif re.search(r"\b(not|no|don't|dont|unlike|different)\b", text):
            crit.ref_relation = "unlike"

    _ACCEPT_RX = re.compile(r"\b(i'?ll take (?:it|that|this|the|one)|i'?ll buy|i'll get (?:it|that|this|the)|add (?:it|that|this)? ?to (?:my )?cart|sold\b|that'?s (?:the one|perfect|it)|perfect[,.! ]|\bperfect$|sounds good|looks good|love it|i'?ll go with|let'?s go with|yes,? please|deal\b|buy (?:it|that|this)|order (?:it|that|this)|works for me|great,? thanks)")
    _REJECT_RX = re.compile(r"^\s*(no|nope|nah)\b[.,! ]*(thanks|thank you)?[.! ]*$|\b(no thanks|no thank you|not that one|not this one|not that|don'?t like (?:it|that|this|them|those)|not for me|not interested|not quite|pass on (?:it|that|this)|none of (?:these|those|them)|not what i(?:'m| am) looking for|i'?ll pass|meh|something else|anything else|other options|(?:show me )?(?:some )?(?:other|different) (?:ones|options|items|picks))\b")

    def _signal(self, text: str, low: list[str], crit: Critique) -> None:
        if self._REJECT_RX.search(text):
            crit.signal = "reject"
            return
        m = self._ACCEPT_RX.search(text + " ")
        # "not sold on the samsung", "never perfect": a negated acceptance is none; a message that asks
        # for other things (brands, categories) is a new request, not a "yes" to what was shown
        if m and not re.search(r"\b(?:not|never|isn'?t|wasn'?t|no)\s+(?:\w+\s+)?$", text[: m.start()]) \
                and not (crit.exclude_brands or crit.include_brands or crit.include_categories or crit.exclude_categories):
            crit.signal = "accept"

    def _free_text(self, message: str, toks: list[_Tok], drop_spans: list[tuple[int, int]]) -> str:
        """The message minus excluded mentions and their negation cues (for the retriever)."""
        if not drop_spans:
            return " ".join(message.split())
        cut = []
        for a, b in drop_spans:
            starts = [toks[k].start for k in range(a, b) if toks[k].start >= 0]
            ends = [toks[k].end for k in range(a, b) if toks[k].end >= 0]
            if starts and ends:
                cut.append((min(starts), max(ends)))
        out, pos = [], 0
        for a, b in sorted(cut):
            if a >= pos:
                out.append(message[pos:a])
                pos = b
        out.append(message[pos:])
        return " ".join("".join(out).split())

    # -- LLM path ---------------------------------------------------------------------------
    def _parse_llm(self, message: str, llm: LLM, offline: Critique) -> Critique:
        system = ("You turn a shopper's message into JSON constraints for an office-products catalogue. "
                  "Answer with ONE JSON object and nothing else, following this schema: "
                  + json.dumps(Critique.json_schema()) +
                  " Use brand and category names exactly as the shopper means them; leave lists empty when unsure.")
        raw = llm.generate([{"role": "system", "content": system}, {"role": "user", "content": message}],
                           max_tokens=300, temperature=0.0)
        if not isinstance(raw, str):
            raise LLMError(f"LLM returned {type(raw).__name__}, expected str")
        m = re.search(r"\{.*\}", raw, flags=re.S)
        if not m:
            raise LLMError(f"no JSON object in the LLM answer: {raw[:80]!r}")
        data = json.loads(m.group(0))
        if not isinstance(data, dict):
            raise LLMError("the LLM JSON is not an object")
        return self.validate_llm_output(data, message, offline)

    def product_words(self, text: str) -> set[str]:
        """The words of `text` that name a product type of this catalogue (category head nouns, singular):
        "Canon printer ink, pack of 2" -> {"printer", "ink"}; "not BIC again, cheaper" -> set()."""
        toks = [_singular(t) for t in _TOKEN.findall((text or "").lower().replace("-", " "))]
        return {t for t in toks if (t,) in self.cat_phrase and t not in GENERIC_HEADS}

    def canonical_brand(self, name: str) -> list[str]:
        """Catalogue spellings a brand name from outside (an LLM, a user) stands for; [] if unknown."""
        key = normalize_brand(name)
        keys = self.brand_index.get(tuple(key.split()), set()) or self.brand_index.get((key.replace(" ", ""),), set())
        if not keys and key:
            fz = self._fuzzy(key.replace(" ", ""))
            if fz is not None and self._fuzzy_targets[fz][0] == "brand":
                keys = self.brand_index[(fz,)]
        return sorted({self.brand_display[k2] for k in keys for k2 in self.brand_family.get(k, {k})})

    def canonical_category(self, name: str) -> list[str]:
        if name in self.cat_paths:
            return [name]
        toks = tuple(_singular(t) for t in _TOKEN.findall(name.lower().replace("-", " ")))
        return sorted(self._minimal_categories(self.cat_phrase.get(toks, set())))

    def validate_llm_output(self, data: dict[str, Any], message: str, offline: Critique) -> Critique:
        """Check types, map names onto the catalogue (unknown ones dropped), keep offline text/refs."""
        def str_list(key: str) -> list[str]:
            v = data.get(key) or []
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise LLMError(f"field {key!r} must be a list of strings, got {v!r}")
            return v

        def num(key: str) -> float | None:
            v = data.get(key)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise LLMError(f"field {key!r} must be a non-negative number or null, got {v!r}")
            return float(v)

        def uniq(xs: Iterable[str]) -> list[str]:
            return list(dict.fromkeys(xs))

        unknown = set(data) - set(Critique.json_schema()["properties"])
        if unknown:
            raise LLMError(f"unknown fields {sorted(unknown)}")
        inc_b = uniq(b for x in str_list("include_brands") for b in self.canonical_brand(x))
        exc_b = uniq(b for x in str_list("exclude_brands") for b in self.canonical_brand(x))
        inc_c = uniq(c for x in str_list("include_categories") for c in self.canonical_category(x))
        exc_c = uniq(c for x in str_list("exclude_categories") for c in self.canonical_category(x))
        attrs: dict[str, str] = {}
        for key in ("attributes", "avoid_attributes"):
            v = data.get(key) or {}
            if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, (str, int, float)) for k, x in v.items()):
                raise LLMError(f"field {key!r} must be an object of strings, got {v!r}")
        pd = data.get("price_direction")
        if pd not in (None, "cheaper", "pricier"):
            raise LLMError(f"price_direction must be cheaper/pricier/null, got {pd!r}")
        sig = data.get("signal")
        if sig not in (None, "accept", "reject"):
            raise LLMError(f"signal must be accept/reject/null, got {sig!r}")
        ref = data.get("item_ref")
        if ref is not None and (isinstance(ref, bool) or not isinstance(ref, int)):
            raise LLMError(f"item_ref must be an integer or null, got {ref!r}")
        attrs = {str(k): str(v) for k, v in (data.get("attributes") or {}).items()}
        avoid = {str(k): str(v) for k, v in (data.get("avoid_attributes") or {}).items()}
        return Critique(
            text=offline.text, original=message,
            include_brands=[b for b in inc_b if b not in exc_b], exclude_brands=exc_b,
            include_categories=[c for c in inc_c if c not in exc_c], exclude_categories=exc_c,
            attributes=attrs, avoid_attributes=avoid, price_direction=pd,
            max_price=num("max_price"), min_price=num("min_price"),
            item_ref=ref if ref is not None else offline.item_ref,
            ref_relation=offline.ref_relation, signal=sig,
            mentioned_brands=offline.mentioned_brands, source="llm",
        )


# ----------------------------------------------------------------------------------------------
# Measuring: are the parsed constraints consistent with the item the shopper actually bought?
# ----------------------------------------------------------------------------------------------

def constraint_consistency(conversations: Sequence[Conversation], catalog: Catalog,
                           parser: CritiqueParser | None = None) -> dict[str, Any]:
    """How often the brand/category constraints parsed from each critique would exclude its target.

    An error is: the target's brand excluded; include_brands given without the target's brand;
    a target category (any level of its path) excluded; include_categories given with none of the
    target's path in it. The target brand is :func:`effective_brand` (the title's leading brand
    for brand-less items). Returns counts, rates, the parse latency and the failing cases.
    """
    parser = parser or CritiqueParser(catalog)
    n = with_constraint = with_brand = with_cat = errors = 0
    err_kinds: Counter[str] = Counter()
    failures: list[dict[str, Any]] = []
    times: list[float] = []
    for conv in conversations:
        text = conv.critique
        if not text or conv.target is None or conv.target not in catalog:
            continue
        n += 1
        t0 = time.perf_counter()
        c = parser.parse(text)
        times.append(time.perf_counter() - t0)
        item = catalog.get(conv.target)
        brand = effective_brand(item, parser.brand_keys)
        path = set(item.categories)
        kinds = []
        if brand and brand in c.exclude_brands:
            kinds.append("exclude_brand")
        if c.include_brands and brand not in c.include_brands:
            kinds.append("include_brand")
        if path & set(c.exclude_categories):
            kinds.append("exclude_category")
        if c.include_categories and not (path & set(c.include_categories)):
            kinds.append("include_category")
        has_b = bool(c.include_brands or c.exclude_brands)
        has_c = bool(c.include_categories or c.exclude_categories)
        with_brand += has_b
        with_cat += has_c
        with_constraint += has_b or has_c
        if kinds:
            errors += 1
            err_kinds.update(kinds)
            failures.append({"critique": text, "target": conv.target, "target_brand": brand,
                             "target_categories": item.categories, "errors": kinds,
                             "parsed": {k: getattr(c, k) for k in ("include_brands", "exclude_brands", "include_categories", "exclude_categories")}})
    import numpy as np

    t = np.array(times) * 1000 if times else np.zeros(1)
    return {
        "n": n,
        "with_constraint": with_constraint,
        "with_brand_constraint": with_brand,
        "with_category_constraint": with_cat,
        "errors": errors,
        "error_rate": errors / n if n else 0.0,
        "error_rate_among_constrained": errors / with_constraint if with_constraint else 0.0,
        "error_kinds": dict(err_kinds),
        "parse_ms_p50": float(np.percentile(t, 50)),
        "parse_ms_p95": float(np.percentile(t, 95)),
        "failures": failures,
    }
