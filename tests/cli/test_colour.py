"""When the CLI colours its output: on a terminal only, and never with a non-empty NO_COLOR."""

from __future__ import annotations

import io

import pytest

from gatewayctl.output import use_colour


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("env", "coloured"),
    [
        ({}, True),
        ({"NO_COLOR": "1"}, False),
        ({"NO_COLOR": "0"}, False),  # any non-empty value turns colour off
        ({"NO_COLOR": ""}, True),  # an empty one does not (no-color.org)
        ({"TERM": "dumb"}, False),
    ],
)
def test_colour_on_a_terminal(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                              coloured: bool) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert use_colour(_Terminal()) is coloured


def test_never_coloured_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert use_colour(io.StringIO()) is False
