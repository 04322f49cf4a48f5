"""AWS Bedrock's Converse API (`POST /model/{modelId}/converse` and `/converse-stream`),
strictly: what the real API refuses, this refuses, with Bedrock's error shape (a JSON
`message` and the error's name in x-amzn-errortype).

Every request must carry a valid SigV4 signature (service `bedrock`) for one of the configured
credentials, checked with botocore's signer (sigv4.py): unsigned, unknown key, stale or wrong
signature -> 403. Then: no member outside the API's; `messages` non-empty, starting with a user
turn, roles alternating; content blocks of one known kind each (text not blank, images
png/jpeg/gif/webp as base64 bytes, toolUse only from the assistant, toolResult only from the
user and only for the previous turn's toolUse ids, every toolUse answered); tool blocks need
`toolConfig`; `system`; `inferenceConfig` (maxTokens >= 1, temperature and topP in [0, 1],
stopSequences); `toolConfig` (tools with toolSpec name, inputSchema.json; toolChoice auto, any
or a defined tool). The stream is AWS event-stream framing (eventstream.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from gatewayctl.local.mock import eventstream
from gatewayctl.local.mock.conversation import Answer, Conversation, Tool, split_json

PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<op>converse|converse-stream)$")
_MEMBERS = frozenset({
    "messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
    "additionalModelRequestFields", "additionalModelResponseFieldPaths", "promptVariables",
    "requestMetadata", "performanceConfig",
})
_BLOCKS = frozenset({"text", "image", "document", "toolUse", "toolResult", "guardContent",
                     "cachePoint", "reasoningContent", "video"})
_FORMATS = frozenset({"png", "jpeg", "gif", "webp"})
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_FINISH = {"stop": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence",
           "tool_calls": "tool_use"}
ERROR_NAMES: dict[int, str] = {
    400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
    408: "ModelTimeoutException", 424: "ModelErrorException", 429: "ThrottlingException",
    500: "InternalServerException", 503: "ServiceUnavailableException",
}
ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"


class BedrockError(Exception):
    def __init__(self, status: int, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.name = name or ERROR_NAMES.get(status, "InternalServerException")


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"message": message}


def error_headers(status: int, name: str | None = None) -> list[tuple[str, str]]:
    return [("x-amzn-errortype", (name or ERROR_NAMES.get(status, "InternalServerException"))
             + ERROR_TYPE_SUFFIX)]


def _bad(message: str) -> BedrockError:
    return BedrockError(400, message)


def request_id(body: bytes) -> str:
    """A deterministic request id in the uuid format AWS uses."""
    h = hashlib.sha256(body).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _block(block: Any, where: str, role: str) -> Mapping[str, Any]:
    if not isinstance(block, Mapping) or len(block) != 1 or next(iter(block)) not in _BLOCKS:
        raise _bad(f"{where} must hold exactly one of the content block members")
    kind = next(iter(block))
    value = block[kind]
    if kind == "text":
        if not isinstance(value, str) or not value.strip():
            raise _bad(f"The text field in the ContentBlock object at {where} is blank. Add "
                       "text to the text field, and try again.")
    elif kind == "image":
        source = value.get("source") if isinstance(value, Mapping) else None
        if not isinstance(value, Mapping) or value.get("format") not in _FORMATS or \
                not isinstance(source, Mapping) or not isinstance(source.get("bytes"), str):
            raise _bad(f"{where}.image: format must be png, jpeg, gif or webp, with source.bytes")
    elif kind == "toolUse":
        if role != "assistant" or not isinstance(value, Mapping) or \
                not isinstance(value.get("toolUseId"), str) or \
                not _TOOL_NAME.match(value["toolUseId"]) or \
                not isinstance(value.get("name"), str) or \
                not isinstance(value.get("input"), Mapping):
            raise _bad(f"{where}.toolUse: only an assistant turn holds toolUse "
                       "{toolUseId, name, input}")
    elif kind == "toolResult":
        if role != "user" or not isinstance(value, Mapping) or \
                not isinstance(value.get("toolUseId"), str) or \
                not _TOOL_NAME.match(value["toolUseId"]) or \
                not isinstance(value.get("content"), list) or not value["content"]:
            raise _bad(f"{where}.toolResult: only a user turn holds toolResult "
                       "{toolUseId, content}")
        for j, item in enumerate(value["content"]):
            if not isinstance(item, Mapping) or len(item) != 1 or \
                    next(iter(item)) not in ("text", "json", "image", "document"):
                raise _bad(f"{where}.toolResult.content.{j}: one of text, json, image, document")
    else:
        raise _bad(f"{where}: the mock does not serve {kind} blocks")
    return block


def _check_tool_flow(turns: list[tuple[str, list[Mapping[str, Any]]]]) -> None:
    for i, (_, blocks) in enumerate(turns):
        uses = [b["toolUse"]["toolUseId"] for b in blocks if "toolUse" in b]
        results = [b["toolResult"]["toolUseId"] for b in blocks if "toolResult" in b]
        if results:
            before = turns[i - 1][1] if i > 0 else []
            ids = {b["toolUse"]["toolUseId"] for b in before if "toolUse" in b}
            if len(results) > len(ids):
                raise _bad(f"The number of toolResult blocks at messages.{i}.content exceeds "
                           "the number of toolUse blocks of previous turn.")
            if set(results) - ids:
                raise _bad(f"messages.{i}.content: a toolResult's toolUseId matches no toolUse "
                           "of the previous turn.")
        if uses:
            nxt = turns[i + 1][1] if i + 1 < len(turns) else []
            answered = {b["toolResult"]["toolUseId"] for b in nxt if "toolResult" in b}
            if set(uses) - answered:
                raise _bad(f"Expected toolResult blocks at messages.{i + 1}.content for the "
                           f"following Ids: {', '.join(sorted(set(uses) - answered))}")


def _tools(body: Mapping[str, Any]) -> tuple[tuple[Tool, ...], str | None]:
    config = body.get("toolConfig")
    if config is None:
        return (), None
    if not isinstance(config, Mapping) or not isinstance(config.get("tools"), list) or \
            not config["tools"]:
        raise _bad("toolConfig.tools: must hold at least one tool")
    tools = []
    for i, t in enumerate(config["tools"]):
        spec = t.get("toolSpec") if isinstance(t, Mapping) else None
        schema = spec.get("inputSchema") if isinstance(spec, Mapping) else None
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str) or \
                not _TOOL_NAME.match(spec["name"]) or not isinstance(schema, Mapping) or \
                not isinstance(schema.get("json"), Mapping):
            raise _bad(f"toolConfig.tools.{i}.toolSpec: needs a name of 1-64 letters, digits, _ "
                       "or - and inputSchema.json")
        tools.append(Tool(spec["name"], schema["json"]))
    choice = config.get("toolChoice")
    named: str | None = None
    if choice is not None:
        if not isinstance(choice, Mapping) or len(choice) != 1 or \
                next(iter(choice)) not in ("auto", "any", "tool"):
            raise _bad("toolConfig.toolChoice: one of auto, any, tool")
        named = next(iter(choice))
        if named == "tool":
            name = choice["tool"].get("name") if isinstance(choice["tool"], Mapping) else None
            if name not in {t.name for t in tools}:
                raise _bad("toolConfig.toolChoice.tool.name: not one of the tools")
            named = str(name)
    return tuple(tools), named


def _inference(body: Mapping[str, Any]) -> tuple[int | None, tuple[str, ...]]:
    config = body.get("inferenceConfig")
    if config is None:
        return None, ()
    if not isinstance(config, Mapping) or \
            set(config) - {"maxTokens", "temperature", "topP", "stopSequences"}:
        raise _bad("inferenceConfig: holds maxTokens, temperature, topP and stopSequences only")
    max_tokens = config.get("maxTokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                   or max_tokens < 1):
        raise _bad("inferenceConfig.maxTokens: must be at least 1")
    for name in ("temperature", "topP"):
        value = config.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not 0 <= value <= 1):
            raise _bad(f"inferenceConfig.{name}: must be between 0 and 1")
    stop = config.get("stopSequences") or []
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise _bad("inferenceConfig.stopSequences: a list of non-empty strings")
    return max_tokens, tuple(stop)


def read(body: Mapping[str, Any]) -> Conversation:
    extra = sorted(set(body) - _MEMBERS)
    if extra:
        raise _bad(f"The model does not take the request member {extra[0]}.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages: at least one message is required")
    turns: list[tuple[str, list[Mapping[str, Any]]]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping) or msg.get("role") not in ("user", "assistant") or \
                set(msg) - {"role", "content"}:
            raise _bad(f"messages.{i}: role user or assistant, and content")
        if turns and turns[-1][0] == msg["role"] or not turns and msg["role"] != "user":
            raise _bad("A conversation must start with a user message and alternate between "
                       "user and assistant roles. Try again with a conversation that alternates.")
        content = msg.get("content")
        if not isinstance(content, list) or not content:
            raise _bad(f"messages.{i}.content: must hold at least one content block")
        turns.append((msg["role"], [_block(b, f"messages.{i}.content.{j}", msg["role"])
                                    for j, b in enumerate(content)]))
    _check_tool_flow(turns)
    tools, choice = _tools(body)
    if not tools and any("toolUse" in b or "toolResult" in b for _, bl in turns for b in bl):
        raise _bad("The toolConfig field must be defined when using toolUse and toolResult "
                   "content blocks.")
    max_tokens, stop = _inference(body)
    texts: list[str] = []
    system = body.get("system")
    if system is not None:
        if not isinstance(system, list) or not all(
                isinstance(s, Mapping) and isinstance(s.get("text"), str) and s["text"].strip()
                for s in system):
            raise _bad("system: a list of non-blank text blocks")
        texts += [s["text"] for s in system]
    names, last_user, results = {}, "", []
    for role, blocks in turns:
        for b in blocks:
            if "text" in b:
                texts.append(b["text"])
            elif "toolUse" in b:
                names[b["toolUse"]["toolUseId"]] = b["toolUse"]["name"]
                texts.append(json.dumps(b["toolUse"]["input"]))
            elif "toolResult" in b:
                texts += [str(c.get("text", c.get("json"))) for c in b["toolResult"]["content"]]
        if role == "user":
            last_user = "".join(b["text"] for b in blocks if "text" in b)
    role, blocks = turns[-1]
    if role == "user":
        results = [(names.get(b["toolResult"]["toolUseId"], "tool"),
                    "".join(str(c.get("text", "")) for c in b["toolResult"]["content"]))
                   for b in blocks if "toolResult" in b]
    return Conversation(tuple(texts), last_user, tuple(results), tools, choice, max_tokens, stop)


def _usage(ans: Answer) -> dict[str, int]:
    return {"inputTokens": ans.prompt_tokens, "outputTokens": ans.completion_tokens,
            "totalTokens": ans.prompt_tokens + ans.completion_tokens}


def _tool_use_id(rid: str) -> str:
    return "tooluse_" + rid.replace("-", "")[:22]


def converse(rid: str, ans: Answer) -> dict[str, Any]:
    if ans.tool_name is not None:
        content: list[dict[str, Any]] = [{"toolUse": {
            "toolUseId": _tool_use_id(rid), "name": ans.tool_name,
            "input": dict(ans.tool_arguments or {})}}]
    else:
        content = [{"text": ans.text or ""}]
    return {"output": {"message": {"role": "assistant", "content": content}},
            "stopReason": _FINISH[ans.finish], "usage": _usage(ans), "metrics": {"latencyMs": 0}}


def _payload(data: dict[str, Any]) -> bytes:
    # Bedrock pads its events with a `p` member so their sizes say nothing of their content.
    return json.dumps({**data, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"},
                      separators=(",", ":"), ensure_ascii=False).encode()


def converse_stream(rid: str, ans: Answer) -> list[bytes]:
    events = [eventstream.event("messageStart", _payload({"role": "assistant"}))]
    if ans.tool_name is not None:
        events.append(eventstream.event("contentBlockStart", _payload({
            "contentBlockIndex": 0,
            "start": {"toolUse": {"toolUseId": _tool_use_id(rid), "name": ans.tool_name}}})))
        events += [eventstream.event("contentBlockDelta", _payload({
            "contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}}))
            for piece in split_json(ans.arguments_json)]
    else:
        events += [eventstream.event("contentBlockDelta", _payload({
            "contentBlockIndex": 0, "delta": {"text": piece}})) for piece in ans.pieces]
    events.append(eventstream.event("contentBlockStop", _payload({"contentBlockIndex": 0})))
    events.append(eventstream.event("messageStop", _payload({"stopReason": _FINISH[ans.finish]})))
    events.append(eventstream.event("metadata", _payload({
        "usage": _usage(ans), "metrics": {"latencyMs": 0}})))
    return events
