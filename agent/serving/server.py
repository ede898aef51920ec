"""`lumenrec serve`: the recommender behind an HTTP API that holds load, survives faults and refuses
bad input with a clear 4xx.

Endpoints (all JSON; errors are ``{"error": {"message", "type", "code", "request_id"}}``):

- ``POST /v1/sessions`` create a session (optional ``history`` of item ids, ``user_id``, ``session_id``)
- ``POST /v1/sessions/{id}/messages`` one turn: items + narrative + intent + ``fallback_used``
- ``POST /v1/sessions/{id}/messages:stream`` the same turn as server-sent events
- ``GET/DELETE /v1/sessions/{id}``, ``GET /v1/items/{id}``
- ``POST /v1/chat/completions`` OpenAI-compatible (stream or not, ``stream_options.include_usage``,
  ``max_tokens``/``max_completion_tokens`` and ``stop`` honoured; parameters it cannot honour, such as
  ``n > 1``, ``response_format`` other than text, ``tools`` or ``logprobs``, are a 400). The
  conversation is the message history, as OpenAI clients send it: without an ``X-Session-Id``
  header the session is derived from the earlier user messages (the state after them is kept under
  a key hashed from them, and rebuilt by replaying them when it is gone), so "not BIC again,
  something cheaper" continues the conversation it follows. ``X-Session-Id`` names a session
  explicitly; the reply's ``X-Session-Id`` header says which one answered.
- ``GET /v1/models``, ``GET /v1/models/{id}``; ``GET /health`` (liveness: no I/O, 503 when the
  store's last operation failed), ``GET /ready`` (the store and the retriever/index actually answer;
  cached for ``ready_cache_s``), ``/openapi.json``

Safety and load: binds 127.0.0.1 by default; a bearer token (or API keys) is optional on loopback
and *required* on any other address (:class:`ServeConfig` refuses to start without one); on the
tokenless loopback default the Host header must name this machine (DNS rebinding). Principals: the
shared token is one principal, each API key maps to its own; sessions belong to the principal that
created them (another principal's session does not exist for you: 404). Bodies past
``max_body_bytes`` are refused while they stream in (413). Token-bucket rate limits per client
identity (API key, else token + address, else address; 429 + ``Retry-After``). Turns are admitted
through a bounded queue (``max_concurrent_turns`` running, ``max_queue`` waiting; when full, or after
``queue_timeout_s`` waiting: 503 + ``Retry-After``) and have a deadline (``request_timeout_s``: 504,
the turn is not applied). A client that leaves (a dropped stream, a closed connection) releases its
session at the next step of the turn and the turn is not applied. A DELETE that lands during a turn
wins. One structured JSON log line per request (request id, route, status, latency).
"""


import asyncio
import concurrent.futures
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from lumenrec.agent.serving.openai_compat import check_params, cut, derived_id, message_text, words
from lumenrec.agent.serving.turns import (Admission, ClientGone, Deadline, GuardedStore, SessionGone, SessionLocks, Shed,
                                          Turn, TurnCancelled)
from lumenrec.errors import (ConfigError, ItemIndexError, LumenrecError, MissingExtraError, StoreError,
                             ToolInputError)

__all__ = ["ServeConfig", "RateLimiter", "IndexRetriever", "create_app", "serve", "is_loopback",
           "clean_message", "MODEL_ID", "load_api_keys"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("lumenrec.access")

MODEL_ID = "lumenrec-recommender"
_SESSION_ID_RX = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # fullmatch: "victim\n" is not an id
_PRINCIPAL_RX = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CONTROL_RX = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_RATE_RX = re.compile(r"^\s*(\d+)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*$")
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost' (the only addresses that may run without a token)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_rate(spec: str | int | float) -> float:
    """Requests per minute from '120', '120/min', '2/s' or '600/hour' (0 disables the limit)."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return float(spec)
    m = _RATE_RX.match(str(spec))
    if not m:
        raise ConfigError("rate_limit", spec, "must look like 120/min, 2/s or 600/hour (0 disables)")
    n, unit = float(m.group(1)), (m.group(2) or "min")[0]
    return n * {"s": 60.0, "m": 1.0, "h": 1.0 / 60.0}[unit]


def load_api_keys(path: str) -> dict[str, str]:
    """API keys from a file: one ``principal key`` pair per line (``#`` comments) or a JSON object
    ``{"principal": "key", ...}``. Returns {key: principal}."""
    from pathlib import Path

    text = Path(path).read_text(encoding="utf-8")
    pairs: list[tuple[str, str]] = []
    if text.lstrip().startswith("{"):
        try:
            pairs = [(str(k), str(v)) for k, v in json.loads(text).items()]
        except (ValueError, AttributeError) as e:
            raise ConfigError("api_keys", path, f"is not a JSON object of principal -> key: {e}") from e
    else:
        for n, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ConfigError("api_keys", f"{path}:{n}", "each line must be 'principal key'")
            pairs.append((parts[0], parts[1]))
    keys: dict[str, str] = {}
    for principal, key in pairs:
        if key in keys:
            raise ConfigError("api_keys", path, f"a key is listed twice (principals {keys[key]!r} and {principal!r})")
        keys[key] = principal
    return keys


@dataclass
class ServeConfig:
    """How `lumenrec serve` listens, what it lets through and how much load it takes."""

    # Loopback by default: the API changes state (sessions), so it is not exposed unless asked.
    host: str = "127.0.0.1"
    # 8080: leaves 8000 to Chroma and 8001 to `lumenrec llm serve`.
    port: int = 8080
    # Bearer token clients must send; optional on loopback, required (or api_keys) on any other address.
    token: str | None = None
    # API keys -> principal names ({key: principal}); each key is its own principal (sessions, rate limit).
    api_keys: dict[str, str] = field(default_factory=dict)
    # Where sessions live: None keeps them in memory (lost on restart), a file path is SQLite,
    # postgresql://... is PostgreSQL (replicas share it).
    db_path: str | None = None
    # Requests per minute per client identity; bursts up to the same number. 0 = off.
    rate_limit_per_min: float = 600.0
    # Largest request body accepted (a chat message is a few hundred bytes; 64 KiB leaves room for history).
    max_body_bytes: int = 65536
    # Longest shopper message, in characters, after control characters are removed.
    max_message_chars: int = 4000
    # Longest history given when a session is created (item ids).
    max_history: int = 500
    # Seconds /ready waits for the store and the retriever before reporting them as down.
    health_timeout_s: float = 10.0
    # /ready caches its verdict this long (a probe loop must not slow real turns).
    ready_cache_s: float = 2.0
    # Turns running at once (each holds a worker thread; on 2 cores more only adds latency).
    max_concurrent_turns: int = 4
    # Turns waiting for a slot; past that a turn is refused at once with 503 + Retry-After.
    max_queue: int = 64
    # Seconds a turn may wait for a slot before it is refused with 503.
    queue_timeout_s: float = 15.0
    # Deadline of a turn from arrival: past it the reply is 504 and the turn is not applied.
    request_timeout_s: float = 60.0
    # Sessions nobody touched for this long are gone (0: never).
    session_ttl_s: float = 7 * 24 * 3600.0
    # Turns one session may hold; then a new session must be started (409).
    max_turns: int = 200
    # /v1/chat/completions: at most this many earlier user messages are replayed to rebuild a
    # conversation whose stored state is gone.
    max_replay_turns: int = 20
    # Extra Host header names accepted on the tokenless loopback default (DNS rebinding protection).
    allowed_hosts: tuple[str, ...] = ()
    # uvicorn's log level (its own logs; requests are logged as JSON lines by lumenrec.access).
    log_level: str = "warning"

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("host", self.host, "must be an address such as 127.0.0.1")
        if not (0 <= int(self.port) <= 65535):
            raise ConfigError("port", self.port, "must be in [0, 65535]")
        if self.token is not None and (len(self.token) < 8 or any(c.isspace() for c in self.token)):
            raise ConfigError("token", "***", "must be at least 8 characters without spaces")
        self.api_keys = dict(self.api_keys or {})
        for key, principal in self.api_keys.items():
            if len(key) < 16 or any(c.isspace() for c in key):
                raise ConfigError("api_keys", "***", f"the key of {principal!r} must be at least 16 characters without spaces")
            if not _PRINCIPAL_RX.fullmatch(str(principal)):
                raise ConfigError("api_keys", principal, "principal names are 1-64 of A-Z a-z 0-9 . _ -")
            if self.token is not None and hmac.compare_digest(key, self.token):
                raise ConfigError("api_keys", principal, "an API key must differ from the shared token")
        if not is_loopback(self.host) and not (self.token or self.api_keys):
            raise ConfigError("token", None, f"binding {self.host} exposes the API beyond this machine: "
                              "give a bearer token with --token or API keys with --api-keys (or bind 127.0.0.1)")
        self.rate_limit_per_min = parse_rate(self.rate_limit_per_min)
        if self.rate_limit_per_min < 0:
            raise ConfigError("rate_limit_per_min", self.rate_limit_per_min, "must be >= 0 (0 disables)")
        if int(self.max_body_bytes) < 1024:
            raise ConfigError("max_body_bytes", self.max_body_bytes, "must be >= 1024")
        if int(self.max_message_chars) < 1:
            raise ConfigError("max_message_chars", self.max_message_chars, "must be >= 1")
        if int(self.max_history) < 0:
            raise ConfigError("max_history", self.max_history, "must be >= 0")
        for name in ("health_timeout_s", "queue_timeout_s", "request_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(name, getattr(self, name), "must be > 0")
        if self.ready_cache_s < 0 or self.session_ttl_s < 0:
            raise ConfigError("ready_cache_s/session_ttl_s", (self.ready_cache_s, self.session_ttl_s), "must be >= 0")
        if int(self.max_concurrent_turns) < 1:
            raise ConfigError("max_concurrent_turns", self.max_concurrent_turns, "must be >= 1")
        if int(self.max_queue) < 0:
            raise ConfigError("max_queue", self.max_queue, "must be >= 0")
        if int(self.max_turns) < 1 or int(self.max_replay_turns) < 0:
            raise ConfigError("max_turns/max_replay_turns", (self.max_turns, self.max_replay_turns), "must be >= 1 / >= 0")
        self.allowed_hosts = tuple(h.strip().lower() for h in self.allowed_hosts if h.strip())
        if self.log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise ConfigError("log_level", self.log_level, "must be a uvicorn log level such as warning or info")


class RateLimiter:
    """Token bucket per client: `per_min` requests a minute, bursts of up to `burst` (default per_min)."""

    def __init__(self, per_min: float, burst: float | None = None, clock=time.monotonic) -> None:
        self.rate = per_min / 60.0  # tokens per second
        self.burst = float(burst if burst is not None else max(per_min, 1.0))
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> float:
        """0.0 when the request may go ahead (and is counted), else seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > 10000:  # forget idle clients (full buckets carry no state)
                    self._buckets = {k: v for k, v in self._buckets.items() if v[0] < self.burst - 1}
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


def clean_message(text: str, max_chars: int) -> str:
    """The shopper's message with control characters removed (newlines and tabs kept), stripped.

    Raises ToolInputError when nothing is left or it is longer than `max_chars`.
    """
    if not isinstance(text, str):
        raise ToolInputError(f"message must be a string, got {type(text).__name__}")
    out = _CONTROL_RX.sub("", text).strip()
    # lone surrogates (possible from JSON "\ud800") cannot be encoded: drop them
    out = out.encode("utf-8", "ignore").decode("utf-8")
    if not out:
        raise ToolInputError("message is empty: send what you are looking for, e.g. 'gel pens under $10'")
    if len(out) > max_chars:
        raise ToolInputError(f"message has {len(out)} characters; the limit is {max_chars}")
    return out


_SPAN_RX = re.compile(r"[^.!?\n]+[.!?]*")
REDACTED = "[text removed: it contained instructions, not product information]"
_PROMPT_WINDOWS: list[str] | None = None


def _prompt_windows() -> list[str]:
    """Every 6-word window of the LLM router's system prompt (lower case), to spot a leak."""
    global _PROMPT_WINDOWS
    if _PROMPT_WINDOWS is None:
        try:
            from lumenrec.agent.llm_router import SYSTEM_PROMPT
        except Exception:  # pragma: no cover - the router module is part of the package
            SYSTEM_PROMPT = ""
        w = SYSTEM_PROMPT.lower().split()
        _PROMPT_WINDOWS = [" ".join(w[i:i + 6]) for i in range(max(0, len(w) - 5))]
    return _PROMPT_WINDOWS


def redact(text: str) -> tuple[str, int]:
    """`text` with every sentence that carries instructions (injection patterns, e.g. copied from a
    hostile item description) or a piece of the system prompt replaced by a notice; (text, count).

    Defence in depth at the API boundary: catalogue text is data, and whatever quoted it (a narrator,
    an LLM) must not pass its orders on to the shopper.
    """
    from lumenrec.agent.intents import INJECTION_RX

    if not text:
        return text, 0
    count = 0
    windows = _prompt_windows()

    def sub(m: re.Match) -> str:
        nonlocal count
        span = m.group(0)
        low = " ".join(span.lower().split())
        if INJECTION_RX.search(span) or any(w in low for w in windows):
            count += 1
            lead = len(span) - len(span.lstrip())
            return span[:lead] + REDACTED
        return span

    out = _SPAN_RX.sub(sub, text)
    if count:
        # a sentence cut at a quote leaves the payload's tail ("...EVIL-1 'Free Gift Card'") in the
        # next span only if that span matched too; a leftover closing quote is harmless
        log.warning("redacted %d sentence(s) carrying instructions from a reply", count)
    return out, count


# ------------------------------------------------------------------------------------------------
# retrieval through the Chroma item index
# ------------------------------------------------------------------------------------------------
class IndexRetriever:
    """Retrieve through a Chroma :class:`~lumenrec.retriever.index.ItemIndex` (persistent or HTTP).

    `encoder` maps texts to vectors of the index's model (``encode(list[str]) -> (B, d)``, e.g.
    :class:`~lumenrec.retriever.text_encoder.TextEncoder` for an index built from its item vectors).
    Same ``retrieve(Query, k)`` contract as :class:`~lumenrec.retriever.base.BaseRetriever`: the
    query's ``allowed`` mask and ``exclude_ids`` (and history) are honoured by over-fetching and
    filtering. Chroma failures surface as :class:`ItemIndexError`; the next call retries, so a server
    that comes back is used again without restarting anything.
    """

    def __init__(self, catalog, index, encoder, *, overfetch: int = 4) -> None:
        self.catalog, self.index, self.encoder = catalog, index, encoder
        self.overfetch = int(overfetch)

    def _vector(self, query) -> np.ndarray:
        text = (query.text or "").strip()
        if not text:
            titles = [self.catalog.get(h).title for h in query.history[-5:] if h in self.catalog]
            text = ". ".join(titles) or "office supplies"
        return np.asarray(self.encoder.encode([text]), dtype=np.float32)[0]  # (d,)

    def retrieve(self, query, k: int = 10, *, exclude_history: bool = True):
        from lumenrec.retriever.base import Query

        if not isinstance(query, Query):
            raise ToolInputError("IndexRetriever.retrieve takes one Query")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        vec = self._vector(query)
        drop = list(query.exclude_ids) + (list(query.history) if exclude_history else [])
        allowed = None if query.allowed is None else np.asarray(query.allowed, dtype=bool)
        n = len(self.catalog)
        fetch = min(n, k * (self.overfetch if allowed is not None else 1))
        while True:
            try:
                ids, scores = self.index.query(vec, fetch, exclude_ids=drop or None)
            except ItemIndexError:
                self.index.refresh()  # next call re-reads the alias (and reconnects)
                raise
            except Exception as e:  # connection refused, timeouts, ...: one clear error type
                self.index.refresh()
                raise ItemIndexError(f"the item index is unreachable: {type(e).__name__}: {e}") from e
            keep = [(i, s) for i, s in zip(ids, scores)
                    if i in self.catalog and (allowed is None or allowed[self.catalog.index_of(i)])]
            if len(keep) >= k or fetch >= n or len(ids) < fetch:
                keep = keep[:k]
                return [i for i, _ in keep], np.array([s for _, s in keep], dtype=np.float64)
            fetch = min(n, fetch * 4)

    def ping(self) -> dict[str, Any]:
        """The index's info (raises ItemIndexError when the server is down or nothing was built)."""
        try:
            return self.index.info()
        except ItemIndexError:
            self.index.refresh()
            raise
        except Exception as e:
            self.index.refresh()
            raise ItemIndexError(f"the item index is unreachable: {type(e).__name__}: {e}") from e


# ------------------------------------------------------------------------------------------------
# the app
# ------------------------------------------------------------------------------------------------
def _error(status: int, message: str, type_: str, request_id: str = "", code: str | None = None,
           headers: dict[str, str] | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=status, headers=headers,
                        content={"error": {"message": message, "type": type_, "code": code, "request_id": request_id}})


def _item_lines(items: Sequence[dict[str, str]]) -> str:
    return "\n".join(f"{it['id']} | {it['title']} | {it.get('brand') or '-'}" for it in items)


@dataclass
class _Principal:
    name: str          # whose sessions these are
    rate_key: str      # whose bucket a request draws from
    default: bool      # the shared-token / tokenless principal (session ids are not prefixed)

    def key(self, session_id: str) -> str:
        return session_id if self.default else f"{self.name}|{session_id}"


def _public_id(key: str) -> str:
    return key.split("|", 1)[-1]


def create_app(recommender, config: ServeConfig | None = None):
    """A FastAPI app serving `recommender` (whose ``store`` keeps the sessions)."""
    try:
        from fastapi import FastAPI, Header, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse, Response, StreamingResponse
        from pydantic import BaseModel, ConfigDict, Field
        from starlette.exceptions import HTTPException as StarletteHTTPException
    except ImportError as e:
        raise MissingExtraError(e.name or "fastapi", "serve", "lumenrec serve") from e
    from lumenrec.agent.serving.store import MemorySessionStore, SessionConflict, copy_session
    from lumenrec.agent.session import InMemorySessionStore, Session

    cfg = config or ServeConfig()
    rec = recommender
    inner = rec.store.inner if isinstance(rec.store, GuardedStore) else rec.store
    if isinstance(inner, InMemorySessionStore):  # the library default: swap in the server's memory store
        mem = MemorySessionStore(ttl_s=cfg.session_ttl_s)
        for blob in list(inner._data.values()):
            mem.put(Session.from_json(blob))
        inner = mem
    for need in ("create", "replace", "delete", "get"):
        if not callable(getattr(inner, need, None)):
            raise ConfigError("store", type(inner).__name__, f"the server needs a session store with {need}() "
                              "(MemorySessionStore, SQLiteSessionStore or PostgresSessionStore)")
    if hasattr(inner, "ttl_s"):
        inner.ttl_s = float(cfg.session_ttl_s)
    running: dict[str, Turn] = {}  # session key -> the turn running on it (one at a time: the session lock)
    store = GuardedStore(inner, running)
    rec.store = store
    limiter = RateLimiter(cfg.rate_limit_per_min)
    locks = SessionLocks()
    admission = Admission(cfg.max_concurrent_turns, cfg.max_queue, cfg.queue_timeout_s)
    turn_pool = concurrent.futures.ThreadPoolExecutor(max_workers=cfg.max_concurrent_turns, thread_name_prefix="lumenrec-turn")
    probe_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="lumenrec-ready")
    created_at = int(time.time())
    key_principals = {hashlib.sha256(k.encode("utf-8")).hexdigest(): p for k, p in cfg.api_keys.items()}
    hosts_ok = set(_LOOPBACK_NAMES) | set(cfg.allowed_hosts) | {cfg.host.lower()}
    ready_state: dict[str, Any] = {"at": -1e9, "status": 503, "body": None}
    ready_lock = threading.Lock()

    class CreateSession(BaseModel):
        model_config = ConfigDict(extra="forbid")
        history: list[str] = Field(default_factory=list, description="item ids the shopper bought, oldest first")
        user_id: str | None = Field(default=None, max_length=128)
        session_id: str | None = Field(default=None, description="choose the id (1-128 of A-Z a-z 0-9 . _ : -)")

    class MessageIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        message: str = Field(description="what the shopper says")
        trace: bool = Field(default=False, description="include the turn's trace (route, parse, retrieve, narrate)")

    class ChatMessage(BaseModel):
        model_config = ConfigDict(extra="allow")
        role: str
        content: Any = None  # checked by message_text: a 400 naming the place

    class ChatCompletionIn(BaseModel):
        model_config = ConfigDict(extra="allow")
        model: str
        messages: list[ChatMessage]
        stream: bool = False
        user: str | None = Field(default=None, max_length=256)

    app = FastAPI(title="lumenrec recommender API", version="1",
                  description="Conversational recommendations over a product catalogue.")
    app.state.config, app.state.recommender, app.state.admission = cfg, rec, admission

    # -- errors: always JSON with a reason, never a bare 500 -------------------------------------------
    def rid_of(request: Request) -> str:
        return getattr(request.state, "request_id", "")

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        return _error(422, "invalid request: " + "; ".join(parts), "invalid_request_error", rid_of(request))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), "invalid_request_error" if exc.status_code < 500 else "server_error",
                      rid_of(request), headers=getattr(exc, "headers", None))

    @app.exception_handler(ToolInputError)
    async def on_tool_input(request: Request, exc: ToolInputError):
        return _error(400, str(exc), "invalid_request_error", rid_of(request))

    @app.exception_handler(ItemIndexError)
    async def on_index(request: Request, exc: ItemIndexError):
        return _error(503, f"the item index is unavailable, retry shortly: {exc}", "index_unavailable",
                      rid_of(request), headers={"Retry-After": "5"})

    @app.exception_handler(SessionConflict)
    async def on_conflict(request: Request, exc: SessionConflict):
        return _error(409, str(exc), "conflict_error", rid_of(request), code="session_conflict")

    @app.exception_handler(StoreError)
    async def on_store(request: Request, exc: StoreError):
        return _error(503, f"the session store is unavailable, nothing was saved; retry shortly ({exc})",
                      "store_unavailable", rid_of(request), headers={"Retry-After": "2"})

    @app.exception_handler(Shed)
    async def on_shed(request: Request, exc: Shed):
        return _error(503, str(exc), "overloaded", rid_of(request), code="server_busy",
                      headers={"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))})

    @app.exception_handler(Deadline)
    async def on_deadline(request: Request, exc: Deadline):
        return _error(504, f"the turn did not finish within {cfg.request_timeout_s:g} s and was not applied; retry",
                      "timeout", rid_of(request), code="deadline_exceeded")

    @app.exception_handler(SessionGone)
    async def on_gone(request: Request, exc: SessionGone):
        return _error(404, f"session {_public_id(str(exc))!r} was deleted while this turn ran; the turn was not applied",
                      "invalid_request_error", rid_of(request), code="session_deleted")

    @app.exception_handler(ClientGone)
    async def on_client_gone(request: Request, exc: ClientGone):
        return Response(status_code=499)  # nobody reads it; the access log says the client left

    # -- the guard: request id, Host, auth -> principal, size limit, rate limit, JSON access log ------
    open_paths = {"/health", "/ready"}

    def identify(headers: dict[str, str], client: str) -> _Principal | None:
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not (cfg.token or cfg.api_keys):
            return _Principal("local", "addr:" + client, True)  # random headers do not change the bucket
        if bearer and cfg.token and hmac.compare_digest(bearer.encode("utf-8", "ignore"), cfg.token.encode("utf-8")):
            return _Principal("token", f"token@{client}", True)
        if bearer and key_principals:
            name = key_principals.get(hashlib.sha256(bearer.encode("utf-8", "ignore")).hexdigest())
            if name is not None:
                return _Principal(name, "key:" + name, False)
        return None

    def host_ok(headers: dict[str, str]) -> bool:
        if cfg.token or cfg.api_keys:
            return True  # a secret guards the API; the Host check protects the tokenless default
        host = headers.get("host")
        if host is None:
            return True
        name = host.strip().lower()
        if name.startswith("["):
            name = name[1:name.find("]")] if "]" in name else name
        elif name.count(":") == 1:
            name = name.rsplit(":", 1)[0]
        return name in hosts_ok

    class _BodyTooLarge(StarletteHTTPException):
        pass

    class Guard:
        def __init__(self, inner_app) -> None:
            self.app = inner_app

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return await self.app(scope, receive, send)
            t0 = time.perf_counter()
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            given = headers.get("x-request-id", "")
            rid = given if re.fullmatch(r"[A-Za-z0-9._-]{1,64}", given) else uuid.uuid4().hex[:16]
            state = scope.setdefault("state", {})
            state["request_id"] = rid
            client = scope["client"][0] if scope.get("client") else "-"
            path = scope.get("path", "")
            status = [0]

            async def send_logged(message):
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                    message = {**message, "headers": list(message.get("headers", [])) + [(b"x-request-id", rid.encode())]}
                await send(message)

            early = None
            principal = None
            if not host_ok(headers):
                early = _error(400, f"Host header {headers.get('host', '')[:80]!r} is not this server (DNS rebinding "
                               "protection of the tokenless loopback default; add it with --allowed-host)",
                               "invalid_request_error", rid, code="bad_host")
            elif path not in open_paths:
                principal = identify(headers, client)
                if principal is None:
                    early = _error(401, "missing or wrong bearer token (send 'Authorization: Bearer <token or API key>')",
                                   "authentication_error", rid, headers={"WWW-Authenticate": "Bearer"})
            if early is None:
                cl = headers.get("content-length")
                if cl is not None and not cl.strip().isdigit():
                    early = _error(400, f"bad Content-Length header {cl[:20]!r}", "invalid_request_error", rid)
                elif cl is not None and int(cl) > cfg.max_body_bytes:
                    early = _error(413, f"request body is {cl.strip()} bytes; the limit is {cfg.max_body_bytes}",
                                   "invalid_request_error", rid)
            if early is None and principal is not None:
                wait = limiter.check(principal.rate_key)
                if wait > 0:
                    early = _error(429, f"rate limit of {cfg.rate_limit_per_min:g} requests/min exceeded; retry in {wait:.1f} s",
                                   "rate_limit_error", rid, headers={"Retry-After": str(max(1, math.ceil(wait)))})
            state["principal"] = principal
            if early is not None:
                await early(scope, receive, send_logged)
            else:
                seen = [0]

                async def receive_counted():  # refuse a body past the limit while it streams in
                    message = await receive()
                    if message["type"] == "http.request":
                        seen[0] += len(message.get("body", b""))
                        if seen[0] > cfg.max_body_bytes:
                            raise _BodyTooLarge(413, f"request body is over {cfg.max_body_bytes} bytes")
                    return message

                try:
                    await self.app(scope, receive_counted, send_logged)
                except Exception as exc:  # anything no handler turned into a 4xx/5xx: a JSON 500, logged
                    log.exception("unhandled error in %s %s (request %s)", scope.get("method"), path, rid)
                    if status[0]:
                        raise  # the response is under way: nothing more to say to this client
                    await _error(500, f"internal error ({type(exc).__name__}); quote request id {rid}",
                                 "server_error", rid)(scope, receive, send_logged)
            route = scope.get("route")
            access_log.info(json.dumps({
                "ts": round(time.time(), 3), "request_id": rid, "method": scope.get("method"),
                "route": getattr(route, "path", path), "path": path[:200], "status": status[0],
                "latency_ms": round((time.perf_counter() - t0) * 1000.0, 2), "client": client,
                "principal": principal.name if principal else None}))

    app.add_middleware(Guard)

    # -- helpers ---------------------------------------------------------------------------------
    def who(request: Request) -> _Principal:
        p = request.state.principal
        assert p is not None  # the guard let the request in only with a principal
        return p

    def check_sid(session_id: str) -> str:
        if not isinstance(session_id, str) or not _SESSION_ID_RX.fullmatch(session_id):
            raise ToolInputError(f"bad session id {str(session_id)[:40]!r}: use 1-128 of A-Z a-z 0-9 . _ : -")
        return session_id

    def existing(key: str):
        s = store.get(key)
        if s is None:
            raise StarletteHTTPException(404, f"no session {_public_id(key)!r}: create one with POST /v1/sessions")
        return s

    def under_cap(s) -> None:
        if len(s.turns) >= 2 * cfg.max_turns:
            raise StarletteHTTPException(409, f"session {_public_id(s.session_id)!r} has reached its limit of "
                                              f"{cfg.max_turns} turns; start a new session")

    def reply_json(reply, with_trace: bool = False) -> dict[str, Any]:
        text, n1 = redact(reply.text)
        narrative, n2 = redact(reply.narrative)
        items = []
        for it in reply.items:
            why, n = redact(it.get("why", ""))
            n2 += n
            items.append({**it, "why": why})
        out = {"session_id": _public_id(reply.session_id), "text": text, "items": items, "narrative": narrative,
               "intent": reply.intent, "fallback_used": bool(reply.fallback_used), "redacted": n1 + n2,
               "constraints": reply.constraints}
        if with_trace:
            out["trace"] = [{"name": s.name, "ms": round(s.ms, 2), "details": s.details} for s in reply.trace]
        return json.loads(json.dumps(out, default=str))

    def work(key: str, texts: list[str], turn: Turn, on_piece: Callable[[str], None] | None):
        """The worker thread: wait for the session, run `texts` as turns in order (pieces of the last one
        go to `on_piece`), stop at the next step once the request is cancelled."""
        lock = locks.get(key)
        while not lock.acquire(timeout=0.05):
            if turn.cancelled:
                raise TurnCancelled()
        running[key] = turn
        try:
            reply = None
            for n, text in enumerate(texts):
                if turn.cancelled and not turn.committing:
                    raise TurnCancelled()
                last = n == len(texts) - 1
                gen = rec.chat_stream(key, text)
                try:
                    for ev in gen:
                        if turn.cancelled and not turn.committing:
                            raise TurnCancelled()
                        if isinstance(ev, str):
                            if last and on_piece is not None:
                                on_piece(ev)
                        else:
                            reply = ev
                except (LumenrecError, TurnCancelled, SessionGone, StoreError):
                    raise
                except ValueError as e:  # e.g. a price bound that overflows: the input's fault, say so
                    log.warning("turn of session %s refused: %s", _public_id(key), e)
                    raise ToolInputError(f"the message could not be processed: {e}") from e
                finally:
                    gen.close()
            return reply
        finally:
            running.pop(key, None)
            lock.release()

    async def start(request: Request, key: str, texts: list[str], on_piece=None):
        """Admit the turn (503 when full), hand it to a worker; returns (turn, future). The slot is
        released when the worker ends, whatever the request does meanwhile."""
        await admission.acquire(request.is_disconnected)
        turn = Turn()
        try:
            fut = asyncio.get_running_loop().run_in_executor(turn_pool, work, key, texts, turn, on_piece)
        except BaseException:
            admission.release()
            raise

        def done(f) -> None:
            admission.release()
            if not f.cancelled():
                f.exception()  # retrieved: no "never retrieved" warning for a cancelled request's turn

        fut.add_done_callback(done)
        return turn, fut

    async def await_turn(request: Request, turn: Turn, fut, t0: float):
        """The turn's reply; 504 past the deadline (turn cancelled), ClientGone when the client left."""
        deadline = t0 + cfg.request_timeout_s
        try:
            while True:
                left = deadline - time.monotonic()
                await asyncio.wait({fut}, timeout=max(0.0, min(0.2, left)))
                if fut.done():
                    return fut.result()
                if left <= 0:
                    if turn.cancel():
                        raise Deadline()
                    return await fut  # it is writing: the answer is the committed turn
                if await request.is_disconnected():
                    turn.cancel()
                    raise ClientGone()
        except asyncio.CancelledError:
            turn.cancel()
            raise

    async def run_turn(request: Request, key: str, texts: list[str]):
        t0 = time.monotonic()
        turn, fut = await start(request, key, texts)
        return await await_turn(request, turn, fut, t0)

    async def stream_turn(request: Request, key: str, texts: list[str], render: Callable[[Any], list[str]],
                          headers: dict[str, str] | None = None):
        """Run the turn in a worker; its pieces (str) and then its Reply (or exception) are rendered to
        SSE lines by `render`. The response releases the turn the moment the client goes."""
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()

        def on_piece(piece: str) -> None:
            loop.call_soon_threadsafe(q.put_nowait, piece)

        t0 = time.monotonic()
        turn, fut = await start(request, key, texts, on_piece)

        def finished(f) -> None:
            loop.call_soon_threadsafe(q.put_nowait, f)

        fut.add_done_callback(finished)

        async def body():
            deadline = t0 + cfg.request_timeout_s
            while True:
                try:
                    item = await asyncio.wait_for(q.get(), timeout=max(0.01, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    if turn.cancel():
                        for line in render(Deadline()):
                            yield line
                        return
                    continue  # committing: the reply is moments away
                if isinstance(item, str):
                    for line in render(item):
                        yield line
                    continue
                try:
                    result = item.result()
                except Exception as e:  # headers are sent: reported in-band
                    result = e
                for line in render(result):
                    yield line
                return

        return _TurnStream(body(), turn.cancel, media_type="text/event-stream",
                           headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})})

    class _TurnStream(StreamingResponse):
        """A StreamingResponse that cancels its turn when it ends for any reason (the client left)."""

        def __init__(self, content, on_close: Callable[[], Any], **kw) -> None:
            super().__init__(content, **kw)
            self._on_close = on_close

        async def __call__(self, scope, receive, send) -> None:
            try:
                await super().__call__(scope, receive, send)
            finally:
                self._on_close()

    def error_event(e: BaseException) -> dict[str, str]:
        """An exception raised after the headers went out, as the in-band error it is."""
        if isinstance(e, ToolInputError):
            return {"message": str(e), "type": "invalid_request_error"}
        if isinstance(e, ItemIndexError):
            return {"message": str(e), "type": "index_unavailable"}
        if isinstance(e, SessionConflict):
            return {"message": str(e), "type": "conflict_error"}
        if isinstance(e, StoreError):
            return {"message": f"the session store is unavailable, nothing was saved: {e}", "type": "store_unavailable"}
        if isinstance(e, Deadline):
            return {"message": f"the turn did not finish within {cfg.request_timeout_s:g} s and was not applied",
                    "type": "timeout"}
        if isinstance(e, SessionGone):
            return {"message": "the session was deleted while this turn ran; the turn was not applied",
                    "type": "invalid_request_error"}
        if isinstance(e, LumenrecError):
            return {"message": str(e), "type": "server_error"}
        log.error("stream failed: %s: %s", type(e).__name__, e, exc_info=e)
        return {"message": f"internal error ({type(e).__name__})", "type": "server_error"}

    # -- sessions ----------------------------------------------------------------------------------
    @app.post("/v1/sessions", status_code=201, summary="Create a session")
    def create_session(body: CreateSession, request: Request) -> dict:
        if len(body.history) > cfg.max_history:
            raise ToolInputError(f"history has {len(body.history)} items; the limit is {cfg.max_history}")
        unknown = [h for h in body.history if h not in rec.catalog]
        if unknown:
            raise ToolInputError(f"history names {len(unknown)} item ids not in the catalogue, e.g. {unknown[:3]}")
        p = who(request)
        sid = check_sid(body.session_id) if body.session_id is not None else uuid.uuid4().hex
        s = Session(session_id=p.key(sid), user_id=body.user_id, history=list(body.history))
        if not store.create(s):
            raise StarletteHTTPException(409, f"you already have a session {sid!r}")
        # with --llm local: the shopper's narrative prompt prefix is evaluated now, before their first turn
        rec.prepare_narrator(s.history, background=True)
        return {"session_id": sid, "user_id": s.user_id, "history": s.history}

    @app.get("/v1/sessions/{session_id}", summary="A session: history, shown items, constraints, turns")
    def get_session(session_id: str, request: Request) -> dict:
        d = existing(who(request).key(check_sid(session_id))).to_dict()
        d["session_id"] = session_id
        return d

    @app.delete("/v1/sessions/{session_id}", status_code=204, summary="Delete a session (wins over a running turn)")
    def delete_session(session_id: str, request: Request):
        key = who(request).key(check_sid(session_id))
        if not store.delete(key):
            raise StarletteHTTPException(404, f"no session {session_id!r}")
        return Response(status_code=204)

    @app.delete("/v1/sessions/{session_id}/constraints/{field}",
                summary="Drop one active constraint (a brand, category, attribute or price bound)")
    def drop_constraint(session_id: str, field: str, request: Request, value: str | None = None) -> dict:
        from lumenrec.agent.recommender import constraints_view

        key = who(request).key(check_sid(session_id))
        existing(key)
        lock = locks.get(key)
        if not lock.acquire(timeout=cfg.request_timeout_s):
            raise StarletteHTTPException(409, f"session {session_id!r} is busy with a turn; try again")
        try:
            c = rec.remove_constraint(key, field, value)
        finally:
            lock.release()
        return {"session_id": session_id, "constraints": constraints_view(c)}

    @app.post("/v1/sessions/{session_id}/messages", summary="One turn: items, narrative, intent, fallback flag")
    async def message(session_id: str, body: MessageIn, request: Request) -> dict:
        key = who(request).key(check_sid(session_id))
        text = clean_message(body.message, cfg.max_message_chars)
        under_cap(await asyncio.to_thread(existing, key))
        return reply_json(await run_turn(request, key, [text]), body.trace)

    @app.post("/v1/sessions/{session_id}/messages:stream", summary="One turn as server-sent events",
              response_class=StreamingResponse)
    async def message_stream(session_id: str, body: MessageIn, request: Request):
        key = who(request).key(check_sid(session_id))
        text = clean_message(body.message, cfg.max_message_chars)
        under_cap(await asyncio.to_thread(existing, key))

        def render(ev) -> list[str]:
            if isinstance(ev, str):
                return [f"event: delta\ndata: {json.dumps({'text': redact(ev)[0]})}\n\n"]
            if isinstance(ev, BaseException):
                return [f"event: error\ndata: {json.dumps(error_event(ev))}\n\n", "event: done\ndata: {}\n\n"]
            return [f"event: reply\ndata: {json.dumps(reply_json(ev, body.trace))}\n\n", "event: done\ndata: {}\n\n"]

        return await stream_turn(request, key, [text], render)

    # -- items -------------------------------------------------------------------------------------
    @app.get("/v1/items/{item_id}", summary="One catalogue item")
    async def get_item(item_id: str) -> dict:
        if item_id not in rec.catalog:
            raise StarletteHTTPException(404, f"no item {item_id[:64]!r} in the catalogue")
        it = rec.catalog.get(item_id)
        screen = rec.screen  # catalogue text is data: flagged parts (links, numbers, orders) are left out
        return {"id": it.id, "title": screen.title(item_id), "brand": screen.brand(item_id),
                "categories": list(it.categories), "description": screen.description(item_id), "price": it.price,
                "attributes": dict(it.attributes), "screened": {k: list(v) for k, v in screen.flags(item_id).items()}}

    # -- OpenAI-compatible -------------------------------------------------------------------------
    def model_card() -> dict:
        return {"id": MODEL_ID, "object": "model", "created": created_at, "owned_by": "lumenrec"}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id}")
    async def model(model_id: str) -> dict:
        if model_id != MODEL_ID:
            raise StarletteHTTPException(404, f"model {model_id[:64]!r} does not exist; this server serves {MODEL_ID!r}")
        return model_card()

    def resolve_conversation(p: _Principal, body: ChatCompletionIn, header_sid: str | None) -> tuple[str, list[str]]:
        """(session key, texts to run): the explicit session and the last user message, or the session
        derived from the earlier user messages (copied from their stored state, or rebuilt by
        replaying them) and the last one."""
        texts: list[str] = []
        last_role = None
        for i, m in enumerate(body.messages):
            if m.role not in ("system", "developer", "user", "assistant"):
                raise ToolInputError(f"messages[{i}].role {m.role!r} is not supported (system, developer, user, assistant)")
            text = message_text(m.model_dump(), i)
            if m.role == "user":
                texts.append(clean_message(text, cfg.max_message_chars))
            if m.role != "system" and m.role != "developer":
                last_role = m.role
        if not texts:
            raise ToolInputError("messages must contain at least one message with role 'user'")
        if last_role != "user":
            raise ToolInputError("the last message must be the shopper's (role 'user'): it is the turn to answer")
        if header_sid is not None:
            key = p.key(check_sid(header_sid))
            s = store.get(key)
            if s is None:
                store.create(Session(session_id=key, user_id=body.user))
            else:
                under_cap(s)
            return key, [texts[-1]]
        key = p.key(derived_id(p.name, body.user, texts))
        replay: list[str] = []
        base = None
        if len(texts) > 1:
            prev = store.get(p.key(derived_id(p.name, body.user, texts[:-1])))
            if prev is not None:
                under_cap(prev)
                base = copy_session(prev, key)
            else:  # its state is gone (expired, another server's memory): rebuild it from the messages
                replay = texts[:-1][-cfg.max_replay_turns:]
        store.create(base or Session(session_id=key, user_id=body.user), overwrite=True)
        return key, replay + [texts[-1]]

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request, x_session_id: str | None = Header(default=None)):
        try:
            raw = await request.json()
        except ValueError as e:
            raise ToolInputError(f"the body is not valid JSON: {e}") from e
        if not isinstance(raw, dict):
            raise ToolInputError("the body must be a JSON object with model and messages")
        try:
            body = ChatCompletionIn.model_validate(raw)
        except Exception as e:
            errs = getattr(e, "errors", lambda: [])()
            raise RequestValidationError(errs) from e
        if body.model != MODEL_ID:
            raise StarletteHTTPException(404, f"model {body.model[:64]!r} does not exist; this server serves {MODEL_ID!r}")
        check_params(raw)
        p = who(request)
        key, texts = await asyncio.to_thread(resolve_conversation, p, body, x_session_id)
        max_words = raw.get("max_completion_tokens") or raw.get("max_tokens")
        stop = [raw["stop"]] if isinstance(raw.get("stop"), str) else list(raw.get("stop") or [])
        prompt_tokens = sum(words(message_text(m.model_dump(), i)) for i, m in enumerate(body.messages))
        cid, now = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        headers = {"X-Session-Id": _public_id(key)}

        def usage(completion: int) -> dict[str, int]:
            return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                    "total_tokens": prompt_tokens + completion}

        def full_text(reply) -> str:
            return redact(reply.text)[0] + (("\n\nItems:\n" + _item_lines(reply.items)) if reply.items else "")

        if not body.stream:
            reply = await run_turn(request, key, texts)
            content, finish = cut(full_text(reply), max_words, stop)
            return JSONResponse(headers=headers, content={
                "id": cid, "object": "chat.completion", "created": now, "model": MODEL_ID,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
                "usage": usage(words(content)), "lumenrec": reply_json(reply)})

        include_usage = bool((raw.get("stream_options") or {}).get("include_usage"))
        sent: list[str] = []  # what went out, to cut at max_tokens / stop exactly as the non-streamed reply

        def chunk(delta: dict, finish: str | None = None, extra: dict | None = None) -> str:
            obj: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": now, "model": MODEL_ID,
                                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if include_usage:
                obj["usage"] = None
            if extra:
                obj["lumenrec"] = extra
            return f"data: {json.dumps(obj)}\n\n"

        state = {"finish": None}

        def emit(text: str) -> list[str]:
            if state["finish"] is not None:
                return []
            before = "".join(sent)
            kept, finish = cut(before + text, max_words, stop)
            piece = kept[len(before):] if kept.startswith(before) else ""
            out = []
            if piece:
                sent.append(piece)
                out.append(chunk({"content": piece}))
            if finish == "length" or len(kept) < len(before + text):
                state["finish"] = finish
            return out

        def render(ev) -> list[str]:
            if isinstance(ev, str):
                return emit(redact(ev)[0])
            if isinstance(ev, BaseException):
                return [f"data: {json.dumps({'error': error_event(ev)})}\n\n", "data: [DONE]\n\n"]
            out = emit("\n\nItems:\n" + _item_lines(ev.items)) if ev.items else []
            out.append(chunk({}, state["finish"] or "stop", reply_json(ev)))
            if include_usage:
                out.append(f"data: {json.dumps({'id': cid, 'object': 'chat.completion.chunk', 'created': now, 'model': MODEL_ID, 'choices': [], 'usage': usage(words(''.join(sent)))})}\n\n")
            out.append("data: [DONE]\n\n")
            return out

        first = chunk({"role": "assistant", "content": ""})
        resp = await stream_turn(request, key, texts, render, headers)
        inner_iter = resp.body_iterator

        async def with_role():
            yield first
            async for line in inner_iter:
                yield line

        resp.body_iterator = with_role()
        return resp

    # -- health ------------------------------------------------------------------------------------
    @app.get("/health", summary="Liveness: no I/O; 503 when the store's last operation failed")
    async def health():
        ok = bool(getattr(store.inner, "healthy", True))
        body = {"status": "ok" if ok else "unavailable", "model": MODEL_ID,
                "store": "ok" if ok else "error: its last operation failed (see /ready)",
                "turns_running": admission.running, "turns_waiting": admission.waiting}
        return JSONResponse(status_code=200 if ok else 503, content=body)

    def probe() -> tuple[int, dict[str, Any]]:
        checks: dict[str, Any] = {}
        ok = True
        t0 = time.perf_counter()
        try:
            ping = getattr(store.inner, "ping", None)
            fut = probe_pool.submit(ping if ping else (lambda: store.inner.get("__ready__")))
            fut.result(timeout=cfg.health_timeout_s)
            checks["store"] = "ok"
        except concurrent.futures.TimeoutError:
            ok, checks["store"] = False, f"error: no answer within {cfg.health_timeout_s:g} s"
        except Exception as e:
            ok, checks["store"] = False, f"error: {type(e).__name__}: {e}"[:300]
        checks["store_ms"] = round((time.perf_counter() - t0) * 1000.0, 2)

        def retriever_probe() -> int:
            from lumenrec.retriever.base import Query

            if hasattr(rec.retriever, "ping"):
                rec.retriever.ping()
            ids, _ = rec.retriever.retrieve(Query(text="office supplies"), k=1)
            return len(ids)

        t0 = time.perf_counter()
        try:
            n = probe_pool.submit(retriever_probe).result(timeout=cfg.health_timeout_s)
            checks["retriever"] = "ok" if n else "error: returned no item"
            ok = ok and bool(n)
        except concurrent.futures.TimeoutError:
            ok, checks["retriever"] = False, f"error: no answer within {cfg.health_timeout_s:g} s"
        except Exception as e:
            ok, checks["retriever"] = False, f"error: {type(e).__name__}: {e}"[:300]
        checks["retriever_ms"] = round((time.perf_counter() - t0) * 1000.0, 2)
        degraded = False
        if getattr(rec.config, "router", "offline") == "llm":  # the LLM is optional: its loss degrades, not fails
            import httpx

            url = rec.config.llm_base_url.rstrip("/") + "/models"
            try:
                code = httpx.get(url, timeout=min(5.0, cfg.health_timeout_s)).status_code
                checks["llm"] = "ok" if code == 200 else f"error: HTTP {code} from {url} (the offline router answers)"
            except Exception as e:
                checks["llm"] = f"error: {type(e).__name__} at {url} (the offline router answers)"
            degraded = checks["llm"] != "ok"
        status = "unavailable" if not ok else ("degraded" if degraded else "ok")
        return (200 if ok else 503), {"status": status, "model": MODEL_ID, "items": len(rec.catalog), "checks": checks}

    def ready_cached() -> tuple[int, dict[str, Any]]:
        with ready_lock:  # one probe at a time; callers in the same window share its verdict
            if time.monotonic() - ready_state["at"] > cfg.ready_cache_s or ready_state["body"] is None:
                ready_state["status"], ready_state["body"] = probe()
                ready_state["at"] = time.monotonic()
            return ready_state["status"], ready_state["body"]

    @app.get("/ready", summary="Readiness: the store and the retriever/index answer (cached briefly)")
    async def ready():
        status, body = await asyncio.to_thread(ready_cached)
        return JSONResponse(status_code=status, content=body)

    return app


def configure_json_logs(level: int = logging.INFO) -> None:
    """Send lumenrec.access lines (already JSON) to stderr, one per request, unprefixed."""
    import sys

    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("%(message)s"))
    access_log.handlers[:] = [h]
    access_log.setLevel(level)
    access_log.propagate = False


def json_error_protocol():
    """uvicorn's h11 protocol whose answer to a malformed HTTP request is our JSON error, not plain text."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class JSONErrorH11Protocol(H11Protocol):
        def send_400_response(self, msg: str) -> None:
            body = json.dumps({"error": {"message": f"malformed HTTP request: {msg}", "type": "invalid_request_error",
                                         "code": "bad_http_request", "request_id": ""}}).encode("utf-8")
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close")]
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                          h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
            self.transport.close()

    return JSONErrorH11Protocol


def serve(config: ServeConfig, recommender) -> None:
    """Warm the recommender up, then serve it with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError as e:
        raise MissingExtraError("uvicorn", "serve", "lumenrec serve") from e
    configure_json_logs()
    secs = recommender.warmup()
    app = create_app(recommender, config)
    log.warning("lumenrec serve: %d items, warm-up %.1f s, listening on http://%s:%d (auth %s, sessions in %s, "
                "%d turn(s) at once, queue %d)", len(recommender.catalog), secs, config.host, config.port,
                "api keys" if config.api_keys else ("token" if config.token else "off"),
                config.db_path.split("@")[-1] if config.db_path else "memory", config.max_concurrent_turns, config.max_queue)
    # limit_concurrency: a last line against connection floods (turns are already bounded by the admission queue)
    uvicorn.run(app, host=config.host, port=int(config.port), log_level=config.log_level, access_log=False,
                http=json_error_protocol(), limit_concurrency=max(256, 4 * (config.max_queue + config.max_concurrent_turns)),
                timeout_keep_alive=15)
