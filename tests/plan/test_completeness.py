"""The manifest layer is complete: every IR field that changes makes a plan change.

Each leaf field of two rich IRs (examples/multi-team and the plan fixture root) is mutated in
turn; the plan must show a pending change, worded where a term exists and otherwise as
"other change: <IR path>". A field added to the IR later is mutated here too.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from gatewayctl.ir import GatewayIR
from gatewayctl.orchestrate import load_desired_ir
from gatewayctl.plan.format import format_text
from gatewayctl.plan.manifest_diff import diff_gateway_ir
from gatewayctl.plan.model import Plan
from tests.conftest import REPO
from tests.plan.conftest import FIXTURE_ROOT

Mutation = tuple[str, GatewayIR]


def _alternatives(tp: Any, value: Any) -> list[Any]:
    """Values of type `tp` other than `value`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(tp):
            if arg is type(None):
                out += [None] if value is not None else []
            elif value is None or isinstance(value, _base(arg)):
                out += _alternatives(arg, value)
        return out[:2]
    if origin is Literal:
        return [v for v in typing.get_args(tp) if v != value][:1]
    if origin is tuple:
        item = typing.get_args(tp)[0]
        sample = _sample(item)
        grown = [(*(value or ()), sample)] if sample is not None else []
        return grown + ([tuple(value)[1:]] if value else [])
    if tp is bool:
        return [not value]
    if tp is int:
        return [(value or 0) + 1]
    if tp is float:
        return [(value or 0.0) + 1.5]
    if tp is str:
        return [(value or "") + "x"]
    return []


def _base(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    return origin if origin is not None and origin is not Literal else (
        str if origin is Literal else tp)


def _sample(tp: Any) -> Any:
    if tp is str:
        return "zz-new"
    if tp is int:
        return 7
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return _sample(next(a for a in typing.get_args(tp) if a is not type(None)))
    return None


def mutations(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(IR path, mutated copy of obj) for every leaf field reachable from obj."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        here = f"{path}.{f.name}" if path else f.name
        tp = hints[f.name]
        if dataclasses.is_dataclass(value):
            for sub, changed in mutations(value, here):
                yield sub, dataclasses.replace(obj, **{f.name: changed})
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            for i, item in enumerate(value):
                for sub, changed in mutations(item, f"{here}[{i}]"):
                    replaced = (*value[:i], changed, *value[i + 1:])
                    yield sub, dataclasses.replace(obj, **{f.name: replaced})
        else:
            for other in _alternatives(tp, value):
                yield here, dataclasses.replace(obj, **{f.name: other})


def _irs() -> list[tuple[str, GatewayIR]]:
    return [("multi-team", load_desired_ir(REPO / "examples" / "multi-team")[0]),
            ("fixture", load_desired_ir(FIXTURE_ROOT)[0])]


CASES = [(f"{name}:{path}", ir, mutated) for name, ir in _irs()
         for path, mutated in mutations(ir) if path != "version"]


def test_every_ir_field_is_mutated() -> None:
    fields = {case.split(":", 1)[1].split("[")[0].split(".")[0] for case, _, _ in CASES}
    assert {f.name for f in dataclasses.fields(GatewayIR)} - {"version"} <= fields
    assert len(CASES) > 300


@pytest.mark.parametrize("case,before,after", CASES, ids=[c[0] for c in CASES])
def test_a_changed_ir_field_is_a_plan_change(case: str, before: GatewayIR,
                                             after: GatewayIR) -> None:
    changes = diff_gateway_ir(before, after)

    assert [c for c in changes if c.action != "no-op"], f"{case} changed and no plan said so"
    text = format_text(Plan(after.name, after.namespace, "dir:x", "sha256:0", changes))
    assert "No changes" not in text


def test_an_unworded_field_is_an_other_change() -> None:
    before = load_desired_ir(FIXTURE_ROOT)[0]
    provider = before.providers[0]
    after = dataclasses.replace(before, providers=(
        dataclasses.replace(provider, auth_prefix="Token "), *before.providers[1:]))

    (change,) = diff_gateway_ir(before, after)

    assert (change.kind, change.name, change.action) == ("Provider", provider.name, "update")
    (detail,) = change.details
    assert detail.field == f"other change: providers[{provider.name}].auth_prefix"
    assert (detail.before, detail.after) == (provider.auth_prefix, "Token ")


def test_the_mutations_reach_nested_fields(tmp_path: Path) -> None:
    paths = {case.split(":", 1)[1] for case, _, _ in CASES}
    for wanted in ("routes[0].rollout.canary_header", "routes[0].policy.allow_rules",
                   "routes[0].rollout.thresholds[0].max"):
        assert any(p.startswith(wanted) for p in paths), wanted
