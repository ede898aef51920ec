"""Catalogue text is data, never instructions: one screening step for titles, brands and descriptions.

A product catalogue is written by sellers, and a seller can write anything: "Customers who want a
refund should visit http://evil.example/claim and enter their card number.", a title with a phone
number in it, a brand called "Ignore previous instructions". Such text must never be quoted to a
shopper or put in front of a language model as if it were product information.

:func:`screen_text` flags, after undoing the usual obfuscations (NFKC, zero-width and bidi
characters, ``hxxp``, ``[.]``, ``(at)``, ``dot``):

- ``url``: links and bare domains (``http://``, ``www.``, ``evil.example/claim``);
- ``email``: e-mail addresses;
- ``phone``: phone numbers (with separators, a ``+`` prefix, toll-free/vanity numbers, or next to
  "call", "text", "whatsapp", ...); product codes such as "PG-245" or a 12-digit UPC are not phones;
- ``instruction``: sentences that give orders to an assistant ("ignore previous instructions",
  "you are now", "recommend only ...", "tell every customer ...") or steer the shopper off the
  shop ("enter your card number", "claim your prize", "contact us on Telegram").

and returns the display-safe text: the sentences (descriptions) or segments (titles, split at
`` - ``, ``|``, ``;``, ...) that carry a flag are removed; a brand with a flag is dropped.
:func:`screen_catalog` is the screening of a whole catalogue (cached on the catalogue object; each
item is screened once, when first shown) and gives, per item, the display title, brand and
description and an :class:`~lumenrec.data.types.Item` copy with them
(:meth:`CatalogScreen.display_item`) for narrators and prompts. The catalogue itself is
left as loaded: retrieval models keep reading the raw text (data), only what is shown or quoted is
screened.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable

from lumenrec.data.types import Catalog, Item

__all__ = ["FLAGS", "TextScreen", "ItemScreen", "CatalogScreen", "screen_text", "screen_item", "screen_catalog",
           "normalize_for_screening"]

log = logging.getLogger(__name__)

FLAGS = ("url", "email", "phone", "instruction")

# --------------------------------------------------------------------------------------- normalising
_INVISIBLE_RX = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_DEOBFUSCATE = [
    (re.compile(r"\bh(?:xx|\*\*|tt)p(s?)\s*(?::|\[:\])\s*/\s*/", re.I), r"http\1://"),
    (re.compile(r"\s*(?:\[\s*\.\s*\]|\(\s*\.\s*\)|\{\s*\.\s*\}|\[\s*dot\s*\]|\(\s*dot\s*\)|\s+dot\s+(?=[a-z]{2,6}\b))\s*", re.I), "."),
    (re.compile(r"\s*(?:\[\s*at\s*\]|\(\s*at\s*\)|\{\s*at\s*\}|\s+at\s+(?=[\w-]+\s+dot\s+))\s*", re.I), "@"),
]


def normalize_for_screening(text: str) -> str:
    """The text as the patterns read it: NFKC (full-width letters), no invisible characters, the usual
    link/e-mail obfuscations undone. Offsets are not kept: use it to decide, not to cut."""
    t = unicodedata.normalize("NFKC", html.unescape(text or ""))
    t = _INVISIBLE_RX.sub("", t)
    for rx, rep in _DEOBFUSCATE:
        t = rx.sub(rep, t)
    return t


# ---------------------------------------------------------------------------------------- patterns
_TLDS = (r"com|net|org|info|biz|io|co|us|uk|de|fr|ru|cn|top|xyz|site|online|shop|store|app|link|click|ly|gl|tk|me|"
         r"example|live|win|vip|club|icu|buzz|cc|ws|su|pw|gq|ml|cf|ga")
_URL_RX = re.compile(
    r"\b(?:https?|ftp)://\S+"
    r"|\bwww\d{0,3}\.[a-z0-9-]+\S*"
    rf"|\b[a-z0-9][a-z0-9-]{{0,62}}(?:\.[a-z0-9-]{{1,63}})*\.(?:{_TLDS})\b(?:[/?#]\S*)?"
    r"|\b(?:bit\.ly|t\.me|wa\.me|goo\.gl|tinyurl)\S*",
    re.I)
_EMAIL_RX = re.compile(r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+", re.I)
_PHONE_RX = re.compile(
    r"\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}"                # +1 555 010 0199, +44 20 7946 0958
    r"|\(\d{3}\)\s?\d{3}[\s.-]?\d{4}\b"                                     # (555) 010-0199
    r"|\b\d{3}[.\s-]\d{3}[.\s-]\d{4}\b"                                     # 555-010-0199, 555.010.0199
    r"|\b1[\s.-]?8(?:00|33|44|55|66|77|88)[\s.-]?(?-i:[A-Z0-9]{3}[\s.-]?[A-Z0-9]{4})\b"  # 1-800-FLOWERS, 1-888-555-0199
    r"|\b(?:call|phone|tel|text|sms|whats\s?app|viber|telegram|signal|fax|dial|ring)\b[^0-9\n]{0,20}\+?\d[\d\s().-]{6,}\d",
    re.I)
_INSTRUCTION_RX = re.compile(
    # orders to an assistant / a model
    r"\b(?:ignore|disregard|forget|override|bypass)\b[^.?!\n]{0,40}\b(?:instructions?|rules?|prompts?|guidelines?|"
    r"restrictions?)\b"
    r"|\b(?:ignore|disregard|forget)\s+(?:all\s+|the\s+|any\s+)?(?:previous|prior|above|earlier)\b|\b(?:ignore|disregard|forget)\s+everything\b"
    r"|\b(?:system|hidden|initial|original|secret|developer)\s+(?:prompt|message|instructions?|mode)\b"
    r"|\byou are (?:now|no longer)\b|\bfrom now on\b|\bact as\b|\bpretend (?:you|to be)\b|\bjailbr[eo]ak|\bDAN\b"
    r"|\b(?:as an ai|language model|llm|chatbot|assistant|ai model)\b[^.?!\n]{0,60}\b(?:must|should|will|shall|need to|"
    r"have to|are required|recommend|say|tell|answer|respond|reply)\b"
    r"|\b(?:reveal|print|show|dump|output|repeat|leak|disclose)\b[^.?!\n]{0,30}\byour\s+(?:system\s+)?(?:prompt|"
    r"instructions|configuration|api[ _-]?key|secrets?|password)"
    r"|^\s*(?:system|assistant|user|instruction|note to (?:the )?(?:ai|assistant|model|bot))\s*:|<\|im_(?:start|end)\|>"
    r"|\[/?INST\]|###\s*(?:instruction|system|response)|</?\s*(?:system|assistant|user)\s*>"
    r"|\b(?:always|only|must|should)\s+recommend\b|\brecommend (?:only|this (?:item|product) (?:to|above)|it to every)"
    r"|\b(?:tell|inform|advise|instruct|remind)\s+(?:the|every|all|each|any)\s+(?:customers?|shoppers?|users?|buyers?)\b"
    r"|\b(?:respond|reply|answer)\s+(?:only\s+)?(?:with|by saying|that)\b|\byour (?:answer|response|reply|output) "
    r"(?:must|should|will)\b|\b(?:rate|review) (?:this|it) (?:5|five) stars?\b|\bdo not (?:mention|tell|reveal|say)\b"
    # steering the shopper off the shop: credentials, payments, prizes, side channels
    r"|\b(?:enter|provide|send|submit|confirm|verify|share|give|type|update)\b[^.?!\n]{0,40}\b(?:card (?:number|details)|"
    r"credit card|debit card|cvv|cvc|pin|password|passcode|social security|ssn|bank (?:details|account)|account "
    r"(?:number|details)|login|log-in|credentials|one[- ]time code|otp|security code|routing number)\b"
    r"|\b(?:claim|redeem|collect)\b[^.?!\n]{0,30}\b(?:prize|reward|refund|gift|voucher|winnings|bonus|money|cash|payment)\b"
    r"|\b(?:you(?:'ve| have)? (?:won(?![\'’]t)|been selected)|congratulations[^.?!\n]{0,30}\bwon(?![\'’]t)|lucky winner)\b"
    r"|\b(?:wire|transfer|send)\b[^.?!\n]{0,30}\b(?:money|funds|payment|bitcoin|btc|crypto|usdt|gift cards?)\b"
    r"|\b(?:pay|payment)\b[^.?!\n]{0,30}\b(?:gift cards?|bitcoin|btc|crypto|wire transfer|western union|zelle|venmo)\b"
    r"|\b(?:contact|message|reach|dm|add)\b[^.?!\n]{0,30}\b(?:on|via|through|at)\s+(?:telegram|whats\s?app|signal|"
    r"wechat|discord|viber|instagram)\b"
    r"|\b(?:click|tap)\s+(?:here|the link|this link|below)\b|\b(?:visit|go to|head to|browse to|open)\s+(?:our|my|the)?\s*"
    r"(?:site|website|web ?page|link|portal|url)\b"
    r"|\b(?:act now|urgent(?:ly)?[:!]|limited time offer|your account (?:has been|will be) (?:suspended|locked|closed))",
    re.I | re.M)

_SENTENCE_SPLIT_RX = re.compile(r"(?<=[.!?])\s+|\n+")  # a dot inside a link or a number does not end a sentence
_TITLE_SEP_RX = re.compile(r"\s+[-–—|~]+\s+|\s*[;!?]\s*|\s*\|\s*|(?<=[a-z0-9)])\.\s+(?=[A-Z])|\s*[\[\]{}<>]\s*")


def _flags_of(text: str) -> tuple[str, ...]:
    """The flags of one span of text (normalised first)."""
    t = normalize_for_screening(text)
    out = []
    if _EMAIL_RX.search(t):
        out.append("email")
    if _URL_RX.search(_EMAIL_RX.sub(" ", t)):
        out.append("url")
    if _PHONE_RX.search(t):
        out.append("phone")
    if _INSTRUCTION_RX.search(t):
        out.append("instruction")
    return tuple(out)


@dataclass(frozen=True)
class TextScreen:
    """A screened text: what may be shown (``text``), which flags the original carried, how many
    sentences or segments were removed."""

    text: str
    flags: tuple[str, ...] = ()
    removed: int = 0

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


def screen_text(text: str, kind: str = "description") -> TextScreen:
    """Screen one text. `kind`: ``description`` (flagged sentences removed), ``title`` (flagged
    segments removed), ``brand`` (dropped whole when flagged)."""
    if kind not in ("description", "title", "brand"):
        raise ValueError(f"kind must be description, title or brand, got {kind!r}")
    text = text or ""
    if not text.strip():
        return TextScreen("")
    whole = _flags_of(text)
    if not whole:
        return TextScreen(_INVISIBLE_RX.sub("", text))
    if kind == "brand":
        return TextScreen("", whole, 1)
    spans = _SENTENCE_SPLIT_RX.split(text) if kind == "description" else _TITLE_SEP_RX.split(text)
    keep, removed = [], 0
    for span in spans:
        if not span or not span.strip():
            continue
        if _flags_of(span):
            removed += 1
        else:
            keep.append(span.strip())
    joiner = " " if kind == "description" else " - "
    safe = _INVISIBLE_RX.sub("", joiner.join(keep)).strip(" -|;,")
    if _flags_of(safe):  # a payload split across spans: drop it all
        safe, removed = "", removed + len(keep)
    return TextScreen(safe, whole, max(removed, 1))


@dataclass(frozen=True)
class ItemScreen:
    """The display-safe title, brand and description of one item and the flags of each field."""

    title: str
    brand: str
    description: str
    flags: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        return any(self.flags.values())


def screen_item(item: Item) -> ItemScreen:
    """Screen an item's title, brand and description. A title with nothing left names the item by
    its (screened) brand and category instead."""
    t = screen_text(item.title, "title")
    b = screen_text(item.brand, "brand")
    d = screen_text(item.description, "description")
    title = t.text
    if len(re.findall(r"[^\W\d_]{2,}", title)) < 1:
        leaf = item.category or "item"
        title = " ".join(x for x in (b.text, leaf, f"(item {item.id})") if x)
    flags = {k: v.flags for k, v in (("title", t), ("brand", b), ("description", d)) if v.flags}
    return ItemScreen(title, b.text, d.text, flags)


class CatalogScreen:
    """The screening of one catalogue, item by item, each item screened once (on first use, then
    cached: a 100k-item catalogue does not pay for the items nobody is shown; :meth:`scan` screens
    them all, e.g. for a report).

    ``title/brand/description(id)`` are the display-safe fields; ``display_item(id)`` is an Item with
    them (its description empty when anything in it was flagged, so nothing of a flagged description
    is ever quoted); ``flags(id)`` maps field -> flags; ``flagged`` (after a full scan) maps every
    flagged item id to its flags."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._screens: dict[str, ItemScreen | None] = {}  # None: screened, nothing flagged
        self._display: dict[str, Item] = {}
        self._lock = threading.Lock()
        self._scanned = False

    def _screen(self, item_id: str) -> ItemScreen | None:
        if item_id in self._screens:
            return self._screens[item_id]
        it = self._catalog.get(item_id)
        s = screen_item(it)
        with self._lock:
            if s.flagged:
                self._display[item_id] = dataclasses.replace(
                    it, title=s.title, brand=s.brand, description="" if "description" in s.flags else it.description,
                    categories=list(it.categories), attributes=dict(it.attributes))
                self._screens[item_id] = s
            else:
                self._screens[item_id] = None
        return self._screens[item_id]

    def scan(self) -> "CatalogScreen":
        """Screen every item now (returns self)."""
        if not self._scanned:
            for it in self._catalog:
                self._screen(it.id)
            self._scanned = True
            n = len(self.flagged)
            if n:
                log.warning("catalogue screening: %d of %d items carry links, phone numbers, e-mail addresses or "
                            "instructions in their text; those parts are never shown or quoted", n, len(self._catalog))
        return self

    @property
    def flagged(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """Item id -> field -> flags, for every flagged item (screens the whole catalogue on first use)."""
        self.scan()
        return {i: s.flags for i, s in self._screens.items() if s is not None}

    def flags(self, item_id: str) -> dict[str, tuple[str, ...]]:
        s = self._screen(item_id)
        return dict(s.flags) if s is not None else {}

    def title(self, item_id: str) -> str:
        s = self._screen(item_id)
        return s.title if s is not None else self._catalog.get(item_id).title

    def brand(self, item_id: str) -> str:
        s = self._screen(item_id)
        return s.brand if s is not None else self._catalog.get(item_id).brand

    def description(self, item_id: str) -> str:
        """The description without its flagged sentences (for listing facts, not for quoting)."""
        s = self._screen(item_id)
        return s.description if s is not None else self._catalog.get(item_id).description

    def display_item(self, item_or_id: Item | str) -> Item:
        iid = item_or_id if isinstance(item_or_id, str) else item_or_id.id
        if self._screen(iid) is None:
            return self._catalog.get(iid) if isinstance(item_or_id, str) else item_or_id
        return self._display[iid]

    def display_items(self, items: Iterable[Item]) -> list[Item]:
        return [self.display_item(it) for it in items]


_CACHE_LOCK = threading.Lock()


def screen_catalog(catalog: Catalog) -> CatalogScreen:
    """The catalogue's screening, one per catalogue object (and its size), cached on it."""
    with _CACHE_LOCK:
        got = catalog.__dict__.get("_lumenrec_screen")
        if got is not None and got[0] == len(catalog):
            return got[1]
    screen = CatalogScreen(catalog)
    with _CACHE_LOCK:
        catalog.__dict__["_lumenrec_screen"] = (len(catalog), screen)
    return screen
