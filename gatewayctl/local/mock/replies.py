"""Deterministic reply bodies of the mock provider: OpenAI chat, completions, embeddings, models,
SSE events and error bodies (the native APIs are in anthropic_api, bedrock_api, gemini_api).

Pure functions of (model, request body): no clock, no randomness, no I/O. Token counts are
`max(1, ceil(characters / 4))` of the prompt text and of the reply text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# A fixed `created` timestamp keeps replies byte-identical across runs.
CREATED = 1_700_000_000
ECHO_CHARS = 64
FINGERPRINT = "fp_mock"

_WHITESPACE = re.compile(r"\s+")
_PIECE = re.compile(r"\S+\s*")

_ERROR_KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    431: ("invalid_request_error", "headers_too_large"),
    500: ("server_error", "internal_error"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "timeout"),
}

class RequestError(Exception):
    """A request the mock refuses; becomes an OpenAI-style error body with `status`."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Reply:
    """What the mock answers for one generation request, before it is shaped per API."""

    id: str
    model: str
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int

    @property
    def pieces(self) -> list[str]:
        """The text split into the word-sized pieces that streaming sends one per event."""
        return _PIECE.findall(self.text) or [""]

    def usage(self) -> dict[str, Any]:
        return usage(self.prompt_tokens, self.completion_tokens)


# Like OpenAI's, a long prompt is served partly from an implicit prompt cache: cached tokens
# are the prompt's rounded down to 128 when it has 1024 or more.
CACHE_MIN_TOKENS = 1024


def usage(prompt: int, completion: int) -> dict[str, Any]:
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": prompt + completion}
    if prompt >= CACHE_MIN_TOKENS:
        out["prompt_tokens_details"] = {"cached_tokens": prompt // 128 * 128}
    return out


def count_tokens(chars: int) -> int:
    return max(1, math.ceil(chars / 4))


def dumps(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def digest(body: dict[str, Any]) -> str:
    """A short hash of the body in canonical form, so key order and spacing do not matter."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    kind, default_code = _ERROR_KINDS.get(status, ("server_error", f"http_{status}"))
    return {"error": {"message": message, "type": kind, "param": None,
                      "code": code or default_code}}


def content_text(content: object) -> str:
    """The text of a message `content`: a string, or a list of parts with a `text` field."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _echo(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()[:ECHO_CHARS]


def _limit(body: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _make_reply(
    prefix: str, model: str, body: dict[str, Any], prompt_chars: int, echo: str, limit: int | None,
    stop_reason: str = "stop", length_reason: str = "length",
) -> Reply:
    text = f"[mock:{model}] {_echo(echo)}".rstrip()
    finish = stop_reason
    if limit is not None and len(text) > limit * 4:
        text, finish = text[: limit * 4], length_reason
    return Reply(
        id=f"{prefix}{digest(body)}",
        model=model,
        text=text,
        finish_reason=finish,
        prompt_tokens=count_tokens(prompt_chars),
        completion_tokens=count_tokens(len(text)),
    )


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty array", "invalid_messages")
    if not all(isinstance(message, dict) for message in messages):
        raise RequestError(400, "every item of 'messages' must be an object", "invalid_messages")
    return messages


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def chat_reply(model: str, body: dict[str, Any]) -> Reply:
    messages = _messages(body)
    prompt_chars = sum(len(content_text(message.get("content"))) for message in messages)
    limit = _limit(body, "max_completion_tokens", "max_tokens")
    echo = _last_user_text(messages)
    return _make_reply("chatcmpl-mock-", model, body, prompt_chars, echo, limit)


def chat_completion(reply: Reply) -> dict[str, Any]:
    return {
        "id": reply.id,
        "object": "chat.completion",
        "created": CREATED,
        "model": reply.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply.text, "refusal": None},
            "logprobs": None,
            "finish_reason": reply.finish_reason,
        }],
        "usage": reply.usage(),
    }


def _sse(data: object) -> bytes:
    return b"data: " + dumps(data) + b"\n\n"


def _openai_stream(
    reply: Reply, include_usage: bool, obj: str, choice: Callable[[dict[str, Any]], dict[str, Any]]
) -> list[bytes]:
    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        data: dict[str, Any] = {"id": reply.id, "object": obj, "created": CREATED,
                                "model": reply.model, "system_fingerprint": FINGERPRINT,
                                "choices": choices}
        if include_usage:
            data["usage"] = None
        return data

    events = [_sse(chunk([choice(delta)])) for delta in _deltas(reply, obj)]
    if include_usage:
        events.append(_sse(chunk([]) | {"usage": reply.usage()}))
    events.append(b"data: [DONE]\n\n")
    return events


def _deltas(reply: Reply, obj: str) -> list[dict[str, Any]]:
    deltas: list[dict[str, Any]] = []
    if obj == "chat.completion.chunk":
        deltas.append({"delta": {"role": "assistant", "content": ""}, "finish_reason": None})
        deltas.extend({"delta": {"content": piece}, "finish_reason": None}
                      for piece in reply.pieces)
        deltas.append({"delta": {}, "finish_reason": reply.finish_reason})
    else:
        deltas.extend({"text": piece, "finish_reason": None} for piece in reply.pieces)
        deltas.append({"text": "", "finish_reason": reply.finish_reason})
    return deltas


def chat_stream(reply: Reply, include_usage: bool) -> list[bytes]:
    """The SSE events of a streamed chat completion, ending with `data: [DONE]`."""
    return _openai_stream(reply, include_usage, "chat.completion.chunk",
                          lambda d: {"index": 0, **d, "logprobs": None})


def completion_reply(model: str, body: dict[str, Any]) -> Reply:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and all(isinstance(item, str) for item in prompt):
        texts: list[str] = prompt
    elif isinstance(prompt, str):
        texts = [prompt]
    else:
        raise RequestError(400, "'prompt' must be a string or an array of strings",
                           "invalid_prompt")
    return _make_reply("cmpl-mock-", model, body, sum(map(len, texts)),
                       texts[-1] if texts else "", _limit(body, "max_tokens"))


def completion(reply: Reply) -> dict[str, Any]:
    return {
        "id": reply.id,
        "object": "text_completion",
        "created": CREATED,
        "model": reply.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"text": reply.text, "index": 0, "logprobs": None,
                     "finish_reason": reply.finish_reason}],
        "usage": reply.usage(),
    }


def completion_stream(reply: Reply, include_usage: bool) -> list[bytes]:
    return _openai_stream(reply, include_usage, "text_completion",
                          lambda d: {"index": 0, **d, "logprobs": None})


def embedding_vector(model: str, text: str, dims: int) -> list[float]:
    """A unit-length vector from SHA-256 of (model, text), rounded to 6 decimals."""
    seed = hashlib.sha256(f"{model}\0{text}".encode()).digest()
    raw = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest()
                   for i in range(math.ceil(dims / 8)))
    values = [u / 2147483648.0 - 1.0 for u in struct.unpack(f">{dims}I", raw[: dims * 4])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def _embedding_inputs(raw: object) -> list[tuple[str, int]]:
    """(text used for the vector, prompt tokens) for each input."""
    def is_tokens(item: object) -> bool:
        return isinstance(item, list) and all(
            isinstance(t, int) and not isinstance(t, bool) for t in item)

    if isinstance(raw, str):
        return [(raw, count_tokens(len(raw)))]
    if is_tokens(raw) and raw:
        assert isinstance(raw, list)
        return [(" ".join(map(str, raw)), len(raw))]
    if isinstance(raw, list) and raw and all(isinstance(item, str) for item in raw):
        return [(item, count_tokens(len(item))) for item in raw]
    if isinstance(raw, list) and raw and all(is_tokens(item) for item in raw):
        return [(" ".join(map(str, item)), len(item)) for item in raw]
    raise RequestError(400, "'input' must be a string, an array of strings, or token arrays",
                       "invalid_input")


def embeddings(model: str, body: dict[str, Any], default_dims: int) -> dict[str, Any]:
    inputs = _embedding_inputs(body.get("input"))
    dims = body.get("dimensions", default_dims)
    if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= 65536:
        raise RequestError(400, "'dimensions' must be an integer between 1 and 65536",
                           "invalid_dimensions")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise RequestError(400, "'encoding_format' must be 'float' or 'base64'",
                           "invalid_encoding_format")
    data: list[dict[str, Any]] = []
    for index, (text, _) in enumerate(inputs):
        vector = embedding_vector(model, text, dims)
        encoded: object = vector
        if fmt == "base64":
            encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(count for _, count in inputs)
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def model_list(names: list[str]) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(name) for name in names]}


def model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": CREATED, "owned_by": "gatewayctl-mock"}
