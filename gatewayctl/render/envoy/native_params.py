"""What each native API (anthropic, bedrock, gemini) refuses of OpenAI's sampling parameters:
defined once here, handed to the Lua as data (`NATIVE_PARAMS`, bound before the translation
modules, lua.py) and read by explain (gatewayctl/explain/native.py), so the two cannot drift.

Per API: `label`, the name in the messages ("... not supported by Bedrock models.");
`supported`, the parameters of openai_chat.lua's `c.set` the API has an equivalent for (a
set parameter outside it is refused 400 `unsupported_parameter`); `temperature_max` and
`top_p_max`, the API's upper bound of those (above it: 400 `invalid_value`; None: OpenAI's own
bounds only); `n_max`, `stop_max`: the most choices and stop sequences the API takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Every parameter openai_chat.lua may mark as set (c.set): the ones an API can refuse.
SAMPLING = ("frequency_penalty", "logit_bias", "logprobs", "n", "presence_penalty",
            "response_format", "seed", "stop")


@dataclass(frozen=True)
class ApiParams:
    label: str
    supported: frozenset[str]
    temperature_max: float | None = None
    top_p_max: float | None = None
    n_max: int | None = None
    stop_max: int | None = None


NATIVE_PARAMS: dict[str, ApiParams] = {
    "anthropic": ApiParams("Anthropic", frozenset({"stop"}), temperature_max=1, top_p_max=1),
    "bedrock": ApiParams("Bedrock", frozenset({"stop"}), temperature_max=1, top_p_max=1),
    "gemini": ApiParams("Gemini", frozenset({"stop", "n", "seed", "presence_penalty",
                                             "frequency_penalty", "response_format"}),
                        n_max=8, stop_max=5),
}


def lua_data() -> dict[str, Any]:
    """NATIVE_PARAMS as the Lua reads it: `supported` a set ({name = true})."""
    return {
        api: {"label": p.label, "supported": dict.fromkeys(sorted(p.supported), True),
              "temperature_max": p.temperature_max, "top_p_max": p.top_p_max,
              "n_max": p.n_max, "stop_max": p.stop_max}
        for api, p in NATIVE_PARAMS.items()
    }
