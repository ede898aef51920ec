"""REGEN-style training critiques, synthesised from catalogue facts of consecutive purchases.

REGEN asks an LLM to write, for two consecutive purchases (prev -> next) in the same category, the
shopper's request that steers from prev to next. We have no LLM at training time, so this module
builds such requests from what the catalogue knows about the two items: brand (a switch, often
with a negation: "not Fellowes again"), item type (the most specific category: "I need labels
now"), colour, pack size / count, paper size, and use-case words from the next item's title.
Each facet kind has several phrasings, some lowercase and casual, some with typos, some vague,
so that a model trained on them does not latch onto one template.

Rules that keep the training signal honest (and match the dev set's own rules):
- produced only for TRAINING sequences; never from the dev conversations;
- never paste the target's title, nor any model-number-like token from it (letters+digits mixed);
- deterministic given the seed (a `random.Random` seeded per pair from the config seed).
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from lumenrec.data.types import Catalog, Item
from lumenrec.errors import ConfigError

__all__ = ["CritiqueSynthConfig", "CritiqueExample", "ItemFacets", "extract_facets", "synthesize_critique",
           "synthesize_examples", "MODEL_NUMBER"]

log = logging.getLogger(__name__)

COLOURS = ("black", "white", "blue", "red", "green", "yellow", "pink", "purple", "orange", "gray", "grey",
           "silver", "gold", "brown", "teal", "clear", "navy", "beige", "assorted", "neon", "pastel", "ivory")
_COLOUR_RE = re.compile(r"\b(" + "|".join(COLOURS) + r")\b", re.I)
# "12 Pens", "8 Pack", "Pack of 5", "100 Count", "100-count", "5-Pack", "Box of 12", "3 Rolls", "6 pads"
_PACK_RE = re.compile(r"\b(?:(?:pack|box|set|case|carton) of (\d{1,4})|(\d{1,4})[ -]?(?:pack|pk|count|ct|pcs|pieces|sheets|"
                      r"rolls?|pads?|pens?|pencils?|markers?|labels?|envelopes?|sets?|boxes|cartridges?|tabs?|dividers?|"
                      r"folders?|sheet|per pack|/pack))\b", re.I)
_SIZE_RE = re.compile(r"\b(letter|legal|ledger|tabloid|a4|jumbo|mini|small|medium|large|x-large|compact|"
                      r"\d+(?:\.\d+)?\s?(?:x|by)\s?\d+(?:\.\d+)?(?:\s?(?:inch(?:es)?|in|\"|''))?)\b", re.I)
# A token mixing letters and digits (or a long digit run) looks like a model number: never copy one.
MODEL_NUMBER = re.compile(r"\b(?=[A-Za-z0-9-]*\d)(?=[A-Za-z0-9-]*[A-Za-z])[A-Za-z0-9-]{3,}\b|\b\d{5,}\b")
_DIMS = re.compile(r"\d+(?:\.\d+)?x\d+(?:\.\d+)?", re.I)
_NO_BRAND = {"unknown", "generic", "n/a", "na", "none", "various"}
_WORD = re.compile(r"[a-z][a-z'-]+")
_STOP = set("""a an the and or of for with to in on by from at as is it this that these those your you our
new pack box set count sheets inch inches size color colors colour assorted black white blue red green each
per pcs piece pieces item items product products brand office school supplies accessories series style
quality premium ultra plus pro standard""".split())


@dataclass
class CritiqueSynthConfig:
    """How training critiques are produced."""

    seed: int = 0  # everything is deterministic given this seed
    # Critiques per (prev, next) pair: several phrasings of the same move teach invariance to wording.
    variants: int = 2
    # REGEN only writes critiques for "sufficiently similar" consecutive purchases (same top category).
    same_top_category: bool = True
    # Probabilities of style perturbations, roughly the dev set's mix (~10% typos, many casual).
    p_lowercase: float = 0.5
    p_typo: float = 0.1
    p_vague: float = 0.08
    p_mention_previous: float = 0.35  # open by naming the previous item's type, as the REGEN/dev critiques often do
    # Up to this many facet phrases are joined into one critique (the dev critiques name 1-3 things).
    max_facets: int = 3

    def __post_init__(self) -> None:
        if self.variants < 1:
            raise ConfigError("variants", self.variants, "must be >= 1")
        if self.max_facets < 1:
            raise ConfigError("max_facets", self.max_facets, "must be >= 1")
        for name in ("p_lowercase", "p_typo", "p_vague", "p_mention_previous"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(name, v, "must be a probability in [0, 1]")


@dataclass
class ItemFacets:
    """What a critique may talk about for one item (all lowercase except the brand)."""

    brand: str = ""
    top_category: str = ""
    item_type: str = ""  # most specific category, e.g. "ballpoint pens"
    parent_type: str = ""  # the category above it, e.g. "pens & refills"
    colours: list[str] = field(default_factory=list)
    pack: int | None = None
    size: str = ""
    keywords: list[str] = field(default_factory=list)  # use-case words from the title, no model numbers


@dataclass
class CritiqueExample:
    """One training triple: the user's history (catalogue indices) -> target index, with a critique."""

    user_id: str
    history: np.ndarray
    target: int
    text: str
    previous: int


def extract_facets(item: Item) -> ItemFacets:
    """Regex facts from an item's title, brand and category path."""
    title = item.title or ""
    cats = [c.strip() for c in item.categories if c.strip()]
    colours = []
    for m in _COLOUR_RE.finditer(title):
        c = m.group(1).lower()
        c = "gray" if c == "grey" else c
        if c not in colours:
            colours.append(c)
    pack = None
    m = _PACK_RE.search(title)
    if m:
        n = int(m.group(1) or m.group(2))
        pack = n if 1 < n < 10000 else None
    size_m = _SIZE_RE.search(title)
    size = size_m.group(1).lower() if size_m else ""
    brand_words = set(_WORD.findall(item.brand.lower()))
    clean = MODEL_NUMBER.sub(" ", title.lower())
    kws = []
    for w in _WORD.findall(clean):
        if w in _STOP or w in brand_words or len(w) < 4 or w in COLOURS or w in kws:
            continue
        kws.append(w)
    brand = "" if item.brand.strip().lower() in _NO_BRAND else item.brand.strip()
    return ItemFacets(brand=brand, top_category=cats[0] if cats else "",
                      item_type=_type_name(cats[-1]) if cats else "", parent_type=_type_name(cats[-2]) if len(cats) > 1 else "",
                      colours=colours, pack=pack, size=size, keywords=kws[:6])


def _type_name(cat: str) -> str:
    return cat.lower().replace("&", "and").strip()


# ---- phrasings -------------------------------------------------------------------------------
_BRAND_SWITCH = ["not {prev} again", "something from {next} this time", "I'd rather go with {next}",
                 "maybe {next} instead of {prev}", "no more {prev} please", "any {next} options?",
                 "{next} if possible", "prefer {next} over {prev}", "not {prev}, try {next}",
                 "skip {prev} this time"]
_BRAND_SAME = ["same brand as before, {next}", "stick with {next}", "{next} again would be nice",
               "I like {next}, another one from them", "same {next} line please"]
_TYPE = ["I need {t} now", "now looking for {t}", "can you find me some {t}", "what about {t}?",
         "next up: {t}", "time to get {t}", "ok now {t}", "I want {t} this time", "need {t} for the office",
         "got that covered, now {t}"]
_TYPE_SAME = ["another one of those {t} but different", "more {t}, but not the same one", "a different kind of {t}",
              "similar {t} but better"]
_COLOUR = ["in {c}", "{c} if they have it", "prefer {c}", "{c} please", "maybe not {pc} this time, {c}",
           "a {c} one", "colour: {c}"]
_PACK_MORE = ["a bigger pack, like {n}", "need more of them, around {n}", "{n} count would be good",
              "bulk pack, {n} or so", "more in a pack this time"]
_PACK_LESS = ["smaller pack, {n} is enough", "don't need that many, {n} maybe", "just {n} of them",
              "fewer this time"]
_PACK = ["a pack of {n}", "{n} in a pack", "around {n} count"]
_SIZE = ["{s} size", "in {s}", "needs to be {s}", "{s} please"]
_USE = ["something {k}", "for {k} stuff", "it should be {k}", "{k} would be ideal", "something with {k}"]
_VAGUE = ["something else that goes with it", "what else would help my desk?", "anything useful to go with that",
          "surprise me, something practical", "need something sturdy", "what goes well with what I got",
          "something for the office, not sure what"]
_PREV_OPENERS = ["the {p} was fine but ", "got the {p} already, ", "{p} are sorted. ", "the {p} works great. now ",
                 "done with {p}. ", "enough {p}, "]
_OPENERS = ["", "", "", "ok ", "hmm ", "thanks! ", "that works. ", "nice. ", "the last one was fine but ",
            "got that one already. "]


def _typo(text: str, rng: random.Random) -> str:
    """One or two character-level typos (swap, drop, double) inside words of 4+ letters."""
    words = text.split(" ")
    cand = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    for _ in range(min(len(cand), rng.choice((1, 1, 2)))):
        i = rng.choice(cand)
        w = words[i]
        j = rng.randrange(1, len(w) - 1)
        op = rng.randrange(3)
        if op == 0:
            w = w[:j] + w[j + 1] + w[j] + w[j + 2:]
        elif op == 1:
            w = w[:j] + w[j + 1:]
        else:
            w = w[:j] + w[j] + w[j:]
        words[i] = w
    return " ".join(words)


def synthesize_critique(prev: Item, nxt: Item, rng: random.Random, config: CritiqueSynthConfig | None = None) -> str:
    """A shopper-voice request steering from `prev` to `nxt`, from catalogue facts of the two items."""
    cfg = config or CritiqueSynthConfig()
    pf, nf = extract_facets(prev), extract_facets(nxt)
    if rng.random() < cfg.p_vague:
        parts = [rng.choice(_VAGUE)]
    else:
        options: list[str] = []
        if nf.item_type and nf.item_type != pf.item_type:
            options += [rng.choice(_TYPE).format(t=rng.choice([nf.item_type, nf.parent_type or nf.item_type]))] * 3
        elif nf.item_type:
            options.append(rng.choice(_TYPE_SAME).format(t=nf.item_type))
        if nf.brand and pf.brand and nf.brand.lower() != pf.brand.lower():
            options += [rng.choice(_BRAND_SWITCH).format(prev=pf.brand, next=nf.brand)] * 2
        elif nf.brand and rng.random() < 0.6:
            options.append(rng.choice(_BRAND_SAME).format(next=nf.brand))
        elif nf.brand:
            options.append(f"{nf.brand} would be good")
        if nf.colours:
            c = nf.colours[0]
            pc = next((x for x in pf.colours if x != c), "")
            tmpl = rng.choice(_COLOUR if pc else [t for t in _COLOUR if "{pc}" not in t])
            options.append(tmpl.format(c=c, pc=pc))
        if nf.pack:
            if pf.pack and nf.pack > pf.pack and nf.item_type == pf.item_type:
                options.append(rng.choice(_PACK_MORE).format(n=nf.pack))
            elif pf.pack and nf.pack < pf.pack and nf.item_type == pf.item_type:
                options.append(rng.choice(_PACK_LESS).format(n=nf.pack))
            else:
                options.append(rng.choice(_PACK).format(n=nf.pack))
        if nf.size and nf.size != pf.size:
            options.append(rng.choice(_SIZE).format(s=nf.size))
        if nf.keywords:
            k = " ".join(rng.sample(nf.keywords, min(len(nf.keywords), rng.choice((1, 1, 2)))))
            options.append(rng.choice(_USE).format(k=k))
        if not options:
            options.append(rng.choice(_VAGUE))
        uniq = list(dict.fromkeys(options))
        rng.shuffle(uniq)
        parts = uniq[: rng.randint(1, min(cfg.max_facets, len(uniq)))]
    joiner = rng.choice([", ", ". ", " and ", ", also "])
    opener = rng.choice(_OPENERS)
    if pf.item_type and rng.random() < cfg.p_mention_previous:  # shoppers often name what they just got
        opener = rng.choice(_PREV_OPENERS).format(p=pf.item_type)
    text = opener + joiner.join(parts)
    text = _strip_model_numbers(text, nxt)
    if rng.random() < cfg.p_lowercase:
        text = text.lower()
    if rng.random() < cfg.p_typo:
        text = _typo(text, rng)
    return re.sub(r"\s+", " ", text).strip()


def _strip_model_numbers(text: str, target: Item) -> str:
    """Drop any model-number-like token of the target's title that slipped into the text."""
    for tok in set(MODEL_NUMBER.findall(target.title)):
        if _DIMS.fullmatch(tok):  # "3x5" is a size, not a model number
            continue
        text = re.sub(r"\b" + re.escape(tok) + r"\b", "", text, flags=re.I)
    return text


def synthesize_examples(sequences: Sequence[np.ndarray] | Iterable[np.ndarray], catalog: Catalog,
                        config: CritiqueSynthConfig | None = None, *, users: Sequence[str] | None = None,
                        positions: str = "last", min_history: int = 1) -> list[CritiqueExample]:
    """Training triples (history, critique, target) from TRAINING sequences of catalogue indices.

    positions="last": one target per sequence (its last item; with `Split.train_full` that is the
    validation item, which a model fitted on `Split.train` has not seen); "all": every position
    t >= min_history. Pairs whose items differ in top-level category are skipped when
    `config.same_top_category` (REGEN's "sufficiently similar" filter).
    """
    cfg = config or CritiqueSynthConfig()
    if positions not in ("last", "all"):
        raise ConfigError("positions", positions, "must be 'last' or 'all'")
    out: list[CritiqueExample] = []
    for u, seq in enumerate(sequences):
        seq = np.asarray(seq, dtype=np.int64)
        if len(seq) <= min_history:
            continue
        ts = [len(seq) - 1] if positions == "last" else range(min_history, len(seq))
        for t in ts:
            prev, nxt = catalog[int(seq[t - 1])], catalog[int(seq[t])]
            if cfg.same_top_category and prev.categories[:1] != nxt.categories[:1]:
                continue
            for v in range(cfg.variants):
                rng = random.Random(f"{cfg.seed}:{u}:{t}:{v}")
                out.append(CritiqueExample(user_id=str(users[u]) if users is not None else str(u),
                                           history=seq[:t].copy(), target=int(seq[t]),
                                           text=synthesize_critique(prev, nxt, rng, cfg), previous=int(seq[t - 1])))
    log.info("synthesised %d training critiques from %s sequences", len(out), "the given")
    return out
