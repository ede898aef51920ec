"""The OpenAI chat-completions contract of `lumenrec serve`: which parameters are honoured, which are
accepted without effect and which are refused (400), the text of a message, cutting a reply at
``max_tokens``/``stop``, and the id of a conversation derived from its user messages.

"Tokens" here are whitespace-separated words: the recommender is not a tokenised language model, and
``usage`` counts the same words that ``max_tokens`` cuts.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Sequence

from lumenrec.errors import ToolInputError

__all__ = ["HONOURED", "NO_EFFECT", "check_params", "message_text", "cut", "derived_id", "words"]


def words(text: str) -> int:
    return len(text.split())


# OpenAI chat-completion parameters: honoured, accepted without effect (documented), or refused
HONOURED = {"model", "messages", "stream", "stream_options", "user", "max_tokens", "max_completion_tokens",
                 "stop", "n", "response_format", "logprobs", "tools", "tool_choice"}
# sampling knobs do not apply to a deterministic recommender: accepted, they change nothing
NO_EFFECT = {"temperature", "top_p", "presence_penalty", "frequency_penalty", "seed", "metadata", "store",
                  "parallel_tool_calls", "service_tier"}


def check_params(body: dict[str, Any]) -> None:
    """400 (ToolInputError) for every parameter this endpoint cannot honour, instead of ignoring it."""
    unknown = sorted(set(body) - HONOURED - NO_EFFECT)
    if unknown:
        raise ToolInputError(f"unsupported parameter(s) {', '.join(unknown)}: this endpoint serves the recommender "
                             f"and honours {', '.join(sorted(HONOURED - {'model', 'messages'}))}")
    if body.get("n") not in (None, 1):
        raise ToolInputError(f"n={body['n']!r} is not supported: the recommender returns one answer per turn (n=1)")
    rf = body.get("response_format")
    if rf is not None and not (isinstance(rf, dict) and rf.get("type") == "text"):
        raise ToolInputError("response_format is not supported: the reply is text listing catalogue items "
                             "(use response_format {\"type\": \"text\"} or leave it out)")
    if body.get("logprobs") not in (None, False) or body.get("top_logprobs") is not None:
        raise ToolInputError("logprobs are not supported: the recommender is not a sampled language model")
    if body.get("tools"):
        raise ToolInputError("tools are not supported here: this endpoint IS the recommender; call its tools "
                             "through lumenrec.tools (OpenAI schemas) or `lumenrec mcp`")
    if body.get("tool_choice") not in (None, "none", "auto"):
        raise ToolInputError("tool_choice must be 'none' or 'auto' (this endpoint has no tools)")
    for name in ("max_tokens", "max_completion_tokens"):
        v = body.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ToolInputError(f"{name} must be a positive integer, got {v!r}")
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str) or (isinstance(stop, list) and len(stop) <= 4
                                                           and all(isinstance(s, str) and s for s in stop))):
        raise ToolInputError("stop must be a string or a list of up to 4 non-empty strings")
    so = body.get("stream_options")
    if so is not None:
        if not body.get("stream"):
            raise ToolInputError("stream_options is only allowed with stream: true")
        if not isinstance(so, dict) or set(so) - {"include_usage"} or not isinstance(so.get("include_usage", False), bool):
            raise ToolInputError("stream_options supports only {\"include_usage\": true|false}")
    for name in NO_EFFECT & {"temperature", "top_p", "presence_penalty", "frequency_penalty"}:
        v = body.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ToolInputError(f"{name} must be a number, got {v!r}")


def message_text(m: dict[str, Any], i: int) -> str:
    """The text of one chat message (string content or text parts); 400 for anything else."""
    content = m.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ToolInputError(f"messages[{i}].content must be a string or a list of text parts")
    out = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise ToolInputError(f"messages[{i}].content[{j}] is a {kind!r} part: only text parts are supported")
        if not isinstance(part.get("text"), str):
            raise ToolInputError(f"messages[{i}].content[{j}].text must be a string")
        out.append(part["text"])
    return " ".join(out)


def cut(text: str, max_words: int | None, stop: list[str]) -> tuple[str, str]:
    """`text` cut at the first stop sequence and at `max_words` words; (text, finish_reason)."""
    finish = "stop"
    for s in stop:
        i = text.find(s)
        if i >= 0:
            text = text[:i]
    if max_words is not None and words(text) > max_words:
        # keep the original spacing of the first max_words words
        n, out = 0, []
        for m in re.finditer(r"\S+\s*", text):
            n += 1
            out.append(m.group(0))
            if n >= max_words:
                break
        text, finish = "".join(out).rstrip(), "length"
    return text, finish


def derived_id(principal: str, user: str | None, user_texts: Sequence[str]) -> str:
    h = hashlib.sha256(json.dumps([principal, user or "", list(user_texts)], ensure_ascii=False).encode("utf-8"))
    return "oai-" + h.hexdigest()[:32]
