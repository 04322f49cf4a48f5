"""The enumeration words a `role` or `type` may hold as no text (names.ENUM_WORDS): the Lua
(NAMES.enum_words) and `explain` read the Python list; module/gw_text.c keeps a static copy,
which must be the same words in the same order."""

from __future__ import annotations

import re

from gatewayctl.explain.text import ENUM_WORDS as EXPLAIN_WORDS
from gatewayctl.render.envoy.lua import names_source
from gatewayctl.render.envoy.names import ENUM_WORDS
from tests.conftest import REPO


def test_the_compiled_guard_text_has_the_same_words() -> None:
    source = (REPO / "gatewayctl" / "render" / "envoy" / "module" / "gw_text.c").read_text()
    found = re.search(r"ENUM_WORDS\[\] = \{(.*?)\};", source, re.S)
    assert found is not None
    assert tuple(re.findall(r'"([^"]*)"', found.group(1))) == ENUM_WORDS


def test_the_lua_and_explain_read_the_one_list() -> None:
    assert frozenset(ENUM_WORDS) == EXPLAIN_WORDS
    assert 'enum_words"]={' + ",".join(f'"{w}"' for w in ENUM_WORDS) + "}" in names_source()
