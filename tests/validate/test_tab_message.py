"""A tab where YAML wants spaces is named as such (libyaml says only "found character that
cannot start any token"), wherever it is on the line and with either parser."""

from __future__ import annotations

import pytest

from gatewayctl.manifests.yamlsource import FAST_LOADER, PURE_LOADER, parse_text

TAB = "YAML syntax error: a tab character, where YAML allows only spaces"


@pytest.mark.parametrize("loader", [FAST_LOADER, PURE_LOADER], ids=["libyaml", "python"])
@pytest.mark.parametrize("text, line, column", [
    ("kind: Route\nspec:\n\tbackends: []\n", 3, 1),
    ("kind: Route\nspec:\n  \tbackends: []\n", 3, 3),
    ("kind: Route\nspec:\n  backends:\n  -\tx\n", 4, 4),
])
def test_a_tab_is_named(loader: object, text: str, line: int, column: int) -> None:
    _, diags = parse_text("routes.yaml", text, loader=loader)
    assert [(d.code, d.summary, d.location.line, d.location.column)
            for d in diags if d.location] == [("GW001", TAB, line, column)]
    assert diags[0].hint is not None and "replace the tab with spaces" in diags[0].hint


def test_other_syntax_errors_keep_their_message() -> None:
    _, diags = parse_text("routes.yaml", "kind: Route\nspec: {a: [1, 2}\n")
    assert len(diags) == 1 and "tab" not in diags[0].summary
    assert diags[0].hint == "check indentation and quoting around this position"
