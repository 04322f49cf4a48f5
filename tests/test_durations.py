"""The one duration grammar: manifests and flags read durations the same way."""

from __future__ import annotations

import re

import pytest

from gatewayctl.commands.plan import parse_duration
from gatewayctl.durations import (
    DURATION_PATTERN,
    DurationError,
    duration_pattern,
    format_duration_ms,
    parse_duration_ms,
)
from gatewayctl.errors import UsageError
from gatewayctl.local.mock.config import FaultSpecError, parse_latency_ms
from gatewayctl.manifests.types import manifest_duration_ms


@pytest.mark.parametrize(("text", "ms"), [
    ("500ms", 500), ("30s", 30_000), ("1.5m", 90_000), ("1h", 3_600_000),
    ("1h30m", 5_400_000), ("1m0.5s", 60_500), (" 10m ", 600_000), ("2s500ms", 2_500),
])
def test_every_use_reads_the_same_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms
    assert manifest_duration_ms(text) == ms
    assert parse_duration(text) == ms / 1000
    assert re.match(DURATION_PATTERN, text.strip())


@pytest.mark.parametrize("text", ["", "30", "2d", "1 h", "h1", "1.h", "-5s", "1h 30m", "5sm"])
def test_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(DurationError, match="is not a duration; use a number and ms, s, m or h"):
        parse_duration_ms(text)
    assert not re.match(DURATION_PATTERN, text.strip())


def test_a_use_names_its_units_and_what_a_plain_number_means() -> None:
    assert parse_duration_ms("7d", units=("s", "m", "h", "d", "w")) == 7 * 86_400_000
    assert parse_duration_ms("90", unitless="s") == 90_000
    assert parse_duration("90") == 90
    with pytest.raises(DurationError, match="use a number and ms or s"):
        parse_duration_ms("5m", units=("ms", "s"))
    assert duration_pattern(("m", "ms")) == r"^([0-9]+(\.[0-9]+)?(ms|m))+$"
    assert parse_duration_ms("5ms", units=("m", "ms")) == 5


def test_each_use_keeps_its_own_message_and_bounds() -> None:
    with pytest.raises(ValueError, match="a duration is a string with a unit"):
        manifest_duration_ms(30)
    with pytest.raises(UsageError, match='invalid duration "five minutes"'):
        parse_duration("five minutes")
    assert parse_latency_ms("0") == 0.0
    with pytest.raises(FaultSpecError, match="is longer than 600s"):
        parse_latency_ms("601s")
    with pytest.raises(FaultSpecError, match="duration '150' is not valid"):
        parse_latency_ms("150")


def test_durations_print_in_their_largest_whole_unit() -> None:
    assert [format_duration_ms(ms) for ms in (3_600_000, 600_000, 1_500, 30_000)] == \
        ["1h", "10m", "1500ms", "30s"]
