"""What the mock answers, whatever API asked: one rule for OpenAI, Anthropic, Bedrock and Gemini.

Each API module reads its request into a `Conversation` (the texts the model reads, the last
user text, tool results, tools, tool choice, limits) and writes the `Answer` in its own shape,
so the same conversation gets the same answer through every API: the gateway's translation
can then be checked by comparing what an OpenAI client sees from each provider type.

The rule, deterministic:
  * the last turn holds tool results -> text `[mock:<model>] <name> returned <content>` for
    each result (content whitespace-collapsed, first 64 characters);
  * else tools are offered and the tool choice forces one (a named tool, or "any": the first),
    or it is "auto" and the last user text names one of them -> a call of that tool, its
    arguments built from the tool's schema: the first property (required ones first, by
    name) gets the last user text if it is a string, 1 if a number, true if a boolean;
  * else text `[mock:<model>] <last user text, whitespace collapsed, first 64 characters>`.
A text is cut at the earliest stop sequence (finish "stop_sequence"), then to `max_tokens` x 4
characters (finish "length"). Tokens are max(1, ceil(characters / 4)) of all the texts the
model reads (prompt) and of the reply (completion).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

ECHO_CHARS = 64
_WHITESPACE = re.compile(r"\s+")
_PIECE = re.compile(r"\S+\s*")

Finish = Literal["stop", "length", "stop_sequence", "tool_calls"]


def count_tokens(chars: int) -> int:
    return max(1, math.ceil(chars / 4))


def echo(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()[:ECHO_CHARS]


@dataclass(frozen=True)
class Tool:
    name: str
    schema: Mapping[str, Any]


@dataclass(frozen=True)
class Conversation:
    texts: tuple[str, ...]  # everything the model reads: system, messages, tool args, results
    last_user_text: str
    tool_results: tuple[tuple[str, str], ...] = ()  # (tool name, content) ending the conversation
    tools: tuple[Tool, ...] = ()
    tool_choice: str | None = None  # "auto", "any", "none", or a tool's name
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answer:
    text: str | None
    tool_name: str | None
    tool_arguments: Mapping[str, Any] | None
    finish: Finish
    stop_sequence: str | None
    prompt_tokens: int
    completion_tokens: int

    @property
    def pieces(self) -> list[str]:
        """The text split into the word-sized pieces that streaming sends one per event."""
        return _PIECE.findall(self.text or "") or [""]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.tool_arguments or {}, separators=(",", ":"), ensure_ascii=False)


def _argument(schema: Mapping[str, Any], text: str) -> dict[str, Any]:
    props = schema.get("properties")
    if not isinstance(props, Mapping) or not props:
        return {}
    required = schema.get("required")
    names = sorted(n for n in (required if isinstance(required, list) else []) if n in props)
    name = (names or sorted(props))[0]
    kind = props[name].get("type") if isinstance(props[name], Mapping) else None
    value: Any = {"number": 1, "integer": 1, "boolean": True}.get(str(kind), text)
    return {name: value}


def _chosen_tool(conv: Conversation) -> Tool | None:
    if not conv.tools or conv.tool_choice == "none":
        return None
    if conv.tool_choice == "any":
        return conv.tools[0]
    for tool in conv.tools:
        if conv.tool_choice == tool.name:
            return tool
    if conv.tool_choice in (None, "auto"):
        for tool in conv.tools:
            if tool.name in conv.last_user_text:
                return tool
    return None


def answer(model: str, conv: Conversation) -> Answer:
    prompt = count_tokens(sum(len(t) for t in conv.texts))
    tool = None if conv.tool_results else _chosen_tool(conv)
    if tool is not None:
        args = _argument(tool.schema, echo(conv.last_user_text))
        size = len(tool.name) + len(json.dumps(args))
        return Answer(None, tool.name, args, "tool_calls", None, prompt, count_tokens(size))
    if conv.tool_results:
        said = "; ".join(f"{name} returned {echo(content)}" for name, content in conv.tool_results)
        text = f"[mock:{model}] {said}"
    else:
        text = f"[mock:{model}] {echo(conv.last_user_text)}".rstrip()
    finish: Finish = "stop"
    matched = None
    cuts = [(text.find(s), s) for s in conv.stop if s and s in text]
    if cuts:
        at, matched = min(cuts)
        text, finish = text[:at], "stop_sequence"
    if conv.max_tokens is not None and len(text) > conv.max_tokens * 4:
        text, finish, matched = text[: conv.max_tokens * 4], "length", None
    return Answer(text, None, None, finish, matched, prompt, count_tokens(len(text)))


def split_json(text: str, parts: int = 2) -> list[str]:
    """A JSON text in `parts` pieces, as streams send a tool call's arguments."""
    size = max(1, math.ceil(len(text) / parts))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def texts_of(items: Sequence[Any]) -> list[str]:
    return [t for t in items if isinstance(t, str)]
