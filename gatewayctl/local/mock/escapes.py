"""Two ways a model's answer may differ from the mock's echo, on request (OpenAI chat only).

`x-mock-newline: TOKEN` (ASCII, at least two characters): each TOKEN in the answer's texts
becomes a line break (the echo collapses whitespace): a newline in message content, the
escape `\\n` inside the tool-call arguments' JSON strings.

JSON escapes the way a model (or an injected prompt) may write its answer: a request with
`x-mock-json-escapes: letters` gets an OpenAI chat reply whose texts (message content, tool
calls' arguments) have every ASCII letter written as a `\\u00XX` escape, every non-ASCII one as
`\\uXXXX` (a surrogate pair above U+FFFF). A tool call's `arguments` is itself JSON: its
strings are escaped the same way first, so there a letter arrives doubly escaped
(`\\\\u0070`) and a client's two decodings (the reply, then the arguments) give it back. In a
stream the escaped arguments are sent in pieces of ARGUMENT_PIECE characters, so an escape
(and a surrogate pair) is cut between two events. The text a client reads is unchanged.

And how finely a stream is cut: `x-mock-stream-piece-chars: N` (N >= 1) cuts each content
delta of an OpenAI chat stream (a word) into pieces of N characters, one event each (the
benchmarks' long streams).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

ARGUMENT_PIECE = 5


def escape_letters(text: str) -> str:
    """The JSON text with each ASCII letter inside a string written as \\u00XX (escapes that are
    already there are kept whole)."""
    out: list[str] = []
    in_string = False
    i = 0
    while i < len(text):
        c = text[i]
        if in_string and c == "\\":
            width = 6 if text[i + 1:i + 2] == "u" else 2
            out.append(text[i:i + width])
            i += width
            continue
        if c == '"':
            in_string = not in_string
        elif in_string and c.isascii() and c.isalpha():
            c = f"\\u{ord(c):04x}"
        out.append(c)
        i += 1
    return "".join(out)


def _content_newlines(value: Any, token: str) -> Any:
    return value.replace(token, "\n") if isinstance(value, str) else value


def _arguments_newlines(text: str, token: str) -> str:
    return text.replace(token, "\\n")


def newlines_reply(body: dict[str, Any], token: str) -> dict[str, Any]:
    for choice in body.get("choices") or []:
        message = choice.get("message") or {}
        message["content"] = _content_newlines(message.get("content"), token)
        for call in message.get("tool_calls") or []:
            fn = call.get("function") or {}
            if isinstance(fn.get("arguments"), str):
                fn["arguments"] = _arguments_newlines(fn["arguments"], token)
    return body


def newlines_events(events: list[bytes], token: str) -> list[bytes]:
    return _rewrite_events(events, lambda text: _arguments_newlines(text, token), None,
                           lambda text: _content_newlines(text, token))


def _arguments(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        return escape_letters(text)
    return escape_letters(json.dumps(value, separators=(",", ":")))


def _dumps(chunk: dict[str, Any]) -> bytes:
    """The reply or event with its texts (content, arguments) escaped; keys and other values
    as the mock writes them."""
    literals: dict[str, str] = {}

    def mark(holder: dict[str, Any], key: str) -> None:
        value = holder.get(key)
        if isinstance(value, str):
            marker = f"\x00{len(literals)}\x00"
            literals[json.dumps(marker)] = escape_letters(json.dumps(value))
            holder[key] = marker

    for choice in chunk.get("choices") or []:
        for part in (choice.get("message"), choice.get("delta")):
            if isinstance(part, dict):
                mark(part, "content")
                for call in part.get("tool_calls") or []:
                    mark(call.get("function") or {}, "arguments")
    text = json.dumps(chunk, separators=(",", ":"))
    for marker, literal in literals.items():
        text = text.replace(marker, literal)
    return text.encode()


def escape_reply(body: dict[str, Any]) -> bytes:
    """A whole chat completion, escaped."""
    for choice in body.get("choices") or []:
        for call in (choice.get("message") or {}).get("tool_calls") or []:
            fn = call.get("function") or {}
            if isinstance(fn.get("arguments"), str):
                fn["arguments"] = _arguments(fn["arguments"])
    return _dumps(body)


def _calls(chunk: dict[str, Any]) -> list[tuple[int, int, dict[str, Any]]]:
    """(choice index, call index, function) of each tool-call delta with arguments."""
    out = []
    for choice in chunk.get("choices") or []:
        for call in (choice.get("delta") or {}).get("tool_calls") or []:
            fn = call.get("function") or {}
            if isinstance(fn.get("arguments"), str) and fn["arguments"]:
                out.append((choice.get("index", 0), call.get("index", 0), fn))
    return out


def escape_events(events: list[bytes]) -> list[bytes]:
    """A chat stream's events, escaped; each call's arguments re-cut into short pieces."""
    return _rewrite_events(events, _arguments, ARGUMENT_PIECE, None, escape=True)


def _rewrite_events(events: list[bytes], arguments: Callable[[str], str], piece: int | None,
                    content: Callable[[str], str] | None, escape: bool = False) -> list[bytes]:
    """The events with each call's whole arguments rewritten (and re-cut into pieces of
    `piece` characters, or sent whole), each content delta rewritten."""
    dumps = _dumps if escape else _plain
    chunks: list[dict[str, Any] | None] = []
    whole: dict[tuple[int, int], str] = {}
    for event in events:
        payload = event.removeprefix(b"data: ").strip()
        chunk = None if payload == b"[DONE]" else json.loads(payload)
        chunks.append(chunk)
        for ci, ki, fn in _calls(chunk or {}):
            whole[ci, ki] = whole.get((ci, ki), "") + fn["arguments"]
    rewritten = {key: arguments(text) for key, text in whole.items()}
    out: list[bytes] = []
    for chunk in chunks:
        if chunk is None:
            out.append(b"data: [DONE]\n\n")
            continue
        if content is not None:
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if isinstance(delta.get("content"), str):
                    delta["content"] = content(delta["content"])
        calls = _calls(chunk)
        if not calls:
            out.append(b"data: " + dumps(chunk) + b"\n\n")
            continue
        ci, ki, fn = calls[0]  # the mock sends one call's arguments per event
        if (ci, ki) not in rewritten:
            continue  # sent whole with the call's first piece
        text = rewritten.pop((ci, ki))
        for at in range(0, len(text), piece or max(1, len(text))):
            fn["arguments"] = text[at:at + (piece or len(text))]
            out.append(b"data: " + dumps(chunk) + b"\n\n")
    return out


def _plain(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def content_pieces(events: list[bytes], size: int) -> list[bytes]:
    """A chat stream's events with each content delta longer than `size` characters re-cut
    into pieces of `size` characters, one event each (the chunk otherwise the same)."""
    out: list[bytes] = []
    for event in events:
        payload = event.removeprefix(b"data: ").strip()
        chunk = None if payload == b"[DONE]" else json.loads(payload)
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        delta = choices[0].get("delta") if isinstance(choices, list) and len(choices) == 1 else None
        if not isinstance(delta, dict):
            out.append(event)
            continue
        text = delta.get("content")
        if not isinstance(text, str) or len(text) <= size:
            out.append(event)
            continue
        for at in range(0, len(text), size):
            delta["content"] = text[at:at + size]
            out.append(b"data: " + _plain(chunk) + b"\n\n")
    return out
