"""Interactive evaluation with a simulated shopper (the protocol of iEvaLM and InteRecAgent).

A simulated shopper knows a hidden **target** item. It opens with a vague need derived from the
target (its category in shopper words, never its title or brand), and each later turn critiques the
list the system showed, from the target's facts versus the shown items' facts:

- **category / product type**: "I'm after binders, not notebooks" when most shown items are off-type;
- **brand**: "not HP" (a shown wrong brand) or "I'd prefer Epson" (the target's brand);
- **colour**, **size**, **pack / count** ("in blue", "8.5 x 11 in", "a 12-pack");
- **price** where the catalogue has prices ("something cheaper", "under $8");
- a distinctive **feature** word of the target's title ("ideally magnetic") once the above are met,
  and finally "none of these, something else".

Facts come from structured attributes where the catalogue has them (the synthetic store), else from
the title (and, for a colour, a description naming exactly one) with a small lexicon of its own: the
shopper never uses the agent's critique parser. Up to ``max_turns`` turns (opening included); the
conversation stops when the target is among the shown items (success). Everything the shopper does
is drawn from ``numpy.random.default_rng([seed, target_index])``: deterministic given the seed.

Systems (:class:`SimSystem`) are compared on identical shoppers: ``mode="agent"`` sends each message
to :meth:`Recommender.chat` (the text-only agent, or a built LUMEN agent with ``recommender_dir``);
``mode="history"`` ignores the messages and shows the retriever's ranking on the history alone (the
same top-k each turn, or the next k with ``paged``). Per turn we record the shown items, whether the
target is among them, the constraints the agent itself reports in its ``retrieve`` trace step, the
shown items that break one of them (**violations**: brands compared by
:func:`lumenrec.agent.critique.effective_brand`, so a brand-less item whose title starts with an
excluded brand counts), and whether the list **followed** each critique of that message.

``shopper="llm"`` lets a model behind any OpenAI-compatible endpoint word the message: the rules
still choose what to say (so shoppers stay comparable), the model writes it, and a message that
drops a point or leaks the target's title falls back to the rule text (counted).

Results are appended per (system, target) to ``records.jsonl`` under the run's out dir; a rerun
with ``resume`` skips the pairs already there.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from lumenrec.errors import ConfigError
from lumenrec.eval.replay import ReplaySystem, _prepare_out, build_recommender, load_records

__all__ = ["SimSystem", "SimulateConfig", "SimTarget", "Fact", "ItemFacts", "FactExtractor", "RuleShopper",
           "LLMShopper", "load_targets", "simulate_target", "shown_violations", "run_simulation",
           "aggregate_simulation", "RECORDS"]

log = logging.getLogger(__name__)

RECORDS = "records.jsonl"
TARGET_SETS = ("conversations", "test")
SHOPPERS = ("rule", "llm")
OPENINGS = ("parent", "leaf")


# ------------------------------------------------------------------------------------------ configs
@dataclass
class SimSystem(ReplaySystem):
    """A system the simulated shoppers talk to (the replay's fields, plus how it answers).

    ``NAME[:key=value,...]`` as in the replay, e.g. ``built:recommender_dir=runs/office`` or
    ``history:mode=history,recommender_dir=runs/office,paged=1``.
    """

    # "agent": every message goes to Recommender.chat; "history": no critique, the retriever on the history alone.
    mode: str = "agent"
    # History mode: each turn shows the next top_k of the ranking (pages) instead of the same top_k.
    paged: bool = False
    # Narratives are not read by the shopper: none by default (it saves time, changes no item).
    narrate_top: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in ("agent", "history"):
            raise ConfigError("mode", self.mode, "must be agent or history")
        if isinstance(self.paged, str):
            if self.paged.lower() not in ("0", "1", "true", "false", "yes", "no"):
                raise ConfigError("paged", self.paged, "must be true or false (1/0)")
            self.paged = self.paged.lower() in ("1", "true", "yes")
        if self.paged and self.mode != "history":
            raise ConfigError("paged", self.paged, "only applies to mode=history")


@dataclass
class SimulateConfig:
    """Which shoppers, which systems, how they talk, and where the results go."""

    # Registered dataset name or path: its catalogue is what the systems rank.
    dataset: str = "synthetic"
    # "conversations": the dataset's REGEN-style cases (office-2014: the 150 dev targets);
    # "test": leave-one-out test users (last item = target, history before it), sampled with `seed`.
    targets: str = "conversations"
    # "test" targets: how many users are sampled (users of the dataset's conversations are left out).
    num_targets: int = 500
    # Only the first N targets (quick looks); None: all.
    limit: int | None = None
    systems: list[SimSystem] = field(default_factory=lambda: [SimSystem()])
    # "rule": the offline rule shopper; "llm": a model at llm_base_url words the rule shopper's points.
    shopper: str = "rule"
    shopper_llm_base_url: str = "http://127.0.0.1:8001/v1"
    shopper_llm_model: str = "SmolLM2-135M-Instruct"
    shopper_llm_timeout_s: float = 30.0
    # Turns per conversation, the opening included (iEvaLM/InteRecAgent: 5).
    max_turns: int = 5
    # Points the shopper makes per critique (REGEN critiques often carry two: "not HP, in colour").
    facts_per_turn: int = 2
    # The opening's need: "parent": the parent of the target's leaf category (vague: "pens or refills");
    # "leaf": the leaf itself ("ballpoint pens"; on Office 2014 a leaf holds ~9 items, close to naming the item).
    opening: str = "parent"
    # Chance that a brand critique names the target's brand rather than ruling out a shown one.
    name_brand_prob: float = 0.5
    seed: int = 0
    out: str = "runs/simulate"
    resume: bool = True
    # Torch threads in the simulating process (1: the serving setting, reproducible scores).
    torch_threads: int = 1

    def __post_init__(self) -> None:
        if self.targets not in TARGET_SETS:
            raise ConfigError("targets", self.targets, f"must be one of {', '.join(TARGET_SETS)}")
        if int(self.num_targets) != self.num_targets or self.num_targets < 1:
            raise ConfigError("num_targets", self.num_targets, "must be an integer >= 1")
        if self.limit is not None and (int(self.limit) != self.limit or self.limit < 1):
            raise ConfigError("limit", self.limit, "must be an integer >= 1 or None")
        if not self.systems:
            raise ConfigError("systems", self.systems, "need at least one system")
        self.systems = [s if isinstance(s, SimSystem) else SimSystem(**s) for s in self.systems]
        names = [s.name for s in self.systems]
        if len(set(names)) != len(names):
            raise ConfigError("systems", names, "system names must be unique")
        if self.shopper not in SHOPPERS:
            raise ConfigError("shopper", self.shopper, f"must be one of {', '.join(SHOPPERS)}")
        if not str(self.shopper_llm_base_url).startswith(("http://", "https://")):
            raise ConfigError("shopper_llm_base_url", self.shopper_llm_base_url, "must be an http(s) URL")
        if not self.shopper_llm_timeout_s > 0:
            raise ConfigError("shopper_llm_timeout_s", self.shopper_llm_timeout_s, "must be > 0")
        if int(self.max_turns) != self.max_turns or not 1 <= self.max_turns <= 20:
            raise ConfigError("max_turns", self.max_turns, "must be an integer in [1, 20]")
        if int(self.facts_per_turn) != self.facts_per_turn or not 1 <= self.facts_per_turn <= 4:
            raise ConfigError("facts_per_turn", self.facts_per_turn, "must be an integer in [1, 4]")
        if self.opening not in OPENINGS:
            raise ConfigError("opening", self.opening, f"must be one of {', '.join(OPENINGS)}")
        if not 0.0 <= self.name_brand_prob <= 1.0:
            raise ConfigError("name_brand_prob", self.name_brand_prob, "must be a probability in [0, 1]")
        if int(self.seed) != self.seed or self.seed < 0:
            raise ConfigError("seed", self.seed, "must be an integer >= 0")
        if self.torch_threads < 1:
            raise ConfigError("torch_threads", self.torch_threads, "must be >= 1")

    def fingerprint(self) -> dict[str, Any]:
        """What makes two runs comparable (resume refuses to mix runs that differ here)."""
        d = asdict(self)
        for k in ("out", "resume", "torch_threads", "shopper_llm_timeout_s"):
            d.pop(k)
        if self.shopper == "rule":
            for k in ("shopper_llm_base_url", "shopper_llm_model"):
                d.pop(k)
        if self.targets == "conversations":
            d.pop("num_targets")
        d["code"] = code_digest()
        d["built"] = {s.name: _dir_digest(s.recommender_dir) for s in self.systems if s.recommender_dir}
        return d


def code_digest() -> str:
    """A digest of the sources that decide what a system shows and what the shopper says (lumenrec.agent
    without its serving apps, lumenrec.retriever, lumenrec.data, this module): a resumed run never mixes
    records of two versions of the agent."""
    import hashlib

    import lumenrec.agent
    import lumenrec.data
    import lumenrec.retriever

    h = hashlib.sha256()
    for mod in (lumenrec.agent, lumenrec.retriever, lumenrec.data):
        root = Path(mod.__file__).parent
        for p in sorted(root.rglob("*.py")):
            if "serving" not in p.relative_to(root).parts:
                h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def _dir_digest(directory: str) -> str:
    """A digest of a built directory's manifest and build record (a rebuild at the same path differs)."""
    import hashlib

    h = hashlib.sha256()
    for name in ("recommender.json", "build.json"):
        p = Path(directory) / name
        h.update(p.read_bytes() if p.is_file() else b"-")
    return h.hexdigest()[:16]


@dataclass
class SimTarget:
    """One simulated shopper: whose history, which hidden target."""

    index: int
    user_id: str
    history: list[str]
    target: str
    source: str
    difficulty: str | None = None


# ------------------------------------------------------------------------------------------- facts
@dataclass(frozen=True)
class Fact:
    """One point a shopper makes. kind: category, brand, colour, size, pack, price, feature, other;
    op: include, exclude, below, above; value: what it is about (a brand, a colour, a price...)."""

    kind: str
    op: str
    value: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.op, self.value)


@dataclass
class ItemFacts:
    """What a shopper can tell about an item from the catalogue."""

    brand: str = ""  # display spelling; "" when unknown
    brand_key: str = ""  # normalised
    category: str = ""  # the leaf category as stored
    category_words: str = ""  # the same in shopper words ("colored file folders")
    colours: tuple[str, ...] = ()  # in the order the text names them; the first is the main one
    sizes: frozenset[str] = frozenset()
    pack: int | None = None
    price: float | None = None
    words: frozenset[str] = frozenset()  # lower-case title words


_COLOUR_WORDS = ("black", "white", "blue", "red", "green", "yellow", "pink", "purple", "orange", "gray", "grey",
                 "silver", "gold", "brown", "clear", "violet", "teal", "beige", "ivory", "navy", "tan", "manila",
                 "kraft", "assorted", "neon", "pastel", "turquoise", "aqua", "magenta", "cyan", "burgundy", "lime")
_COLOUR_NORM = {"grey": "gray"}
_COLOUR_RX = re.compile(r"\b(" + "|".join(_COLOUR_WORDS) + r")\b", re.I)
_UNIT = r"(?:-?\s*(?:inch(?:es)?\b|in\b\.?|\"|''|mm\b|cm\b|ft\b|feet\b|foot\b))"
_NUM = r"\d+(?:\.\d+)?(?:[\s-]+\d+/\d+)?"
_DIMS_RX = re.compile(rf"\b({_NUM})\s*{_UNIT}?\s*(?:x|by)\s*({_NUM})(?:\s*{_UNIT}?\s*(?:x|by)\s*({_NUM}))?\s*({_UNIT})?", re.I)
_MEASURE_RX = re.compile(rf"\b({_NUM})\s*({_UNIT})", re.I)
_PAPER_RX = re.compile(r"\b(letter|legal|tabloid|a4|a5|a6)(?:[\s-]size)?\b", re.I)
_PACK_RX = re.compile(r"\b(?:(?:pack|box|case|set|carton|bag) of\s*(\d[\d,]*)|(\d[\d,]*)\s*(?:-|\s)?\s*"
                      r"(?:pack|pk|count|ct|pcs|pieces|per (?:pack|box|case)|/(?:pack|pk|box|case|set))\b)", re.I)
_WORD_RX = re.compile(r"[a-z][a-z-]*[a-z]")
# Words a shopper can say as "ideally X" / "something X": adjective-like endings ("wireless", "magnetic",
# "refillable", "padded", "self-inking", "waterproof"), not nouns ("tile", "combo", "yield").
_FEATURE_RX = re.compile(r"^(?:[a-z-]{3,}(?:able|ible|less|ic|al|ive|ous|ful|proof|ed|duty)|[a-z]+-[a-z-]+ing)$")
_STOP = {"with", "for", "and", "the", "pack", "count", "inch", "inches", "size", "each", "from", "this", "that",
         "your", "box", "per", "case", "set", "new", "plus", "only", "assorted", "colors", "colours", "color",
         "colour", "sheets", "sheet", "item", "items", "model", "series", "brand", "quantity", "includes",
         "office", "supplies", "products", "product", "pcs", "pieces", "standard", "value", "packaging",
         "packaged", "compatible", "original", "included", "limited", "personal", "legal", "reduced", "classic",
         "advanced", "professional", "special", "general", "total", "typical", "additional", "national", "sided",
         "powershred", "magic", "cosmic", "cristal", "crystal"}


def brand_display(name: str) -> str:
    """A brand as a shopper types it: no HTML entities or trademark signs ("Scotch&reg;" -> "Scotch")."""
    import html

    return re.sub(r"\s+", " ", re.sub(r"[®™©]", "", html.unescape(name))).strip()


def _unit_name(u: str) -> str:
    u = (u or "").strip(" -.").lower()
    return {"inch": "in", "inches": "in", '"': "in", "''": "in", "feet": "ft", "foot": "ft"}.get(u, u)


def _num(s: str) -> str:
    return re.sub(r"[\s-]+", " ", s.strip())


def sizes_of(text: str) -> set[str]:
    """Sizes named in a text, normalised: '8.5 x 11 in', '0.7 mm', 'letter'."""
    out: set[str] = set()
    for m in _DIMS_RX.finditer(text):
        dims = [_num(g) for g in m.groups()[:3] if g]
        if len(dims) == 3:  # W x D x H: the item's dimensions, not a size a shopper asks for
            continue
        unit = _unit_name(m.group(4) or "")
        out.add(" x ".join(dims) + (f" {unit}" if unit else ""))
    rest = _DIMS_RX.sub(" ", text)
    for m in _MEASURE_RX.finditer(rest):
        out.add(f"{_num(m.group(1))} {_unit_name(m.group(2))}")
    out.update(m.group(1).lower() for m in _PAPER_RX.finditer(text))
    return out


def pack_of(text: str) -> int | None:
    """The pack size / count a text names ("12 Count", "Pack of 5", "50/Pack"), or None."""
    m = _PACK_RX.search(text)
    if not m:
        return None
    n = int((m.group(1) or m.group(2)).replace(",", ""))
    return n if 1 <= n <= 100000 else None


def colours_of(text: str) -> tuple[str, ...]:
    """Colours a text names, in order; none when it names three or more (a multicolour set, no one colour)."""
    out = tuple(dict.fromkeys(_COLOUR_NORM.get(c.lower(), c.lower()) for c in _COLOUR_RX.findall(text)))
    return out if len(out) < 3 else ()


def shopper_category(categories: Sequence[str]) -> str:
    """A category path in shopper words: the leaf, lower case ("Self-Stick Notes" -> "self-stick notes");
    a one-word leaf is qualified by its parent ("Calculators > Scientific" -> "scientific calculators")."""
    if not categories:
        return "office supplies"
    leaf = categories[-1]
    if len(leaf.split()) == 1 and not leaf.lower().endswith("s") and len(categories) > 1:  # "Basic", "Colored"
        leaf = f"{leaf} {categories[-2]}"
    s = re.sub(r"\s*\([^)]*\)", "", leaf.lower()).replace(" & ", " or ").replace("&", " and ")
    return re.sub(r"\s+", " ", s).strip()


class FactExtractor:
    """Item -> :class:`ItemFacts`, cached; attributes first, else the title (a description only for a colour)."""

    def __init__(self, catalog) -> None:
        from lumenrec.agent.critique import PSEUDO_BRANDS, normalize_brand

        self.catalog = catalog
        self._norm = normalize_brand
        self.brand_keys = {normalize_brand(b): b for b in catalog.brands() if normalize_brand(b)}
        self._pseudo = PSEUDO_BRANDS
        self._cache: dict[str, ItemFacts] = {}
        df: Counter[str] = Counter()
        for it in catalog:
            df.update(set(_WORD_RX.findall(it.title.lower())))
        self.df = df
        self.priced = any(it.price is not None for it in catalog)

    def brand_key(self, item) -> str:
        from lumenrec.agent.critique import effective_brand

        return self._norm(effective_brand(item, self.brand_keys))

    def facts(self, item_id: str) -> ItemFacts:
        hit = self._cache.get(item_id)
        if hit is not None:
            return hit
        from lumenrec.agent.critique import effective_brand

        it = self.catalog.get(item_id)
        brand = effective_brand(it, self.brand_keys)
        key = self._norm(brand)
        if key in self._pseudo:
            brand, key = "", ""
        a = {k.lower(): v for k, v in it.attributes.items()}
        title = it.title
        colour = a.get("colour") or a.get("color")
        if colour:
            colours: tuple[str, ...] = (colour.lower(),)
        else:
            colours = colours_of(title)
            if not colours:
                desc = colours_of(it.description)
                colours = desc if len(desc) == 1 else ()
        size = a.get("size")
        sizes = {size.lower()} if size else sizes_of(title)
        pack = None
        if a.get("pack", "").isdigit():
            pack = int(a["pack"])
        else:
            pack = pack_of(title)
        f = ItemFacts(brand=brand, brand_key=key, category=it.category, category_words=shopper_category(it.categories),
                      colours=tuple(colours), sizes=frozenset(sizes), pack=pack, price=it.price,
                      words=frozenset(_WORD_RX.findall(title.lower())))
        self._cache[item_id] = f
        return f

    def features(self, item_id: str, limit: int = 3) -> list[str]:
        """Distinctive words of the item's title a shopper would say ("magnetic", "wireless"): adjective-like,
        not the brand, the category or a filler word; in at least 3 titles (not a product line's name)
        and at most 3% of them (not generic); rarest first."""
        it, f = self.catalog.get(item_id), self.facts(item_id)
        skip = set(_WORD_RX.findall(f"{f.brand} {f.category_words} {' '.join(it.categories)}".lower()))
        n = len(self.catalog)
        cands = [w for w in f.words if _FEATURE_RX.search(w) and w not in skip and w not in _STOP
                 and 3 <= self.df[w] <= max(3, int(0.03 * n))]
        return sorted(cands, key=lambda w: (self.df[w], w))[:limit]


def _share(shown: Sequence[ItemFacts], ok) -> float:
    return sum(bool(ok(f)) for f in shown) / len(shown) if shown else 0.0


def _median_price(shown: Sequence[ItemFacts]) -> float | None:
    ps = [f.price for f in shown if f.price is not None]
    return float(np.median(ps)) if ps else None


def _nice_ceiling(p: float) -> int:
    step = 1 if p < 20 else 5 if p < 100 else 10 if p < 500 else 50
    return int(math.ceil(p / step) * step) if p % step else int(p + step)


def fact_holds(fact: Fact, f: ItemFacts) -> bool:
    """Whether one item satisfies one fact (price facts are about lists: see followed())."""
    if fact.kind == "category":
        return (f.category == fact.value) == (fact.op == "include")
    if fact.kind == "brand":
        return (f.brand_key == fact.value) == (fact.op == "include")
    if fact.kind == "colour":
        return fact.value in f.colours
    if fact.kind == "size":
        return fact.value in f.sizes
    if fact.kind == "pack":
        return f.pack is not None and str(f.pack) == fact.value
    if fact.kind == "feature":
        return fact.value in f.words
    if fact.kind == "price" and f.price is not None:
        if fact.op == "below" and fact.value.startswith("$"):
            return f.price <= float(fact.value[1:])
        return True
    return True


def followed(fact: Fact, shown: Sequence[ItemFacts], before: Sequence[ItemFacts], shown_ids: Sequence[str] = (),
             before_ids: Sequence[str] = ()) -> tuple[bool | None, float | None]:
    """Did the list shown after a message follow one of its points? (followed, share of items satisfying it).

    Excludes: no shown item breaks it. Includes: at least half the shown items satisfy it. "cheaper" /
    "pricier": the median shown price moved that way. "something else": no item shown again. None when
    nothing was shown or the list cannot tell (no prices).
    """
    if not shown:
        return None, None
    if fact.kind == "other":
        again = len(set(shown_ids) & set(before_ids))
        return again == 0, 1.0 - again / len(shown_ids)
    if fact.kind == "price" and not fact.value.startswith("$"):
        now, prev = _median_price(shown), _median_price(before)
        if now is None or prev is None:
            return None, None
        return (now < prev) if fact.op == "below" else (now > prev), now / prev if prev else None
    if fact.kind == "price" and all(f.price is None for f in shown):
        return None, None
    share = _share([f for f in shown if fact.kind != "price" or f.price is not None], lambda f: fact_holds(fact, f))
    if fact.op == "exclude" or (fact.kind == "price" and fact.op == "below"):
        return share == 1.0, share
    return share >= 0.5, share


# ----------------------------------------------------------------------------------------- shoppers
_OPENINGS = ("Hi! I'm looking for {c}.", "I need some {c}, any suggestions?", "Can you recommend {c}?",
             "I'm shopping for {c} today.", "Hello, I could use some {c}.")
_LEADS = ("", "Hmm, ", "Not quite. ", "Close, but ", "Thanks, but ")
_REPEAT = ("like I said, ", "again, ", "as I said, ")


def _phrase(fact: Fact, ex: FactExtractor, rng: np.random.Generator, target: ItemFacts) -> str:
    v, pick = fact.value, (lambda opts: opts[int(rng.integers(len(opts)))])
    if fact.kind == "category":
        if fact.op == "exclude":
            return pick(("not {c}", "no {c}")).format(c=shopper_category([v]))
        return pick(("I'm after {c}", "I meant {c}", "I really need {c}")).format(c=target.category_words)
    if fact.kind == "brand":
        name = brand_display(ex.brand_keys.get(v, v))
        if fact.op == "exclude":
            return pick(("not {b}", "no {b} this time", "anything but {b}")).format(b=name)
        return pick(("I'd prefer {b}", "{b} would be great", "ideally from {b}")).format(b=name)
    if fact.kind == "colour":
        c = f"{v} colours" if v in ("assorted", "neon", "pastel") else v
        return pick(("in {c}", "I want it in {c}", "preferably {c}")).format(c=c)
    if fact.kind == "size":
        return pick(("size {s}", "it needs to be {s}", "the {s} size")).format(s=v)
    if fact.kind == "pack":
        return pick(("a {n}-pack", "{n} count", "a pack of {n}")).format(n=v)
    if fact.kind == "price":
        if v.startswith("$"):
            return f"under {v}" if fact.op == "below" else f"over {v}"
        return pick(("something cheaper", "a bit less pricey")) if fact.op == "below" else \
            pick(("something more premium", "a better quality one"))
    if fact.kind == "feature":
        return pick(("ideally {w}", "it should be {w}", "something {w}")).format(w=v)
    return pick(("none of these, something else", "show me something else", "not these ones"))


class RuleShopper:
    """The offline simulated shopper: what it says depends only on the target, the shown list, what it
    said before and its random generator."""

    def __init__(self, extractor: FactExtractor, *, facts_per_turn: int = 2, name_brand_prob: float = 0.5,
                 opening: str = "parent") -> None:
        if opening not in OPENINGS:
            raise ConfigError("opening", opening, f"must be one of {', '.join(OPENINGS)}")
        self.ex = extractor
        self.opening_level = opening
        self.facts_per_turn = facts_per_turn
        self.name_brand_prob = name_brand_prob

    # -- the plan: the target's points in this shopper's order of priority
    def priorities(self, target: str, rng: np.random.Generator) -> list[str]:
        kinds = ["brand", "colour", "size", "pack", "price"]
        return [kinds[i] for i in rng.permutation(len(kinds))]

    def need(self, target: str) -> str:
        """The vague need of the opening: the parent of the target's leaf category in shopper words
        (the leaf when the parent is a top-level department, or with ``opening="leaf"``)."""
        path = self.ex.catalog.get(target).categories
        if self.opening_level == "parent" and len(path) > 2:
            path = path[:-1]
        words = shopper_category(path)
        brand = self.ex.facts(target).brand_key
        if brand and re.search(rf"\b{re.escape(brand)}\b", self.ex._norm(words)) and len(path) > 1:
            words = shopper_category(path[:-1])  # a category named after the brand: one level up
        return words

    def opening(self, target: str, rng: np.random.Generator) -> tuple[str, list[Fact]]:
        text = _OPENINGS[int(rng.integers(len(_OPENINGS)))].format(c=self.need(target))
        return text, [Fact("need", "include", self.need(target))]

    def candidates(self, target: str, shown: Sequence[str], order: Sequence[str],
                   rng: np.random.Generator) -> list[Fact]:
        """Points the target has that the shown list misses, most important first."""
        ex, t = self.ex, self.ex.facts(target)
        sf = [ex.facts(s) for s in shown]
        out: list[Fact] = []
        if _share(sf, lambda f: f.category == t.category) < 0.5:
            out.append(Fact("category", "include", t.category))
            off = Counter(f.category for f in sf if f.category and f.category not in ex.catalog.get(target).categories)
            if off and rng.random() < 0.5:
                out.append(Fact("category", "exclude", off.most_common(1)[0][0]))
        for kind in order:
            if kind == "brand" and t.brand_key:
                wrong = [f.brand_key for f in sf if f.brand_key and f.brand_key != t.brand_key]
                if wrong or not sf:
                    if not wrong or rng.random() < self.name_brand_prob:
                        out.append(Fact("brand", "include", t.brand_key))
                    else:
                        out.append(Fact("brand", "exclude", Counter(wrong).most_common(1)[0][0]))
            elif kind == "colour" and t.colours:
                c = t.colours[0]
                if _share(sf, lambda f: c in f.colours) < 0.5:
                    out.append(Fact("colour", "include", c))
            elif kind == "size" and t.sizes:
                s = sorted(t.sizes)[0]
                if _share(sf, lambda f: s in f.sizes) < 0.5:
                    out.append(Fact("size", "include", s))
            elif kind == "pack" and t.pack and t.pack > 1:
                if _share(sf, lambda f: f.pack == t.pack) < 0.5:
                    out.append(Fact("pack", "include", str(t.pack)))
            elif kind == "price" and t.price is not None:
                med = _median_price(sf)
                if med is not None and t.price < 0.85 * med:
                    v = f"${_nice_ceiling(t.price)}" if rng.random() < 0.5 else "cheaper"
                    out.append(Fact("price", "below", v))
                elif med is not None and t.price > 1.25 * med:
                    out.append(Fact("price", "above", "pricier"))
        for w in ex.features(target):
            if _share(sf, lambda f: w in f.words) < 0.5:
                out.append(Fact("feature", "include", w))
        return out

    def critique(self, target: str, shown: Sequence[str], said: Sequence[Fact], order: Sequence[str],
                 rng: np.random.Generator) -> tuple[str, list[Fact]]:
        """The next message: new points first (a feature word after every attribute, one at a time), then
        points made once that the list still misses; a point is made at most twice; with nothing left to
        say, "something else"."""
        cands = self.candidates(target, shown, order, rng)
        times = Counter(f.key for f in said)
        said_keys = set(times)
        new = [f for f in cands if f.key not in said_keys]
        old = [f for f in cands if times[f.key] == 1]
        chosen: list[Fact] = []
        for f in sorted(new, key=lambda f: f.kind == "feature") + old:
            if len(chosen) >= self.facts_per_turn:
                break
            if f.kind == "feature" and any(c.kind == "feature" for c in chosen):
                continue
            if f.kind == "category" and f.op == "exclude" and not any(c.kind == "category" for c in chosen):
                continue  # "not X" about a category only next to the category wanted
            chosen.append(f)
        if not chosen:
            chosen = [Fact("other", "exclude", "shown")]
        t = self.ex.facts(target)
        parts = []
        for f in chosen:
            p = _phrase(f, self.ex, rng, t)
            if f.key in said_keys and f.kind != "other":
                p = _REPEAT[int(rng.integers(len(_REPEAT)))] + p
            parts.append(p)
        body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        lead = _LEADS[int(rng.integers(len(_LEADS)))]
        text = lead + (body if lead else body[0].upper() + body[1:])  # brands keep their spelling
        return text + ".", chosen


def _leaks_title(text: str, title: str, n: int = 5) -> bool:
    """True when `text` repeats n consecutive title words or a model-number-like token of the title."""
    tw, xw = re.findall(r"[a-z0-9]+", title.lower()), re.findall(r"[a-z0-9]+", text.lower())
    grams = {tuple(tw[i:i + n]) for i in range(len(tw) - n + 1)}
    if any(tuple(xw[i:i + n]) in grams for i in range(len(xw) - n + 1)):
        return True
    codes = {w for w in tw if re.search(r"\d", w) and re.search(r"[a-z]", w) and len(w) >= 4}
    return bool(codes & set(xw))


class LLMShopper:
    """The rule shopper's points, worded by a model behind an OpenAI-compatible endpoint.

    The model gets what the shopper is after (the category in shopper words), the shown titles and
    the points to make; it never sees the target's title. A reply that is empty, too long, drops a
    point (a brand, colour or number it had to say) or repeats the target's title falls back to the
    rule text; `fallbacks` counts them by reason.
    """

    SYSTEM = ("You play a shopper chatting with a shopping assistant in an office-supplies store. Write the "
              "shopper's next message: one or two short casual sentences, first person, that make exactly the "
              "points listed, in your own words. Keep every brand name, colour and number exactly as given. "
              "Never invent product names or model numbers. Reply with the message only.")

    def __init__(self, rule: RuleShopper, llm, *, max_chars: int = 300) -> None:
        self.rule, self.llm, self.max_chars = rule, llm, max_chars
        self.fallbacks: Counter[str] = Counter()

    def priorities(self, target: str, rng: np.random.Generator) -> list[str]:
        return self.rule.priorities(target, rng)

    def opening(self, target: str, rng: np.random.Generator) -> tuple[str, list[Fact]]:
        text, facts = self.rule.opening(target, rng)
        return self._word(target, [], facts, text, opening=True), facts

    def critique(self, target: str, shown: Sequence[str], said: Sequence[Fact], order: Sequence[str],
                 rng: np.random.Generator) -> tuple[str, list[Fact]]:
        text, facts = self.rule.critique(target, shown, said, order, rng)
        return self._word(target, shown, facts, text), facts

    def _must_keep(self, facts: Sequence[Fact]) -> list[str]:
        keep = []
        for f in facts:
            if f.kind == "brand":
                keep.append(brand_display(self.rule.ex.brand_keys.get(f.value, f.value)))
            elif f.kind in ("colour", "pack", "feature") or (f.kind == "price" and f.value.startswith("$")):
                keep.append(f.value.lstrip("$"))
        return keep

    def _word(self, target: str, shown: Sequence[str], facts: Sequence[Fact], draft: str, opening: bool = False) -> str:
        ex, cat = self.rule.ex, self.rule.ex.catalog
        lines = [f"You are shopping for: {self.rule.need(target)}."]
        if opening:
            lines.append("This is your first message: say what you are looking for, vaguely.")
        else:
            lines.append("The assistant just showed you:" if shown else "The assistant showed you nothing.")
            lines += [f"{i}. {cat.get(s).title[:90]}" for i, s in enumerate(shown, 1)]
        lines.append("Points to make: " + draft)
        messages = [{"role": "system", "content": self.SYSTEM}, {"role": "user", "content": "\n".join(lines)}]
        try:
            out = self.llm.generate(messages, max_tokens=80, temperature=0.0)
        except Exception as e:  # any failure of the endpoint: the rule text is the message
            log.warning("shopper LLM failed, using the rule text: %s", e)
            self.fallbacks["error"] += 1
            return draft
        text = out.strip().splitlines()[0].strip().strip('"').strip() if out and out.strip() else ""
        low = text.lower()
        reason = None
        if not text:
            reason = "empty"
        elif len(text) > self.max_chars:
            reason = "too long"
        elif _leaks_title(text, cat.get(target).title):
            reason = "leaked the title"
        elif any(k.lower() not in low for k in self._must_keep(facts)):
            reason = "dropped a point"
        if reason:
            self.fallbacks[reason] += 1
            return draft
        return text


# ------------------------------------------------------------------------------------------ targets
def load_targets(cfg: SimulateConfig, dataset) -> list[SimTarget]:
    """The shoppers of a run (see SimulateConfig.targets), in a fixed order."""
    cat = dataset.catalog
    out: list[SimTarget] = []
    if cfg.targets == "conversations":
        for c in dataset.conversations:
            if c.target and c.target in cat:
                out.append(SimTarget(len(out), c.user_id, [h for h in c.history if h in cat], c.target,
                                     "conversations", c.meta.get("difficulty")))
        if not out:
            raise ConfigError("targets", cfg.targets, f"dataset {cfg.dataset!r} has no conversations with a target; "
                              "use targets='test'")
    else:
        from lumenrec.data.split import leave_one_out

        test = leave_one_out(dataset.interactions).test
        skip = {c.user_id for c in dataset.conversations}
        pool = [i for i, u in enumerate(test.users) if u not in skip]
        rng = np.random.default_rng(cfg.seed)
        pick = sorted(rng.choice(len(pool), size=min(cfg.num_targets, len(pool)), replace=False).tolist())
        for i in (pool[p] for p in pick):
            out.append(SimTarget(len(out), test.users[i], [cat.ids[int(j)] for j in test.histories[i]],
                                 cat.ids[int(test.targets[i])], "test"))
    return out[: cfg.limit] if cfg.limit else out


# ------------------------------------------------------------------------------------- violations
def shown_violations(constraints: dict[str, Any], relaxed: bool, shown: Sequence[str], catalog,
                     extractor: FactExtractor) -> list[dict[str, Any]]:
    """Shown items that break a hard constraint the agent reports (trace `constraints`): excluded and
    included brands, excluded categories, price bounds (priced items), avoided colours (an item whose
    colours, by the shopper's own reading, are all avoided; an item of unknown colour never breaks
    one). After a relaxation only the brand excludes stay active (the agent keeps the shopper's "not X")."""
    from lumenrec.agent.critique import normalize_brand

    c = constraints or {}
    exc_b = {normalize_brand(b): b for b in c.get("exclude_brands") or []}
    inc_b = {normalize_brand(b): b for b in c.get("include_brands") or []} if not relaxed else {}
    exc_c = set(c.get("exclude_categories") or []) if not relaxed else set()
    lo = None if relaxed else c.get("min_price")
    hi = None if relaxed else c.get("max_price")
    avoid = {} if relaxed else (c.get("avoid_attributes") or {})
    avoid_col = {_COLOUR_NORM.get(x.strip(), x.strip()) for x in str(avoid.get("colour", "")).split(",") if x.strip()}
    out = []
    for iid in shown:
        it = catalog.get(iid)
        b = extractor.brand_key(it)
        if b in exc_b:
            out.append({"item": iid, "constraint": "exclude_brands", "value": exc_b[b]})
        if inc_b and b not in inc_b:
            out.append({"item": iid, "constraint": "include_brands", "value": sorted(inc_b.values())})
        hit = exc_c.intersection(it.categories)
        if hit:
            out.append({"item": iid, "constraint": "exclude_categories", "value": sorted(hit)})
        if it.price is not None and hi is not None and it.price > float(hi):
            out.append({"item": iid, "constraint": "max_price", "value": hi})
        if it.price is not None and lo is not None and it.price < float(lo):
            out.append({"item": iid, "constraint": "min_price", "value": lo})
        cols = set(extractor.facts(iid).colours)
        if avoid_col and cols and cols <= avoid_col:
            out.append({"item": iid, "constraint": "avoid_attributes.colour", "value": sorted(cols)})
    return out


# ------------------------------------------------------------------------------------ one shopper
class _HistoryOnly:
    """The no-critique system: the retriever's ranking on the history alone, top_k per turn."""

    def __init__(self, retriever, top_k: int, paged: bool, turns: int) -> None:
        self.retriever, self.top_k, self.paged, self.turns = retriever, top_k, paged, turns

    def ranking(self, history: Sequence[str]) -> list[str]:
        from lumenrec.retriever.base import Query

        k = self.top_k * (self.turns if self.paged else 1)
        ids, _ = self.retriever.retrieve(Query(history=list(history)), k=k)
        return list(ids)


def simulate_target(system: SimSystem, agent, shopper, target: SimTarget, catalog, extractor: FactExtractor,
                    *, seed: int, max_turns: int) -> dict[str, Any]:
    """One simulated conversation of `shopper` about `target` with `agent` (a Recommender, or the
    history-only system); returns its record."""
    rng = np.random.default_rng([seed, target.index])
    order = shopper.priorities(target.target, rng)
    said: list[Fact] = []
    rows: list[dict[str, Any]] = []
    shown: list[str] = []
    success = None
    sid = f"sim-{system.name}-{target.index}"
    ranking = None
    if isinstance(agent, _HistoryOnly):
        ranking = agent.ranking(target.history)
    else:
        from lumenrec.agent.session import Session

        agent.store.put(Session(session_id=sid, user_id=target.user_id, history=list(target.history)))
    for turn in range(1, max_turns + 1):
        before = list(shown)
        if turn == 1:
            text, facts = shopper.opening(target.target, rng)
        else:
            text, facts = shopper.critique(target.target, before, said, order, rng)
        said.extend(facts)
        t0 = time.perf_counter()
        row: dict[str, Any] = {"turn": turn, "text": text, "facts": [asdict(f) for f in facts]}
        if ranking is not None:
            start = (turn - 1) * agent.top_k if agent.paged else 0
            shown = ranking[start:start + agent.top_k]
            row.update(intent="history", constraints={}, relaxed=False)
        else:
            reply = agent.chat(sid, text)
            shown = list(reply.item_ids)
            ret = next((s for s in reversed(reply.trace) if s.name == "retrieve"), None)
            cons = dict(ret.details.get("constraints") or {}) if ret is not None else {}
            relaxed = bool(ret.details.get("relaxed")) if ret is not None else False
            row.update(intent=reply.intent, constraints=cons, relaxed=relaxed,
                       violations=shown_violations(cons, relaxed, shown, catalog, extractor))
            route = next((s for s in reply.trace if s.name == "route"), None)
            if route is not None and route.details.get("path"):  # the hybrid router says which path decided
                row["route_path"] = str(route.details["path"])
        row["ms"] = round((time.perf_counter() - t0) * 1000.0, 2)
        row["shown"] = shown
        row["hit"] = target.target in shown
        sf, bf = [extractor.facts(s) for s in shown], [extractor.facts(s) for s in before]
        if turn > 1:
            row["followed"] = [dict(zip(("followed", "share"), followed(f, sf, bf, shown, before))) for f in facts]
        rows.append(row)
        if row["hit"]:
            success = turn
            break
    if ranking is None:
        agent.store.delete(sid)
    return {"system": system.name, "target_index": target.index, "user_id": target.user_id, "target": target.target,
            "source": target.source, "difficulty": target.difficulty, "success_turn": success, "turns": rows}


# ------------------------------------------------------------------------------------------ running
def _make_shopper(cfg: SimulateConfig, extractor: FactExtractor):
    rule = RuleShopper(extractor, facts_per_turn=cfg.facts_per_turn, name_brand_prob=cfg.name_brand_prob,
                       opening=cfg.opening)
    if cfg.shopper == "rule":
        return rule
    from lumenrec.agent.llm.backends import OpenAILLM

    llm = OpenAILLM(cfg.shopper_llm_base_url, cfg.shopper_llm_model, timeout_s=cfg.shopper_llm_timeout_s, max_retries=1)
    return LLMShopper(rule, llm)


def _make_system(system: SimSystem, catalog, max_turns: int):
    rec = build_recommender(system, catalog)
    rec.warmup()  # the first shopper's turn is not the one paying for lazy loads
    if system.mode == "history":
        return _HistoryOnly(rec.retriever, system.top_k, system.paged, max_turns)
    return rec


def run_simulation(cfg: SimulateConfig, *, progress: bool = True) -> dict[str, Any]:
    """Simulate every (system, target) pair not yet done, then aggregate. Returns the summary (see
    :func:`aggregate_simulation`); the records are in ``<out>/records.jsonl``."""
    import torch
    from tqdm.auto import tqdm

    from lumenrec.data.registry import load_dataset

    rec_path, done = _prepare_out(cfg)
    ds = load_dataset(cfg.dataset, with_conversations=True)
    targets = load_targets(cfg, ds)
    catalog = ds.catalog
    extractor = FactExtractor(catalog)
    shopper = _make_shopper(cfg, extractor)
    done_keys = {(r["system"], r["target_index"]) for r in done}
    todo = [(s, t) for s in cfg.systems for t in targets if (s.name, t.index) not in done_keys]
    log.info("simulate: %d targets x %d systems, %d to do (%d done)", len(targets), len(cfg.systems), len(todo),
             len(done_keys))
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.torch_threads)
    agents: dict[str, Any] = {}
    bar = tqdm(total=len(todo), desc="simulate", unit="shopper", disable=not progress)
    try:
        with open(rec_path, "a", encoding="utf-8") as f:
            for system, target in todo:
                if system.name not in agents:
                    agents = {system.name: _make_system(system, catalog, cfg.max_turns)}  # one loaded at a time
                r = simulate_target(system, agents[system.name], shopper, target, catalog, extractor,
                                    seed=cfg.seed, max_turns=cfg.max_turns)
                if isinstance(shopper, LLMShopper):
                    r["shopper_fallbacks"] = dict(shopper.fallbacks)
                    shopper.fallbacks.clear()
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
                bar.update(1)
    finally:
        bar.close()
        torch.set_num_threads(threads)
    return aggregate_simulation(load_records(rec_path), cfg, catalog=catalog)


# -------------------------------------------------------------------------------------- aggregating
def _pct(xs: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(xs, dtype=np.float64), q)) if len(xs) else None


def _fact_label(f: dict[str, Any]) -> str:
    if f["kind"] == "price":
        return "price " + ("under $X" if f["value"].startswith("$") else ("cheaper" if f["op"] == "below" else "pricier"))
    if f["kind"] == "other":
        return "something else"
    return f"{f['kind']} {f['op']}"


def aggregate_simulation(records: Iterable[dict[str, Any]], cfg: SimulateConfig | None = None, *, catalog=None,
                         examples: int = 5) -> dict[str, Any]:
    """The summary of a run, per system: success@turn, mean turns to success, violations (counted and
    listed), how often each kind of critique was followed, intents per turn, latency.

    Deterministic in the records' content (sorted first)."""
    recs = sorted(records, key=lambda r: (r["system"], r["target_index"]))
    max_turns = cfg.max_turns if cfg else max((len(r["turns"]) for r in recs), default=1)
    order = [s.name for s in cfg.systems] if cfg else sorted({r["system"] for r in recs})
    title = (lambda i: catalog.get(i).title[:80]) if catalog is not None else (lambda i: i)
    systems: dict[str, Any] = {}
    for name in order:
        rs = [r for r in recs if r["system"] == name]
        if not rs:
            continue
        n = len(rs)
        succ = [r["success_turn"] for r in rs if r["success_turn"] is not None]
        at = {str(t): sum(s <= t for s in succ) / n for t in range(1, max_turns + 1)}
        by_diff: dict[str, list[int]] = defaultdict(list)
        for r in rs:
            if r.get("difficulty"):
                by_diff[r["difficulty"]].append(int(r["success_turn"] is not None))
        viol: list[dict[str, Any]] = []
        kinds: Counter[str] = Counter()
        follow: dict[str, list[int]] = defaultdict(list)
        misses: dict[str, list[dict[str, Any]]] = defaultdict(list)
        intents: dict[str, Counter] = defaultdict(Counter)
        ms: list[float] = []
        paths: Counter[str] = Counter()
        fallbacks: Counter[str] = Counter()
        shown_n = checked_turns = 0
        for r in rs:
            fallbacks.update(r.get("shopper_fallbacks") or {})
            for t in r["turns"]:
                intents[str(t["turn"])][t["intent"]] += 1
                ms.append(t["ms"])
                if "route_path" in t:
                    paths[t["route_path"]] += 1
                shown_n += len(t["shown"])
                if "violations" in t:
                    checked_turns += 1
                for v in t.get("violations", []):
                    kinds[v["constraint"]] += 1
                    viol.append({"target_index": r["target_index"], "turn": t["turn"], **v,
                                 "title": title(v["item"]), "message": t["text"]})
                for fct, fo in zip(t["facts"], t.get("followed", [])):
                    if fo["followed"] is None:
                        continue
                    lab = _fact_label(fct)
                    follow[lab].append(int(fo["followed"]))
                    if not fo["followed"] and len(misses[lab]) < examples:
                        misses[lab].append({"target_index": r["target_index"], "turn": t["turn"], "message": t["text"],
                                            "value": fct["value"], "intent": t["intent"],
                                            "constraints": t.get("constraints"),
                                            "shown": [title(s) for s in t["shown"]]})
        systems[name] = {
            "targets": n,
            "success_at_turn": at,
            "success": len(succ) / n,
            "successes": len(succ),
            "mean_turns_to_success": float(np.mean(succ)) if succ else None,
            "success_by_difficulty": {k: {"n": len(v), "success": sum(v) / len(v)} for k, v in sorted(by_diff.items())},
            "violations": {"count": len(viol), "turns_checked": checked_turns, "items_shown": shown_n,
                           "by_constraint": dict(kinds), "list": viol},
            "critiques_followed": {k: {"n": len(v), "followed": sum(v), "rate": sum(v) / len(v)}
                                   for k, v in sorted(follow.items())},
            "not_followed_examples": {k: v for k, v in sorted(misses.items())},
            "intents_by_turn": {k: dict(v) for k, v in sorted(intents.items(), key=lambda kv: int(kv[0]))},
            "latency_ms": {"p50": _pct(ms, 50), "p95": _pct(ms, 95), "n": len(ms)},
            **({"shopper_fallbacks": dict(fallbacks)} if fallbacks else {}),
            **({"route_paths": dict(paths)} if paths else {}),
        }
    return {"run": cfg.fingerprint() if cfg else None, "max_turns": max_turns,
            "num_targets": len({r["target_index"] for r in recs}), "systems": systems}
