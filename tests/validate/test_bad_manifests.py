"""The bad-manifest corpus: each case must fail with its code at an exact place and message.

Each file in cases/ is a whole manifest root whose first line says which code it must produce
(`# expect: GWnnn`). Cases named *-strict hold only warnings and fail under --strict.
The golden `.expected` files hold the exit code and the exact output.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gatewayctl.validate import run_validate
from tests.goldens import check_golden, check_no_stale

ROOT_LINE = re.compile(r"^(?:error|warning)\[(GW\d{3})\] ", re.M)
CASES = Path(__file__).parent / "cases"
CASE_FILES = sorted(CASES.glob("*.yaml"))
DIAG_LINE = re.compile(
    r"^(?P<path>[^:\s]+):(?P<line>\d+):(?P<col>\d+): (?P<sev>error|warning)"
    r"\[(?P<code>GW\d{3})\] (?P<msg>.+)$"
)


def test_corpus_is_large_enough() -> None:
    assert len(CASE_FILES) >= 40


def test_no_stale_goldens(update_golden: bool) -> None:
    cases = {p.stem for p in CASE_FILES}
    check_no_stale(CASES, [p for p in CASES.glob("*.expected") if p.stem not in cases],
                   update_golden)


@pytest.mark.parametrize("case", CASE_FILES, ids=lambda p: p.stem)
def test_case(case: Path, update_golden: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CASES)  # messages that name the root then name it relatively
    expect = (
        case.read_bytes()
        .decode("utf-8", "replace")
        .splitlines()[0]
        .removeprefix("# expect: ")
        .strip()
    )
    strict = case.stem.endswith("-strict")
    code, text = run_validate(
        Path(case.name), output="text", strict=strict, reports=[], colour=False
    )
    assert code == 1
    diags = [m.groupdict() for m in map(DIAG_LINE.match, text.splitlines()) if m]
    codes = {d["code"] for d in diags} | set(ROOT_LINE.findall(text))
    assert expect in codes, f"{expect} not reported; got {sorted(codes)}"
    for d in diags:
        assert d["path"] == case.name
        assert int(d["line"]) >= 1 and int(d["col"]) >= 1
    check_golden(case.with_suffix(".expected"), f"exit: {code}\n{text}", update_golden)
