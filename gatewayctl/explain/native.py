"""The requests a route with native providers refuses: openai_chat.lua's `read` and each API's
`request` (anthropic.lua, bedrock.lua, gemini.lua) as gateway.lua's `check_native` runs them,
ported check for check, in their order, with their codes and wording.

`refusal(request, apis)` is None when the request translates for every API in `apis`, else
the gateway's 400: (code, message). What each API refuses of the sampling parameters comes
from render/envoy/native_params.py, the table the Lua is handed. One difference the gateway
does not let explain follow: with several unknown top-level members the gateway names one of
them in its table's hash order; explain names the first in the body.

Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from gatewayctl.explain.jsonbody import BodyError, decode_body, encode_utf8
from gatewayctl.render.envoy.native_params import NATIVE_PARAMS

DROPPED = frozenset({"metadata", "store", "service_tier", "prompt_cache_key"})
KNOWN = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
    "n", "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls", "user",
    "safety_identifier", "response_format", "seed", "presence_penalty", "frequency_penalty",
    "logit_bias", "logprobs", "top_logprobs",
})
_DATA_URL = re.compile(r"data:([A-Za-z0-9.+\-]+/[A-Za-z0-9.+\-]+);base64,(.+)\Z", re.DOTALL)
_LUA_SPACE = " \t\n\v\f\r"
_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+\Z")
_GEMINI_TOOL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.:\-]*\Z")
_ANTHROPIC_IMAGES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_BEDROCK_IMAGES = _ANTHROPIC_IMAGES
INT_MAX = 2147483647


class Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _fail(code: str, message: str) -> Refused:
    return Refused(code, message)


def _present(v: Any) -> bool:
    return v is not None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _num(v: float) -> str:
    """A Lua number as tostring / %s writes it (%.14g)."""
    return f"{v:.14g}"


def _tostring(v: Any) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, str):
        return v
    return "table"  # Lua writes the table's address: explain cannot know it


def _blank(text: str) -> bool:
    """No byte but Lua's spaces (`find(text, "%S")` is nil)."""
    return all(ch in _LUA_SPACE for ch in text)


@dataclass
class Chat:
    """openai_chat.lua's neutral request, as far as the refusals need it."""

    system: list[str] = field(default_factory=list)
    turns: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    set: set[str] = field(default_factory=set)
    temperature: float | None = None
    top_p: float | None = None
    n: float = 1
    stop: list[str] | None = None
    has_tool_blocks: bool = False


# -- openai_chat.lua ----------------------------------------------------------------------------

def _number_param(req: dict[str, Any], name: str, lo: float, hi: float) -> float | None:
    v: Any = req.get(name)
    if not _present(v):
        return None
    if not _is_number(v):
        raise _fail("invalid_type", f"`{name}` must be a number.")
    if v < lo or v > hi:
        raise _fail("invalid_value", f"`{name}` must be between {_num(lo)} and {_num(hi)}.")
    return float(v)


def _integer_param(req: dict[str, Any], name: str, lo: int) -> float | None:
    v: Any = req.get(name)
    if not _present(v):
        return None
    if not _is_number(v) or not math.isfinite(v) or v != math.floor(v) or v < lo or v > INT_MAX:
        raise _fail("invalid_value", f"`{name}` must be an integer of at least {lo}.")
    return float(v)


def _string_param(req: dict[str, Any], name: str) -> str | None:
    v = req.get(name)
    if not _present(v):
        return None
    if not isinstance(v, str):
        raise _fail("invalid_type", f"`{name}` must be a string.")
    return v


def _image_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    iu = part.get("image_url")
    url = iu.get("url") if isinstance(iu, dict) else None
    if not isinstance(url, str):
        raise _fail("invalid_content", f"{where}.image_url.url must be a string.")
    m = _DATA_URL.match(url)
    if m is not None:
        return {"kind": "image", "media_type": m.group(1).lower(), "data": m.group(2)}
    if url.startswith(("http://", "https://")):
        return {"kind": "image", "url": url}
    raise _fail("invalid_content",
                f"{where}.image_url.url must be an https URL or a base64 data URL.")


def _add_content(content: Any, where: str, blocks: list[dict[str, Any]],
                 kinds: frozenset[str]) -> None:
    if content is None:
        return
    if isinstance(content, str):
        if content != "":
            blocks.append({"kind": "text", "text": content})
        return
    if not isinstance(content, list):
        raise _fail("invalid_content", f"{where} must be a string or an array of content parts.")
    for i, part in enumerate(content):
        at = f"{where}[{i}]"
        if not isinstance(part, dict):
            raise _fail("invalid_content", f"{at} must be an object.")
        t = part.get("type")
        if t == "text" or (t == "refusal" and "refusal" in kinds):
            text = part.get("text") if t == "text" else part.get("refusal")
            if not isinstance(text, str):
                raise _fail("invalid_content", f"{at}.{t} must be a string.")
            if text != "":
                blocks.append({"kind": "text", "text": text})
        elif t == "image_url" and "image" in kinds:
            blocks.append(_image_block(part, at))
        else:
            raise _fail("unsupported_content", f"{at}: content parts of type `{_tostring(t)}` "
                                               "cannot be sent to this model's provider.")


_TEXT_ONLY: frozenset[str] = frozenset()
_USER_PARTS = frozenset({"image"})
_ASSISTANT_PARTS = frozenset({"refusal"})


def _decodes_to_object(text: str) -> bool:
    try:
        decode_body(encode_utf8(text))
    except BodyError:
        return False
    return True


def _tool_calls_of(msg: dict[str, Any], where: str, blocks: list[dict[str, Any]],
                   names: dict[str, str]) -> None:
    calls = msg.get("tool_calls")
    if not _present(calls):
        return
    if not isinstance(calls, list):
        raise _fail("invalid_tool_calls", f"{where}.tool_calls must be an array.")
    for i, call in enumerate(calls):
        at = f"{where}.tool_calls[{i}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or call.get("type") != "function" \
                or not isinstance(fn, dict):
            raise _fail("invalid_tool_calls",
                        f"{at} must be {{type: function, function: {{name, arguments}}}}.")
        cid = call.get("id")
        if not isinstance(cid, str) or cid == "":
            raise _fail("invalid_tool_calls", f"{at}.id must be a non-empty string.")
        name = fn.get("name")
        if not isinstance(name, str) or name == "":
            raise _fail("invalid_tool_calls", f"{at}.function.name must be a non-empty string.")
        args = fn.get("arguments")
        if not isinstance(args, str):
            raise _fail("invalid_tool_calls", f"{at}.function.arguments must be a string.")
        if not _decodes_to_object("{}" if args == "" else args):
            raise _fail("invalid_tool_arguments", f"{at}.function.arguments must be a JSON object.")
        if cid in names:
            raise _fail("invalid_tool_calls", f"{at}.id repeats an earlier tool call's id.")
        names[cid] = name
        blocks.append({"kind": "tool_call", "id": cid, "name": name})


def _tool_result_of(msg: dict[str, Any], where: str, names: dict[str, str]) -> dict[str, Any]:
    tid = msg.get("tool_call_id")
    if not isinstance(tid, str) or tid == "":
        raise _fail("invalid_tool_message", f"{where}.tool_call_id must be a non-empty string.")
    if tid not in names:
        raise _fail("invalid_tool_message", f"{where}.tool_call_id does not name a tool call of "
                                            "an earlier assistant message.")
    parts: list[dict[str, Any]] = []
    _add_content(msg.get("content"), f"{where}.content", parts, _TEXT_ONLY)
    return {"kind": "tool_result", "id": tid, "texts": [p["text"] for p in parts]}


def _read_messages(messages: Any, c: Chat) -> None:
    if not isinstance(messages, list) or not messages:
        raise _fail("invalid_messages", "`messages` must be a non-empty array.")
    names: dict[str, str] = {}
    turns = c.turns
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _fail("invalid_messages", f"{where} must be an object.")
        role = msg.get("role")
        role_of: str | None = None
        blocks: list[dict[str, Any]] = []
        if role in ("system", "developer"):
            parts: list[dict[str, Any]] = []
            _add_content(msg.get("content"), f"{where}.content", parts, _TEXT_ONLY)
            c.system.extend(p["text"] for p in parts)
        elif role == "user":
            role_of = "user"
            _add_content(msg.get("content"), f"{where}.content", blocks, _USER_PARTS)
            if not blocks:
                raise _fail("empty_content", f"{where} has no content.")
        elif role == "assistant":
            role_of = "assistant"
            _add_content(msg.get("content"), f"{where}.content", blocks, _ASSISTANT_PARTS)
            if _present(msg.get("function_call")):
                raise _fail("unsupported_parameter",
                            f"{where}.function_call is deprecated; use tool_calls.")
            _tool_calls_of(msg, where, blocks, names)
            if not blocks:
                raise _fail("empty_content", f"{where} has neither content nor tool calls.")
        elif role == "tool":
            role_of = "user"
            blocks.append(_tool_result_of(msg, where, names))
            c.has_tool_blocks = True
        elif role == "function":
            raise _fail("unsupported_content",
                        f"{where}: role `function` is deprecated; use tool messages.")
        else:
            raise _fail("invalid_role", f"{where}.role must be system, developer, user, "
                                        "assistant or tool.")
        if role_of is not None:
            if turns and turns[-1]["role"] == role_of:
                turns[-1]["blocks"].extend(blocks)
            else:
                turns.append({"role": role_of, "blocks": blocks, "at": where})
    if not turns:
        raise _fail("invalid_messages", "`messages` needs at least one user or assistant message.")
    for i, turn in enumerate(turns):
        pending = set()
        for b in turn["blocks"]:
            if b["kind"] == "tool_call":
                pending.add(b["id"])
                c.has_tool_blocks = True
        count = sum(1 for b in turn["blocks"] if b["kind"] == "tool_call")
        after = turns[i + 1] if i + 1 < len(turns) else None
        if count > 0:
            if after is None:
                raise _fail("invalid_tool_message", f"{turn['at']}: every tool call needs a tool "
                                                    "message with its result after it.")
            for b in after["blocks"]:
                if b["kind"] != "tool_result":
                    break
                if b["id"] not in pending:
                    raise _fail("invalid_tool_message", f"{after['at']}: a tool result answers "
                                                        "a tool call of another turn.")
                pending.discard(b["id"])
                count -= 1
            if count > 0:
                raise _fail("invalid_tool_message", f"{turn['at']}: every tool call needs a tool "
                                                    "message with its result, before any other "
                                                    "message.")
        if turn["role"] == "user":
            leading = True
            for b in turn["blocks"]:
                if b["kind"] != "tool_result":
                    leading = False
                elif not leading or i == 0 or turns[i - 1]["role"] != "assistant":
                    raise _fail("invalid_tool_message", f"{turn['at']}: a tool message must "
                                                        "follow the assistant message with its "
                                                        "tool call.")


def _read_tools(req: dict[str, Any], c: Chat) -> None:
    tools = req.get("tools")
    if _present(tools):
        if not isinstance(tools, list):
            raise _fail("invalid_tools", "`tools` must be an array.")
        out = []
        for i, tool in enumerate(tools):
            at = f"tools[{i}]"
            fn = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(tool, dict) or tool.get("type") != "function" \
                    or not isinstance(fn, dict):
                raise _fail("invalid_tools", f"{at} must be {{type: function, function: "
                                             "{name, ...}}.")
            name = fn.get("name")
            if not isinstance(name, str) or name == "":
                raise _fail("invalid_tools", f"{at}.function.name must be a non-empty string.")
            description = fn.get("description")
            if _present(description) and not isinstance(description, str):
                raise _fail("invalid_tools", f"{at}.function.description must be a string.")
            parameters = fn.get("parameters")
            if _present(parameters) and not isinstance(parameters, dict):
                raise _fail("invalid_tools", f"{at}.function.parameters must be a JSON schema "
                                             "object.")
            out.append({"name": name, "parameters": parameters, "at": at})
        if out:
            c.tools = out
    choice = req.get("tool_choice")
    if _present(choice):
        fn = choice.get("function") if isinstance(choice, dict) else None
        if choice in ("auto", "required", "none"):
            c.tool_choice = choice
        elif isinstance(choice, dict) and choice.get("type") == "function" \
                and isinstance(fn, dict) and isinstance(fn.get("name"), str):
            c.tool_choice = {"name": fn["name"]}
        else:
            raise _fail("invalid_tool_choice", "`tool_choice` must be none, auto, required or "
                                               "{type: function, function: {name}}.")
        if c.tools is None and choice != "none":
            raise _fail("invalid_tool_choice", "`tool_choice` is only allowed when `tools` are "
                                               "given.")
        if isinstance(c.tool_choice, dict) and c.tools is not None \
                and all(t["name"] != c.tool_choice["name"] for t in c.tools):
            raise _fail("invalid_tool_choice", "`tool_choice` names a function that is not in "
                                               "`tools`.")
    parallel = req.get("parallel_tool_calls")
    if _present(parallel) and not isinstance(parallel, bool):
        raise _fail("invalid_type", "`parallel_tool_calls` must be a boolean.")


def _read_stop(req: dict[str, Any], c: Chat) -> None:
    stop = req.get("stop")
    if not _present(stop):
        return
    if isinstance(stop, str):
        c.stop = [stop]
    elif isinstance(stop, list):
        if any(not isinstance(s, str) for s in stop):
            raise _fail("invalid_type", "`stop` must be a string or an array of strings.")
        if stop:
            c.stop = stop
    else:
        raise _fail("invalid_type", "`stop` must be a string or an array of strings.")
    if c.stop is not None:
        c.set.add("stop")


def _read_response_format(req: dict[str, Any], c: Chat) -> None:
    rf = req.get("response_format")
    if not _present(rf):
        return
    if not isinstance(rf, dict):
        raise _fail("invalid_type", "`response_format` must be an object.")
    kind = rf.get("type")
    if kind == "text":
        return
    if kind == "json_schema" and isinstance(rf.get("json_schema"), dict):
        schema = rf["json_schema"].get("schema")
        if _present(schema) and not isinstance(schema, dict):
            raise _fail("invalid_type", "`response_format.json_schema.schema` must be an object.")
    elif kind != "json_object":
        raise _fail("invalid_value", "`response_format.type` must be text, json_object or "
                                     "json_schema.")
    c.set.add("response_format")


def read(req: dict[str, Any]) -> Chat:
    """openai_chat.lua's M.read: the neutral request, or Refused."""
    for k in req:
        if k not in KNOWN and k not in DROPPED:
            raise _fail("unsupported_parameter", f"`{k}` is not supported by this model's "
                                                 "provider.")
    c = Chat()
    _read_messages(req.get("messages"), c)
    _read_tools(req, c)
    if _integer_param(req, "max_completion_tokens", 1) is None:
        _integer_param(req, "max_tokens", 1)
    c.temperature = _number_param(req, "temperature", 0, 2)
    c.top_p = _number_param(req, "top_p", 0, 1)
    presence = _number_param(req, "presence_penalty", -2, 2)
    frequency = _number_param(req, "frequency_penalty", -2, 2)
    seed = _integer_param(req, "seed", -2147483648)
    n = _integer_param(req, "n", 1)
    c.n = n if n is not None else 1
    if c.n > 128:
        raise _fail("invalid_value", "`n` must be at most 128.")
    _read_stop(req, c)
    _read_response_format(req, c)
    if c.n != 1:
        c.set.add("n")
    if seed is not None:
        c.set.add("seed")
    if presence is not None and presence != 0:
        c.set.add("presence_penalty")
    if frequency is not None and frequency != 0:
        c.set.add("frequency_penalty")
    bias = req.get("logit_bias")
    if _present(bias):
        if not isinstance(bias, dict):
            raise _fail("invalid_type", "`logit_bias` must be an object.")
        if bias:
            c.set.add("logit_bias")
    logprobs = req.get("logprobs")
    if _present(logprobs):
        if not isinstance(logprobs, bool):
            raise _fail("invalid_type", "`logprobs` must be a boolean.")
        if logprobs:
            c.set.add("logprobs")
    if _present(req.get("top_logprobs")):
        c.set.add("logprobs")
    if _string_param(req, "user") is None:
        _string_param(req, "safety_identifier")
    stream = req.get("stream")
    if _present(stream) and not isinstance(stream, bool):
        raise _fail("invalid_type", "`stream` must be a boolean.")
    options = req.get("stream_options")
    if _present(options):
        if stream is not True:
            raise _fail("invalid_value", "`stream_options` is only allowed when `stream` is "
                                         "true.")
        if not isinstance(options, dict):
            raise _fail("invalid_type", "`stream_options` must be an object.")
        usage = options.get("include_usage")
        if _present(usage) and not isinstance(usage, bool):
            raise _fail("invalid_type", "`stream_options.include_usage` must be a boolean.")
    return c


# -- the provider modules -----------------------------------------------------------------------

def _refuse_unsupported(c: Chat, api: str) -> None:
    params = NATIVE_PARAMS[api]
    refused = sorted(name for name in c.set if name not in params.supported)
    if refused:
        names = "`" + "`, `".join(refused) + "`"
        verb = "is" if len(refused) == 1 else "are"
        raise _fail("unsupported_parameter", f"{names} {verb} not supported by {params.label} "
                                             "models.")


def _range(c: Chat, api: str) -> None:
    params = NATIVE_PARAMS[api]
    for name, value, hi in (("temperature", c.temperature, params.temperature_max),
                            ("top_p", c.top_p, params.top_p_max)):
        if value is not None and hi is not None and (value < 0 or value > hi):
            raise _fail("invalid_value", f"`{name}` must be between 0 and {_num(hi)} for "
                                         f"{params.label} models.")


def _tool_name_ok(name: str, pattern: re.Pattern[str]) -> bool:
    return len(encode_utf8(name)) <= 64 and pattern.match(name) is not None


def _anthropic(c: Chat) -> None:
    _refuse_unsupported(c, "anthropic")
    _range(c, "anthropic")
    for turn in c.turns:
        at, kept = turn["at"], 0
        for b in turn["blocks"]:
            if b["kind"] == "text":
                kept += 0 if _blank(b["text"]) else 1
                continue
            if b["kind"] == "image" and "url" not in b \
                    and b["media_type"] not in _ANTHROPIC_IMAGES:
                raise _fail("unsupported_content", f"{at}: Anthropic models take jpeg, png, gif "
                                                   "and webp images.")
            if b["kind"] in ("tool_call", "tool_result") and not _TOOL_ID.match(b["id"]):
                raise _fail("invalid_tool_calls", f"{at}: tool call ids must be letters, "
                                                  "digits, _ or - for Anthropic models.")
            kept += 1
        if kept == 0:
            raise _fail("empty_content", f"{at} has only blank text, which Anthropic models "
                                         "refuse.")
    last = c.turns[-1]
    if last["role"] == "assistant":
        tail = last["blocks"][-1]
        if tail["kind"] == "text" and tail["text"] and tail["text"][-1] in _LUA_SPACE:
            raise _fail("invalid_content", f"{last['at']}: a final assistant message cannot end "
                                           "with whitespace for Anthropic models.")
    if c.has_tool_blocks and c.tools is None:
        raise _fail("invalid_tools", "Anthropic models need `tools` when the conversation has "
                                     "tool calls.")
    for t in c.tools or ():
        if not _tool_name_ok(t["name"], _TOOL_ID):
            raise _fail("invalid_tools", f"{t['at']}.function.name must be 1-64 letters, digits, "
                                         "_ or - for Anthropic models.")
        schema = t["parameters"] if t["parameters"] is not None else {"type": "object"}
        if schema.get("type") != "object":
            raise _fail("invalid_tools", f"{t['at']}.function.parameters must be an object "
                                         "schema for Anthropic models.")


def _bedrock(c: Chat) -> None:
    _refuse_unsupported(c, "bedrock")
    _range(c, "bedrock")
    if c.turns[0]["role"] != "user":
        raise _fail("invalid_messages", "The conversation must start with a user message for "
                                        "Bedrock models.")
    for turn in c.turns:
        at, kept = turn["at"], 0
        for b in turn["blocks"]:
            kind = b["kind"]
            if kind == "text":
                kept += 0 if _blank(b["text"]) else 1
                continue
            if kind == "image" and ("url" in b or b["media_type"] not in _BEDROCK_IMAGES):
                raise _fail("unsupported_content", f"{at}: Bedrock models take jpeg, png, gif "
                                                   "and webp images as base64 data URLs.")
            if kind == "tool_result" and all(_blank(t) for t in b["texts"]):
                raise _fail("empty_content", f"{at}: a tool result needs text for Bedrock "
                                             "models.")
            if kind in ("tool_call", "tool_result") and not _tool_name_ok(b["id"], _TOOL_ID):
                raise _fail("invalid_tool_calls", f"{at}: tool call ids must be 1-64 letters, "
                                                  "digits, _ or - for Bedrock models.")
            kept += 1
        if kept == 0:
            raise _fail("empty_content", f"{at} has only blank text, which Bedrock models "
                                         "refuse.")
    if c.tools is not None and c.tool_choice == "none":
        if c.has_tool_blocks:
            raise _fail("invalid_tool_choice", "`tool_choice: none` with earlier tool calls is "
                                               "not supported by Bedrock models.")
    elif c.tools is not None:
        for t in c.tools:
            if not _tool_name_ok(t["name"], _TOOL_ID):
                raise _fail("invalid_tools", f"{t['at']}.function.name must be 1-64 letters, "
                                             "digits, _ or - for Bedrock models.")
    elif c.has_tool_blocks:
        raise _fail("invalid_tools", "Bedrock models need `tools` when the conversation has "
                                     "tool calls.")


def _gemini(c: Chat) -> None:
    params = NATIVE_PARAMS["gemini"]
    _refuse_unsupported(c, "gemini")
    if params.n_max is not None and c.n > params.n_max:
        raise _fail("invalid_value", f"`n` must be at most {params.n_max} for {params.label} "
                                     "models.")
    if params.stop_max is not None and c.stop is not None and len(c.stop) > params.stop_max:
        raise _fail("invalid_value", f"`stop` may hold at most {params.stop_max} sequences for "
                                     f"{params.label} models.")
    for turn in c.turns:
        for b in turn["blocks"]:
            if b["kind"] == "image" and "url" in b:
                raise _fail("unsupported_content", f"{turn['at']}: Gemini models take images as "
                                                   "base64 data URLs.")
    for t in c.tools or ():
        if not _tool_name_ok(t["name"], _GEMINI_TOOL):
            raise _fail("invalid_tools", f"{t['at']}.function.name must start with a letter or _ "
                                         "and hold at most 64 letters, digits, _ . : or - for "
                                         "Gemini models.")


_APIS = {"anthropic": _anthropic, "bedrock": _bedrock, "gemini": _gemini}


def refusal(req: dict[str, Any], apis: tuple[str, ...]) -> tuple[str, str] | None:
    """gateway.lua's check_native: None if `req` (the body as the gateway forwards it: prompt
    injected, redacted) translates for every API of `apis`, in that order; else the 400's
    (code, message)."""
    try:
        c = read(req)
        for api in apis:
            _APIS[api](c)
    except Refused as err:
        return err.code, err.message
    return None
