"""Random OpenAI chat requests, seeded: valid ones and every way a client gets one wrong.

Half of the draws stay within what every native API can take, so a good part of the requests
must go through; the rest add, at random, what some or all of them refuse (roles, content
parts, images by URL, blank text, tool calls without results, unknown or unsupported
parameters, out-of-range values, bad tool names and ids).
"""

from __future__ import annotations

import json
import random
from typing import Any

WORDS = ["hello", "weather", "Paris", "é漢", "😀", "get_weather", "  ", "\n", "ok", '"q"', "\\"]
TOOL_NAMES = ["get_weather", "lookup_user", "get-time", "weather.get", "9lives", "x" * 70]
IDS = ["call_1", "call_2", "toolu_abc", "call with space", "c" * 70]
PNG = "data:image/png;base64,iVBORw0KGgo="
SVG = "data:image/svg+xml;base64,PHN2Zz4="


def _text(rng: random.Random, blank_ok: bool) -> str:
    if blank_ok and rng.random() < 0.05:
        return rng.choice(["", " ", "\n\t"])
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 6))]
    text = " ".join(w for w in words if w.strip()) or "hi"
    return text


def _content(rng: random.Random, role: str, wild: bool) -> Any:
    if rng.random() < 0.6:
        return _text(rng, wild)
    parts: list[dict[str, Any]] = []
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.6 or not wild:
            parts.append({"type": "text", "text": _text(rng, wild)})
        elif roll < 0.75 and role == "user":
            url = rng.choice([PNG, PNG, SVG, "https://example.com/a.png", "ftp://x"])
            parts.append({"type": "image_url", "image_url": {"url": url}})
        elif roll < 0.85 and role == "assistant":
            parts.append({"type": "refusal", "refusal": "no"})
        else:
            parts.append({"type": rng.choice(["input_audio", "file", "video"]), "x": 1})
    return parts


def _schema(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.1:
        return {"type": "string"}
    return {"type": "object", "properties": {"city": {"type": "string"},
                                             "days": {"type": "integer"}},
            "required": ["city"]}


def _tools(rng: random.Random, wild: bool) -> list[dict[str, Any]]:
    names = TOOL_NAMES if wild else TOOL_NAMES[:3]
    tools = []
    for name in rng.sample(names, rng.randint(1, 3)):
        fn: dict[str, Any] = {"name": name}
        if rng.random() < 0.7:
            fn["description"] = _text(rng, False)
        if rng.random() < 0.8:
            fn["parameters"] = _schema(rng) if wild else {"type": "object", "properties": {
                "city": {"type": "string"}}}
        tools.append({"type": "function", "function": fn})
    return tools


def _conversation(rng: random.Random, wild: bool, tools: list[Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if rng.random() < 0.5:
        messages.append({"role": rng.choice(["system", "developer"]),
                         "content": _content(rng, "system", False)})
    names = [t["function"]["name"] for t in tools] or ["get_weather"]
    for _ in range(rng.randint(1, 3)):
        messages.append({"role": "user", "content": _content(rng, "user", wild)})
        if rng.random() < 0.5:
            msg: dict[str, Any] = {"role": "assistant"}
            calls = []
            if tools and rng.random() < 0.6:
                ids = rng.sample(IDS if wild else IDS[:3], rng.randint(1, 2))
                for cid in ids:
                    args = json.dumps({"city": _text(rng, False)})
                    if wild and rng.random() < 0.1:
                        args = rng.choice(["[1]", "not json", '"s"'])
                    calls.append({"id": cid, "type": "function",
                                  "function": {"name": rng.choice(names), "arguments": args}})
                msg["tool_calls"] = calls
                msg["content"] = None if rng.random() < 0.5 else _text(rng, False)
            else:
                msg["content"] = _content(rng, "assistant", wild)
            messages.append(msg)
            for call in calls:
                if wild and rng.random() < 0.1:
                    continue  # a call left without its result
                messages.append({"role": "tool", "tool_call_id": call["id"],
                                 "content": _text(rng, False)})
    if wild and rng.random() < 0.1:
        messages.insert(0, {"role": rng.choice(["assistant", "function", "bot"]), "content": "x"})
    if wild and rng.random() < 0.1:
        messages.append({"role": "assistant", "content": "prefill "})
    return messages


def request(rng: random.Random, model: str) -> dict[str, Any]:
    """One random chat request for `model`."""
    wild = rng.random() < 0.5
    tools = _tools(rng, wild) if rng.random() < 0.4 else []
    body: dict[str, Any] = {"model": model, "messages": _conversation(rng, wild, tools)}
    if tools:
        body["tools"] = tools
        if rng.random() < 0.5:
            body["tool_choice"] = rng.choice(
                ["auto", "required", "none",
                 {"type": "function", "function": {"name": tools[0]["function"]["name"]}}])
        if rng.random() < 0.2:
            body["parallel_tool_calls"] = rng.random() < 0.5
    if rng.random() < 0.5:
        body[rng.choice(["max_tokens", "max_completion_tokens"])] = rng.choice(
            [16, 100, 1000] + ([0, -1] if wild else []))
    if rng.random() < 0.4:
        body["temperature"] = rng.choice([0, 0.5, 1] + ([1.5, 2, 3] if wild else []))
    if rng.random() < 0.3:
        body["top_p"] = rng.choice([0.1, 0.9, 1])
    if rng.random() < 0.3:
        stop = [_text(rng, False) for _ in range(rng.randint(1, 6 if wild else 3))]
        body["stop"] = stop[0] if rng.random() < 0.3 else stop
    if rng.random() < 0.3:
        body["stream"] = True
        if rng.random() < 0.5:
            body["stream_options"] = {"include_usage": rng.random() < 0.5}
    if rng.random() < 0.2:
        body["user"] = "user-" + str(rng.randint(1, 99))
    if wild:
        for name, values in (("n", [1, 2]), ("seed", [7]), ("logprobs", [False, True]),
                             ("presence_penalty", [0, 0.5]), ("store", [True]),
                             ("response_format", [{"type": "text"}, {"type": "json_object"}]),
                             ("top_k", [3]), ("stream_options", [{"include_usage": True}])):
            if rng.random() < 0.07:
                body[name] = rng.choice(values)
    return body
