"""In-place edits: only the intended values change; every other byte of the file stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatewayctl.manifests.yamlsource import parse_text
from gatewayctl.rollout.edit import (
    EditError,
    FieldEdit,
    edit_rollout_text,
    prepare_file_edit,
    write_file_edit,
)
from tests.rollout.helpers import changed

STAMP = "gatewayctl.dev/step-started-at"
STARTED = FieldEdit(("metadata", "annotations", STAMP), "2026-01-02T03:04:05Z",
                    after=("labels", "name"))


def step(n: int) -> FieldEdit:
    return FieldEdit(("spec", "step"), n, after=("steps",))


def state(s: str) -> FieldEdit:
    return FieldEdit(("spec", "state"), s, after=("step",))


def rollout_values(text: str, name: str = "chat-nov") -> dict[str, object]:
    docs, diags = parse_text("x.yaml", text)
    assert diags == []
    doc = next(d.data for d in docs if isinstance(d.data, dict)
               and d.data.get("kind") == "Rollout" and d.data["metadata"]["name"] == name)
    spec = doc["spec"]
    return {"step": spec.get("step"), "state": spec.get("state"),
            "started": doc["metadata"].get("annotations", {}).get(STAMP)}


BLOCK_CRLF = (
    "# Rollout of the chat route.\r\n"
    "apiVersion: gatewayctl.dev/v1alpha1\r\n"
    "kind: Rollout\r\n"
    "metadata:\r\n"
    "    name: chat-nov          # keep this name\r\n"
    "    labels:\r\n"
    "        team: platform\r\n"
    "spec:\r\n"
    "    route: chat\r\n"
    "    stable: 'gpt-4o-2024-08-06'\r\n"
    "    canary: \"gpt-4o-2024-11-20\"\r\n"
    "    steps:\r\n"
    "      - weight: 5\r\n"
    "        pause: 10m\r\n"
    "      - weight: 25     # a quarter\r\n"
    "        pause: 30m\r\n"
    "      - weight: 100\r\n"
    "\r\n"
    "    # the current step; Git holds it\r\n"
    "    step: 1   # 5%\r\n"
    "    state: progressing\r\n"
    "    analysis:\r\n"
    "        metrics: [{name: error-rate, max: 0.02}]\r\n"
)


def test_block_style_crlf_four_spaces_only_the_values_change() -> None:
    after = edit_rollout_text(BLOCK_CRLF, "chat-nov", [step(2), state("progressing"), STARTED])
    removed, added = changed(BLOCK_CRLF, after)
    assert removed == ["    step: 1   # 5%\r\n"]
    assert added == [
        "    annotations:\r\n",
        f'        {STAMP}: "2026-01-02T03:04:05Z"\r\n',
        "    step: 2   # 5%\r\n",
    ]
    assert "\n" not in after.replace("\r\n", "")  # no bare LF slipped in
    assert rollout_values(after) == {"step": 2, "state": "progressing",
                                     "started": "2026-01-02T03:04:05Z"}


FLOW = """\
apiVersion: gatewayctl.dev/v1alpha1
kind: Rollout
metadata: {name: chat-nov,  labels: {team: a}}
spec: {route: chat, stable: gpt-4o-2024-08-06, canary: gpt-4o-2024-11-20,
  steps: [ {weight: 5, pause: 10m}, {weight: 100} ], step: 1, state: "paused"}
"""


def test_flow_style_mappings_are_edited_in_flow_style() -> None:
    after = edit_rollout_text(FLOW, "chat-nov", [step(2), state("progressing"), STARTED])
    assert after == (
        "apiVersion: gatewayctl.dev/v1alpha1\n"
        "kind: Rollout\n"
        f'metadata: {{name: chat-nov,  labels: {{team: a}}, annotations: {{{STAMP}: '
        '"2026-01-02T03:04:05Z"}}\n'
        "spec: {route: chat, stable: gpt-4o-2024-08-06, canary: gpt-4o-2024-11-20,\n"
        '  steps: [ {weight: 5, pause: 10m}, {weight: 100} ], step: 2, state: "progressing"}\n'
    )


ANCHORS = """\
# two canaries in one file
apiVersion: gatewayctl.dev/v1alpha1
kind: Rollout
metadata:
  name: other
spec:
  steps: &default-steps
    - {weight: 5, pause: 10m}
    - {weight: 100}
  step: 1
  state: progressing
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Rollout
metadata:
  name: chat-nov
  labels: &labels {team: platform}
  annotations:
    owner: "platform"
spec:
  analysis: {minRequests: &one 1}
  steps: &steps
    - {weight: 5, pause: 10m}
    - {weight: 100}
  step: *one
  state: 'progressing'
...
"""


def test_aliases_are_replaced_by_the_value_and_anchors_are_left_alone() -> None:
    after = edit_rollout_text(ANCHORS, "chat-nov", [step(2), state("paused"), STARTED])
    removed, added = changed(ANCHORS, after)
    assert removed == ["  step: *one\n", "  state: 'progressing'\n"]
    assert added == [f'    {STAMP}: "2026-01-02T03:04:05Z"\n', "  step: 2\n",
                     "  state: 'paused'\n"]
    docs, diags = parse_text("x.yaml", after)
    assert diags == []
    assert docs[1].data["spec"]["analysis"] == {"minRequests": 1}  # the anchored value stays
    assert docs[0].data["spec"]["step"] == 1  # the other rollout is untouched
    assert after.endswith("...\n")


def test_an_anchored_value_used_elsewhere_is_refused() -> None:
    text = (
        "apiVersion: gatewayctl.dev/v1alpha1\nkind: Rollout\nmetadata: {name: chat-nov}\n"
        "spec:\n  steps: [{weight: 5}, {weight: 100}]\n  step: &s 1\n  state: progressing\n"
        "  copy: *s\n")
    with pytest.raises(EditError) as caught:
        edit_rollout_text(text, "chat-nov", [step(2)])
    assert caught.value.message == (
        "spec.step is anchored as &s and aliased elsewhere; changing it would change those "
        "values too")


def test_a_shared_mapping_is_not_edited_through_its_anchor() -> None:
    text = ("kind: Rollout\nmetadata:\n  name: chat-nov\n  labels: &shared {team: a}\n"
            "  annotations: *shared\nspec: {step: 1}\n")
    with pytest.raises(EditError, match=r"metadata.annotations is an alias \(\*shared\)"):
        edit_rollout_text(text, "chat-nov", [STARTED])
    text = text.replace("annotations: *shared", "annotations: &notes {a: b}").replace(
        "spec: {step: 1}", "spec: {step: 1, x: *notes}")
    with pytest.raises(EditError, match="metadata.annotations is anchored as &notes"):
        edit_rollout_text(text, "chat-nov", [STARTED])


def test_missing_keys_are_added_after_their_sibling_at_its_indentation() -> None:
    text = ("apiVersion: gatewayctl.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: chat-nov\n"
            "spec:\n  route: chat\n  steps:\n  - weight: 5\n    pause: 1m  # short\n"
            "  - weight: 100\n  canaryHeader: x-canary\n")
    after = edit_rollout_text(text, "chat-nov", [step(1), state("progressing"), STARTED])
    assert after == (
        "apiVersion: gatewayctl.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: chat-nov\n"
        f'  annotations:\n    {STAMP}: "2026-01-02T03:04:05Z"\n'
        "spec:\n  route: chat\n  steps:\n  - weight: 5\n    pause: 1m  # short\n"
        "  - weight: 100\n  step: 1\n  state: progressing\n  canaryHeader: x-canary\n")


def test_only_the_named_rollout_of_a_multi_document_file_changes() -> None:
    text = ANCHORS
    after = edit_rollout_text(text, "other", [state("aborted")])
    removed, added = changed(text, after)
    assert (removed, added) == (["  state: progressing\n"], ["  state: aborted\n"])


@pytest.mark.parametrize(("original", "new", "expected"), [
    ("state: progressing", "paused", "state: paused"),
    ("state: 'progressing'", "paused", "state: 'paused'"),
    ('state: "progressing"', "paused", 'state: "paused"'),
    ("state:   progressing   # now", "aborted", "state:   aborted   # now"),
    ("state: >-\n    progressing", "paused", 'state: "paused"'),
])
def test_quoting_and_comments_are_kept(original: str, new: str, expected: str) -> None:
    head = "apiVersion: gatewayctl.dev/v1alpha1\nkind: Rollout\nmetadata: {name: chat-nov}\n"
    text = f"{head}spec:\n  step: 1\n  {original}\n  route: chat\n"
    after = edit_rollout_text(text, "chat-nov", [state(new)])
    assert after == f"{head}spec:\n  step: 1\n  {expected}\n  route: chat\n"


def test_a_value_that_would_read_as_another_type_is_quoted() -> None:
    text = "kind: Rollout\nmetadata:\n  name: chat-nov\n  annotations:\n    note: plain\n"
    after = edit_rollout_text(text, "chat-nov", [
        FieldEdit(("metadata", "annotations", "note"), "yes"),
        FieldEdit(("metadata", "annotations", "when"), "2026-01-02T03:04:05Z")])
    assert after == ('kind: Rollout\nmetadata:\n  name: chat-nov\n  annotations:\n'
                     '    note: "yes"\n    when: "2026-01-02T03:04:05Z"\n')


def test_unchanged_values_give_identical_text() -> None:
    assert edit_rollout_text(BLOCK_CRLF, "chat-nov", [step(1), state("progressing")]) \
        == BLOCK_CRLF


def test_unknown_rollout_is_an_error() -> None:
    with pytest.raises(EditError, match="no Rollout named nope in this file"):
        edit_rollout_text(BLOCK_CRLF, "nope", [step(2)])


def test_file_edit_keeps_bom_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + FLOW.encode())
    path.chmod(0o640)
    edit = prepare_file_edit(path, "chat-nov", [step(2)])
    write_file_edit(edit)
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert raw[3:].decode() == FLOW.replace("step: 1,", "step: 2,")
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["r.yaml"]  # no temporary file left


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "multi-team" / "rollouts.yaml"


@pytest.mark.parametrize("text", [BLOCK_CRLF, FLOW, ANCHORS, EXAMPLE.read_text()],
                         ids=["block-crlf", "flow", "anchors", "example"])
@pytest.mark.parametrize("edits", [
    [step(2), STARTED], [state("aborted")], [state("paused")], [step(3), state("completed")]],
    ids=["promote", "abort", "pause", "complete"])
def test_every_other_value_of_the_file_is_unchanged(text: str, edits: list[FieldEdit]) -> None:
    name = "chat-gpt4o-nov" if "chat-gpt4o-nov" in text else "chat-nov"
    after = edit_rollout_text(text, name, edits)
    before_docs, _ = parse_text("x.yaml", text)
    after_docs, diags = parse_text("x.yaml", after)
    assert diags == []
    expected = [d.data for d in before_docs]
    for doc in expected:
        if doc["kind"] == "Rollout" and doc["metadata"]["name"] == name:
            for e in edits:
                target = doc
                for key in e.path[:-1]:
                    target = target.setdefault(key, {})
                target[e.path[-1]] = e.value
    assert [d.data for d in after_docs] == expected
    # and the text outside the changed lines is byte for byte the same
    removed, added = changed(text, after)
    assert len(removed) <= len(edits) and len(added) <= len(edits) + 2
