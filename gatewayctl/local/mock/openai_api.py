"""OpenAI chat completions with tools: requests that offer tools or carry tool messages are
answered by the shared rule (conversation.py), so the mock calls tools through OpenAI exactly as
it does through Anthropic, Bedrock and Gemini. Other chat requests keep replies.py's answers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gatewayctl.local.mock.conversation import Answer, Conversation, Tool, split_json
from gatewayctl.local.mock.replies import CREATED, FINGERPRINT, RequestError, content_text, usage

_FINISH = {"stop": "stop", "length": "length", "stop_sequence": "stop", "tool_calls": "tool_calls"}


def uses_tools(body: Mapping[str, Any]) -> bool:
    messages = body.get("messages")
    return bool(body.get("tools")) or (isinstance(messages, list) and any(
        isinstance(m, Mapping) and (m.get("role") == "tool" or m.get("tool_calls"))
        for m in messages))


def _tools(body: Mapping[str, Any]) -> tuple[tuple[Tool, ...], str | None]:
    tools = []
    for t in body.get("tools") or []:
        fn = t.get("function") if isinstance(t, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            raise RequestError(400, "each tool needs function.name", "invalid_tools")
        params = fn.get("parameters")
        tools.append(Tool(fn["name"], params if isinstance(params, Mapping) else {}))
    choice = body.get("tool_choice")
    named: str | None = None
    if choice in ("auto", "none"):
        named = str(choice)
    elif choice == "required":
        named = "any"
    elif isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        named = str(choice["function"].get("name"))
    return tuple(tools), named


def read(body: Mapping[str, Any]) -> Conversation:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty array", "invalid_messages")
    texts: list[str] = []
    names: dict[str, str] = {}
    last_user = ""
    results: list[tuple[str, str]] = []  # (tool name, content) after the last other turn
    for m in messages:
        if not isinstance(m, Mapping):
            raise RequestError(400, "every item of 'messages' must be an object",
                               "invalid_messages")
        text = content_text(m.get("content"))
        texts.append(text)
        for call in m.get("tool_calls") or []:
            fn = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(fn, Mapping):
                names[str(call.get("id"))] = str(fn.get("name"))
                texts.append(str(fn.get("arguments", "")))
        if m.get("role") == "user":
            last_user, results = text, []
        elif m.get("role") == "tool":
            results.append((names.get(str(m.get("tool_call_id")), "tool"), text))
        else:
            results = []
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    stop = body.get("stop")
    stops = (stop,) if isinstance(stop, str) else tuple(s for s in stop or [] if isinstance(s, str))
    tools, choice = _tools(body)
    return Conversation(tuple(texts), last_user, tuple(results), tools, choice,
                        limit if isinstance(limit, int) and limit > 0 else None, stops)


def _call_id(reply_id: str) -> str:
    return "call_" + reply_id[-24:]


def completion(reply_id: str, model: str, ans: Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": ans.text, "refusal": None}
    if ans.tool_name is not None:
        message["tool_calls"] = [{"id": _call_id(reply_id), "type": "function", "function": {
            "name": ans.tool_name, "arguments": ans.arguments_json}}]
    return {
        "id": reply_id, "object": "chat.completion", "created": CREATED, "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": _FINISH[ans.finish]}],
        "usage": usage(ans.prompt_tokens, ans.completion_tokens),
    }


def stream(reply_id: str, model: str, ans: Answer, include_usage: bool) -> list[bytes]:
    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        data = {"id": reply_id, "object": "chat.completion.chunk", "created": CREATED,
                "model": model, "system_fingerprint": FINGERPRINT, "choices": choices, **extra}
        return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"

    def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}

    events = [chunk([delta({"role": "assistant", "content": None if ans.tool_name else ""})])]
    if ans.tool_name is not None:
        events.append(chunk([delta({"tool_calls": [{
            "index": 0, "id": _call_id(reply_id), "type": "function",
            "function": {"name": ans.tool_name, "arguments": ""}}]})]))
        events += [chunk([delta({"tool_calls": [{"index": 0, "function": {"arguments": p}}]})])
                   for p in split_json(ans.arguments_json)]
    else:
        events += [chunk([delta({"content": p})]) for p in ans.pieces]
    events.append(chunk([delta({}, _FINISH[ans.finish])]))
    if include_usage:
        events.append(chunk([], usage=usage(ans.prompt_tokens, ans.completion_tokens)))
    events.append(b"data: [DONE]\n\n")
    return events
