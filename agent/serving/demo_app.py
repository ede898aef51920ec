"""The Gradio chat demo: streaming replies, item cards, critique chips, a side panel, an LLM switch.

    lumenrec demo --data synthetic --host 127.0.0.1 --port 7860      # or: python demo.py
    lumenrec demo --model runs/office                                # the built system

- The logic lives in :class:`DemoBackend` (plain Python, unit-tested without a browser);
  :func:`build_app` only wires it to Gradio 6 components (Chatbot in the messages format).
- Every browser tab gets its own session id in a ``gr.State`` (set on page load), so several
  shoppers at once never see each other's history or constraints. Clear (the chat's bin icon) and
  "Start new chat" drop the session itself (constraints, rejections, turns), not only the display.
- **Chips are built per reply** from what was shown (:meth:`DemoBackend.chips_for`): "not <brand>"
  for the brands present, "under $X" (the median shown price) when prices exist, "not <colour>" for
  the most frequent colour shown. A chip is offered only when the critique parser reads it as meant
  (so a chip always has an effect); its label is the message it sends.
- **One turn at a time**: Send, the text box, the chips and the constraint buttons are disabled
  while a turn runs, and the backend refuses a second turn on a busy session (no empty bubble);
  a status line counts the seconds of a slow turn.
- **Each item once**: the bubble keeps the reply's words, the cards carry the items (title, price,
  brand, category placeholder image, why), in the agent's display-safe (screened) text with HTML
  entities (``&reg;``) decoded, once per item (:meth:`DemoBackend.view`).
- **Active constraints** are listed in words, each a button that removes it.
- **The LLM switch fails fast**: the URL is validated and probed when entered (``GET /models``,
  2 s); a turn probes it again (cached 15 s) and skips the LLM when it does not answer; within a
  turn the first LLM failure (router or narrator) sends the rest of that turn to the offline agent.
- Offline by design: analytics off, system fonts only (no Google Fonts), no share link, no SSR.
"""

from __future__ import annotations

import copy
import html
import json
import logging
import math
import os
import queue
import re
import statistics
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

from lumenrec.errors import ConfigError, LLMError, LumenrecError, MissingExtraError

__all__ = ["DemoConfig", "DemoBackend", "ItemView", "build_app", "launch", "render_cards", "render_side",
           "constraint_parts", "validate_llm_url", "probe_llm", "clean_text",
           "MAX_CHIPS", "MAX_CONSTRAINTS"]

log = logging.getLogger(__name__)

MAX_CHIPS = 6  # chip buttons under the chat (hidden when a reply offers fewer)
MAX_CONSTRAINTS = 10  # removable constraint buttons in the side panel
REMOVE_MARK = " \u2715"  # "not BIC ✕": a constraint button's label is its words plus this mark

SYSTEM_FONTS = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]

# Placeholder image backgrounds: white text on each has a contrast ratio >= 4.5:1 (WCAG AA).
PLACEHOLDER_COLOURS = ("#0b5cad", "#2e6b30", "#7b1fa2", "#b3261e", "#00695c", "#5d4037", "#37474f", "#ad1457")

CSS = """
.lr-cards{display:flex;flex-wrap:wrap;gap:10px}
.lr-card{border:1px solid #d0d7de;border-radius:8px;padding:10px 12px;flex:1 1 210px;max-width:340px;background:#fff;color:#1f2328;
         display:flex;gap:10px;align-items:flex-start;box-sizing:border-box}
.lr-card .lr-img{flex:0 0 56px;width:56px;height:56px}
.lr-card .lr-body{min-width:0}
.lr-card .lr-rank{color:#57606a;font-size:12px}
.lr-card .lr-title{font-weight:600;margin:2px 0 4px 0}
.lr-card .lr-meta{color:#57606a;font-size:12px;margin-bottom:2px}
.lr-card .lr-price{font-weight:600;font-size:13px;margin-bottom:6px}
.lr-card .lr-price.lr-none{font-weight:400;color:#57606a}
.lr-card .lr-why{font-size:13px}
.lr-side h4{margin:6px 0 2px 0}
.lr-empty{color:#57606a;font-style:italic}
#lr-status{min-height:1.4em}
#lr-status .lr-status{color:#3d4450;font-size:14px}
#lr-chips, #lr-cons{flex-wrap:wrap;gap:6px}
#lr-chips button, #lr-cons button{flex:0 0 auto !important;min-width:0 !important;width:auto !important}
#lr-chat .bubble-wrap:focus-visible, .lr-cards:focus-visible{outline:3px solid #0b5cad;outline-offset:2px}
@media (max-width: 640px){
  #lr-chat{height:300px !important}
  .lr-cards{flex-wrap:nowrap;overflow-x:auto;scroll-snap-type:x mandatory;padding-bottom:6px}
  .lr-card{flex:0 0 82%;max-width:none;scroll-snap-align:start}
}
"""

# The chat log scrolls; axe (scrollable-region-focusable) wants it reachable by keyboard: give it a tab stop.
HEAD = """<script>
(() => {
  const fix = () => document.querySelectorAll('#lr-chat [role="log"], #lr-chat .bubble-wrap').forEach(el => {
    if (!el.hasAttribute('tabindex')) el.setAttribute('tabindex', '0');
  });
  new MutationObserver(fix).observe(document.documentElement, {childList: true, subtree: true});
  window.addEventListener('DOMContentLoaded', fix);
})();
</script>"""


@dataclass
class DemoConfig:
    """What the demo serves and where."""

    # Registered dataset name or path: its catalogue is recommended from, its conversations give sample users.
    data: str = "synthetic"
    # A Recommender.from_pretrained directory (the built system) instead of a text retriever over `data`.
    recommender_dir: str | None = None
    # Loopback by default: the demo has no authentication.
    host: str = "127.0.0.1"
    port: int = 7860
    # Pre-filled in the LLM switch (empty: nothing configured; the shopper may type one).
    llm_base_url: str = ""
    llm_model: str = "SmolLM2-135M-Instruct"
    # Seconds one LLM call (a router turn, one narrative) may take; the first failure ends the LLM's part of a turn.
    llm_timeout_s: float = 20.0
    # Seconds the reachability probe (GET <base_url>/models) may take, on entry and before a turn.
    llm_probe_timeout_s: float = 2.0
    # A turn still running after this many seconds shows a pending status line that counts up.
    pending_after_s: float = 1.0
    # Sample users offered in the dropdown (the first N conversations).
    max_sample_users: int = 50

    def __post_init__(self) -> None:
        if not 0 <= int(self.port) <= 65535:
            raise ConfigError("port", self.port, "must be in [0, 65535]")
        if self.llm_base_url and self.llm_base_url != "local":  # "local": the in-process model (#19)
            validate_llm_url(self.llm_base_url)
        if self.max_sample_users < 0:
            raise ConfigError("max_sample_users", self.max_sample_users, "must be >= 0")
        for name in ("llm_timeout_s", "llm_probe_timeout_s", "pending_after_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(name, v, "must be a number > 0")


# ------------------------------------------------------------------------------------------- text
_ITEM_LINE = re.compile(r"^\s*\d{1,2}\.\s")


def clean_text(s: str | None) -> str:
    """Catalogue text for display: HTML entities decoded ('&reg;' -> '®', also when double-encoded)."""
    s = s or ""
    for _ in range(2):
        if "&" not in s:
            break
        s = html.unescape(s)
    return s.replace("\u00a0", " ").strip()


def _money(v: float) -> str:
    return f"${v:,.2f}"


@dataclass(frozen=True)
class ItemView:
    """An item as the demo shows it: decoded text, the effective brand (from the title when the brand
    field is empty), the leaf category, the price (None: not listed) and the colours it comes in."""

    id: str
    title: str
    brand: str
    category: str
    price: float | None
    colours: tuple[str, ...] = ()


def _colours(item) -> tuple[str, ...]:
    """Colours of an item: its colour attribute, else colour words of its title."""
    from lumenrec.agent.critique import COLOUR_ALIASES, COLOURS

    attrs = item.attributes or {}
    raw = attrs.get("colour") or attrs.get("color") or ""
    words = re.findall(r"[a-z]+", raw.lower()) if raw else re.findall(r"[a-z]+", clean_text(item.title).lower())
    out = [COLOUR_ALIASES.get(w, w) for w in words if w in COLOURS]
    return tuple(dict.fromkeys(c for c in out if c not in ("assorted", "multicolor")))


# --------------------------------------------------------------------------------------- rendering
def _placeholder(category: str) -> str:
    """A category placeholder image: an inline SVG tile with the category's initials (no download)."""
    words = re.findall(r"[A-Za-z]+", category)
    initials = ("".join(w[0] for w in words[:2]) or "?").upper()
    fill = PLACEHOLDER_COLOURS[zlib.crc32(category.encode("utf-8")) % len(PLACEHOLDER_COLOURS)]
    label = html.escape(f"{category or 'item'} (placeholder image)", quote=True)
    return (f'<svg class="lr-img" role="img" aria-label="{label}" viewBox="0 0 56 56" width="56" height="56">'
            f'<rect width="56" height="56" rx="8" fill="{fill}"/>'
            f'<text x="28" y="35" text-anchor="middle" font-size="20" font-weight="600" fill="#ffffff" '
            f'font-family="system-ui, sans-serif" aria-hidden="true">{html.escape(initials)}</text></svg>')


def render_cards(items: list[dict[str, Any]], *, prices: bool = True) -> str:
    """Item cards as HTML: rank, placeholder image, title, brand and category, price, the 'why'.

    `items` are dicts with id, title, brand, category, price (None: not listed) and why; text is
    escaped here (decode entities before: :func:`clean_text`). `prices=False`: the catalogue has
    none, which one line above the cards says (instead of 'price not listed' on every card).
    """
    if not items:
        return '<div class="lr-empty">No items yet: ask for something, e.g. "I need gel pens".</div>'
    cards = []
    for i, it in enumerate(items, 1):
        meta = " &middot; ".join(html.escape(x) for x in (it.get("brand", ""), it.get("category", "")) if x)
        price = it.get("price")
        price_html = ("" if not prices else f'<div class="lr-price">{_money(price)}</div>' if price is not None
                      else '<div class="lr-price lr-none">price not listed</div>')
        why = f'<div class="lr-why">{html.escape(it["why"])}</div>' if it.get("why") else ""
        cards.append(f'<div class="lr-card" data-item-id="{html.escape(it["id"], quote=True)}">'
                     f'{_placeholder(it.get("category", ""))}<div class="lr-body"><div class="lr-rank">#{i}</div>'
                     f'<div class="lr-title">{html.escape(it["title"])}</div><div class="lr-meta">{meta}</div>'
                     f'{price_html}{why}</div></div>')
    # a horizontal strip on narrow screens scrolls: a tab stop and a name make it keyboard-reachable
    note = "" if prices else '<div class="lr-empty lr-noprices">This catalogue lists no prices.</div>'
    return (note + '<div class="lr-cards" role="region" aria-label="Recommended items" tabindex="0">'
            + "".join(cards) + "</div>")


def render_side(summary: str, history_titles: list[str]) -> str:
    """The side panel's text: the learned user summary and the history."""
    hist = "".join(f"<li>{html.escape(t)}</li>" for t in history_titles[-8:])
    return ('<div class="lr-side">'
            f'<h4>What I learned about you</h4><div class="lr-summary">{html.escape(summary) or "<i>nothing yet</i>"}</div>'
            f'<h4>History ({len(history_titles)} items)</h4><ul>{hist or "<li><i>empty: starting from scratch</i></li>"}</ul>'
            "</div>")


def render_constraints_head(parts: list[str]) -> str:
    """The heading over the constraint buttons ('none' when there are none)."""
    if not parts:
        return '<div class="lr-side"><h4>Active constraints</h4><div class="lr-constraints"><i>none</i></div></div>'
    return ('<div class="lr-side"><h4>Active constraints</h4>'
            f'<div class="lr-constraints lr-hint">{len(parts)} active; select one to remove it.</div></div>')


def render_status(text: str) -> str:
    return f'<div class="lr-status" role="status" aria-live="polite">{html.escape(text)}</div>'


# ------------------------------------------------------------------------------------- constraints
# How attribute keys read in words (the agent core's keys: colour, pack, size_word, paper_size, oem, ...).
_ATTR_WORDS = {"size_word": "size", "paper_size": "paper", "pack": "pack of", "oem": "original brand:"}


def constraint_parts(c, rejected: int = 0) -> list[tuple[str, tuple[str, str | None]]]:
    """The active constraints in words, one entry per removable constraint: [(words, (field, value))],
    where ``Recommender.remove_constraint(session_id, field, value)`` removes it (field "rejected":
    the shown items the shopper dismissed, `rejected` of them). Brands and categories are one entry
    per name, attributes one per key ("colour blue or red"), prices one per bound."""
    parts: list[tuple[str, tuple[str, str | None]]] = []
    for b in c.include_brands:
        parts.append((f"brand {clean_text(b)}", ("include_brands", b)))
    for b in c.exclude_brands:
        parts.append((f"not {clean_text(b)}", ("exclude_brands", b)))
    for cat in c.include_categories:
        parts.append((f"in {clean_text(cat)}", ("include_categories", cat)))
    for cat in c.exclude_categories:
        parts.append((f"no {clean_text(cat)}", ("exclude_categories", cat)))
    for k, v in sorted(c.attributes.items()):
        parts.append((f"{_ATTR_WORDS.get(k, k)} {' or '.join(x for x in str(v).split(',') if x)}", ("attributes", k)))
    for k, v in sorted(c.avoid_attributes.items()):
        vals = " or ".join(x for x in str(v).split(",") if x)
        parts.append((f"not {vals}" if k in ("colour", "color") else f"not {_ATTR_WORDS.get(k, k)} {vals}",
                      ("avoid_attributes", k)))
    if c.max_price is not None:
        parts.append((f"under ${c.max_price:g}", ("max_price", None)))
    if c.min_price is not None:
        parts.append((f"over ${c.min_price:g}", ("min_price", None)))
    if rejected:
        parts.append((f"not the {rejected} item{'s' if rejected != 1 else ''} you dismissed", ("rejected", None)))
    return parts


# ------------------------------------------------------------------------------------------- LLM
def validate_llm_url(url: str) -> str:
    """The URL, stripped, if it can be an OpenAI-compatible base URL; a ConfigError saying why not."""
    u = (url or "").strip()
    example = "such as http://127.0.0.1:8001/v1"
    if not u.startswith(("http://", "https://")):
        raise ConfigError("llm_base_url", u, f"must be an http(s) URL {example}")
    if any(ch.isspace() for ch in u):
        raise ConfigError("llm_base_url", u, "must not contain spaces")
    p = urllib.parse.urlsplit(u)
    if not p.hostname:
        raise ConfigError("llm_base_url", u, f"has no host; {example}")
    try:
        p.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError("llm_base_url", u, "has a port that is not a number in [0, 65535]") from None
    if p.query or p.fragment:
        raise ConfigError("llm_base_url", u, f"must not carry a query or fragment; {example}")
    return u


def probe_llm(base_url: str, timeout_s: float = 2.0) -> tuple[bool, str]:
    """(answers?, what happened) for ``GET <base_url>/models`` within `timeout_s` seconds.

    Any HTTP answer counts as reachable (some servers do not list models); a refused connection, a
    timeout or a bad URL does not.
    """
    try:
        url = validate_llm_url(base_url).rstrip("/") + "/models"
    except ConfigError as e:
        return False, f"is not a valid URL ({e.reason})"
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            body = r.read(1 << 20)
        try:
            ids = [m.get("id", "") for m in json.loads(body).get("data", [])][:3]
        except (ValueError, AttributeError, TypeError):
            ids = []
        ms = (time.perf_counter() - t0) * 1000.0
        return True, f"answers ({', '.join(i for i in ids if i) or 'no model list'}; {ms:.0f} ms)"
    except urllib.error.HTTPError as e:
        return True, f"answers (HTTP {e.code} on /models)"
    except (TimeoutError, urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, TimeoutError) or isinstance(e, TimeoutError) or "timed out" in str(reason):
            return False, f"did not answer within {timeout_s:g} s"
        return False, f"cannot be reached ({reason})"


class _Breaker:
    """Shared by the LLM parts of one turn: the first failure trips it, later calls are skipped."""

    def __init__(self) -> None:
        self.reason = ""
        self.calls = 0
        self._lock = threading.Lock()

    @property
    def tripped(self) -> bool:
        return bool(self.reason)

    def trip(self, reason: str) -> None:
        """Remember the first failure, without the exception class names wrapped around it."""
        reason = re.sub(r"^(?:(?:[A-Za-z_]\w*(?:Error|Exception)|agent failed|TimeoutError):\s*)+", "", reason.strip())
        with self._lock:
            if not self.reason:
                self.reason = reason[:200] or "failed"


class _FailFastLLM:
    """An LLM whose calls stop after the turn's first LLM failure (raising LLMError: the narrator's
    offline fallback answers at once instead of waiting for another timeout)."""

    def __init__(self, llm, breaker: _Breaker) -> None:
        self._llm, self._breaker = llm, breaker
        self.model = getattr(llm, "model", "")

    def generate(self, messages: list[dict], max_tokens: int, temperature: float) -> str:
        if self._breaker.tripped:
            raise LLMError(f"skipped for the rest of this turn: {self._breaker.reason}")
        self._breaker.calls += 1
        try:
            return self._llm.generate(messages, max_tokens, temperature)
        except Exception as e:  # any failure ends the LLM's part of the turn
            self._breaker.trip(f"{type(e).__name__}: {e}")
            raise LLMError(f"{type(e).__name__}: {e}") from e

    def __getattr__(self, name: str):
        return getattr(self._llm, name)


class _FailFastRouter:
    """The LLM turn router, skipped once the turn's breaker has tripped; its failure trips it."""

    def __init__(self, router, breaker: _Breaker) -> None:
        self._router, self._breaker = router, breaker

    def run_turn(self, recommender, session_id: str, message: str):
        if self._breaker.tripped:
            raise LLMError(f"skipped for the rest of this turn: {self._breaker.reason}")
        self._breaker.calls += 1
        try:
            return self._router.run_turn(recommender, session_id, message)
        except Exception as e:
            self._breaker.trip(f"{type(e).__name__}: {e}")
            raise

    def route(self, message: str, session: Any = None):
        return self._router.route(message, session)


# ----------------------------------------------------------------------------------------- backend
@dataclass
class _Turn:
    """What one streamed update carries to the UI."""

    text: str
    items: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    note: str = ""
    chips: list[str] = field(default_factory=list)
    show_cards: bool = False  # this reply is a list of items: the cards are replaced
    busy: bool = False  # refused: the session already has a turn running


class DemoBackend:
    """The demo's behaviour without Gradio: sessions, sample users, streaming turns, chips, side panel."""

    def __init__(self, recommender, conversations=(), *, llm_model: str = "SmolLM2-135M-Instruct",
                 llm_timeout_s: float = 20.0, llm_probe_timeout_s: float = 2.0, max_sample_users: int = 50,
                 probe_cache_s: float = 15.0) -> None:
        self.rec = recommender
        self.catalog = recommender.catalog
        self.conversations = [c for c in conversations][:max_sample_users]
        self.llm_model, self.llm_timeout_s = llm_model, float(llm_timeout_s)
        self.llm_probe_timeout_s, self.probe_cache_s = float(llm_probe_timeout_s), float(probe_cache_s)
        self._llm_recs: dict[str, Any] = {}
        self._probes: dict[str, tuple[float, bool, str]] = {}
        self._busy: dict[str, float] = {}
        self._dropped: dict[str, float] = {}  # sessions cleared while a turn ran on them
        self._lock = threading.Lock()
        self._llm_lock = threading.Lock()  # building an LLM agent can take a while: not under _lock
        self._views: dict[str, ItemView] = {}  # what the cards, chips and panel show, built once per item
        # A catalogue without any price (Amazon Office 2014) says so once instead of on every card.
        self.has_prices = any(it.price is not None for it in self.catalog)

    @classmethod
    def from_config(cls, cfg: DemoConfig) -> "DemoBackend":
        from lumenrec.agent.recommender import Recommender
        from lumenrec.data.registry import load_dataset

        rec = Recommender.from_pretrained(cfg.recommender_dir) if cfg.recommender_dir else Recommender.from_dataset(cfg.data)
        data = getattr(rec, "dataset_name", None) or cfg.data
        try:
            ds = load_dataset(data)
            convs = ds.conversations if list(rec.catalog.ids) == list(ds.catalog.ids) else []
        except LumenrecError as e:  # a built system whose dataset is not on this machine: no sample users
            log.info("no sample users: %s", e)
            convs = []
        return cls(rec, convs, llm_model=cfg.llm_model, llm_timeout_s=cfg.llm_timeout_s,
                   llm_probe_timeout_s=cfg.llm_probe_timeout_s, max_sample_users=cfg.max_sample_users)

    def view(self, item_id: str) -> ItemView | None:
        """How an item is shown (None: not in the catalogue), built on first use and kept: the agent's
        display-safe title and brand (screened catalogue text; the brand from the title when the field
        is empty) with HTML entities decoded, the leaf category, price and colours."""
        v = self._views.get(item_id)
        if v is None and item_id in self.catalog:
            it, shown = self.catalog.get(item_id), self.rec.item_dict(item_id)
            v = ItemView(it.id, clean_text(shown["title"]), clean_text(shown["brand"]), clean_text(it.category),
                         it.price, _colours(it))
            self._views[item_id] = v
        return v

    # -- sample users and sessions --
    def user_choices(self) -> list[tuple[str, str]]:
        """(label, value) pairs for the dropdown; value '' starts from scratch."""
        out = [("Start from scratch (no history)", "")]
        for i, c in enumerate(self.conversations):
            last = self.view(c.history[-1]).title if c.history and c.history[-1] in self.catalog else ""
            out.append((f"user {c.user_id}: {len(c.history)} items" + (f", last: {last[:48]}" if last else ""), str(i)))
        return out

    def new_session(self, user_choice: str = "") -> str:
        """A fresh session id, seeded with a sample user's history when one is chosen."""
        from lumenrec.agent.session import Session

        sid = uuid.uuid4().hex
        s = Session(session_id=sid)
        if user_choice not in ("", None):
            try:
                conv = self.conversations[int(user_choice)]
            except (ValueError, IndexError):
                raise ConfigError("user", user_choice, f"not one of the {len(self.conversations)} sample users") from None
            s.user_id = conv.user_id
            s.history = [h for h in conv.history if h in self.catalog]
        self.rec.store.put(s)
        local = self._llm_recs.get("local")
        if local is not None and s.history:  # the local LLM is on: prepare its narrative prefix for this shopper
            local.prepare_narrator(s.history, background=True)
        return sid

    def reset(self, old_session_id: str | None, user_choice: str = "") -> str:
        """Clear: drop the old session from the store (turns, constraints, rejections) and start a new one."""
        if old_session_id:
            self.rec.store.delete(old_session_id)
            with self._lock:
                if self._busy.pop(old_session_id, None) is not None:  # its turn still runs: drop what it saves
                    self._dropped[old_session_id] = time.monotonic()
        return self.new_session(user_choice)

    def opening_hint(self, user_choice: str = "") -> str:
        """A suggested first message: the sample user's recorded opening, else a generic one."""
        if user_choice not in ("", None):
            try:
                return self.conversations[int(user_choice)].opening or ""
            except (ValueError, IndexError):
                return ""
        return "I need gel pens"

    # -- one turn at a time per session --
    def claim(self, session_id: str, stale_after_s: float = 600.0) -> bool:
        """Mark the session busy; False when a turn is already running on it."""
        now = time.monotonic()
        with self._lock:
            t = self._busy.get(session_id)
            if t is not None and now - t < stale_after_s:
                return False
            self._busy[session_id] = now
            return True

    def release(self, session_id: str | None) -> None:
        with self._lock:
            self._busy.pop(session_id or "", None)
            dropped = self._dropped.pop(session_id or "", None) is not None
        if dropped:  # cleared while its turn ran: the turn saved it again
            self.rec.store.delete(session_id)

    def is_busy(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._busy

    # -- what a reply shows --
    def item_cards(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Reply items as card dicts: decoded title, effective brand, leaf category, price, why."""
        out = []
        for it in items:
            v = self.view(it["id"])
            if v is None:
                continue
            out.append({"id": v.id, "title": v.title, "brand": v.brand, "category": v.category, "price": v.price,
                        "why": clean_text(it.get("why", ""))})
        return out

    def chips_for(self, item_ids: list[str]) -> list[str]:
        """Critique chips for a shown list: 'not <brand>' for the (up to 2) most frequent brands shown,
        'under $X' at the median shown price when at least two shown items have different prices, and
        'not <colour>' for the most frequent colour among them. A chip is kept only when the critique
        parser reads it as meant (the brand excluded, the bound set, the colour avoided)."""
        views = [v for v in map(self.view, item_ids) if v is not None]
        parse = self.rec.parser.parse
        chips: list[str] = []
        for brand, _ in Counter(v.brand for v in views if v.brand).most_common(2):
            label = f"not {brand}"
            if parse(label).exclude_brands:  # e.g. 'not AT&T' is not understood today: no chip
                chips.append(label)
        prices = sorted(v.price for v in views if v.price is not None)
        if len(prices) >= 2 and prices[0] < prices[-1]:
            median = statistics.median(prices)
            bound = float(math.ceil(median)) if median >= 5 else round(median, 2)
            if bound >= prices[-1]:  # the median rounded up reaches the top: take the price below the top
                bound = max(p for p in prices if p < prices[-1])
            label = f"under ${bound:.0f}" if bound == int(bound) else f"under ${bound:.2f}"
            if parse(label).max_price == bound:
                chips.append(label)
        colours = Counter(c for v in views for c in v.colours)
        for colour, _ in colours.most_common(1):
            label = f"not {colour}"
            crit = parse(label)
            if colour in str(getattr(crit, "avoid_attributes", {}).get("colour", "")).split(","):
                chips.append(label)
        return chips[:MAX_CHIPS]

    def constraints(self, session_id: str | None) -> list[tuple[str, tuple]]:
        """The session's active constraints in words, each with the key that removes it."""
        s = self.rec.store.get(session_id) if session_id else None
        if s is None:
            return []
        return constraint_parts(s.constraints, len(s.rejected))

    def remove_constraint(self, session_id: str, words: str) -> bool:
        """Remove the constraint shown as `words` from the session (through the agent's
        ``Recommender.remove_constraint``); False when none matches."""
        s = self.rec.store.get(session_id) if session_id else None
        if s is None:
            return False
        for w, (name, value) in constraint_parts(s.constraints, len(s.rejected)):
            if w != words:
                continue
            if name == "rejected":
                s.rejected = []
                self.rec.store.put(s)
            else:
                self.rec.remove_constraint(session_id, name, value)
            return True
        return False

    # -- agents --
    def probe(self, base_url: str, *, fresh: bool = False) -> tuple[bool, str]:
        """:func:`probe_llm`, remembered for `probe_cache_s` seconds per URL (a hung endpoint costs one probe)."""
        now = time.monotonic()
        with self._lock:
            hit = self._probes.get(base_url)
        if hit is not None and not fresh and now - hit[0] < self.probe_cache_s:
            return hit[1], hit[2]
        ok, why = probe_llm(base_url, self.llm_probe_timeout_s)
        with self._lock:
            self._probes[base_url] = (time.monotonic(), ok, why)
        return ok, why

    def check_llm(self, use_llm: bool, base_url: str) -> str:
        """What the LLM switch says when its URL is entered or it is switched on (validated, then probed)."""
        url = (base_url or "").strip()
        if not url:
            return "No LLM URL: the offline agent answers." if use_llm else ""
        if url == "local":
            return ("The local model (llama.cpp, in this process) decides the turns the rules cannot and writes "
                    "the top item's narrative (seconds per turn)." + ("" if use_llm else " Switch it on to use it."))
        try:
            url = validate_llm_url(url)
        except ConfigError as e:
            return f"Not a usable URL: {e.reason}. The offline agent answers until it is fixed."
        ok, why = self.probe(url, fresh=True)
        if ok:
            return f"The LLM at {url} {why}." + ("" if use_llm else " Switch it on to use it.")
        return f"The LLM at {url} {why}: the offline agent answers while it is down."

    def _llm_recommender(self, base_url: str):
        """The Recommender with the LLM router and narrator over this URL (built once per URL)."""
        with self._llm_lock:
            if base_url not in self._llm_recs:
                from lumenrec.agent.llm.backends import OpenAILLM
                from lumenrec.agent.narrative import NarrativeGenerator
                from lumenrec.agent.recommender import Recommender, RecommenderConfig

                cfg = RecommenderConfig(router="llm", llm_base_url=base_url, llm_model=self.llm_model,
                                        llm_timeout_s=self.llm_timeout_s)
                narrator = NarrativeGenerator(OpenAILLM(base_url, self.llm_model, timeout_s=self.llm_timeout_s,
                                                        max_retries=0), self.catalog)
                self._llm_recs[base_url] = Recommender(self.catalog, self.rec.retriever, store=self.rec.store,
                                                       narrator=narrator, parser=self.rec.parser, config=cfg)
            return self._llm_recs[base_url]

    def _local_recommender(self):
        """The Recommender with the local model (llama.cpp) turned on: built once, on first use."""
        with self._llm_lock:
            if "local" not in self._llm_recs:
                from lumenrec.agent.hybrid import enable_local_llm
                from lumenrec.agent.recommender import Recommender

                rec = Recommender(self.catalog, self.rec.retriever, store=self.rec.store, parser=self.rec.parser)
                self._llm_recs["local"] = enable_local_llm(rec)
            return self._llm_recs["local"]

    def agent(self, use_llm: bool, base_url: str = "", breaker: _Breaker | None = None):
        """The offline recommender, or (switch on and a URL given) one with the LLM router and narrator
        whose LLM calls all stop after the first failure of the turn (`breaker`)."""
        base_url = (base_url or "").strip()
        if not use_llm or not base_url:
            return self.rec
        if base_url == "local":  # the in-process model: the hybrid router + LLM narratives (#19)
            return self._local_recommender()
        base = self._llm_recommender(validate_llm_url(base_url))
        breaker = breaker or _Breaker()
        turn = copy.copy(base)  # per turn: the same parts, with fail-fast wrappers around the LLM
        turn.router = _FailFastRouter(base.router, breaker)
        if getattr(base.narrator, "llm", None) is not None:
            turn.narrator = copy.copy(base.narrator)
            turn.narrator.llm = _FailFastLLM(base.narrator.llm, breaker)
        return turn

    # -- a turn --
    def stream(self, session_id: str, message: str, use_llm: bool = False, base_url: str = "", *,
               claimed: bool = False) -> Iterator[_Turn]:
        """Yield the reply text as it grows, then a final update with the items, chips and a fallback note.

        One turn per session at a time: a second one while the first runs gets a single ``busy``
        update and changes nothing. `claimed`: the caller already holds the session (:meth:`claim`);
        either way it is released when the turn ends.
        """
        if not claimed and not self.claim(session_id):
            yield _Turn("", done=True, busy=True, note="Still working on your previous message.")
            return
        try:
            yield from self._stream(session_id, message, use_llm, base_url)
        finally:
            self.release(session_id)

    def _stream(self, session_id: str, message: str, use_llm: bool, base_url: str) -> Iterator[_Turn]:
        url = (base_url or "").strip()
        agent, note, breaker = self.rec, "", _Breaker()
        if use_llm and url == "local":
            try:
                agent = self.agent(True, url, breaker)
            except Exception as e:  # no llama.cpp or no model installed: say so, answer offline
                note = f"(The local LLM could not start ({str(e)[:160]}), so I fell back to the offline agent.)"
        elif use_llm and url:
            try:
                url = validate_llm_url(url)
                ok, why = self.probe(url)
                if ok:
                    agent = self.agent(True, url, breaker)
                else:
                    note = f"(The LLM at {url} {why}, so I fell back to the offline agent for this reply.)"
            except ConfigError as e:
                note = f"(The LLM URL {url!r} is not usable ({e.reason}), so I fell back to the offline agent.)"
        text, reply = "", None
        for ev in agent.chat_stream(session_id, message):
            if isinstance(ev, str):
                text += ev
                yield _Turn(self.bubble_text(text))
            else:
                reply = ev
        assert reply is not None
        if agent is not self.rec and (breaker.tripped or reply.fallback_used or any(
                s.name == "route_llm_failed" or s.details.get("path") == "rules (llm failed)"
                or "fallback" in str(s.details.get("reason", "")) for s in reply.trace)):
            why = breaker.reason or "it failed"
            where = "The local LLM" if url == "local" else f"The LLM at {url}"
            note = (f"({where} did not answer ({why[:120]}), so I fell back to the offline agent "
                    "for the rest of this reply.)")
        items = self.item_cards(reply.items)
        titles = [it["title"] for it in items] + [it["title"] for it in reply.items]
        show = reply.intent == "recommend" and bool(items) and not (
            len(items) == 1 and any(t and t in reply.text for t in titles))
        body = self.bubble_text(reply.text, titles if show else ())
        if show:
            body += f"\n\n_{len(items)} pick{'s' if len(items) != 1 else ''} in the cards below._"
        yield _Turn(body, items, True, note, self.chips_for([it["id"] for it in items]) if show else [], show)

    @staticmethod
    def bubble_text(text: str, titles=()) -> str:
        """The chat bubble's words: entities decoded, the numbered item lines (and lines naming an item
        shown in the cards) left to the cards, so that each item is shown once."""
        titles = [t for t in titles if t]
        keep = [ln for ln in clean_text(text).splitlines()
                if not _ITEM_LINE.match(ln) and not any(t in ln for t in titles)]
        return "\n".join(keep).strip()

    def side_panel(self, session_id: str | None) -> str:
        s = self.rec.store.get(session_id) if session_id else None
        if s is None:
            return render_side("", [])
        hist = [self.catalog.get(h) for h in s.history if h in self.catalog]
        summary = ""
        if hist:
            summary = self.rec.narrator.narrate("user_summary", None, hist, user_id=s.user_id or s.session_id) \
                if hasattr(self.rec.narrator, "narrate") else \
                self.rec.narrator.generate("user_summary", None, hist, user_id=s.user_id or s.session_id).text
        return render_side(clean_text(summary), [self.view(h.id).title for h in hist])


# ------------------------------------------------------------------------------------------- gradio
def _import_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError as e:
        raise MissingExtraError("gradio", "demo", "the chat demo") from e
    return gr


def theme():
    """Gradio's default look with system fonts only (no font download at page load) and a primary
    button dark enough for WCAG AA (white on #c2410c: 5.2:1; Gradio's default orange is 2.8:1)."""
    gr = _import_gradio()
    dark_orange, darker = "#c2410c", "#9a3412"
    return gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS).set(
        button_primary_background_fill=dark_orange, button_primary_background_fill_dark=dark_orange,
        button_primary_background_fill_hover=darker, button_primary_background_fill_hover_dark=darker,
        button_primary_text_color="#ffffff", button_primary_text_color_dark="#ffffff",
        button_primary_border_color=dark_orange, button_primary_border_color_dark=dark_orange)


def build_app(backend: DemoBackend, cfg: DemoConfig | None = None):
    """The gr.Blocks app over `backend`."""
    gr = _import_gradio()
    cfg = cfg or DemoConfig()
    with gr.Blocks(title="lumenrec demo", analytics_enabled=False) as app:
        sid = gr.State(None)  # per-browser session id, set on page load
        pending = gr.State("")  # the message accepted for the turn about to run
        gr.Markdown("## lumenrec: conversational recommendations\nAsk for office products, then steer with critiques.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=300):
                chat = gr.Chatbot(label="Chat", height=380, elem_id="lr-chat", buttons=[], feedback_options=None)
                status = gr.HTML(render_status(""), elem_id="lr-status")
                with gr.Row():
                    box = gr.Textbox(placeholder="e.g. I need gel pens, not BIC", show_label=False, scale=5,
                                     elem_id="lr-input", min_width=160, lines=1, max_lines=4)
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="lr-send", min_width=80)
                with gr.Row(elem_id="lr-chips"):
                    chips = [gr.Button("", size="sm", elem_id=f"lr-chip-{i}", visible=False, min_width=0, scale=0)
                             for i in range(MAX_CHIPS)]
                cards = gr.HTML(render_cards([]), elem_id="lr-cards")
            with gr.Column(scale=2, min_width=300, elem_id="lr-side"):
                user = gr.Dropdown(backend.user_choices(), value="", label="Start as", elem_id="lr-user")
                restart = gr.Button("Start new chat", size="sm", elem_id="lr-restart")
                cons_head = gr.HTML(render_constraints_head([]), elem_id="lr-cons-head")
                with gr.Row(elem_id="lr-cons"):
                    cons = [gr.Button("", size="sm", elem_id=f"lr-cons-{i}", visible=False, min_width=0, scale=0)
                            for i in range(MAX_CONSTRAINTS)]
                side = gr.HTML(render_side("", []), elem_id="lr-side-text")
                with gr.Accordion("Language model (optional)", open=False):
                    use_llm = gr.Checkbox(cfg.llm_base_url == "local", elem_id="lr-use-llm",
                                          label="Use an LLM: an OpenAI-compatible base_url, or 'local' for the local model")
                    base_url = gr.Textbox(cfg.llm_base_url, label="base_url", placeholder="http://127.0.0.1:8001/v1",
                                          elem_id="lr-base-url")
                    llm_status = gr.Markdown("", elem_id="lr-llm-status")

        controls = [box, send, *chips, *cons]

        def _slots(buttons, labels: list[str], enable: bool) -> dict:
            """Fill the first len(labels) buttons, hide the rest (`enable`: also make them clickable)."""
            extra = {"interactive": True} if enable else {}
            return {b: gr.update(value=labels[i], visible=True, **extra) if i < len(labels)
                    else gr.update(value="", visible=False, **extra) for i, b in enumerate(buttons)}

        def _panel(s, enable: bool = False) -> dict:
            parts = [w for w, _ in backend.constraints(s)][:MAX_CONSTRAINTS]
            return {cons_head: render_constraints_head(parts), side: backend.side_panel(s),
                    **_slots(cons, [w + REMOVE_MARK for w in parts], enable)}

        def _chips(labels: list[str], enable: bool = False) -> dict:
            return _slots(chips, labels, enable)

        def start(choice, old):
            s = backend.reset(old, choice or "")
            return {sid: s, chat: [], cards: render_cards([]), status: render_status(""), pending: "",
                    **_chips([], enable=True), **_panel(s, enable=True), send: gr.update(interactive=True),
                    box: gr.update(value=backend.opening_hint(choice or ""), interactive=True)}

        def accepter(from_box: bool):
            def accept(message, history, s):
                """Runs at once (no queue): claims the session, shows the message, locks the controls."""
                message = (message or "").strip()
                if not message:
                    return {pending: ""}
                if s is None:
                    s = backend.new_session("")
                if not backend.claim(s):  # a turn is running: no new bubble, nothing sent
                    return {pending: "", status: render_status("Still working on your previous message.")}
                history = list(history or []) + [{"role": "user", "content": message}]
                return {sid: s, pending: message, chat: history, status: render_status("Working on it..."),
                        box: gr.update(value="", interactive=False) if from_box else gr.update(interactive=False),
                        **{c: gr.update(interactive=False) for c in controls if c is not box}}
            return accept

        def respond(message, history, s, llm_on, url):
            if not message or s is None:
                yield {status: gr.skip()}
                return
            history = list(history or [])
            q: queue.Queue = queue.Queue()

            def work():  # accept() claimed the session; the stream releases it when the turn ends
                try:
                    for upd in backend.stream(s, message, bool(llm_on), url or "", claimed=True):
                        q.put(upd)
                except Exception as e:  # shown in the chat instead of a stuck turn
                    log.exception("demo turn failed")
                    q.put(e)
                q.put(None)

            t0 = time.monotonic()
            threading.Thread(target=work, name="lr-demo-turn", daemon=True).start()
            shown = False
            while True:
                try:
                    upd = q.get(timeout=0.5)
                except queue.Empty:
                    waited = time.monotonic() - t0
                    if waited >= cfg.pending_after_s:
                        via = " (waiting for the LLM)" if llm_on and (url or "").strip() else ""
                        yield {status: render_status(f"Still working{via}... {waited:.0f} s")}
                    continue
                if upd is None:
                    break
                if isinstance(upd, Exception):
                    msg = {"role": "assistant", "content": f"Sorry, that failed: {upd}"}
                    history = history + [msg] if not shown else history[:-1] + [msg]
                    yield {chat: history, status: render_status("")}
                    continue
                if upd.busy:
                    yield {status: render_status(upd.note)}
                    continue
                content = upd.text + (f"\n\n_{upd.note}_" if upd.note else "")
                if not content.strip():
                    continue  # never an empty bubble
                msg = {"role": "assistant", "content": content}
                history = history[:-1] + [msg] if shown else history + [msg]
                shown = True
                if not upd.done:
                    yield {chat: history}
                    continue
                waited = time.monotonic() - t0
                out = {chat: history, status: render_status(f"Answered in {waited:.0f} s." if waited >= 3 else ""),
                       **_panel(s)}
                if upd.show_cards:
                    out.update({cards: render_cards(upd.items, prices=backend.has_prices), **_chips(upd.chips)})
                yield out

        def unlock(s):
            if s is not None and backend.is_busy(s):  # another turn still runs: its own unlock re-enables
                return {c: gr.skip() for c in controls}
            return {c: gr.update(interactive=True) for c in controls}

        def remove(label, s):
            words = (label or "").removesuffix(REMOVE_MARK)
            if not s or not words:
                return {status: gr.skip()}
            ok = backend.remove_constraint(s, words)
            msg = f"Removed \u201c{words}\u201d: your next message searches without it." if ok else \
                f"\u201c{words}\u201d was no longer active."
            return {status: render_status(msg), **_panel(s)}

        def check_llm(on, url):
            return backend.check_llm(bool(on), url or "")

        reset_outs = [sid, chat, cards, box, send, status, pending, cons_head, side, *cons, *chips]
        turn_outs = [chat, cards, status, cons_head, side, *cons, *chips]
        accept_outs = [sid, pending, chat, status, *controls]
        turns = []
        for trigger, src in ((box.submit, box), (send.click, box), *((b.click, b) for b in chips)):
            turn = (trigger(accepter(src is box), [src, chat, sid], accept_outs, queue=False)
                    .then(respond, [pending, chat, sid, use_llm, base_url], turn_outs, show_progress="hidden"))
            turn.then(unlock, [sid], controls, queue=False)
            turns.append(turn)
        app.load(start, [user, sid], reset_outs)
        # a new chat stops a running turn's updates (its session is dropped, see DemoBackend.reset)
        user.change(start, [user, sid], reset_outs, cancels=turns)
        restart.click(start, [user, sid], reset_outs, cancels=turns)
        chat.clear(start, [user, sid], reset_outs, cancels=turns)
        for b in cons:
            b.click(remove, [b, sid], [status, cons_head, side, *cons])
        base_url.submit(check_llm, [use_llm, base_url], [llm_status])
        base_url.blur(check_llm, [use_llm, base_url], [llm_status])
        use_llm.change(check_llm, [use_llm, base_url], [llm_status])
    return app


def launch(cfg: DemoConfig, *, block: bool = True):
    """Build the backend and serve the app (no share link, analytics off, system fonts)."""
    _import_gradio()
    backend = DemoBackend.from_config(cfg)
    app = build_app(backend, cfg)
    app.queue(default_concurrency_limit=4)
    app.launch(server_name=cfg.host, server_port=cfg.port, share=False, theme=theme(), css=CSS, head=HEAD,
               ssr_mode=False, footer_links=[], prevent_thread_lock=not block, quiet=False, show_error=True)
    return app
