"""Anthropic's Messages API (`POST /v1/messages`), strictly: what the real API refuses, this
refuses, with Anthropic's error shape.

Checked: `x-api-key` (the configured key, or any without one) and `anthropic-version`; no
member outside the API's; `model`; `max_tokens` (required, a positive integer); `messages`
(non-empty; roles user and assistant; string content or blocks of known types; text blocks
not blank; images jpeg/png/gif/webp; tool_use only from the assistant, tool_result only from
the user, at the start of the turn right after the tool_use with those ids, every tool_use
answered there); tool blocks need `tools`; a final assistant turn may not end with
whitespace; `system`; `temperature` and `top_p` in [0, 1]; `tools` (names of 1-64 letters,
digits, `_` or `-`; an object input_schema); `tool_choice`; `stop_sequences`; `metadata`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gatewayctl.local.mock.conversation import Answer, Conversation, Tool, answer, split_json

VERSION = "2023-06-01"
_MEMBERS = frozenset({
    "model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature",
    "top_p", "top_k", "tools", "tool_choice", "metadata", "thinking", "service_tier",
})
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_FINISH = {"stop": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence",
           "tool_calls": "tool_use"}
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    500: "api_error", 503: "overloaded_error", 529: "overloaded_error",
}


class AnthropicError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"),
                                       "message": message}}


def _bad(message: str) -> AnthropicError:
    return AnthropicError(400, message)


def check_headers(headers: Mapping[str, str], key: str | None) -> None:
    presented = headers.get("x-api-key")
    if presented is None or (key is not None and presented != key):
        raise AnthropicError(401, "invalid x-api-key")
    if headers.get("anthropic-version") is None:
        raise _bad("anthropic-version: header is required")


def _text(block: Mapping[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise _bad(f"{where}.text: Input should be a valid string")
    if not text.strip():
        raise _bad(f"{where}: text content blocks must contain non-whitespace text")
    return text


def _image(block: Mapping[str, Any], where: str) -> None:
    source = block.get("source")
    if not isinstance(source, Mapping):
        raise _bad(f"{where}.source: Field required")
    if source.get("type") == "base64":
        if source.get("media_type") not in _IMAGE_TYPES or not isinstance(source.get("data"), str):
            raise _bad(f"{where}.source: media_type must be one of image/jpeg, image/png, "
                       "image/gif, image/webp, with base64 data")
    elif source.get("type") != "url" or not isinstance(source.get("url"), str):
        raise _bad(f"{where}.source: Input tag does not match any of 'base64', 'url'")


def _blocks(content: Any, where: str, role: str) -> list[Mapping[str, Any]]:
    if isinstance(content, str):
        if not content.strip():
            raise _bad(f"{where}: text content blocks must contain non-whitespace text")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise _bad(f"{where}: messages must have non-empty content")
    out = []
    for i, block in enumerate(content):
        at = f"{where}.{i}"
        if not isinstance(block, Mapping):
            raise _bad(f"{at}: Input should be a valid dictionary")
        kind = block.get("type")
        if kind == "text":
            _text(block, at)
        elif kind == "image":
            _image(block, at)
        elif kind == "tool_use" and role == "assistant":
            if not (isinstance(block.get("id"), str) and isinstance(block.get("name"), str)
                    and isinstance(block.get("input"), Mapping)):
                raise _bad(f"{at}: tool_use needs id, name and an object input")
            if not _TOOL_ID.match(block["id"]):
                raise _bad(f"{at}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        elif kind == "tool_result" and role == "user":
            if not isinstance(block.get("tool_use_id"), str):
                raise _bad(f"{at}.tool_use_id: Field required")
            if not _TOOL_ID.match(block["tool_use_id"]):
                raise _bad(f"{at}.tool_use_id: String should match pattern '^[a-zA-Z0-9_-]+$'")
            inner = block.get("content")
            if inner is not None and not isinstance(inner, str):
                if not isinstance(inner, list):
                    raise _bad(f"{at}.content: Input should be a valid string or list")
                for j, item in enumerate(inner):
                    if not isinstance(item, Mapping) or item.get("type") not in ("text", "image"):
                        raise _bad(f"{at}.content.{j}: Input tag does not match 'text', 'image'")
                    if item.get("type") == "text":
                        _text(item, f"{at}.content.{j}")
        else:
            raise _bad(f"{at}: Input tag '{kind}' found using 'type' does not match any of "
                       f"the expected tags for a {role} message")
        out.append(block)
    return out


def _result_text(block: Mapping[str, Any]) -> str:
    inner = block.get("content")
    if isinstance(inner, str):
        return inner
    if isinstance(inner, list):
        return "".join(i["text"] for i in inner if isinstance(i, Mapping) and "text" in i)
    return ""


def _check_tool_flow(turns: list[tuple[str, list[Mapping[str, Any]]]]) -> None:
    for i, (_, blocks) in enumerate(turns):
        uses = [b["id"] for b in blocks if b.get("type") == "tool_use"]
        results = [b for b in blocks if b.get("type") == "tool_result"]
        if results:
            lead = 0
            while lead < len(blocks) and blocks[lead].get("type") == "tool_result":
                lead += 1
            if lead != len(results):
                raise _bad(f"messages.{i}: tool_result blocks must come first in the content")
            before = turns[i - 1][1] if i > 0 else []
            ids = {b["id"] for b in before if b.get("type") == "tool_use"}
            for r in results:
                if r["tool_use_id"] not in ids:
                    raise _bad(f"messages.{i}: unexpected `tool_use_id` found in `tool_result` "
                               "blocks; each tool_result must have a corresponding tool_use "
                               "in the previous message")
        if uses:
            nxt = turns[i + 1][1] if i + 1 < len(turns) else []
            answered = {b.get("tool_use_id") for b in nxt if b.get("type") == "tool_result"}
            missing = [u for u in uses if u not in answered]
            if missing:
                raise _bad(f"messages.{i}: `tool_use` ids were found without `tool_result` "
                           f"blocks immediately after: {', '.join(missing)}")


def _tools(body: Mapping[str, Any]) -> tuple[tuple[Tool, ...], str | None]:
    tools_raw = body.get("tools")
    tools: list[Tool] = []
    if tools_raw is not None:
        if not isinstance(tools_raw, list):
            raise _bad("tools: Input should be a valid list")
        for i, t in enumerate(tools_raw):
            if not isinstance(t, Mapping) or not isinstance(t.get("name"), str):
                raise _bad(f"tools.{i}.name: Field required")
            if not _TOOL_NAME.match(t["name"]):
                raise _bad(f"tools.{i}.name: String should match pattern "
                           "'^[a-zA-Z0-9_-]{1,64}$'")
            schema = t.get("input_schema")
            if not isinstance(schema, Mapping) or schema.get("type") != "object":
                raise _bad(f"tools.{i}.input_schema: input_schema must be an object schema")
            extra = set(t) - {"name", "description", "input_schema", "cache_control", "type"}
            if extra:
                raise _bad(f"tools.{i}.{sorted(extra)[0]}: Extra inputs are not permitted")
            tools.append(Tool(t["name"], schema))
    choice_raw = body.get("tool_choice")
    choice: str | None = None
    if choice_raw is not None:
        kind = choice_raw.get("type") if isinstance(choice_raw, Mapping) else None
        if kind not in ("auto", "any", "tool", "none"):
            raise _bad("tool_choice: Input tag does not match any of 'auto', 'any', 'tool', "
                       "'none'")
        if not tools:
            raise _bad("tool_choice may only be specified while providing tools")
        choice = kind
        if kind == "tool":
            name = choice_raw.get("name")
            if name not in {t.name for t in tools}:
                raise _bad("tool_choice.name: the tool is not among the tools")
            choice = str(name)
        if kind == "none" and choice_raw.get("disable_parallel_tool_use") is not None:
            raise _bad("tool_choice.disable_parallel_tool_use: Extra inputs are not permitted")
    return tuple(tools), choice


def read(body: Mapping[str, Any]) -> Conversation:
    extra = sorted(set(body) - _MEMBERS)
    if extra:
        raise _bad(f"{extra[0]}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad("model: Field required")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise _bad("max_tokens: Field required")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise _bad("max_tokens: Input should be greater than or equal to 1")
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not 0 <= value <= 1):
            raise _bad(f"{name}: Input should be less than or equal to 1")
    texts: list[str] = []
    system = body.get("system")
    if system is not None:
        if isinstance(system, str):
            texts.append(system)
        elif isinstance(system, list):
            texts += [_text(b, f"system.{i}") for i, b in enumerate(system)
                      if isinstance(b, Mapping) and b.get("type") == "text"]
            if len(texts) != len(system):
                raise _bad("system: system blocks must be text blocks")
        else:
            raise _bad("system: Input should be a valid string or list")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages: at least one message is required")
    turns: list[tuple[str, list[Mapping[str, Any]]]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping) or msg.get("role") not in ("user", "assistant"):
            raise _bad(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        extra_keys = set(msg) - {"role", "content"}
        if extra_keys:
            raise _bad(f"messages.{i}.{sorted(extra_keys)[0]}: Extra inputs are not permitted")
        turns.append((msg["role"], _blocks(msg.get("content"), f"messages.{i}.content",
                                           msg["role"])))
    _check_tool_flow(turns)
    tools, choice = _tools(body)
    uses_tools = any(b.get("type") in ("tool_use", "tool_result") for _, bl in turns for b in bl)
    if uses_tools and not tools:
        raise _bad("Requests which include `tool_use` or `tool_result` blocks must define tools.")
    role, blocks = turns[-1]
    if role == "assistant" and blocks[-1].get("type") == "text" and \
            str(blocks[-1].get("text")) != str(blocks[-1].get("text")).rstrip():
        raise _bad("messages: final assistant content cannot end with trailing whitespace")
    stop = body.get("stop_sequences") or []
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise _bad("stop_sequences: Input should be a valid list of strings")
    last_user, results = "", []
    for role, blocks in turns:
        for b in blocks:
            if b.get("type") == "text":
                texts.append(b["text"])
            elif b.get("type") == "tool_use":
                texts.append(str(b.get("input")))
            elif b.get("type") == "tool_result":
                texts.append(_result_text(b))
        if role == "user":
            last_user = "".join(b["text"] for b in blocks if b.get("type") == "text")
    names = {b["id"]: b["name"] for _, bl in turns for b in bl if b.get("type") == "tool_use"}
    if role == "user":
        results = [(names.get(b["tool_use_id"], "tool"), _result_text(b))
                   for b in blocks if b.get("type") == "tool_result"]
    return Conversation(tuple(texts), last_user, tuple(results), tools, choice, max_tokens,
                        tuple(stop))


def message(msg_id: str, model: str, ans: Answer) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if ans.tool_name is not None:
        content.append({"type": "tool_use", "id": f"toolu_{msg_id[-16:]}", "name": ans.tool_name,
                        "input": dict(ans.tool_arguments or {})})
    else:
        content.append({"type": "text", "text": ans.text or ""})
    return {
        "id": msg_id, "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": _FINISH[ans.finish],
        "stop_sequence": ans.stop_sequence,
        "usage": {"input_tokens": ans.prompt_tokens, "output_tokens": ans.completion_tokens,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    }


def _event(name: str, data: dict[str, Any]) -> bytes:
    import json

    payload = json.dumps({"type": name, **data}, separators=(",", ":"), ensure_ascii=False)
    return f"event: {name}\ndata: {payload}\n\n".encode()


def stream(msg_id: str, model: str, ans: Answer) -> list[bytes]:
    """Anthropic's named SSE events: message_start, ping, a content block, message_delta,
    message_stop."""
    full = message(msg_id, model, ans)
    start = {**full, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**full["usage"], "output_tokens": 1}}
    events = [_event("message_start", {"message": start}), _event("ping", {})]
    if ans.tool_name is not None:
        block = full["content"][0]
        events.append(_event("content_block_start", {
            "index": 0, "content_block": {**block, "input": {}}}))
        events += [_event("content_block_delta", {
            "index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}})
            for piece in split_json(ans.arguments_json)]
    else:
        events.append(_event("content_block_start", {
            "index": 0, "content_block": {"type": "text", "text": ""}}))
        events += [_event("content_block_delta", {
            "index": 0, "delta": {"type": "text_delta", "text": piece}}) for piece in ans.pieces]
    events.append(_event("content_block_stop", {"index": 0}))
    events.append(_event("message_delta", {
        "delta": {"stop_reason": full["stop_reason"], "stop_sequence": ans.stop_sequence},
        "usage": {"output_tokens": ans.completion_tokens}}))
    events.append(_event("message_stop", {}))
    return events


def reply(model: str, body: Mapping[str, Any], msg_id: str) -> tuple[dict[str, Any] | None,
                                                                      list[bytes] | None]:
    ans = answer(model, read(body))
    if body.get("stream") is True:
        return None, stream(msg_id, model, ans)
    return message(msg_id, model, ans), None
