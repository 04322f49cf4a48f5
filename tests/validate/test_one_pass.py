"""YAML merge keys follow YAML's merge semantics, and one run reports every problem: a bad key,
a syntax error or a schema error does not hide the problems (or the objects) after it."""

from __future__ import annotations

from pathlib import Path

from gatewayctl.manifests.yamlsource import parse_text
from gatewayctl.validate import run_validate
from tests.conftest import REPO

QUICKSTART = REPO / "examples" / "quickstart"


def _root(tmp_path: Path, **files: str) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    for f in QUICKSTART.glob("*.yaml"):
        (root / f.name).write_text(f.read_text())
    for name, text in files.items():
        (root / f"{name}.yaml").write_text(text)
    return root


def _validate(root: Path) -> tuple[int, str]:
    return run_validate(root, output="text", strict=False, reports=[], colour=False)


POLICY_Q = """\
apiVersion: gatewayctl.dev/v1alpha1
kind: Policy
metadata: {name: q}
spec: {rateLimit: {requests: 10, by: route}}
"""

MERGED_ROUTE = """\
apiVersion: gatewayctl.dev/v1alpha1
kind: Route
metadata: {name: merged}
spec:
  backends:
    - &base {model: gpt-4o-2024-08-06, weight: 70}
    - {<<: *base, weight: 30, model: gpt-4o-2024-11-20}
  policies: [q]
---
""" + POLICY_Q


def test_an_explicit_key_overrides_a_merged_one(tmp_path: Path) -> None:
    code, text = _validate(_root(tmp_path, routes=MERGED_ROUTE))
    assert (code, text) == (0, "ok: 7 manifests in 3 files are valid\n")


def test_merge_semantics() -> None:
    text = """\
a: &a {timeout: 10s, x: 1}
b: &b {timeout: 20s, retry: {attempts: 2}, x: 2}
before: {x: 0, <<: [*a, *b]}
after: {<<: [*a, *b], x: 3}
inline: {<<: {y: 1}, y: 2}
"""
    docs, diags = parse_text("m.yaml", text)
    assert diags == []
    data = docs[0].data
    # Explicit keys win wherever they stand; among merged mappings the first one wins.
    assert data["before"] == {"x": 0, "timeout": "10s", "retry": {"attempts": 2}}
    assert data["after"] == {"timeout": "10s", "x": 3, "retry": {"attempts": 2}}
    assert data["inline"] == {"y": 2}
    # A merged key is found where its value is written: in the anchored mapping.
    assert docs[0].location(("after", "timeout")).line == 1
    assert docs[0].location(("after", "retry", "attempts")).line == 2


def test_true_duplicates_are_still_errors() -> None:
    text = "a: &a {x: 1}\nm:\n  <<: *a\n  y: 1\n  y: 2\n  <<: *a\n"
    _, diags = parse_text("d.yaml", text)
    assert [d.format().splitlines()[0] for d in diags] == [
        'd.yaml:5:3: error[GW002] m.y: duplicate key "y" (first defined on line 4)',
        'd.yaml:6:3: error[GW002] m.<<: duplicate key "<<" (first defined on line 3)',
    ]


def test_a_merge_of_something_else_than_mappings_is_an_error() -> None:
    _, diags = parse_text("s.yaml", "m: {<<: [1, 2]}\n")
    assert [d.format().splitlines()[0] for d in diags] == [
        "s.yaml:1:9: error[GW001] m.<<: a merge key (<<) takes a mapping or a list of "
        "mappings, got a list holding a number"
    ]


def test_a_duplicate_key_does_not_hide_the_rest_of_the_file(tmp_path: Path) -> None:
    twice = "  policies: [q]\n  timeout: 5s\n  timeout: 6s\n"
    routes = MERGED_ROUTE.replace("  policies: [q]\n", twice)
    root = _root(tmp_path, routes=routes)
    code, text = _validate(root)
    assert code == 1
    assert [line for line in text.splitlines() if "error[" in line] == [
        f'{root}/routes.yaml:10:3: error[GW002] spec.timeout: duplicate key "timeout" '
        "(first defined on line 9)"
    ]


def test_a_dangling_reference_is_reported_with_a_schema_error_of_the_same_resource(
    tmp_path: Path,
) -> None:
    route = """\
apiVersion: gatewayctl.dev/v1alpha1
kind: Route
metadata: {name: broken}
spec:
  backends: [{model: gpt-4o-2024-08-06, weight: 100}]
  fallback: [gpt-4o-2024-11-21]
  policies: [no-such-policy]
  retries: 3
"""
    root = _root(tmp_path, broken=route)
    code, text = _validate(root)
    assert code == 1
    assert [line for line in text.splitlines() if "error[" in line] == [
        f'{root}/broken.yaml:6:14: error[GW203] spec.fallback[0]: Model "gpt-4o-2024-11-21" '
        "does not exist",
        f'{root}/broken.yaml:7:14: error[GW203] spec.policies[0]: Policy "no-such-policy" '
        "does not exist",
        f'{root}/broken.yaml:8:3: error[GW104] spec.retries: unknown field "retries"',
    ]


def test_a_reference_whose_own_value_is_wrong_is_reported_once(tmp_path: Path) -> None:
    route = """\
apiVersion: gatewayctl.dev/v1alpha1
kind: Route
metadata: {name: broken}
spec:
  backends: [{model: Not_A_Name, weight: 100}]
  retries: 3
"""
    code, text = _validate(_root(tmp_path, broken=route))
    codes = [line.split("error[")[1][:5] for line in text.splitlines() if "error[" in line]
    assert (code, codes) == (1, ["GW106", "GW104"])


def test_a_syntax_error_in_the_first_document_keeps_its_context_and_snippet(
    tmp_path: Path,
) -> None:
    broken = """\
apiVersion: gatewayctl.dev/v1alpha1
kind: Policy
metadata: {name: q}
spec:
  rateLimit: {requests: 10, by: route
---
""" + POLICY_Q.replace("name: q", "name: r")
    root = _root(tmp_path, policies=broken)
    code, text = _validate(root)
    assert code == 1
    assert text.splitlines()[:4] == [
        f"{root}/policies.yaml:6:1: error[GW001] YAML syntax error: did not find expected "
        "',' or '}' (while parsing a flow mapping that started at line 5, column 14)",
        "  6 | ---",
        "      ^",
        "  hint: check indentation and quoting around this position",
    ]


def test_documents_after_a_syntax_error_are_still_read(tmp_path: Path) -> None:
    policies = (
        POLICY_Q.replace("name: q", "name: broken").replace("route}}", "route}")
        + "---\n"
        + POLICY_Q
    )
    route = MERGED_ROUTE.split("---\n")[0]
    code, text = _validate(_root(tmp_path, policies=policies, routes=route))
    assert code == 1
    errors = [line for line in text.splitlines() if "error[" in line]
    assert len(errors) == 1 and "error[GW001]" in errors[0], text  # no "Policy q does not exist"
