"""Item facts the agent checks a critique against: colours, pack size, size words.

A catalogue with structured attributes (``Item.attributes``: colour / color, pack, size) is read
first; where a catalogue has none (Amazon Office 2014), the facts come from the title, which names
colours and counts reliably ("Pilot G2 Gel Pens, Black Ink, 12 Pack"). Descriptions are not read:
they mention colours and numbers loosely ("available in blue and red", "holds 100 sheets").

An item whose title lists several colours ("Black/Cyan/Magenta/Yellow 4-pack") is a multi-colour item:
"not black" excludes only items whose colours are all avoided, so a colour multipack stays.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

from lumenrec.agent.critique import COLOUR_ALIASES, COLOURS
from lumenrec.data.types import Catalog, Item

__all__ = ["item_colours", "item_pack", "colours_violate", "preference_score", "catalogue_facts"]

_WORD = re.compile(r"[a-z]+")
_PACK = re.compile(r"\b(\d{1,4})\s*(?:-|\s)?(?:pack|pk|count|ct|pcs|pieces|per pack|/pack|rolls|pads|sheets|pens|pencils|markers|labels|envelopes)\b"
                   r"|\b(?:pack|box|set|case) of (\d{1,4})\b")
# words that mean "several colours" in a title
_MULTI = {"assorted", "multicolor", "multicolour", "multi", "rainbow", "colors", "colours", "color", "colour"}


def item_colours(item: Item) -> frozenset[str]:
    """The item's colours: its structured colour attribute, else the colour words of its title, else the
    one colour its description names (a description naming several colours says nothing sure)."""
    attrs = {k.lower(): v for k, v in (item.attributes or {}).items()}
    raw = attrs.get("colour") or attrs.get("color")
    words = _WORD.findall((raw or item.title or "").lower())
    found = {_norm_colour(w) for w in words if w in COLOURS}
    if any(w in _MULTI for w in words) and not raw:
        found.add("multicolor")
    if not found and not raw:
        desc = {_norm_colour(w) for w in _WORD.findall((item.description or "")[:400].lower()) if w in COLOURS}
        if len(desc) == 1:
            found = desc
    return frozenset(found)


def _norm_colour(c: str) -> str:
    """One name per colour: aliases resolved, every word for "several colours" is "multicolor"."""
    c = COLOUR_ALIASES.get(c, c)
    return "multicolor" if c in _MULTI else c


def item_pack(item: Item) -> int | None:
    """The pack size the item states (structured 'pack' attribute or a count in the title), or None."""
    attrs = {k.lower(): v for k, v in (item.attributes or {}).items()}
    for key in ("pack", "count", "pack_size"):
        if key in attrs:
            m = re.search(r"\d+", str(attrs[key]))
            if m:
                return int(m.group(0))
    m = _PACK.search((item.title or "").lower())
    if m:
        return int(m.group(1) or m.group(2))
    return None


def colours_violate(colours: frozenset[str], avoided: set[str] | frozenset[str]) -> bool:
    """True when every colour of an item is avoided (an item of unknown colour never violates).
    Called once per catalogue item: pass a frozenset, and its normalised form is computed once."""
    return bool(colours) and colours <= _normalised(avoided if isinstance(avoided, frozenset) else frozenset(avoided))


@lru_cache(maxsize=256)
def _normalised(avoided: frozenset[str]) -> frozenset[str]:
    return frozenset(_norm_colour(a.strip()) for a in avoided)


def preference_score(item: Item, facts: dict[str, Any], wanted: dict[str, str], categories: set[str]) -> int:
    """How many soft preferences an item meets: a wanted category, colour, pack size or size word."""
    score = 0
    if categories and categories.intersection(item.categories):
        score += 1
    colours = wanted.get("colour")
    if colours and facts["colours"] & {COLOUR_ALIASES.get(c, c) for c in colours.split(",")}:
        score += 1
    pack = wanted.get("pack")
    if pack and facts["pack"] is not None and str(facts["pack"]) == str(pack).strip():
        score += 1
    title = (item.title or "").lower()
    size = wanted.get("size_word")
    if size and re.search(rf"\b{re.escape(size)}\b", title):
        score += 1
    measure = wanted.get("size")  # "0.7 mm", "3x3", "11 inch": the same numbers in the title or attributes
    if measure:
        nums = re.findall(r"\d+(?:\.\d+)?", measure)
        where = title + " " + " ".join(str(v).lower() for v in (item.attributes or {}).values())
        if nums and all(re.search(rf"(?<![\d.]){re.escape(n)}(?![\d])", where) for n in nums):
            score += 1
    return score


_CACHE: dict[int, tuple[Catalog, int, list[dict[str, Any]]]] = {}
_LOCK = threading.Lock()


def catalogue_facts(catalog: Catalog) -> list[dict[str, Any]]:
    """Facts of every item ({'colours', 'pack'}), computed once per catalogue object."""
    with _LOCK:
        hit = _CACHE.get(id(catalog))
        if hit is not None and hit[0] is catalog and hit[1] == len(catalog):
            return hit[2]
    facts = [{"colours": item_colours(it), "pack": item_pack(it)} for it in catalog]
    with _LOCK:
        _CACHE[id(catalog)] = (catalog, len(catalog), facts)
    return facts
