"""`--only` of the instruction-count benchmarks: a variant name they do not have is refused
with the list of those they have (it used to measure nothing, silently), before anything runs."""

from __future__ import annotations

import pytest

from benchmarks import dataplane_instructions, dataplane_module


@pytest.mark.parametrize(("bench", "known"), [
    (dataplane_instructions, [name for name, _, _ in dataplane_instructions.VARIANTS]),
    (dataplane_module, [name for name, _ in dataplane_module.VARIANTS] + ["gateway"]),
], ids=["dataplane_instructions", "dataplane_module"])
def test_an_unknown_variant_is_refused_with_the_known_ones(
        bench: object, known: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        bench.main(["--only", f"{known[0]},no-such-variant"])  # type: ignore[attr-defined]
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"--only: unknown variant no-such-variant; known variants: {', '.join(known)}" in err
    assert "gateway" in known and "minimal" in known


def test_known_variants_pass_the_check() -> None:
    """Known names (spaces around them allowed) come back as the set to run; only a missing
    valgrind may still stop the benchmark here."""
    parser = dataplane_instructions.instruction_parser(None, "x.json")

    def refuse(message: str) -> None:
        raise ValueError(message)

    parser.error = refuse  # type: ignore[assignment,method-assign]
    try:
        _, only = dataplane_instructions.parse_instruction_args(
            parser, ["--only", "gateway, minimal"], ["minimal", "gateway"])
    except ValueError as exc:
        assert "valgrind" in str(exc)
    else:
        assert only == {"gateway", "minimal"}
