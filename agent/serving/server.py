"""`lumenrec serve`: the recommender behind an HTTP API that holds load, survives faults and refuses
bad input with a clear 4xx.

Endpoints (all JSON; errors are ``{"error": {"message", "type", "code", "request_id"}}``):

- ``POST /v1/sessions`` create a session (optional ``history`` of item ids, ``user_id``, ``session_id``)
- ``POST /v1/sessions/{id}/messages`` one turn: items + narrative + intent + ``fallback_used``
- ``POST /v1/sessions/{id}/messages:stream`` the same turn as server-sent events
- ``GET/DELETE /v1/sessions/{id}``, ``GET /v1/items/{id}``
- ``POST /v1/chat/completions`` OpenAI-compatible (stream or not): ``model`` is the recommender, the
  session id comes from ``user`` or the ``X-Session-Id`` header; the reply lists catalogue items
- ``GET /v1/models``, ``GET /health`` (the store and the retriever actually answer), ``/openapi.json``

Safety: binds 127.0.0.1 by default; a bearer token is optional on loopback and *required* on any
other address (:class:`ServeConfig` refuses to start without one); a request-size limit (413); a
per-client token-bucket rate limit (429 + ``Retry-After``); one structured JSON log line per request
(request id, route, status, latency). Turns of one session are serialised by a per-session lock;
sessions live in the store given (SQLite via ``--db``: a restart loses no conversation).

:class:`IndexRetriever` lets the recommender retrieve through the Chroma :class:`ItemIndex` (e.g. a
``chroma run`` server over HTTP): if the server goes away, turns answer 503 with a clear message and
recover by themselves once it is back.
"""


import concurrent.futures
import ipaddress
import json
import logging
import math
import re
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from lumenrec.errors import (ConfigError, ItemIndexError, LumenrecError, MissingExtraError, ToolInputError)

__all__ = ["ServeConfig", "RateLimiter", "IndexRetriever", "create_app", "serve", "is_loopback",
           "clean_message", "MODEL_ID"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("lumenrec.access")

MODEL_ID = "lumenrec-recommender"
_SESSION_ID_RX = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_CONTROL_RX = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_RATE_RX = re.compile(r"^\s*(\d+)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*$")


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


@dataclass
class ServeConfig:
    """How `lumenrec serve` listens and what it lets through."""

    # Loopback by default: the API changes state (sessions), so it is not exposed unless asked.
    host: str = "127.0.0.1"
    # 8080: leaves 8000 to Chroma and 8001 to `lumenrec llm serve`.
    port: int = 8080
    # Bearer token clients must send; optional on loopback, required on any other address.
    token: str | None = None
    # SQLite file of the sessions; None keeps them in memory (lost on restart).
    db_path: str | None = None
    # Requests per minute per client (token, else address); bursts up to the same number. 0 = off.
    rate_limit_per_min: float = 600.0
    # Largest request body accepted (a chat message is a few hundred bytes; 64 KiB leaves room for history).
    max_body_bytes: int = 65536
    # Longest shopper message, in characters, after control characters are removed.
    max_message_chars: int = 4000
    # Longest history given when a session is created (item ids).
    max_history: int = 500
    # Seconds /health waits for the retriever before reporting it as down.
    health_timeout_s: float = 10.0
    # uvicorn's log level (its own logs; requests are logged as JSON lines by lumenrec.access).
    log_level: str = "warning"

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("host", self.host, "must be an address such as 127.0.0.1")
        if not (0 <= int(self.port) <= 65535):
            raise ConfigError("port", self.port, "must be in [0, 65535]")
        if self.token is not None and (len(self.token) < 8 or any(c.isspace() for c in self.token)):
            raise ConfigError("token", "***", "must be at least 8 characters without spaces")
        if not is_loopback(self.host) and not self.token:
            raise ConfigError("token", None, f"binding {self.host} exposes the API beyond this machine: "
                              "give a bearer token with --token (or bind 127.0.0.1)")
        self.rate_limit_per_min = parse_rate(self.rate_limit_per_min)
        if self.rate_limit_per_min < 0:
            raise ConfigError("rate_limit_per_min", self.rate_limit_per_min, "must be >= 0 (0 disables)")
        if int(self.max_body_bytes) < 1024:
            raise ConfigError("max_body_bytes", self.max_body_bytes, "must be >= 1024")
        if int(self.max_message_chars) < 1:
            raise ConfigError("max_message_chars", self.max_message_chars, "must be >= 1")
        if int(self.max_history) < 0:
            raise ConfigError("max_history", self.max_history, "must be >= 0")
        if not self.health_timeout_s > 0:
            raise ConfigError("health_timeout_s", self.health_timeout_s, "must be > 0")
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


class _SessionLocks:
    """One lock per session id, dropped when nobody holds a reference (turns of a session run in order)."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
        self._guard = threading.Lock()

    def get(self, session_id: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(session_id)
            if lock is None:
                lock = threading.Lock()
                self._locks[session_id] = lock
            return lock


def _item_lines(items: Sequence[dict[str, str]]) -> str:
    return "\n".join(f"{it['id']} | {it['title']} | {it.get('brand') or '-'}" for it in items)


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

    cfg = config or ServeConfig()
    rec = recommender
    store = rec.store
    limiter = RateLimiter(cfg.rate_limit_per_min)
    locks = _SessionLocks()
    created_at = int(time.time())
    health_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="lumenrec-health")

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
        content: str | list[Any] | None = None

    class ChatCompletionIn(BaseModel):
        model_config = ConfigDict(extra="allow")
        model: str
        messages: list[ChatMessage]
        stream: bool = False
        user: str | None = None

    app = FastAPI(title="lumenrec recommender API", version="1",
                  description="Conversational recommendations over a product catalogue.")
    app.state.config, app.state.recommender = cfg, rec

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

    @app.exception_handler(Exception)
    async def on_any(request: Request, exc: Exception):
        log.exception("unhandled error in %s %s (request %s)", request.method, request.url.path, rid_of(request))
        return _error(500, f"internal error ({type(exc).__name__}); quote request id {rid_of(request)}",
                      "server_error", rid_of(request))

    # -- middleware: request id, auth, size limit, rate limit, JSON access log ------------------------
    open_paths = {"/health"}

    @app.middleware("http")
    async def guard(request: Request, call_next):
        t0 = time.perf_counter()
        given = request.headers.get("x-request-id", "")
        rid = given if re.fullmatch(r"[A-Za-z0-9._-]{1,64}", given) else uuid.uuid4().hex[:16]
        request.state.request_id = rid
        client = request.client.host if request.client else "-"
        resp = None
        auth = request.headers.get("authorization", "")
        if cfg.token and request.url.path not in open_paths:
            if not (auth.startswith("Bearer ") and _consteq(auth[7:].strip(), cfg.token)):
                resp = _error(401, "missing or wrong bearer token (send 'Authorization: Bearer <token>')",
                              "authentication_error", rid, headers={"WWW-Authenticate": "Bearer"})
        if resp is None:
            cl = request.headers.get("content-length")
            if cl is not None:
                if not cl.isdigit():
                    resp = _error(400, f"bad Content-Length header {cl[:20]!r}", "invalid_request_error", rid)
                elif int(cl) > cfg.max_body_bytes:
                    resp = _error(413, f"request body is {cl} bytes; the limit is {cfg.max_body_bytes}",
                                  "invalid_request_error", rid)
            elif request.method in ("POST", "PUT", "PATCH"):
                body = await request.body()  # chunked upload: count it (starlette caches it for the route)
                if len(body) > cfg.max_body_bytes:
                    resp = _error(413, f"request body is over {cfg.max_body_bytes} bytes", "invalid_request_error", rid)
        if resp is None and request.url.path not in open_paths:
            key = ("token:" + auth[-12:]) if auth else ("addr:" + client)
            wait = limiter.check(key)
            if wait > 0:
                resp = _error(429, f"rate limit of {cfg.rate_limit_per_min:g} requests/min exceeded; retry in {wait:.1f} s",
                              "rate_limit_error", rid, headers={"Retry-After": str(max(1, math.ceil(wait)))})
        if resp is None:
            try:
                resp = await call_next(request)
            except Exception as exc:  # anything the route did not turn into a 4xx: a JSON 500, logged
                log.exception("unhandled error in %s %s (request %s)", request.method, request.url.path, rid)
                resp = _error(500, f"internal error ({type(exc).__name__}); quote request id {rid}", "server_error", rid)
        resp.headers["X-Request-Id"] = rid
        route = request.scope.get("route")
        access_log.info(json.dumps({
            "ts": round(time.time(), 3), "request_id": rid, "method": request.method,
            "route": getattr(route, "path", request.url.path), "path": request.url.path[:200],
            "status": resp.status_code, "latency_ms": round((time.perf_counter() - t0) * 1000.0, 2), "client": client}))
        return resp

    # -- helpers ---------------------------------------------------------------------------------
    def check_sid(session_id: str) -> str:
        if not _SESSION_ID_RX.match(session_id or ""):
            raise ToolInputError(f"bad session id {session_id[:40]!r}: use 1-128 of A-Z a-z 0-9 . _ : -")
        return session_id

    def existing(session_id: str):
        s = store.get(check_sid(session_id))
        if s is None:
            raise StarletteHTTPException(404, f"no session {session_id!r}: create one with POST /v1/sessions")
        return s

    def reply_json(reply, with_trace: bool = False) -> dict[str, Any]:
        text, n1 = redact(reply.text)
        narrative, n2 = redact(reply.narrative)
        items = []
        for it in reply.items:
            why, n = redact(it.get("why", ""))
            n2 += n
            items.append({**it, "why": why})
        out = {"session_id": reply.session_id, "text": text, "items": items, "narrative": narrative,
               "intent": reply.intent, "fallback_used": bool(reply.fallback_used), "redacted": n1 + n2}
        if with_trace:
            out["trace"] = [{"name": s.name, "ms": round(s.ms, 2), "details": s.details} for s in reply.trace]
        return json.loads(json.dumps(out, default=str))

    def turn(session_id: str, text: str):
        """One chat turn under the session's lock; a ValueError the message provoked becomes a 400."""
        with locks.get(session_id):
            try:
                return rec.chat(session_id, text)
            except LumenrecError:
                raise
            except ValueError as e:  # e.g. a price bound that overflows: the input's fault, say so
                log.warning("turn of session %s refused: %s", session_id, e, exc_info=True)
                raise ToolInputError(f"the message could not be processed: {e}") from e

    # -- sessions ----------------------------------------------------------------------------------
    @app.post("/v1/sessions", status_code=201, summary="Create a session")
    def create_session(body: CreateSession) -> dict:
        if len(body.history) > cfg.max_history:
            raise ToolInputError(f"history has {len(body.history)} items; the limit is {cfg.max_history}")
        unknown = [h for h in body.history if h not in rec.catalog]
        if unknown:
            raise ToolInputError(f"history names {len(unknown)} item ids not in the catalogue, e.g. {unknown[:3]}")
        from lumenrec.agent.session import Session

        if body.session_id is not None:
            sid = check_sid(body.session_id)
            if store.get(sid) is not None:
                raise StarletteHTTPException(409, f"session {sid!r} already exists")
            s = Session(session_id=sid, user_id=body.user_id, history=list(body.history))
            store.put(s)
        else:
            s = store.new(user_id=body.user_id, history=list(body.history))
        return {"session_id": s.session_id, "user_id": s.user_id, "history": s.history}

    @app.get("/v1/sessions/{session_id}", summary="A session: history, shown items, constraints, turns")
    def get_session(session_id: str) -> dict:
        return existing(session_id).to_dict()

    @app.delete("/v1/sessions/{session_id}", status_code=204, summary="Delete a session")
    def delete_session(session_id: str):
        existing(session_id)
        store.delete(session_id)
        return Response(status_code=204)

    @app.post("/v1/sessions/{session_id}/messages", summary="One turn: items, narrative, intent, fallback flag")
    def message(session_id: str, body: MessageIn) -> dict:
        existing(session_id)
        text = clean_message(body.message, cfg.max_message_chars)
        return reply_json(turn(session_id, text), body.trace)

    @app.post("/v1/sessions/{session_id}/messages:stream", summary="One turn as server-sent events",
              response_class=StreamingResponse)
    def message_stream(session_id: str, body: MessageIn):
        existing(session_id)
        text = clean_message(body.message, cfg.max_message_chars)

        def events() -> Iterator[str]:
            with locks.get(session_id):
                try:
                    for ev in rec.chat_stream(session_id, text):
                        if isinstance(ev, str):
                            yield f"event: delta\ndata: {json.dumps({'text': redact(ev)[0]})}\n\n"
                        else:
                            yield f"event: reply\ndata: {json.dumps(reply_json(ev, body.trace))}\n\n"
                except LumenrecError as e:  # headers are sent: report in-band
                    kind = "index_unavailable" if isinstance(e, ItemIndexError) else "server_error"
                    yield f"event: error\ndata: {json.dumps({'message': str(e), 'type': kind})}\n\n"
                except Exception as e:
                    log.exception("stream failed for session %s", session_id)
                    yield f"event: error\ndata: {json.dumps({'message': type(e).__name__, 'type': 'server_error'})}\n\n"
            yield "event: done\ndata: {}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # -- items -------------------------------------------------------------------------------------
    @app.get("/v1/items/{item_id}", summary="One catalogue item")
    def get_item(item_id: str) -> dict:
        if item_id not in rec.catalog:
            raise StarletteHTTPException(404, f"no item {item_id[:64]!r} in the catalogue")
        it = rec.catalog.get(item_id)
        return {"id": it.id, "title": it.title, "brand": it.brand, "categories": list(it.categories),
                "description": it.description, "price": it.price, "attributes": dict(it.attributes)}

    # -- OpenAI-compatible -------------------------------------------------------------------------
    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": created_at,
                                            "owned_by": "lumenrec"}]}

    @app.post("/v1/chat/completions")
    def chat_completions(body: ChatCompletionIn, x_session_id: str | None = Header(default=None)):
        if body.model != MODEL_ID:
            raise StarletteHTTPException(404, f"model {body.model[:64]!r} does not exist; this server serves {MODEL_ID!r}")
        users = [m for m in body.messages if m.role == "user"]
        if not users:
            raise ToolInputError("messages must contain at least one message with role 'user'")
        content = users[-1].content
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        text = clean_message(content or "", cfg.max_message_chars)
        sid = check_sid(body.user or x_session_id or f"oai-{uuid.uuid4().hex}")
        cid, now = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        extra_headers = {"X-Session-Id": sid}
        if body.stream:
            def sse() -> Iterator[str]:
                def chunk(delta: dict, finish: str | None = None, extra: dict | None = None) -> str:
                    obj = {"id": cid, "object": "chat.completion.chunk", "created": now, "model": MODEL_ID,
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                    if extra:
                        obj["lumenrec"] = extra
                    return f"data: {json.dumps(obj)}\n\n"

                yield chunk({"role": "assistant", "content": ""})
                with locks.get(sid):
                    try:
                        reply = None
                        for ev in rec.chat_stream(sid, text):
                            if isinstance(ev, str):
                                yield chunk({"content": redact(ev)[0]})
                            else:
                                reply = ev
                        lines = _item_lines(reply.items) if reply and reply.items else ""
                        if lines:
                            yield chunk({"content": "\n\nItems:\n" + lines})
                        yield chunk({}, "stop", reply_json(reply) if reply else None)
                    except Exception as e:
                        log.warning("chat completion stream failed: %s", e)
                        yield f"data: {json.dumps({'error': {'message': str(e), 'type': 'server_error'}})}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(sse(), media_type="text/event-stream", headers=extra_headers)
        reply = turn(sid, text)
        content_out = redact(reply.text)[0] + (("\n\nItems:\n" + _item_lines(reply.items)) if reply.items else "")
        return JSONResponse(headers=extra_headers, content={
            "id": cid, "object": "chat.completion", "created": now, "model": MODEL_ID,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content_out}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(text.split()), "completion_tokens": len(content_out.split()),
                      "total_tokens": len(text.split()) + len(content_out.split())},
            "lumenrec": reply_json(reply)})

    # -- health ------------------------------------------------------------------------------------
    @app.get("/health")
    def health():
        checks: dict[str, Any] = {}
        ok = True
        try:
            ping = getattr(store, "ping", None)
            if ping:
                ping()
            else:
                store.get("__health__")
            checks["store"] = "ok"
        except Exception as e:
            ok, checks["store"] = False, f"error: {type(e).__name__}: {e}"[:300]

        def probe() -> int:
            from lumenrec.retriever.base import Query

            if hasattr(rec.retriever, "ping"):
                rec.retriever.ping()
            ids, _ = rec.retriever.retrieve(Query(text="office supplies"), k=1)
            return len(ids)

        t0 = time.perf_counter()
        try:
            n = health_pool.submit(probe).result(timeout=cfg.health_timeout_s)
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
        body = {"status": status, "model": MODEL_ID, "items": len(rec.catalog), "checks": checks}
        return JSONResponse(status_code=200 if ok else 503, content=body)

    return app


def _consteq(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode("utf-8", "ignore"), b.encode("utf-8", "ignore"))


def configure_json_logs(level: int = logging.INFO) -> None:
    """Send lumenrec.access lines (already JSON) to stderr, one per request, unprefixed."""
    import sys

    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("%(message)s"))
    access_log.handlers[:] = [h]
    access_log.setLevel(level)
    access_log.propagate = False


def serve(config: ServeConfig, recommender) -> None:
    """Warm the recommender up, then serve it with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError as e:
        raise MissingExtraError("uvicorn", "serve", "lumenrec serve") from e
    configure_json_logs()
    secs = recommender.warmup()
    app = create_app(recommender, config)
    log.warning("lumenrec serve: %d items, warm-up %.1f s, listening on http://%s:%d (auth %s, sessions in %s)",
                len(recommender.catalog), secs, config.host, config.port, "on" if config.token else "off",
                config.db_path or "memory")
    uvicorn.run(app, host=config.host, port=int(config.port), log_level=config.log_level, access_log=False)
