"""Google's Gemini API (`POST /v1beta/models/{model}:generateContent` and
`:streamGenerateContent`, SSE with `alt=sse`, else a JSON array), strictly: what the real API
refuses, this refuses, with Google's error shape (`{"error": {"code", "message", "status"}}`).

Checked: the key (`x-goog-api-key` or `?key=`: none -> 403; not the configured one -> 400
with reason API_KEY_INVALID, as Google answers); no member outside the API's (Google's
"Unknown name"); `contents` non-empty with roles `user` and `model` only, parts of one kind
each, no empty text, functionCall only from the model and functionResponse only from the user,
right after the model's calls and as many; `systemInstruction` (text parts);
`generationConfig` (known fields; temperature in [0, 2], topP in [0, 1], candidateCount 1-8,
maxOutputTokens >= 1, at most 5 stopSequences); `tools` (functionDeclarations with names that
start with a letter or `_`, at most 64 of letters, digits, `_ . : -`; `parameters` or
`parametersJsonSchema`, not both); `toolConfig`.

Like the real API, a long prompt is served partly from an implicit cache: usageMetadata's
cachedContentTokenCount is the prompt's tokens rounded down to 128 when they are 1024 or more.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from gatewayctl.local.mock.conversation import Answer, Conversation, Tool, answer

PATH = re.compile(
    r"^/v1beta/models/(?P<model>[^/:]+):(?P<op>generateContent|streamGenerateContent)$"
)
_MEMBERS = frozenset({"contents", "systemInstruction", "tools", "toolConfig", "generationConfig",
                      "safetySettings", "cachedContent"})
_CONFIG = frozenset({
    "temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences", "seed",
    "presencePenalty", "frequencyPenalty", "responseMimeType", "responseSchema",
    "responseJsonSchema", "responseLogprobs", "logprobs", "thinkingConfig",
})
_PARTS = frozenset({"text", "inlineData", "fileData", "functionCall", "functionResponse",
                    "thought", "thoughtSignature"})
_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$")
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "stop_sequence": "STOP", "tool_calls": "STOP"}
STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
CACHE_MIN_TOKENS = 1024


class GeminiError(Exception):
    def __init__(self, status: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


def error_body(status: int, message: str, reason: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message,
                             "status": STATUS_NAMES.get(status, "UNKNOWN")}
    if reason is not None:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                             "reason": reason, "domain": "googleapis.com"}]
    return {"error": error}


def _bad(message: str) -> GeminiError:
    return GeminiError(400, message)


def check_key(headers: Mapping[str, str], query: str, key: str | None) -> None:
    presented = headers.get("x-goog-api-key")
    if presented is None:
        found = re.search(r"(?:^|&)key=([^&]*)", query)
        presented = found.group(1) if found else None
    if presented is None:
        raise GeminiError(403, "Method doesn't allow unregistered callers (callers without "
                          "established identity). Please use API Key or other form of API "
                          "consumer identity to call this API.")
    if key is not None and presented != key:
        raise GeminiError(400, "API key not valid. Please pass a valid API key.",
                          "API_KEY_INVALID")


def _unknown(where: str, names: set[str]) -> GeminiError:
    name = sorted(names)[0]
    return _bad(f'Invalid JSON payload received. Unknown name "{name}" at \'{where}\': Cannot '
                "find field.")


def _part(part: Any, where: str, role: str) -> Mapping[str, Any]:
    if not isinstance(part, Mapping):
        raise _bad(f"{where}: a part must be an object")
    kinds = set(part) - {"thought", "thoughtSignature"}
    if set(part) - _PARTS:
        raise _unknown(where, set(part) - _PARTS)
    if len(kinds) != 1:
        raise _bad(f"{where}: a part holds exactly one of text, inlineData, fileData, "
                   "functionCall, functionResponse")
    kind = next(iter(kinds))
    value = part[kind]
    if kind == "text":
        if not isinstance(value, str) or value == "":
            raise _bad("Unable to submit request because it has an empty text parameter. Add a "
                       "value to the parameter and try again.")
    elif kind == "inlineData":
        if not isinstance(value, Mapping) or not isinstance(value.get("mimeType"), str) or \
                not isinstance(value.get("data"), str):
            raise _bad(f"{where}.inlineData: mimeType and data are required")
    elif kind == "functionCall":
        if role != "model" or not isinstance(value, Mapping) or \
                not isinstance(value.get("name"), str):
            raise _bad(f"{where}.functionCall: only a model turn holds a call with a name")
    elif kind == "functionResponse" and (
            role != "user" or not isinstance(value, Mapping)
            or not isinstance(value.get("name"), str)
            or not isinstance(value.get("response"), Mapping)):
        raise _bad(f"{where}.functionResponse: only a user turn holds a response with a name "
                   "and an object response")
    return part


def _check_calls(turns: list[tuple[str, list[Mapping[str, Any]]]]) -> None:
    for i, (_, parts) in enumerate(turns):
        responses = [p for p in parts if "functionResponse" in p]
        if responses:
            before = turns[i - 1][1] if i > 0 else []
            calls = [p for p in before if "functionCall" in p]
            if len(calls) != len(responses):
                raise _bad("Please ensure that the number of function response parts is equal "
                           "to the number of function call parts of the function call turn.")
        calls_here = [p for p in parts if "functionCall" in p]
        if calls_here:
            nxt = turns[i + 1][1] if i + 1 < len(turns) else []
            if i + 1 < len(turns) and not any("functionResponse" in p for p in nxt):
                raise _bad("Please ensure that function call turn comes immediately after a user "
                           "turn or after a function response turn.")


def _config(body: Mapping[str, Any]) -> tuple[int | None, tuple[str, ...], int]:
    config = body.get("generationConfig")
    if config is None:
        return None, (), 1
    if not isinstance(config, Mapping):
        raise _bad("generationConfig must be an object")
    if set(config) - _CONFIG:
        raise _unknown("generation_config", set(config) - _CONFIG)
    checks = (("temperature", 0, 2), ("topP", 0, 1))
    for name, lo, hi in checks:
        value = config.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not lo <= value <= hi):
            raise _bad(f"generation_config.{name} must be between {lo} and {hi}")
    count = config.get("candidateCount", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 8:
        raise _bad("generation_config.candidate_count must be between 1 and 8")
    max_tokens = config.get("maxOutputTokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                   or max_tokens < 1):
        raise _bad("generation_config.max_output_tokens must be at least 1")
    stop = config.get("stopSequences") or []
    if not isinstance(stop, list) or len(stop) > 5 or not all(isinstance(s, str) for s in stop):
        raise _bad("generation_config.stop_sequences: at most 5 strings")
    return max_tokens, tuple(stop), count


def _tools(body: Mapping[str, Any]) -> tuple[tuple[Tool, ...], str | None]:
    tools: list[Tool] = []
    for i, t in enumerate(body.get("tools") or []):
        if not isinstance(t, Mapping) or set(t) - {"functionDeclarations"}:
            raise _bad(f"tools[{i}]: the mock serves functionDeclarations only")
        for j, d in enumerate(t.get("functionDeclarations") or []):
            where = f"tools[{i}].function_declarations[{j}]"
            if not isinstance(d, Mapping) or set(d) - {
                    "name", "description", "parameters", "parametersJsonSchema", "response"}:
                raise _bad(f"{where}: unknown member")
            if not isinstance(d.get("name"), str) or not _NAME.match(d["name"]):
                raise _bad(f"{where}.name: Invalid function name. Must start with a letter or an "
                           "underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), "
                           "dots (.), colons (:), or dashes (-), with a maximum length of 64.")
            if "parameters" in d and "parametersJsonSchema" in d:
                raise _bad(f"{where}: parameters and parametersJsonSchema are exclusive")
            schema = d.get("parametersJsonSchema", d.get("parameters")) or {}
            tools.append(Tool(d["name"], schema if isinstance(schema, Mapping) else {}))
    config = body.get("toolConfig")
    choice: str | None = None
    if config is not None:
        fc = config.get("functionCallingConfig") if isinstance(config, Mapping) else None
        mode = fc.get("mode") if isinstance(fc, Mapping) else None
        if mode not in ("AUTO", "ANY", "NONE", "VALIDATED"):
            raise _bad("tool_config.function_calling_config.mode: AUTO, ANY, NONE or VALIDATED")
        allowed = fc.get("allowedFunctionNames") if isinstance(fc, Mapping) else None
        if mode == "ANY" and isinstance(allowed, list) and len(allowed) == 1:
            choice = str(allowed[0])
        else:
            choice = {"AUTO": "auto", "ANY": "any", "NONE": "none", "VALIDATED": "auto"}[mode]
    return tuple(tools), choice


def read(body: Mapping[str, Any]) -> tuple[Conversation, int]:
    """The conversation and the number of candidates asked for."""
    if set(body) - _MEMBERS:
        raise _unknown("", set(body) - _MEMBERS)
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _bad("* GenerateContentRequest.contents: contents is not specified")
    turns: list[tuple[str, list[Mapping[str, Any]]]] = []
    for i, content in enumerate(contents):
        if not isinstance(content, Mapping) or set(content) - {"role", "parts"}:
            raise _bad(f"contents[{i}]: role and parts only")
        role = content.get("role", "user")
        if role not in ("user", "model"):
            raise _bad("Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise _bad(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not "
                       "be empty.")
        turns.append((role, [_part(p, f"contents[{i}].parts[{j}]", role)
                             for j, p in enumerate(parts)]))
    _check_calls(turns)
    texts: list[str] = []
    system = body.get("systemInstruction")
    if system is not None:
        parts = system.get("parts") if isinstance(system, Mapping) else None
        if not isinstance(parts, list) or not all(
                isinstance(p, Mapping) and isinstance(p.get("text"), str) for p in parts):
            raise _bad("system_instruction: text parts only")
        texts += [p["text"] for p in parts]
    tools, choice = _tools(body)
    max_tokens, stop, count = _config(body)
    last_user, results = "", []
    for role, parts in turns:
        for p in parts:
            if "text" in p:
                texts.append(p["text"])
            elif "functionCall" in p:
                texts.append(json.dumps(p["functionCall"].get("args", {})))
            elif "functionResponse" in p:
                texts.append(json.dumps(p["functionResponse"]["response"]))
        if role == "user":
            last_user = "".join(p["text"] for p in parts if "text" in p)
    role, parts = turns[-1]
    if role == "user":
        results = [(p["functionResponse"]["name"], _response_text(p["functionResponse"]))
                   for p in parts if "functionResponse" in p]
    conv = Conversation(tuple(texts), last_user, tuple(results), tools, choice, max_tokens, stop)
    return conv, count


def _response_text(response: Mapping[str, Any]) -> str:
    value = response["response"]
    content = value.get("content") if isinstance(value, Mapping) else None
    return content if isinstance(content, str) else json.dumps(value)


def _usage(ans: Answer) -> dict[str, int]:
    usage = {"promptTokenCount": ans.prompt_tokens, "candidatesTokenCount": ans.completion_tokens,
             "totalTokenCount": ans.prompt_tokens + ans.completion_tokens}
    if ans.prompt_tokens >= CACHE_MIN_TOKENS:
        usage["cachedContentTokenCount"] = ans.prompt_tokens // 128 * 128
    return usage


def _parts(ans: Answer) -> list[dict[str, Any]]:
    if ans.tool_name is not None:
        return [{"functionCall": {"name": ans.tool_name, "args": dict(ans.tool_arguments or {})}}]
    return [{"text": ans.text or ""}]


def generate(response_id: str, model: str, ans: Answer, count: int) -> dict[str, Any]:
    candidates = [{"content": {"role": "model", "parts": _parts(ans)},
                   "finishReason": _FINISH[ans.finish], "index": i} for i in range(count)]
    return {"candidates": candidates, "usageMetadata": _usage(ans), "modelVersion": model,
            "responseId": response_id}


def stream_chunks(response_id: str, model: str, ans: Answer, count: int) -> list[dict[str, Any]]:
    """The chunks of a streamed reply: one per text piece (a call comes whole), the last with
    the finish reason; each with the usage so far, as Gemini sends it."""
    pieces: list[list[dict[str, Any]]] = (
        [_parts(ans)] if ans.tool_name is not None else [[{"text": p}] for p in ans.pieces])
    chunks = []
    for n, parts in enumerate(pieces):
        last = n == len(pieces) - 1
        cands = []
        for i in range(count):
            cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": i}
            if last:
                cand["finishReason"] = _FINISH[ans.finish]
            cands.append(cand)
        usage = _usage(ans) if last else {"promptTokenCount": ans.prompt_tokens,
                                          "totalTokenCount": ans.prompt_tokens}
        chunks.append({"candidates": cands, "usageMetadata": usage, "modelVersion": model,
                       "responseId": response_id})
    return chunks


def sse(chunks: list[dict[str, Any]]) -> list[bytes]:
    return [b"data: " + json.dumps(c, separators=(",", ":"), ensure_ascii=False).encode()
            + b"\r\n\r\n" for c in chunks]


def json_array(chunks: list[dict[str, Any]]) -> list[bytes]:
    body = json.dumps(chunks, separators=(",", ":"), ensure_ascii=False).encode()
    return [body]


def generate_reply(model: str, body: Mapping[str, Any]) -> tuple[Answer, int]:
    conv, count = read(body)
    return answer(model, conv), count
