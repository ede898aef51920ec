"""The product surface: one object that runs a chat turn end to end.

    rec = Recommender.from_dataset("synthetic")
    reply = rec.chat("s1", "I need gel pens")
    reply = rec.chat("s1", "not BIC again")        # constraints accumulate in the session

A turn is: **route** (offline rules, or the LLM tool-calling router) -> per intent:

- ``recommend``: parse the critique -> merge its constraints into the session -> retrieve with
  ``Query(history, text, exclude_ids=rejected, allowed=constraints mask)`` -> narrate the top items;
- ``explain``: a narrative for a shown item ("the second one");
- ``summarize_user``: the user-summary narrative + the active constraints;
- ``clarify``: a question with 2-3 concrete options drawn from the catalogue's categories;
- ``smalltalk`` / ``out_of_scope``: a polite redirect; ``injection``: a refusal, never any item.

**Grounding guarantee**: items reach the user only through retriever output (or a shown item the
shopper refers to), and :meth:`Recommender._ground` checks every id against the catalogue before a
reply leaves; an item an LLM names is mapped by exact title, else dropped.

Each :class:`Reply` carries a ``trace`` (route, parse, retrieve, narrate: timing and details) so a
developer can see why it answered what it did, and ``fallback_used`` when the LLM router failed and
the offline router answered instead.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Generator, Iterator, Sequence

import numpy as np

from lumenrec.agent.critique import Critique, CritiqueParser, effective_brand
from lumenrec.agent.intents import INJECTION_RX, NEED_RX, Intent
from lumenrec.agent.narrative import short_title
from lumenrec.agent.router import REFUSAL, OfflineRouter, RouteDecision
from lumenrec.agent.session import Constraints, InMemorySessionStore, Session
from lumenrec.data.screening import screen_catalog
from lumenrec.data.types import Catalog, Item
from lumenrec.errors import CheckpointError, ConfigError, DataNotFoundError, ToolInputError

__all__ = ["RecommenderConfig", "Reply", "TraceStep", "Recommender", "MANIFEST", "write_manifest",
           "describe_constraints", "constraints_view"]

log = logging.getLogger(__name__)

MANIFEST = "recommender.json"
ROUTERS = ("offline", "llm")
RETRIEVER_KINDS = ("text", "lumen", "sasrec", "lumen_gen")
NARRATOR_KINDS = ("offline", "lumen_gen")

# Phrases that open a new need rather than refine the current one.
_DIFFERENT_BRAND_RX = re.compile(r"\b(?:different|another|other|new) (?:brand|make|manufacturer)s?\b|\bswitch(?:ing)? brands\b"
                                 r"|\b(?:other|different) brands?\b")
_NEW_NEED_RX = re.compile(r"\b(?:(?:totally |a |another |a whole )?(?:different|new|separate|other) (?:need|thing|question|topic|project)"
                          r"|unrelated|on another note|switching gears|change of (?:subject|plans)|next up|now i(?:'m| am)? (?:need|want|looking)"
                          r"|now looking for|time to get|moving on|while i'?m (?:here|at it)|also need|something else entirely)\b", re.I)

REDIRECT_SMALLTALK = ("Happy to help! I recommend office products from the catalogue: tell me what you need "
                      "(for example gel pens, binders or printer ink) and I'll suggest a few.")
REDIRECT_OUT_OF_SCOPE = ("That's outside what I can help with: I only know this shop's office products. "
                         "What are you shopping for today?")
REDIRECT_UNSOLD = ("Sorry, this shop doesn't sell {product}: I only know its office products. "
                   "What are you shopping for today?")


@dataclass
class RecommenderConfig:
    """How a turn is run. Everything a deployment may want to change, nothing else."""

    # "offline": deterministic rules (no model, ~ms); "llm": LangChain tool-calling agent, offline fallback.
    router: str = "offline"
    # Items returned per recommend turn: 5 fits a chat bubble and leaves room for narratives.
    top_k: int = 5
    # Items that get a narrative ("why"): all shown by default; fewer when a slow LLM writes them.
    narrate_top: int = 5
    # When the constraints leave no candidate, retry with only the brand excludes (the shopper's
    # explicit "not X" is never relaxed) instead of answering with nothing.
    relax_when_empty: bool = True
    # Previous recommend request kept in the retrieval text, so "not BIC again" still means pens.
    carry_request_text: bool = True
    # Categories a shopper names ("binders", "a label maker") are preferences: "soft" re-ranks the
    # shown items (matching ones first) without removing any candidate; "hard" filters the catalogue.
    # A wrong category parse ("that's plenty of tape ...") must not remove what the retriever found.
    category_includes: str = "soft"
    # LLM router: an OpenAI-compatible endpoint (e.g. `lumenrec llm serve`) and the model id it serves.
    llm_base_url: str = "http://127.0.0.1:8001/v1"
    llm_model: str = "SmolLM2-135M-Instruct"
    # LLM router: seconds one whole agent turn may take before the offline router answers instead.
    llm_timeout_s: float = 60.0
    # LLM router: tokens per model answer (tool calls are short; a small local model rambles).
    llm_max_tokens: int = 256
    # LLM router: agent steps (model call + tool call pairs) before the turn counts as failed.
    llm_max_steps: int = 6

    def __post_init__(self) -> None:
        if self.router not in ROUTERS:
            raise ConfigError("router", self.router, f"must be one of {', '.join(ROUTERS)}")
        if int(self.top_k) != self.top_k or not 1 <= self.top_k <= 100:
            raise ConfigError("top_k", self.top_k, "must be an integer in [1, 100]")
        if int(self.narrate_top) != self.narrate_top or not 0 <= self.narrate_top <= self.top_k:
            raise ConfigError("narrate_top", self.narrate_top, f"must be an integer in [0, top_k={self.top_k}]")
        if not (self.llm_timeout_s > 0):
            raise ConfigError("llm_timeout_s", self.llm_timeout_s, "must be > 0 (every LLM turn needs a timeout)")
        if self.llm_max_tokens < 1:
            raise ConfigError("llm_max_tokens", self.llm_max_tokens, "must be >= 1")
        if self.category_includes not in ("soft", "hard"):
            raise ConfigError("category_includes", self.category_includes, "must be 'soft' or 'hard'")
        if self.llm_max_steps < 1:
            raise ConfigError("llm_max_steps", self.llm_max_steps, "must be >= 1")
        if not str(self.llm_base_url).startswith(("http://", "https://")):
            raise ConfigError("llm_base_url", self.llm_base_url, "must be an http(s) URL such as http://127.0.0.1:8001/v1")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RecommenderConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError("config", sorted(unknown), f"unknown fields; known: {', '.join(sorted(known))}")
        return cls(**d)


@dataclass
class TraceStep:
    """One step of a turn: its name (route, parse, retrieve, narrate, ...), time taken, details."""

    name: str
    ms: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Reply:
    """What one turn returns. `items` are catalogue items: {id, title, brand, category, why}."""

    text: str
    items: list[dict[str, str]] = field(default_factory=list)
    narrative: str = ""
    intent: str = ""
    trace: list[TraceStep] = field(default_factory=list)
    fallback_used: bool = False
    session_id: str = ""
    # The session's active constraints after this turn: {"active": Constraints fields, "text": in words}
    constraints: dict[str, Any] = field(default_factory=dict)

    @property
    def item_ids(self) -> list[str]:
        return [it["id"] for it in self.items]

    def timing_ms(self, exclude: Sequence[str] = ()) -> float:
        """Total time of the traced steps, leaving out the steps named in `exclude` (e.g. 'narrate')."""
        return float(sum(s.ms for s in self.trace if s.name not in exclude))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Timer:
    """Times one named step and appends it to a trace."""

    def __init__(self, trace: list[TraceStep], name: str) -> None:
        self.trace, self.name, self.details = trace, name, {}

    def __enter__(self) -> dict[str, Any]:
        self.t0 = time.perf_counter()
        return self.details

    def __exit__(self, *exc) -> None:
        self.trace.append(TraceStep(self.name, (time.perf_counter() - self.t0) * 1000.0, self.details))


@dataclass
class _Outcome:
    """What an intent handler produced (before grounding and session bookkeeping)."""

    intent: Intent
    text: str
    items: list[tuple[str, str]] = field(default_factory=list)  # (item id, why)
    narrative: str = ""


class Recommender:
    """Routes each message, runs the intent, keeps the session, and answers with grounded items.

    `retriever` is any :class:`lumenrec.retriever.base.BaseRetriever` over `catalog`. `router`
    defaults to the offline router (or the LLM router when ``config.router == "llm"``); `narrator` is
    an :class:`~lumenrec.agent.narrative.OfflineNarrator` (default) or a
    :class:`~lumenrec.agent.narrative.NarrativeGenerator`; `store` keeps sessions between turns.
    """

    def __init__(self, catalog: Catalog, retriever, *, router=None, narrator=None, parser: CritiqueParser | None = None,
                 store=None, config: RecommenderConfig | None = None) -> None:
        if getattr(retriever, "catalog", None) is not None and len(retriever.catalog) != len(catalog):
            raise ConfigError("retriever", type(retriever).__name__,
                              f"ranks {len(retriever.catalog)} items but the catalogue has {len(catalog)}")
        self.catalog, self.retriever = catalog, retriever
        self.config = config or RecommenderConfig()
        self.parser = parser or CritiqueParser(catalog)
        self.offline_router = OfflineRouter(parser=self.parser)
        if narrator is None:
            from lumenrec.agent.narrative import OfflineNarrator

            narrator = OfflineNarrator()
        self.narrator = narrator
        self.store = store if store is not None else InMemorySessionStore()
        if router is None and self.config.router == "llm":
            from lumenrec.agent.llm_router import LLMRouter

            router = LLMRouter.from_config(self.config)
        self.router = router if router is not None else self.offline_router
        self.system_note: str | None = None  # set when a named dataset runs without its built system
        self._has_prices = any(it.price is not None for it in catalog)
        # catalogue text is data: titles, brands and descriptions are screened once (links, phone
        # numbers, e-mail addresses, instructions); replies, narratives and prompts see the screened text
        self.screen = screen_catalog(catalog)
        self._title_index: dict[str, str] = {}
        for it in catalog:
            self._title_index.setdefault(it.title.strip().lower(), it.id)
        self._top_categories = self._category_options()

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def from_dataset(cls, name: str = "synthetic", *, retriever=None, **kwargs) -> "Recommender":
        """The system for a registered dataset (offline default: the synthetic store).

        When ``lumenrec build --data NAME`` has built it (in ``~/.cache/lumenrec/builds/NAME``), that
        system is loaded: the trained LUMEN retriever over its Chroma index. Otherwise, or when a
        `retriever` is given, the catalogue is ranked by that retriever or the text-only baseline
        (MiniLM cosine); the log and every retrieve trace step say so.
        """
        from lumenrec.data.registry import build_dir, load_dataset

        built = build_dir(name)
        if retriever is None and (built / MANIFEST).is_file():
            log.info("using the system built for %s at %s", name, built)
            return cls.from_pretrained(built, **kwargs)
        ds = load_dataset(name, with_conversations=False)
        note = None
        if retriever is None:
            from lumenrec.retriever.text_retriever import TextRetriever

            retriever = TextRetriever(ds.catalog)
            note = (f"text-only baseline: no system is built for {name!r} "
                    f"(build it with `lumenrec build --data {name}`)")
            log.warning("%s", note)
        rec = cls(ds.catalog, retriever, **kwargs)
        rec.dataset_name = name
        rec.system_note = note
        return rec

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, index: dict[str, Any] | None = None, warm: bool = True,
                        **kwargs) -> "Recommender":
        """Load the system a directory describes (``recommender.json``, written by ``lumenrec build``
        or :func:`write_manifest`): its catalogue, retriever and item index; then warm it up.

        The manifest names the catalogue (``dataset.path``, a catalogue .jsonl relative to the
        directory, else ``dataset.name`` registered), the retriever (``retriever.kind`` text / lumen /
        sasrec / lumen_gen + ``retriever.checkpoint``; text when absent), optionally ``narrator``
        (``{"kind": "lumen_gen"}``: the generative LUMEN model narrates, fact-checked), ``index`` (the Chroma index
        LUMEN serves through: ``backend`` persistent + ``path``, or http + ``host``/``port``) and
        ``config`` (RecommenderConfig fields). `index` overrides manifest index fields (e.g.
        ``{"backend": "http", "host": ..., "port": ...}`` for a ``chroma run`` server). Keyword
        arguments override the constructor's. Nothing is re-encoded: item vectors come from the build.
        """
        d = Path(directory)
        path = d / MANIFEST
        if not path.is_file():
            raise DataNotFoundError(f"{path} not found: a system directory needs a {MANIFEST} manifest "
                                    f"(build one with `lumenrec build --out {d}`)")
        try:
            man = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}: not valid JSON ({e})") from e
        ds = man.get("dataset") or {}
        if ds.get("path"):
            cpath = (d / ds["path"]) if not Path(ds["path"]).is_absolute() else Path(ds["path"])
            if not cpath.is_file():
                raise DataNotFoundError(f"{path}: dataset.path {cpath} does not exist")
            catalog = Catalog.load_jsonl(cpath)
        elif ds.get("name"):
            from lumenrec.data.registry import load_dataset

            catalog = load_dataset(ds["name"], with_conversations=False).catalog
        else:
            raise CheckpointError(f"{path}: 'dataset' needs a 'name' (registered dataset) or a 'path' (catalogue .jsonl)")
        rcfg = man.get("retriever") or {"kind": "text"}
        kind = rcfg.get("kind", "text")
        if kind not in RETRIEVER_KINDS:
            raise CheckpointError(f"{path}: retriever.kind {kind!r} is not one of {', '.join(RETRIEVER_KINDS)}")
        ckpt = rcfg.get("checkpoint")
        ckpt_path = None if not ckpt else (d / ckpt if not Path(ckpt).is_absolute() else Path(ckpt))
        if kind != "text" and ckpt_path is None:
            log.warning("%s: retriever.kind=%s without a checkpoint: using the text retriever", path, kind)
            kind = "text"
        icfg = {**(man.get("index") or {}), **(index or {})} if (man.get("index") or index) else None
        retriever = _load_retriever(kind, ckpt_path, catalog, rcfg, d, icfg)
        if man.get("narrator") and kwargs.get("narrator") is None:  # an explicit narrator wins over the manifest's
            kwargs["narrator"] = _load_narrator(man["narrator"], retriever, catalog, path)
        config = kwargs.pop("config", None) or RecommenderConfig.from_dict(man.get("config") or {})
        rec = cls(catalog, retriever, config=config, **kwargs)
        rec.manifest = man
        rec.dataset_name = ds.get("name")
        rec.system_dir = str(d)
        if warm:
            rec.warmup()
        return rec

    def warmup(self) -> float:
        """Run one throw-away turn's work (a parse, a retrieval, a narrative): it loads lazy models
        such as the text encoder and the index handle. Returns seconds.

        Loading calls it, so the first shopper's turn is not the one paying for the load.
        """
        from lumenrec.retriever.base import Query

        t0 = time.perf_counter()
        self.parser.parse("a few office supplies, not too pricey")
        # the offline routers' intent model and its text encoder (a hybrid router's rules are its .offline;
        # its own warmup() loads the LLM and is not called here)
        for router in {self.offline_router, getattr(self.router, "offline", self.router)}:
            if isinstance(router, OfflineRouter):
                router.warmup()
        ids, _ = self.retriever.retrieve(Query(text="office supplies"), k=1)
        if ids:
            self._narrate("endorsement", self.catalog.get(ids[0]), [], Session(session_id="warmup"), None)
        return time.perf_counter() - t0

    # ------------------------------------------------------------------------------------- turns
    def chat(self, session_id: str, message: str, history: Sequence[str] | None = None) -> Reply:
        """Run one turn for `session_id` (created on first use, with `history` item ids if given)."""
        reply = None
        for ev in self.chat_stream(session_id, message, history):
            if isinstance(ev, Reply):
                reply = ev
        assert reply is not None
        return reply

    def chat_stream(self, session_id: str, message: str, history: Sequence[str] | None = None) -> Iterator[str | Reply]:
        """Like :meth:`chat`, but yields the reply text in pieces as it is produced, then the Reply."""
        if not isinstance(message, str):
            raise ToolInputError(f"message must be a string, got {type(message).__name__}")
        if not isinstance(session_id, str) or not session_id:
            raise ToolInputError(f"session_id must be a non-empty string, got {session_id!r}")
        session = self.session(session_id, history)
        if self.router is not self.offline_router and hasattr(self.router, "run_turn"):
            # LLM tool-calling turn: tools run the intents; any failure -> offline, flagged.
            trace: list[TraceStep] = []
            t0 = time.perf_counter()
            try:
                reply = self.router.run_turn(self, session_id, message)
                reply.trace.insert(0, TraceStep("route", (time.perf_counter() - t0) * 1000.0,
                                                {"router": "llm", **getattr(reply, "_route_details", {})}))
                yield reply.text
                yield reply
                return
            except Exception as e:  # any failure of the LLM path: the offline router answers
                log.warning("LLM router failed, using the offline router: %s", e)
                trace.append(TraceStep("route_llm_failed", (time.perf_counter() - t0) * 1000.0,
                                       {"error": f"{type(e).__name__}: {e}"[:300]}))
                session = self.session(session_id, history)  # tools may have touched it
            gen = self._offline_turn(session, message, trace)
            reply = yield from gen
            reply.fallback_used = True
            yield reply
            return
        gen = self._offline_turn(session, message, [])
        reply = yield from gen
        yield reply

    def _offline_turn(self, session: Session, message: str, trace: list[TraceStep]) -> Generator[str, None, Reply]:
        # a plain Router given by the caller routes; behind an LLM turn router, the offline rules do
        router = self.router if not hasattr(self.router, "run_turn") else self.offline_router
        with _Timer(trace, "route") as det:
            decision = router.route(message, session)
            det.update(router=type(router).__name__, intent=decision.intent.value, reason=decision.reason,
                       confidence=round(decision.confidence, 3), **getattr(decision, "trace_details", {}))
            if getattr(decision, "note", ""):  # what an intent model read beside the rule that decided
                det["note"] = decision.note
            if getattr(decision, "unsold", ""):  # the product asked for that the catalogue has no kind of
                det["unsold"] = decision.unsold
        reply = yield from self.run_decision(session, message, decision, trace)
        return reply

    def run_intent(self, session_id: str, message: str, intent: Intent | str, *, item_ref: int | str | None = None) -> Reply:
        """Run one intent directly (what the tools call): no routing, but injection is still refused."""
        session = self.session(session_id)
        intent = Intent(intent)
        trace: list[TraceStep] = []
        if INJECTION_RX.search(message or ""):
            decision = RouteDecision(Intent.INJECTION, 0.99, None, None, "injection pattern in tool input")
        else:
            crit = None
            if intent in (Intent.RECOMMEND, Intent.EXPLAIN) and message:
                with _Timer(trace, "parse") as det:
                    crit = self.parser.parse(message, shown=session.last_shown or None)
                    det.update(critique={k: v for k, v in crit.to_dict().items() if v not in (None, [], {}, "")})
            ref = item_ref if isinstance(item_ref, int) else (crit.item_ref if crit else None)
            decision = RouteDecision(intent, 1.0, crit, ref, "tool call")
            if isinstance(item_ref, str):
                decision.reason = "tool call: " + item_ref
        gen = self.run_decision(session, message, decision, trace, item_ref_text=item_ref if isinstance(item_ref, str) else None)
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            return stop.value

    def run_decision(self, session: Session, message: str, decision: RouteDecision, trace: list[TraceStep],
                     item_ref_text: str | None = None) -> Generator[str, None, Reply]:
        """Run a routed decision on a session, save the session, return a grounded Reply."""
        intent = decision.intent
        if intent == Intent.RECOMMEND:
            out = yield from self._recommend(session, message, decision, trace)
        elif intent == Intent.EXPLAIN:
            out = yield from self._explain(session, decision, trace, item_ref_text)
        elif intent == Intent.SUMMARIZE_USER:
            out = yield from self._summarize(session, trace)
        elif intent == Intent.CLARIFY:
            out = _Outcome(intent, self._clarify_text(session))
            yield out.text
        elif intent == Intent.INJECTION:
            out = _Outcome(intent, REFUSAL)
            yield out.text
        elif intent == Intent.OUT_OF_SCOPE:
            unsold = getattr(decision, "unsold", "")
            # the word is the shopper's, letters only (UnsoldProducts): safe to say back
            out = _Outcome(intent, REDIRECT_UNSOLD.format(product=unsold) if unsold.isalpha() else REDIRECT_OUT_OF_SCOPE)
            yield out.text
        else:
            out = _Outcome(Intent.SMALLTALK, REDIRECT_SMALLTALK)
            yield out.text
        items = self._ground(out.items, trace)
        session.add_turn("user", message, intent.value)
        session.add_turn("assistant", out.text, intent.value, [it["id"] for it in items])
        self.store.put(session)
        return Reply(text=out.text, items=items, narrative=out.narrative, intent=intent.value, trace=trace,
                     session_id=session.session_id, constraints=constraints_view(session.constraints))

    # --------------------------------------------------------------------------------- sessions
    def session(self, session_id: str, history: Sequence[str] | None = None) -> Session:
        """The stored session (a copy), created on first use. History ids not in the catalogue are dropped."""
        s = self.store.get(session_id)
        if s is None:
            s = Session(session_id=session_id)
        if history and not s.history:
            s.history = [str(h) for h in history if str(h) in self.catalog]
        if s.session_id != session_id:
            s.session_id = session_id
        return s

    def open_session(self, session_id: str, history: Sequence[str] | None = None) -> float:
        """Start `session_id` with the shopper's past purchases (item ids) before their first message, and
        let the narrator prepare for them: with the local LLM (prompt narrative-v3) it evaluates the
        shopper's prompt prefix now, so that the turns that follow start their narratives ~1 s after the
        items instead of several. Returns the seconds spent preparing (0 with the offline narrator).

        An existing session keeps its history; history ids not in the catalogue are dropped.
        """
        if not isinstance(session_id, str) or not session_id:
            raise ToolInputError(f"session_id must be a non-empty string, got {session_id!r}")
        session = self.session(session_id, history)
        self.store.put(session)
        return self.prepare_narrator(session.history)

    def prepare_narrator(self, history: Sequence[str], *, background: bool = False) -> float:
        """Let the narrator prepare for a shopper with these past purchases (item ids): see
        :meth:`open_session`. ``background``: in a daemon thread (a server answers the session's creation
        at once; a turn that comes sooner waits for the model's lock). Returns seconds (0 in background)."""
        prepare = getattr(self.narrator, "prepare", None)
        if prepare is None:
            return 0.0
        # the same screened items the turns' narratives see, so that their prompts start with this prefix
        items = [self.screen.display_item(h) for h in history if h in self.catalog]
        if background:
            import threading

            threading.Thread(target=prepare, args=(items,), name="narrator-prepare", daemon=True).start()
            return 0.0
        return float(prepare(items))

    def remove_constraint(self, session_id: str, field_name: str, value: str | None = None) -> Constraints:
        """Drop one active constraint of a session and return what is left.

        `field_name` is a Constraints field: include_brands / exclude_brands / include_categories /
        exclude_categories (`value`: one name, or None for all), attributes / avoid_attributes
        (`value`: the key, e.g. "colour"), max_price / min_price. What the chips and the API's
        "remove" call; the next turn retrieves without it.
        """
        session = self.store.get(session_id)
        if session is None:
            raise ToolInputError(f"no session {session_id!r}")
        c = copy.deepcopy(session.constraints)
        if field_name in ("include_brands", "exclude_brands", "include_categories", "exclude_categories"):
            cur = getattr(c, field_name)
            if value is not None and value not in cur:
                raise ToolInputError(f"{value!r} is not in {field_name} ({', '.join(cur) or 'empty'})")
            setattr(c, field_name, [] if value is None else [x for x in cur if x != value])
        elif field_name in ("attributes", "avoid_attributes"):
            cur = getattr(c, field_name)
            if value is None:
                cur.clear()
            elif value in cur:
                del cur[value]
            else:
                raise ToolInputError(f"{value!r} is not in {field_name} ({', '.join(cur) or 'empty'})")
        elif field_name in ("max_price", "min_price"):
            setattr(c, field_name, None)
        else:
            raise ToolInputError(f"unknown constraint {field_name!r}; one of {', '.join(Constraints.__dataclass_fields__)}")
        session.constraints = c
        self.store.put(session)
        return c

    def save_session(self, session_id: str) -> str:
        """The session as JSON (to persist a conversation and continue it later)."""
        s = self.store.get(session_id)
        if s is None:
            raise ToolInputError(f"no session {session_id!r}: start one with chat({session_id!r}, message)")
        return s.to_json()

    def restore_session(self, blob: str) -> Session:
        """Put a session saved with :meth:`save_session` back into the store; returns it."""
        s = Session.from_json(blob)
        self.store.put(s)
        return s

    # --------------------------------------------------------------------------------- handlers
    def _recommend(self, session: Session, message: str, decision: RouteDecision,
                   trace: list[TraceStep]) -> Generator[str, None, _Outcome]:
        crit = decision.critique
        if crit is None:
            with _Timer(trace, "parse") as det:
                crit = self.parser.parse(message, shown=session.last_shown or None)
                det.update(critique={k: v for k, v in crit.to_dict().items() if v not in (None, [], {}, "")})
        elif not any(s.name == "parse" for s in trace):
            trace.append(TraceStep("parse", 0.0, {"critique": {k: v for k, v in crit.to_dict().items()
                                                                if v not in (None, [], {}, "")},
                                                   "note": "parsed by the router"}))
        # accept / reject signals
        ref_id = session.resolve_ref(crit.item_ref)
        if crit.signal == "accept" and session.last_shown:
            chosen = ref_id or session.last_shown[0]
            session.accept(chosen)
            item = self.screen.display_item(chosen)
            text = f"Great choice: {item.title}. I've noted it; ask me anytime for something to go with it."
            yield text
            return _Outcome(Intent.RECOMMEND, text, [(chosen, "you chose this item")], "")
        if crit.signal == "reject" and session.last_shown:
            for i in ([ref_id] if ref_id else session.last_shown):
                session.reject(i)
        if crit.ref_relation == "unlike" and ref_id:
            session.reject(ref_id)
        anchor = ref_id if crit.ref_relation == "like" and ref_id else None
        before = session.constraints
        prev = self._previous_request(session)
        new_need = prev is not None and anchor is None and self._is_new_need(message, crit, prev)
        if new_need:  # the previous need's wishes do not carry into a new one (its rule-outs do)
            session.constraints = session.constraints.for_new_need()
        constraints = session.apply_critique(crit)
        notes: list[str] = []  # what could not be applied, said in the reply
        constraints = self._relative_constraints(session, message, crit, notes)
        # retrieval text: this message (minus excluded names), plus the request it refines if it refines one
        text = crit.text or message
        if anchor is not None:  # "more like #2": its kind, new items
            text = self.screen.title(anchor)
        elif prev and not new_need and self.config.carry_request_text and prev.strip().lower() != text.strip().lower():
            text = f"{prev}. {text}"
        with _Timer(trace, "retrieve") as det:
            from lumenrec.retriever.base import Query

            soft = self.config.category_includes == "soft"
            hard = dataclasses.replace(constraints, include_categories=[]) if soft else constraints
            mask = hard.to_mask(self.catalog)
            wanted_cats = set(constraints.include_categories if soft else [])
            if anchor is not None:
                wanted_cats |= {self.catalog.get(anchor).category} - {""}
            exclude = list(session.rejected) + (list(session.last_shown) if anchor is not None else [])
            history = list(session.history) + ([anchor] if anchor is not None else [])
            query = Query(history=history, text=text, exclude_ids=exclude, allowed=mask)
            prefer = bool(wanted_cats or constraints.attributes)
            ids, scores = self.retriever.retrieve(query, k=self.config.top_k * (2 if prefer else 1))
            if prefer:  # soft wishes re-rank a pool twice the list's size; nothing is filtered
                ids, scores = self._prefer(ids, scores, constraints.attributes, wanted_cats)
            relaxed = False
            if not ids and self.config.relax_when_empty and not constraints.is_empty():
                loose = Constraints(exclude_brands=list(constraints.exclude_brands))
                query.allowed = loose.to_mask(self.catalog)
                ids, scores = self.retriever.retrieve(query, k=self.config.top_k)
                relaxed = True
            det.update(**_describe(self.retriever), **({"system": self.system_note} if self.system_note else {}),
                       text=text, candidates=int(mask.sum()),
                       k=self.config.top_k, ids=list(ids), scores=[round(float(s), 4) for s in scores],
                       relaxed=relaxed, constraints=_compact(constraints.to_dict()),
                       topic="new need" if new_need else ("refines the previous request" if prev else "first request"),
                       **({"anchor": anchor} if anchor else {}), **({"notes": notes} if notes else {}),
                       constraints_changed=constraints != before)
        if not ids:
            text = ("I couldn't find anything in the catalogue that fits all of that. Could you loosen a constraint, "
                    "for example the brand or the price?")
            yield text
            return _Outcome(Intent.RECOMMEND, text)
        session.record_shown(list(ids))
        intro = self._intro(crit, constraints, relaxed, notes, ids, anchor)
        yield intro + "\n"
        hist = [self.screen.display_item(h) for h in session.history if h in self.catalog]
        out_items: list[tuple[str, str]] = []
        lines = [intro]
        with _Timer(trace, "narrate") as det:
            det.update(narrator=type(self.narrator).__name__, narrated=min(len(ids), self.config.narrate_top))
            for rank, iid in enumerate(ids, 1):
                item = self.screen.display_item(iid)
                if not item.brand and self.display_brand(iid):  # the narrative names the brand the title gives
                    item = dataclasses.replace(item, brand=self.display_brand(iid))
                if rank <= self.config.narrate_top and getattr(self.narrator, "streaming", False):
                    # a streaming narrator (#19): the item line first, then its narrative as it is written
                    yield f"{rank}. {_item_line(item)} - "
                    why = yield from self._narrate_stream("endorsement", item, hist, session, crit.original or message,
                                                          det if rank == 1 else None)
                    yield "\n"
                else:
                    why = self._narrate("endorsement", item, hist, session, crit.original or message) \
                        if rank <= self.config.narrate_top else ""
                    yield f"{rank}. {_item_line(item)}" + (f" - {why}" if why else "") + "\n"
                out_items.append((iid, why))
                lines.append(f"{rank}. {_item_line(item)}" + (f" - {why}" if why else ""))
        narrative = " ".join(w for _, w in out_items if w)
        return _Outcome(Intent.RECOMMEND, "\n".join(lines), out_items, narrative)

    def _explain(self, session: Session, decision: RouteDecision, trace: list[TraceStep],
                 item_ref_text: str | None = None) -> Generator[str, None, _Outcome]:
        iid = None
        if item_ref_text is not None:
            iid = self.resolve_item_ref(session, item_ref_text)
        if iid is None:
            ref = decision.target_item_ref if decision.target_item_ref is not None else (
                decision.critique.item_ref if decision.critique else None)
            iid = session.resolve_ref(0 if ref is None else ref)
        if iid is None:
            text = "I haven't shown you anything yet. Tell me what you need and I'll recommend a few items first."
            yield text
            return _Outcome(Intent.EXPLAIN, text)
        item = self.screen.display_item(iid)
        hist = [self.screen.display_item(h) for h in session.history if h in self.catalog]
        with _Timer(trace, "narrate") as det:
            why = self._narrate("endorsement", item, hist, session, None)
            det.update(narrator=type(self.narrator).__name__, item=iid)
        facts = [f"brand {item.brand}" if item.brand else "", f"category {' > '.join(item.categories)}" if item.categories else "",
                 f"price ${item.price:.2f}" if item.price is not None else ""]
        facts_s = "; ".join(f for f in facts if f)
        pos = session.last_shown.index(iid) + 1 if iid in session.last_shown else None
        head = f"About #{pos}, {_item_line(item)}" if pos else f"About {_item_line(item)}"
        text = f"{head}. {why}" + (f" ({facts_s}.)" if facts_s else "")
        yield text
        return _Outcome(Intent.EXPLAIN, text, [(iid, why)], why)

    def _summarize(self, session: Session, trace: list[TraceStep]) -> Generator[str, None, _Outcome]:
        from lumenrec.agent.memory import chat_summary

        with _Timer(trace, "narrate") as det:
            summary = chat_summary(session, self.catalog, self.parser.parse, item=self.screen.display_item)
            det.update(narrator="memory", history=len(session.history), turns=len(session.turns))
        yield summary
        return _Outcome(Intent.SUMMARIZE_USER, summary, [], summary)

    def _clarify_text(self, session: Session) -> str:
        opts = self._category_options(session)
        return (f"Happy to help. What are you looking for: {', '.join(opts[:-1])} or {opts[-1]}? "
                "A brand, colour or budget helps too.")

    # ---------------------------------------------------------------------------------- helpers
    def _category_options(self, session: Session | None = None, n: int = 3) -> list[str]:
        """n concrete leaf categories: the shopper's own first, then the catalogue's largest."""
        if session is None or not getattr(self, "_top_categories", None):
            counts = Counter(it.category for it in self.catalog if it.category)
            top = [c for c, _ in counts.most_common(10)] or ["pens", "paper", "binders"]
            if session is None:
                return top
        else:
            top = self._top_categories
        own = Counter(self.catalog.get(h).category for h in session.history if h in self.catalog and self.catalog.get(h).category)
        opts = [c for c, _ in own.most_common(2)]
        opts += [c for c in top if c not in opts]
        return [o.lower() for o in opts[:n]]

    def _is_new_need(self, message: str, crit: Critique, current: str | None = None) -> bool:
        """True when a message moves to a new need instead of refining `current` (the need's text): it says
        so ("totally different need", "next up: ..."), names a product type that is not the current one
        ("Canon printer ink" after gel pens), or states a need for a product. "Not BIC again, cheaper",
        "in blue" and "more pens" refine."""
        if _NEW_NEED_RX.search(message):
            return True
        named = self.parser.product_words(crit.text or message)
        if current is not None and named:
            return not named & self.parser.product_words(current)
        if crit.include_categories:
            return True
        content = [w for w in re.findall(r"[a-z0-9]+", (crit.text or message).lower()) if len(w) > 2]
        return bool(NEED_RX.search(message)) and self.offline_router._has_product_word(content)

    def _previous_request(self, session: Session) -> str | None:
        """The need being refined: the texts of the shopper's requests since the latest new need (their
        excluded names removed), oldest first; None before any request."""
        texts: list[str] = []
        for t in reversed(session.turns):
            if t.role != "user" or t.intent != Intent.RECOMMEND.value:
                continue
            crit = self.parser.parse(t.text)
            if crit.text:
                texts.insert(0, crit.text)
            if len(texts) >= 3 or (texts and self._is_new_need(t.text, crit, ". ".join(texts[1:]) or None)):
                break
        return ". ".join(texts) or None

    def _intro(self, crit: Critique, constraints: Constraints, relaxed: bool, notes: list[str],
               ids: list[str], anchor: str | None) -> str:
        """The reply's first line: what was applied, in words, and what could not be."""
        cons = describe_constraints(constraints)
        if relaxed:
            head = (f"Nothing matched every constraint ({cons}), so here are the closest items that still avoid "
                    "the brands you ruled out:")
        elif anchor is not None:
            head = f"More like #{crit.item_ref + 1 if crit.item_ref is not None and crit.item_ref >= 0 else 1}, " \
                   f"{short_title(self.screen.display_item(anchor))}" + (f" ({cons})" if cons else "") + ":"
        else:
            head = f"Here are some picks ({cons}):" if cons else "Here are some picks for you:"
        wanted = [c for c in constraints.attributes.get("colour", "").split(",") if c]
        if wanted and not relaxed:
            from lumenrec.agent.facts import catalogue_facts

            facts = catalogue_facts(self.catalog)
            if not any(facts[self.catalog.index_of(i)]["colours"] & set(wanted) for i in ids):
                notes.append(f"None of the closest matches is listed in {' or '.join(wanted)}; these are the nearest.")
        return head if not notes else head + "\n" + " ".join(notes)

    def _relative_constraints(self, session: Session, message: str, crit: Critique, notes: list[str]) -> Constraints:
        """Constraints relative to what was shown: "cheaper" (below the median price shown), "pricier",
        "a different brand" (none of the brands shown). Returns the session's updated constraints."""
        shown = [self.catalog.get(i) for i in session.last_shown if i in self.catalog]
        extra = Constraints()
        if crit.price_direction and crit.max_price is None and crit.min_price is None:
            prices = sorted(it.price for it in shown if it.price is not None)
            if not self._has_prices:
                said = any("lists no prices" in t.text for t in session.turns if t.role == "assistant")
                if not said:
                    notes.append("This catalogue lists no prices, so I can't compare on price.")
            elif not prices:
                notes.append("None of the items shown so far had a price to compare with.")
            else:
                median = float(np.median(prices))
                if crit.price_direction == "cheaper":
                    extra.max_price = float(np.nextafter(median, 0.0))
                else:
                    extra.min_price = float(np.nextafter(median, np.inf))
        if _DIFFERENT_BRAND_RX.search(message.lower()) and not crit.include_brands and shown:
            keys = self.parser.brand_keys
            extra.exclude_brands = sorted({b for b in (effective_brand(it, keys) for it in shown) if b})
        if not extra.is_empty():
            session.constraints = session.constraints.merge(extra)
        return session.constraints

    def _prefer(self, ids: list[str], scores, wanted: dict[str, str], categories: set[str]):
        """The top_k of a candidate pool, items meeting more soft wishes first, each group in retrieval order."""
        from lumenrec.agent.facts import catalogue_facts, preference_score

        facts = catalogue_facts(self.catalog)
        pref = [preference_score(self.catalog.get(i), facts[self.catalog.index_of(i)], wanted, categories) for i in ids]
        order = sorted(range(len(ids)), key=lambda j: (-pref[j], j))[: self.config.top_k]
        return [ids[j] for j in order], (np.asarray(scores)[order] if len(scores) else scores)

    def _narrate(self, kind: str, item: Item | None, history: list[Item], session: Session, critique: str | None) -> str:
        n = self.narrator
        uid = session.user_id or session.session_id
        if hasattr(n, "generate") and not hasattr(n, "narrate"):
            return n.generate(kind, item, history, user_id=uid, critique=critique).text
        return n.narrate(kind, item, history, user_id=uid, critique=critique)

    def _narrate_stream(self, kind: str, item: Item | None, history: list[Item], session: Session,
                        critique: str | None, details: dict[str, Any] | None = None) -> Generator[str, None, str]:
        """Yield the narrator's pieces as they come; return the whole narrative. `details` (a trace step's)
        gets the model's first-token and first-piece seconds and which generator wrote the text."""
        text = ""
        for piece in self.narrator.stream(kind, item, history, user_id=session.user_id or session.session_id,
                                          critique=critique):
            if isinstance(piece, str):
                yield piece
            else:
                text = piece.text
                if details is not None:
                    details.update(first_token_s=piece.first_token_s, first_piece_s=piece.first_piece_s,
                                   generator=piece.generator, prompt_version=piece.prompt_version)
        return text

    def resolve_item_ref(self, session: Session, ref: str) -> str | None:
        """An item id for a reference to a SHOWN item, first match of: an id shown in this session, a
        position in the last shown list ('2', '#2'), the exact title of a shown item, an ordinal ('the
        second one'). Never an item that was not shown: "99" after five shown items is None, not
        catalogue id 99."""
        ref = (ref or "").strip()
        if not ref:
            return None
        shown = {i for row in session.shown for i in row}
        if ref in shown:
            return ref
        m = re.fullmatch(r"#?\s*(\d{1,3})", ref)  # a number that is not a shown id is a position, or nothing
        if m:
            n = int(m.group(1))
            return session.resolve_ref(n - 1) if 1 <= n <= len(session.last_shown) else None
        by_title = self._title_index.get(ref.lower())
        if by_title is not None and by_title in shown:
            return by_title
        crit = self.parser.parse(ref, shown=session.last_shown or None)
        return session.resolve_ref(crit.item_ref) if crit.item_ref is not None else None

    def ground_item(self, item_id: str | None = None, title: str | None = None) -> str | None:
        """A catalogue id for an item named from outside (an LLM): by id, else exact title, else None."""
        if item_id is not None and str(item_id) in self.catalog:
            return str(item_id)
        if title:
            return self._title_index.get(title.strip().lower())
        return None

    def _ground(self, pairs: list[tuple[str, str]], trace: list[TraceStep]) -> list[dict[str, str]]:
        """Only catalogue items leave: every id is checked; unknown ones are dropped and traced."""
        out, dropped, seen = [], [], set()
        for iid, why in pairs:
            gid = self.ground_item(iid)
            if gid is None or gid in seen:
                if gid is None:
                    dropped.append(iid)
                continue
            seen.add(gid)
            out.append(self.item_dict(gid, why))
        if dropped:
            log.warning("dropped %d item ids not in the catalogue: %s", len(dropped), dropped[:5])
            trace.append(TraceStep("ground", 0.0, {"dropped": dropped}))
        return out

    def display_brand(self, item_id: str) -> str:
        """The brand to show: the (screened) brand field, else the catalogue brand the title starts with."""
        brand = self.screen.brand(item_id)
        if brand:
            return brand
        from lumenrec.data.screening import screen_text

        return screen_text(effective_brand(self.screen.display_item(item_id), self.parser.brand_keys), "brand").text

    def item_dict(self, item_id: str, why: str = "") -> dict[str, str]:
        it = self.catalog.get(item_id)
        return {"id": it.id, "title": self.screen.title(item_id), "brand": self.display_brand(item_id),
                "category": it.category, "why": why}


# ---------------------------------------------------------------------------------------------- utils
def _item_line(item: Item, brand: str | None = None) -> str:
    brand = item.brand if brand is None else brand
    return f"{item.title}" + (f" ({brand})" if brand else "")


def _describe(retriever) -> dict[str, Any]:
    """What the trace says about the retriever: its class, and the index it serves through if any."""
    if hasattr(retriever, "describe"):
        return retriever.describe()
    return {"retriever": type(retriever).__name__, "index": "in-memory"}


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (None, [], {}, "")}


def constraints_view(c: Constraints) -> dict[str, Any]:
    """Active constraints for a reply, an API response or a panel: the fields, and the same in words."""
    return {"active": _compact(c.to_dict()), "text": describe_constraints(c)}


_ATTR_WORDS = {"colour": "colour", "size_word": "size", "pack": "pack of", "paper_size": "paper", "oem": "original brand:"}


def describe_constraints(c: Constraints) -> str:
    """Active constraints in words ('not BIC; under $10'), '' when none."""
    parts = []
    if c.include_brands:
        parts.append("brand " + " or ".join(c.include_brands))
    if c.exclude_brands:
        parts.append("not " + ", ".join(c.exclude_brands))
    if c.include_categories:
        parts.append(" or ".join(c.include_categories))
    if c.exclude_categories:
        parts.append("no " + ", ".join(c.exclude_categories))
    if c.attributes:
        parts.append(", ".join(f"{_ATTR_WORDS.get(k, k)} {v.replace(',', ' or ')}" for k, v in sorted(c.attributes.items())))
    if c.avoid_attributes:
        parts.append(", ".join(f"no {v.replace(',', ' or ')} {_ATTR_WORDS.get(k, k)}".rstrip() for k, v in sorted(c.avoid_attributes.items())))
    if c.max_price is not None:
        parts.append(f"under ${c.max_price:g}")
    if c.min_price is not None:
        parts.append(f"over ${c.min_price:g}")
    return "; ".join(parts)


def _load_retriever(kind: str, ckpt: Path | None, catalog: Catalog, rcfg: dict[str, Any], base: Path,
                    index: dict[str, Any] | None = None):
    if kind == "text":
        from lumenrec.retriever.text_retriever import TextRetriever

        return TextRetriever(catalog)
    if ckpt is None or not ckpt.exists():
        raise CheckpointError(f"retriever checkpoint {ckpt} does not exist")
    if kind == "sasrec":
        from lumenrec.retriever.sasrec import SASRecRetriever

        return SASRecRetriever.from_pretrained(ckpt, catalog)
    if kind == "lumen_gen":  # issue #20: the LLM whose vocabulary holds the catalogue
        from lumenrec.agent.llm.lumen_gen.retriever import GenerativeLumenRetriever

        return GenerativeLumenRetriever.from_pretrained(ckpt, catalog)
    from lumenrec.retriever.lumen import LumenRetriever

    seq = None
    if rcfg.get("seq_checkpoint"):
        from lumenrec.retriever.sasrec import SASRecRetriever

        sp = Path(rcfg["seq_checkpoint"])
        seq = SASRecRetriever.from_pretrained(sp if sp.is_absolute() else base / sp, catalog)
    lumen = LumenRetriever.load(ckpt, catalog, seq=seq)
    if not index:
        return lumen
    from lumenrec.retriever.index import IndexConfig, ItemIndex
    from lumenrec.retriever.lumen_index import IndexedLumenRetriever

    fields = {k: v for k, v in index.items() if k in IndexConfig.__dataclass_fields__}
    if fields.get("backend", "persistent") == "persistent":
        p = Path(fields.get("path") or "index")
        fields["path"] = str(p if p.is_absolute() else base / p)
    fields["distance"] = "cosine"
    return IndexedLumenRetriever(lumen, ItemIndex(IndexConfig(**fields)))


def _load_narrator(ncfg: dict[str, Any], retriever, catalog: Catalog, path: Path):
    """The manifest's ``narrator``: ``{"kind": "offline"}`` or ``{"kind": "lumen_gen"}`` (the generative
    LUMEN model of the retriever writes purchase reasons and endorsements, fact-checked, the offline
    narrator the rest and whatever fails the check)."""
    from lumenrec.agent.narrative import GroundedNarrator, OfflineNarrator

    kind = (ncfg or {}).get("kind", "offline")
    if kind not in NARRATOR_KINDS:
        raise CheckpointError(f"{path}: narrator.kind {kind!r} is not one of {', '.join(NARRATOR_KINDS)}")
    if kind == "offline":
        return OfflineNarrator()
    from lumenrec.agent.llm.lumen_gen.retriever import GenerativeLumenNarrator, GenerativeLumenRetriever

    if not isinstance(retriever, GenerativeLumenRetriever):
        raise CheckpointError(f"{path}: narrator.kind 'lumen_gen' needs retriever.kind 'lumen_gen' (it shares its model)")
    return GroundedNarrator(GenerativeLumenNarrator(retriever.model, catalog), catalog, fallback=OfflineNarrator())


def write_manifest(directory: str | Path, *, dataset_name: str | None = None, catalog: Catalog | None = None,
                   catalog_path: str | None = None, retriever_kind: str = "text", checkpoint: str | None = None,
                   seq_checkpoint: str | None = None, index: dict[str, Any] | None = None,
                   config: RecommenderConfig | None = None, build: dict[str, Any] | None = None,
                   narrator: str | None = None) -> Path:
    """Write ``recommender.json`` into `directory`: the system :meth:`Recommender.from_pretrained` loads.

    The catalogue is `catalog` (saved as ``catalog.jsonl``), or `catalog_path` (a catalogue .jsonl
    already in the directory), or the registered `dataset_name` (also recorded next to a file, for
    the dataset's conversations). `index`: the Chroma index a LUMEN retriever serves through.
    """
    if retriever_kind not in RETRIEVER_KINDS:
        raise ConfigError("retriever_kind", retriever_kind, f"must be one of {', '.join(RETRIEVER_KINDS)}")
    if narrator is not None and narrator not in NARRATOR_KINDS:
        raise ConfigError("narrator", narrator, f"must be one of {', '.join(NARRATOR_KINDS)}")
    if catalog is not None and catalog_path is not None:
        raise ConfigError("catalog_path", catalog_path, "give either catalog or catalog_path")
    if dataset_name is None and catalog is None and catalog_path is None:
        raise ConfigError("dataset_name", dataset_name, "give a dataset_name, a catalog or a catalog_path")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    man: dict[str, Any] = {"format": "lumenrec-recommender-v2"}
    if catalog is not None:
        catalog.save_jsonl(d / "catalog.jsonl")
        catalog_path = "catalog.jsonl"
    if catalog_path is not None and not (d / catalog_path).is_file():
        raise DataNotFoundError(f"{d / catalog_path} does not exist")
    man["dataset"] = {**({"name": dataset_name} if dataset_name else {}), **({"path": catalog_path} if catalog_path else {})}
    man["retriever"] = {"kind": retriever_kind, **({"checkpoint": checkpoint} if checkpoint else {}),
                        **({"seq_checkpoint": seq_checkpoint} if seq_checkpoint else {})}
    if narrator is not None:
        man["narrator"] = {"kind": narrator}
    if index:
        man["index"] = dict(index)
    if config is not None:
        man["config"] = asdict(config)
    if build is not None:
        from lumenrec import __version__

        man["build"] = {"lumenrec_version": __version__, **build}
    tmp = d / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(man, indent=2), encoding="utf-8")
    tmp.replace(d / MANIFEST)
    return d / MANIFEST
