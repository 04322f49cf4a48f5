"""In-place edits of a Rollout manifest: change a few values, leave every other byte alone.

The only importer of ruamel.yaml. ruamel's round-trip *parser* finds each node with its exact
character range (the scanner's tokens give the scalar itself, without its anchor or tag); the
new values are then spliced into the original text. Dumping ruamel's round-trip tree instead
re-indents the whole file, mixes CRLF and LF, drops `...` and anchors on edited scalars,
re-spaces flow collections and moves comments (all seen with ruamel.yaml 0.19 on a manifest with
4-space indentation and CRLF line ends), so it cannot promise "the diff is only the changed
values". Splicing can: comments, key order, quoting, indentation, flow or block style, anchors,
aliases, line ends and a byte-order mark all stay as they were.

Rules for a changed value:
- a scalar keeps its quoting style when the new value can be written in it; a plain scalar
  whose new text would read as another type (a timestamp, `yes`, a number for a string) is
  double-quoted;
- an alias (`step: *x`) is replaced by the value, so the anchored node and its other users are
  untouched; an anchored scalar that something else aliases is refused, since changing it would
  change those too;
- a missing key is added after a named sibling (on its own line, at the sibling's
  indentation) or, in a flow mapping, after the last entry; a missing mapping on the way is
  added with the file's indentation step.

Owns text edits only: no manifest semantics (see `steps.py`), no file discovery.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gatewayctl.atomic import write_atomic
from gatewayctl.errors import GatewayctlError

Value = int | str
NodeKind = Literal["scalar", "map", "seq", "alias"]

_PLAIN_SAFE = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_RESERVED_WORDS = frozenset(
    w.lower() for w in ("y", "n", "yes", "no", "on", "off", "true", "false", "null", "~")
)


class EditError(GatewayctlError):
    """The manifest cannot be edited in place as asked; nothing was written."""


@dataclass(frozen=True)
class FieldEdit:
    """Set the value at `path` (mapping keys from the document root).

    A missing key is inserted after the first of the sibling keys `after` that exists (for a
    missing mapping on the way, `after` names siblings of that mapping), else after the last
    entry of its mapping.
    """

    path: tuple[str, ...]
    value: Value
    after: tuple[str, ...] = ()


@dataclass
class _Node:
    kind: NodeKind
    start: int  # the node's own text (for a scalar: the scalar token, not its anchor or tag)
    end: int
    line: int = 0
    column: int = 0
    flow: bool = False
    style: str | None = None  # scalar: None (plain), "'", '"', "|", ">"
    value: str | None = None
    anchor: str | None = None
    pairs: list[tuple[_Node, _Node]] = field(default_factory=list)
    items: list[_Node] = field(default_factory=list)

    def get(self, key: str) -> _Node | None:
        for k, v in self.pairs:
            if k.kind == "scalar" and k.value == key:
                return v
        return None


@dataclass(frozen=True)
class _Parsed:
    documents: list[_Node]
    aliases: frozenset[str]


@dataclass(frozen=True)
class Splice:
    start: int
    end: int
    text: str


# --- parsing -----------------------------------------------------------------------------------


def _parse(text: str) -> _Parsed:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.events import (
        AliasEvent,
        DocumentEndEvent,
        DocumentStartEvent,
        MappingEndEvent,
        MappingStartEvent,
        ScalarEvent,
        SequenceEndEvent,
        SequenceStartEvent,
    )
    from ruamel.yaml.tokens import ScalarToken

    yaml = YAML(typ="rt")
    try:
        token_start = {
            t.end_mark.index: t.start_mark for t in yaml.scan(text) if isinstance(t, ScalarToken)
        }
        events = list(yaml.parse(text))
    except YAMLError as exc:
        raise EditError(f"cannot parse the file as YAML: {exc}") from None

    docs: list[_Node] = []
    aliases: set[str] = set()
    stack: list[_Node] = []
    pending_key: list[_Node | None] = []
    root: list[_Node | None] = [None]

    def attach(node: _Node) -> None:
        if not stack:
            root[0] = node
            return
        parent = stack[-1]
        if parent.kind == "seq":
            parent.items.append(node)
        elif pending_key[-1] is None:
            pending_key[-1] = node
        else:
            key = pending_key[-1]
            assert key is not None
            parent.pairs.append((key, node))
            pending_key[-1] = None

    for ev in events:
        mark: Any = getattr(ev, "start_mark", None)
        if isinstance(ev, DocumentStartEvent):
            root[0] = None
        elif isinstance(ev, DocumentEndEvent):
            if root[0] is not None:
                docs.append(root[0])
            else:
                docs.append(_Node("scalar", mark.index, mark.index, value=""))
        elif isinstance(ev, ScalarEvent):
            own = token_start.get(ev.end_mark.index, ev.start_mark)
            attach(_Node("scalar", own.index, ev.end_mark.index, own.line, own.column,
                         style=ev.style, value=ev.value, anchor=ev.anchor))
        elif isinstance(ev, AliasEvent):
            aliases.add(str(ev.anchor))
            attach(_Node("alias", mark.index, ev.end_mark.index, mark.line, mark.column,
                         value=str(ev.anchor)))
        elif isinstance(ev, (MappingStartEvent, SequenceStartEvent)):
            kind: NodeKind = "map" if isinstance(ev, MappingStartEvent) else "seq"
            node = _Node(kind, mark.index, mark.index, mark.line, mark.column,
                         flow=bool(ev.flow_style), anchor=ev.anchor)
            attach(node)
            stack.append(node)
            pending_key.append(None)
        elif isinstance(ev, (MappingEndEvent, SequenceEndEvent)):
            node = stack.pop()
            pending_key.pop()
            node.end = ev.end_mark.index
    return _Parsed(docs, frozenset(aliases))


# --- formatting --------------------------------------------------------------------------------


def _plain_ok(value: str) -> bool:
    return bool(_PLAIN_SAFE.match(value)) and value.lower() not in _RESERVED_WORDS


def _double_quoted(value: str) -> str:
    out = value.replace("\\", "\\\\").replace('"', '\\"')
    out = out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{out}"'


def format_scalar(value: Value, style: str | None = None) -> str:
    """The YAML text of a value, in `style` when it can be written that way."""
    if isinstance(value, bool):
        raise EditError("booleans are not edited in place")
    if isinstance(value, int):
        return str(value)
    if style == "'" and "\n" not in value:
        return "'" + value.replace("'", "''") + "'"
    if style is None and _plain_ok(value):
        return value
    return _double_quoted(value)


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _indent_step(doc: _Node) -> int:
    """The file's indentation step: how far a nested block mapping sits from its parent key."""
    for key, value in doc.pairs:
        if value.kind == "map" and not value.flow and value.pairs:
            step = value.pairs[0][0].column - key.column
            if step > 0:
                return step
    return 2


def _line_end(text: str, pos: int) -> int:
    """The index of the line break that ends the line holding `pos` (or the text's end)."""
    nl = text.find("\n", pos)
    if nl == -1:
        return len(text)
    return nl - 1 if nl > 0 and text[nl - 1] == "\r" else nl


def _content_end(node: _Node) -> int:
    """Where the node's last character is; block collections end at their last descendant."""
    if node.kind == "map" and not node.flow and node.pairs:
        return _content_end(node.pairs[-1][1])
    if node.kind == "seq" and not node.flow and node.items:
        return _content_end(node.items[-1])
    if node.kind == "scalar" and node.style in ("|", ">"):
        return node.end - 1
    return node.end


def _new_entry(key: str, rest: list[str], value: Value, *, block: bool, column: int, step: int,
               nl: str) -> str:
    """`key: value`, or `key:` with the missing mappings of `rest` nested under it."""
    head = format_scalar(key)
    if not rest:
        return f"{head}: {format_scalar(value)}"
    if block:
        inner = _new_entry(rest[0], rest[1:], value, block=True, column=column + step,
                           step=step, nl=nl)
        return f"{head}:{nl}{' ' * (column + step)}{inner}"
    inner = _new_entry(rest[0], rest[1:], value, block=False, column=0, step=step, nl=nl)
    return f"{head}: {{{inner}}}"


def _insert(text: str, mapping: _Node, path: list[str], value: Value, after: tuple[str, ...],
            step: int) -> Splice:
    nl = _newline(text)
    if mapping.flow:
        entry = _new_entry(path[0], path[1:], value, block=False, column=0, step=step, nl=nl)
        if not mapping.pairs:
            return Splice(mapping.start + 1, mapping.start + 1, entry)
        last = mapping.pairs[-1][1]
        return Splice(last.end, last.end, f", {entry}")
    first_key = mapping.pairs[0][0]
    column = first_key.column
    entry = _new_entry(path[0], path[1:], value, block=True, column=column, step=step, nl=nl)
    sibling = next((v for v in map(mapping.get, after) if v is not None), mapping.pairs[-1][1])
    pos = _line_end(text, max(_content_end(sibling) - 1, sibling.start))
    return Splice(pos, pos, f"{nl}{' ' * column}{entry}")


def _replace(text: str, node: _Node, value: Value, aliased: frozenset[str],
             where: str) -> Splice | None:
    if node.kind == "alias":
        return Splice(node.start, node.end, format_scalar(value))
    if node.kind != "scalar":
        raise EditError(f"{where} is a {'mapping' if node.kind == 'map' else 'list'}, "
                        "not a single value", "fix the manifest by hand")
    if node.anchor is not None and node.anchor in aliased:
        raise EditError(
            f"{where} is anchored as &{node.anchor} and aliased elsewhere; changing it would "
            "change those values too",
            f"write the value of {where} out instead of sharing it through an anchor",
        )
    current: Value = node.value or ""
    if isinstance(value, int) and node.style is None and node.value is not None:
        with contextlib.suppress(ValueError):
            current = int(node.value)
    if current == value:
        return None
    if node.style in ("|", ">"):  # the block scalar's own text ends before its last line break
        return Splice(node.start, _line_end(text, node.end - 1), format_scalar(value, '"'))
    return Splice(node.start, node.end, format_scalar(value, node.style))


def _plan_edit(text: str, doc: _Node, edit: FieldEdit, aliased: frozenset[str],
               step: int) -> Splice | None:
    node = doc
    for depth, key in enumerate(edit.path):
        where = ".".join(edit.path[: depth + 1])
        if node.kind != "map":
            raise EditError(f"{'.'.join(edit.path[:depth]) or 'the document'} is not a mapping")
        child = node.get(key)
        if child is None:
            rest = list(edit.path[depth:])
            return _insert(text, node, rest, edit.value, edit.after, step)
        if depth == len(edit.path) - 1:
            return _replace(text, child, edit.value, aliased, where)
        if child.kind == "alias":
            raise EditError(f"{where} is an alias (*{child.value}); it cannot be edited in place",
                            "write the mapping out instead of sharing it through an anchor")
        if child.anchor is not None and child.anchor in aliased:
            raise EditError(
                f"{where} is anchored as &{child.anchor} and aliased elsewhere; changing it "
                "would change those too",
                f"write {where} out instead of sharing it through an anchor")
        node = child
    return None


# --- public API --------------------------------------------------------------------------------


def _is_rollout(doc: _Node, name: str) -> bool:
    if doc.kind != "map":
        return False
    kind = doc.get("kind")
    meta = doc.get("metadata")
    if kind is None or kind.value != "Rollout" or meta is None or meta.kind != "map":
        return False
    found = meta.get("name")
    return found is not None and found.value == name


def edit_rollout_text(text: str, name: str, edits: Sequence[FieldEdit]) -> str:
    """The text with the Rollout `name`'s fields set; identical text when nothing changes."""
    matches = [d for d in _parse(text).documents if _is_rollout(d, name)]
    if not matches:
        raise EditError(f"no Rollout named {name} in this file")
    if len(matches) > 1:
        raise EditError(f"{len(matches)} Rollouts named {name} in one file",
                        "rollout names must be unique; run gatewayctl validate")
    # One edit at a time, each on the text the previous one left, so that an edit can place a
    # new key after a key an earlier edit added.
    new = text
    for edit in edits:
        parsed = _parse(new)
        doc = next(d for d in parsed.documents if _is_rollout(d, name))
        splice = _plan_edit(new, doc, edit, parsed.aliases, _indent_step(doc))
        if splice is not None:
            new = new[: splice.start] + splice.text + new[splice.end:]
    if new != text:
        check = [d for d in _parse(new).documents if _is_rollout(d, name)]
        if len(check) != 1:
            raise EditError("the edited text no longer holds the rollout; nothing was written")
    return new


@dataclass(frozen=True)
class FileEdit:
    path: Path
    before: str  # decoded text, without a byte-order mark
    after: str
    bom: bool

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def encoded(self) -> bytes:
        return ("\ufeff" if self.bom else "").encode("utf-8") + self.after.encode("utf-8")


def read_text(path: Path) -> tuple[str, bool]:
    """The file's text (newlines untouched) and whether it began with a byte-order mark."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EditError(f"{path} is not valid UTF-8") from None
    bom = text.startswith("\ufeff")
    return (text[1:] if bom else text), bom


def prepare_file_edit(path: Path, name: str, edits: Sequence[FieldEdit]) -> FileEdit:
    text, bom = read_text(path)
    return FileEdit(path, text, edit_rollout_text(text, name, edits), bom)


def write_file_edit(edit: FileEdit) -> None:
    """Replace the file atomically (a temporary file renamed over it), keeping its mode."""
    if edit.changed:
        write_atomic(edit.path.resolve(), edit.encoded())
