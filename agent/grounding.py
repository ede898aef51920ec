"""A claim checker for generated narratives: is every checkable statement backed by catalogue facts?

A small model happily invents pack sizes, prices, colours and brands. This module extracts the
claims that can be checked mechanically and compares them with the facts the narrative was allowed
to use: the recommended item(s) (title, brand, categories, description, attributes, price) and the
user's history (titles, brands, categories), plus any user text the narrative may echo (a critique).

Claim kinds (each with its character span in the text):

- ``number``: a number with its unit, if any: "12 count", "0.7 mm", "$9.99", "5 1/2 inch", "3x3 in".
  Supported when the facts hold the same value with a compatible unit (a price claim needs the
  item's price or that amount in the text; a length needs a length, ...).
- ``pack``: a pack/quantity claim ("24-pack", "pack of 12", "a dozen"): needs that count in the facts.
- ``model``: an alphanumeric code ("PG-245", "MG6320", "A4"): must appear in the facts.
- ``brand``: a brand of the catalogue's vocabulary: must be the item's brand, a history brand, or
  written in the fact texts (a 3M item titled "Post-it ..." may be called Post-it).
- ``colour``: a colour word: must appear in the facts.
- ``size``: a size designation (letter/legal size, jumbo, mini, fine/medium/bold point, wide/college
  ruled): must appear in the facts.

:func:`repair` drops the sentences that carry unsupported claims.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterable, Sequence

from lumenrec.data.types import Catalog, Item

__all__ = ["Claim", "GroundingReport", "Facts", "BrandVocabulary", "GroundingChecker", "extract_claims",
           "check_text", "repair", "split_sentences", "COLOURS"]

# ---------------------------------------------------------------------------------------------- units
_UNIT_CLASSES = {
    "length": ["inches", "inch", "in", '"', "''", "mm", "millimeters", "millimeter", "cm", "centimeters",
               "centimeter", "ft", "feet", "foot", "yards", "yard", "yds", "yd", "meters", "meter", "m"],
    "weight": ["lbs", "lb", "pounds", "pound", "oz", "ounces", "ounce", "grams", "gram", "g", "kg", "kilograms"],
    "volume": ["ml", "milliliters", "liters", "liter", "l", "gallons", "gallon", "fl oz", "fl. oz."],
    "pack": ["pack", "packs", "pk", "count", "ct", "pcs", "pieces", "piece", "pc", "per pack", "per box", "box",
             "boxes", "set", "sets", "dozen"],
    "percent": ["%", "percent"],
    "power": ["watts", "watt", "w", "volts", "volt", "v", "mah", "amps", "amp"],
    "data": ["gb", "mb", "tb", "ppm", "dpi"],
    "time": ["years", "year", "months", "month", "hours", "hour", "minutes", "minute", "days", "day"],
}
_UNIT_OF = {u: cls for cls, units in _UNIT_CLASSES.items() for u in units}
# Longest first so "fl oz" wins over "fl", "inches" over "in".
_UNITS_RE = "|".join(re.escape(u) for u in sorted(_UNIT_OF, key=len, reverse=True))

_NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                 "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "twenty-four": 24,
                 "thirty": 30, "fifty": 50, "hundred": 100, "dozen": 12}

COLOURS = ("black", "white", "red", "blue", "green", "yellow", "orange", "purple", "pink", "brown", "gray", "grey",
           "silver", "gold", "teal", "navy", "beige", "turquoise", "violet", "magenta", "cyan", "ivory", "maroon",
           "lavender", "aqua", "bronze", "charcoal", "burgundy", "indigo", "lime", "tan", "khaki", "fuchsia",
           "coral", "mint", "rose gold", "neon")
_COLOUR_ALIASES = {"grey": "gray"}

_SIZE_PATTERNS = [
    (r"\bletter[- ]siz(?:e|ed)\b", "letter"), (r"\blegal[- ]siz(?:e|ed)\b", "legal"), (r"\btabloid\b", "tabloid"),
    (r"\bjumbo\b", "jumbo"), (r"\bmini\b", "mini"), (r"\bextra[- ]large\b", "extra large"),
    (r"\b(?:extra|ultra)[- ]fine\b", "fine"), (r"\bfine[- ]point\b", "fine"), (r"\bmedium[- ]point\b", "medium"),
    (r"\bbold[- ]point\b", "bold"), (r"\bwide[- ]ruled?\b", "wide"), (r"\bcollege[- ]ruled?\b", "college"),
    (r"\bnarrow[- ]ruled?\b", "narrow"),
]

# a number: "5 1/2", "5-1/2", "1/2", "1,000", "0.7", ".5", "12"
_NUM = r"(?:\d+(?:[ -]\d+/\d+)|\d+/\d+|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d*\.\d+|\d+)"
_NUMBER_RE = re.compile(
    r"(?<![\w.$/-])(?P<money>\$\s?)?(?P<dims>" + _NUM + r"(?:\s?(?:x|×|by)\s?" + _NUM + r"){0,2})"
    r"(?:(?P<sep>[- ]?)(?P<unit>" + _UNITS_RE + r")(?!\w))?(?(unit)|(?![\w/]))",
    re.IGNORECASE,
)
_PACK_OF_RE = re.compile(r"\b(?:pack|box|set|case|bag|carton|package|pkg)\s+of\s+(?P<n>" + _NUM + r"|"
                         + "|".join(_NUMBER_WORDS) + r")\b(?![/.-]\d|\s?(?:x|×)\s?\d)", re.IGNORECASE)
_WORD_PACK_RE = re.compile(r"\b(?P<w>" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True))
                           + r")[- ](?:pack|count|pk|pieces|piece|sets?|boxes)\b", re.IGNORECASE)
_DOZEN_RE = re.compile(r"\ba dozen\b", re.IGNORECASE)
# an alphanumeric code: letters and digits mixed (MG6320, PG-245, A4, 3M, X-ACTO is not one: no digit)
_MODEL_RE = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*(?![\w-])")
_ORDINAL_RE = re.compile(r"^\d+(?:st|nd|rd|th|s)$", re.IGNORECASE)  # "1st", "90s" are not model codes
_SENTENCE_RE = re.compile(r"[^.!?]+(?:[.!?]+(?=\s|$)|$)")


_DENOMINATORS = {2, 3, 4, 8, 16, 32, 64}  # the fractions written in product specs


def _value(num: str) -> Fraction:
    num = num.replace(",", "").strip()
    m = re.fullmatch(r"(\d+)[ -](\d+)/(\d+)", num)
    if m:
        return int(m.group(1)) + Fraction(int(m.group(2)), int(m.group(3)) or 1)
    m = re.fullmatch(r"(\d+)/(\d+)", num)
    if m:
        return Fraction(int(m.group(1)), int(m.group(2)) or 1)
    return Fraction(num)


def _norm_code(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


# ------------------------------------------------------------------------------------------- reports
@dataclass
class Claim:
    """One checkable statement found in a text."""

    kind: str  # number | pack | model | brand | colour | size
    text: str  # the words as written
    span: tuple[int, int]  # [start, end) in the checked text
    value: str = ""  # normalized value: "12", "5.5 length", "pilot", "blue"
    supported: bool = True
    reason: str = ""  # why it is (not) supported

    def __str__(self) -> str:
        mark = "ok" if self.supported else "UNSUPPORTED"
        return f"{mark} {self.kind} {self.text!r} @{self.span[0]}:{self.span[1]} ({self.reason})"


@dataclass
class GroundingReport:
    """The claims of one text and which of them the facts support."""

    text: str
    claims: list[Claim] = field(default_factory=list)

    @property
    def unsupported(self) -> list[Claim]:
        return [c for c in self.claims if not c.supported]

    @property
    def supported(self) -> bool:
        """True when no claim is unsupported (a text with no checkable claim is supported)."""
        return not self.unsupported

    def summary(self) -> str:
        u = self.unsupported
        if not u:
            return f"grounded ({len(self.claims)} claims checked)"
        return f"{len(u)} of {len(self.claims)} claims unsupported: " + "; ".join(f"{c.kind} {c.text!r}" for c in u)


# ---------------------------------------------------------------------------------------------- facts
@dataclass
class _Quantity:
    value: Fraction
    unit_class: str | None  # None when written without a unit


def _quantities(text: str) -> list[tuple[Fraction, str | None, str, tuple[int, int], bool]]:
    """(value, unit class, matched text, span, is money) for every number in `text`."""
    out = []
    for m in _NUMBER_RE.finditer(text):
        unit = m.group("unit")
        cls = _UNIT_OF.get(unit.lower()) if unit else None
        money = bool(m.group("money"))
        if unit and len(unit) == 1 and unit.isalpha() and not m.group("sep"):
            continue  # "3M", "5V"-like codes: a model code or brand, not a quantity
        if unit and unit.lower() == "in" and re.match(r"\s+[a-z]", text[m.end():]):
            cls = None  # "12 in all", "3 in one": the preposition, not inches
        for part in re.split(r"\s?(?:x|×|by)\s?", m.group("dims"), flags=re.IGNORECASE):
            f = re.fullmatch(r"(\d+)/(\d+)", part.strip())
            if f and not (int(f.group(2)) in _DENOMINATORS and int(f.group(1)) < int(f.group(2))):
                pieces = [f.group(1), f.group(2)]  # "HP 21/22", "240/241": two numbers, not a fraction
            else:
                pieces = [part]
            for piece in pieces:
                try:
                    v = _value(piece)
                except (ValueError, ZeroDivisionError):
                    continue
                out.append((v, "money" if money else cls, m.group(0), m.span(), money))
    return out


class BrandVocabulary:
    """The catalogue's brand names and how to spot them in free text.

    A brand that is also an ordinary word of the catalogue texts (it occurs in lowercase in titles or
    descriptions, e.g. "Compatible", "Cross", "Command") is only recognized when written capitalized
    inside a sentence, never at a sentence start, so everyday words are not taken for brands.
    """

    _GENERIC = {"compatible", "generic", "unknown", "unbranded", "n/a", "na", "none", "various", "other", "misc",
                "oem", "brand", "new"}

    def __init__(self, brands: Iterable[str], common_words: Iterable[str] = ()) -> None:
        names = {b.strip() for b in brands if b and b.strip()}
        names = {b for b in names if b.lower() not in self._GENERIC and len(b) >= 2}
        self.brands = sorted(names, key=lambda b: (-len(b), b))
        self.ambiguous = {b.lower() for b in names if b.lower() in set(common_words)}
        alts = "|".join(re.escape(b) for b in self.brands)
        self._re = re.compile(r"(?<![\w&'-])(?:" + alts + r")(?![\w&-]|'s\w)", re.IGNORECASE) if alts else None

    @classmethod
    def from_catalog(cls, catalog: Catalog | Sequence[Item], min_lowercase_uses: int = 2) -> "BrandVocabulary":
        items = list(catalog)
        brands = {it.brand for it in items if it.brand}
        lower_words: Counter[str] = Counter()
        single = {b.lower() for b in brands if re.fullmatch(r"[A-Za-z]+", b)}
        for it in items:
            for w in re.findall(r"\b[a-z]+\b", f"{it.title} {it.description}"):
                if w in single:
                    lower_words[w] += 1
        common = {w for w, n in lower_words.items() if n >= min_lowercase_uses}
        return cls(brands, common)

    def find(self, text: str) -> list[tuple[str, tuple[int, int]]]:
        """(brand as written, span) for each brand mention, longest names first, no overlaps."""
        if self._re is None:
            return []
        out = []
        for m in self._re.finditer(text):
            s = m.group(0)
            if s.lower() in self.ambiguous:
                if not s[0].isupper() or _at_sentence_start(text, m.start()):
                    continue
            out.append((s, m.span()))
        return out


def _at_sentence_start(text: str, pos: int) -> bool:
    before = text[:pos].rstrip(" \"'(")
    return not before or before[-1] in ".!?:\n"


@dataclass
class Facts:
    """What a narrative may state: the item(s), the user's history, and any user text it may echo."""

    items: list[Item]
    history: list[Item] = field(default_factory=list)
    extra_texts: list[str] = field(default_factory=list)  # e.g. the critique: the user's own words

    def __post_init__(self) -> None:
        parts: list[str] = []
        for it in self.items:
            parts += [it.title, it.brand, " ".join(it.categories), it.description]
            parts += [f"{k} {v}" for k, v in it.attributes.items()]
            if it.price is not None:
                parts.append(f"${it.price:.2f}")
        for it in self.history:
            parts += [it.title, it.brand, " ".join(it.categories)]
        parts += list(self.extra_texts)
        self.text = "\n".join(p for p in parts if p)
        self.lower = self.text.lower()
        self.codes = _norm_code(self.text)
        self.quantities = [_Quantity(v, cls) for v, cls, *_ in _quantities(self.text)]
        # digits inside codes ("PG-240XL", "51645A"): back a bare number claim ("the 240 cartridges"), no unit
        self.code_numbers = {Fraction(int(d)) for d in re.findall(r"\d+", self.text)}
        for w, n in _NUMBER_WORDS.items():
            if re.search(rf"\b{w}\b", self.lower):
                self.quantities.append(_Quantity(Fraction(n), None))
        self.prices = {round(it.price, 2) for it in self.items if it.price is not None}
        self.brands = {it.brand.lower() for it in [*self.items, *self.history] if it.brand}

    def has_quantity(self, value: Fraction, unit_class: str | None) -> bool:
        if unit_class is None and value in self.code_numbers:
            return True
        if unit_class == "money":
            return (round(float(value), 2) in self.prices
                    or any(q.value == value and q.unit_class == "money" for q in self.quantities))
        for q in self.quantities:
            if q.value != value:
                continue
            # a unit on only one side is fine ("12" vs "12 count"); two units must be of one class
            if unit_class is None or q.unit_class is None or q.unit_class == unit_class:
                return True
        return False

    def mentions(self, phrase: str) -> bool:
        return re.search(r"(?<![a-z])" + re.escape(phrase.lower()) + r"(?![a-z])", self.lower) is not None


# -------------------------------------------------------------------------------------------- checker
def extract_claims(text: str, brands: BrandVocabulary | None = None) -> list[Claim]:
    """Every checkable claim in `text`, unjudged (all marked supported), in text order."""
    claims: list[Claim] = []
    taken: list[tuple[int, int]] = []

    def free(span: tuple[int, int]) -> bool:
        return all(span[1] <= a or span[0] >= b for a, b in taken)

    def add(c: Claim) -> None:
        if free(c.span):
            claims.append(c)
            taken.append(c.span)

    # pack claims first, so "pack of 12" is one pack claim rather than a bare number
    for m in _PACK_OF_RE.finditer(text):
        n = m.group("n").lower()
        v = Fraction(_NUMBER_WORDS[n]) if n in _NUMBER_WORDS else _value(n)
        add(Claim("pack", m.group(0), m.span(), str(v)))
    for m in _WORD_PACK_RE.finditer(text):
        add(Claim("pack", m.group(0), m.span(), str(_NUMBER_WORDS[m.group("w").lower()])))
    for m in _DOZEN_RE.finditer(text):
        add(Claim("pack", m.group(0), m.span(), "12"))
    if brands is not None:
        for s, span in brands.find(text):
            add(Claim("brand", s, span, s.lower()))
    for m in _MODEL_RE.finditer(text):
        s = m.group(0)
        if _ORDINAL_RE.match(s) or re.fullmatch(r"\d+-?(?:" + _UNITS_RE + r")", s, re.IGNORECASE) \
                or re.fullmatch(r"\d+(?:x\d+)+", s, re.IGNORECASE):
            continue  # "12pk", "0.7mm"-like and "3x3" are quantities, handled below
        if re.fullmatch(r"\d+(?:\.\d+)?-[a-z]+", s):
            continue  # "3-ring", "240-series": a number before an ordinary word
        add(Claim("model", s, m.span(), _norm_code(s)))
    grouped: dict[tuple[int, int], tuple[str, str | None, list[Fraction]]] = {}
    for v, cls, s, span, _money in _quantities(text):  # "3x3 in" gives two values, one claim
        grouped.setdefault(span, (s, cls, []))[2].append(v)
    for span, (s, cls, values) in grouped.items():
        if not free(span):
            continue
        kind = "pack" if cls == "pack" else "number"
        claims.append(Claim(kind, s.strip(), span, ",".join(map(str, values)) + (f" {cls}" if cls else "")))
    taken.extend(span for _, _, _, span, _ in _quantities(text))
    for colour in COLOURS:
        for m in re.finditer(rf"(?<![\w-]){colour}(?![\w-])", text, re.IGNORECASE):
            if free(m.span()):
                add(Claim("colour", m.group(0), m.span(), _COLOUR_ALIASES.get(colour, colour)))
    for pat, val in _SIZE_PATTERNS:
        for m in re.finditer(pat, text, re.IGNORECASE):
            add(Claim("size", m.group(0), m.span(), val))
    claims.sort(key=lambda c: c.span)
    return claims


def _judge(c: Claim, facts: Facts) -> None:
    if c.kind in ("number", "pack"):
        parts = c.value.split(" ", 1)
        values, cls = [Fraction(x) for x in parts[0].split(",")], (parts[1] if len(parts) > 1 else None)
        if c.kind == "pack":
            cls = "pack"
        missing = [v for v in values if not facts.has_quantity(v, cls)]
        what = {"money": "price", "pack": "pack/count"}.get(cls or "", cls or "number")
        shown = " x ".join(f"{float(v):g}" for v in (missing or values))
        c.supported = not missing
        c.reason = f"{what} {shown} in the facts" if not missing else f"no {what} {shown} in the facts"
    elif c.kind == "model":
        ok = c.value in facts.codes
        c.supported, c.reason = ok, ("code in the facts" if ok else "code not in the facts")
    elif c.kind == "brand":
        if c.value in facts.brands:
            c.supported, c.reason = True, "the item's or a history brand"
        elif facts.mentions(c.value):
            c.supported, c.reason = True, "named in the fact texts"
        else:
            c.supported, c.reason = False, "brand is neither the item's nor in the history"
    elif c.kind == "colour":
        names = [c.value] + [k for k, v in _COLOUR_ALIASES.items() if v == c.value]
        ok = any(facts.mentions(n) for n in names)
        c.supported, c.reason = ok, ("colour in the facts" if ok else "colour not in the facts")
    elif c.kind == "size":
        ok = facts.mentions(c.value)
        c.supported, c.reason = ok, ("size in the facts" if ok else "size not in the facts")


def check_text(text: str, facts: Facts, brands: BrandVocabulary | None = None) -> GroundingReport:
    """Extract the claims of `text` and judge each against `facts`."""
    claims = extract_claims(text, brands)
    for c in claims:
        _judge(c, facts)
    return GroundingReport(text, claims)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """[start, end) spans of the sentences of `text` (a decimal point does not end a sentence)."""
    spans = []
    start = 0
    for m in re.finditer(r"[.!?]+(?=\s+|$)", text):
        end = m.end()
        if text[start:end].strip():
            spans.append((start, end))
        start = end
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def repair(text: str, report: GroundingReport) -> str:
    """`text` without the sentences that hold an unsupported claim ('' when none is left)."""
    bad = report.unsupported
    keep = []
    for a, b in split_sentences(text):
        if any(c.span[0] < b and c.span[1] > a for c in bad):
            continue
        keep.append(text[a:b].strip())
    return " ".join(keep).strip()


class GroundingChecker:
    """Checks narratives against catalogue facts; knows the catalogue's brand vocabulary."""

    def __init__(self, brands: BrandVocabulary | Catalog | Sequence[Item] | Iterable[str] | None = None) -> None:
        if brands is None:
            self.brands = BrandVocabulary([])
        elif isinstance(brands, BrandVocabulary):
            self.brands = brands
        else:
            seq = list(brands)
            if seq and all(isinstance(b, Item) for b in seq):
                self.brands = BrandVocabulary.from_catalog(seq)
            else:
                self.brands = BrandVocabulary([str(b) for b in seq])

    def facts(self, items: Item | Sequence[Item], history: Sequence[Item] = (),
              extra_texts: Sequence[str] = ()) -> Facts:
        items = [items] if isinstance(items, Item) else list(items)
        return Facts(items, list(history), [t for t in extra_texts if t])

    def check(self, text: str, items: Item | Sequence[Item] | Facts, history: Sequence[Item] = (),
              extra_texts: Sequence[str] = ()) -> GroundingReport:
        facts = items if isinstance(items, Facts) else self.facts(items, history, extra_texts)
        return check_text(text, facts, self.brands)

    def repair(self, text: str, items: Item | Sequence[Item] | Facts, history: Sequence[Item] = (),
               extra_texts: Sequence[str] = ()) -> tuple[str, GroundingReport]:
        """The text without unsupported sentences, and the report of the original text."""
        report = self.check(text, items, history, extra_texts)
        return (text if report.supported else repair(text, report)), report
