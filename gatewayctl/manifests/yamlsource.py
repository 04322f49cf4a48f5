"""Reading YAML manifest files into plain values with the position of every key and value.

Validation reads many files and must be fast, so this uses libyaml's event parser (PyYAML's
C binding) and builds values directly from the events in one pass: that keeps positions,
rejects duplicate keys, bounds alias expansion and nesting depth before anything can blow up,
and costs a fraction of ruamel.yaml's round-trip loader. The limits are gatewayctl's own and
apply to the events, so they hold, with the same message and position, whatever the PyYAML or
libyaml version (where libyaml stops first at a limit of its own, the document is read again
with PyYAML's pure-Python parser, which has none). (ruamel.yaml is used where a file is
rewritten in place keeping its comments: see gatewayctl/rollout/edit.py.)

Scalars are resolved with the YAML 1.2 core schema: only true/false are booleans, so `on`,
`yes` and `no` stay strings, and dates stay strings until a model field parses them.

This module must not know about manifest kinds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from gatewayctl.diagnostics import Diagnostic, Location, error

MAX_DEPTH = 48
MAX_ALIAS_NODES = 100_000

# libyaml's event parser when PyYAML has it, else PyYAML's pure-Python one: the same events.
# The limits above are gatewayctl's own, applied to those events, whatever the parser.
FAST_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
PURE_LOADER: Any = yaml.SafeLoader

FieldPath = tuple[str | int, ...]

_INT_RE = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$")
_OCT_RE = re.compile(r"^0o[0-7]+$")
_HEX_RE = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT_RE = re.compile(r"^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_INF = frozenset({".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"})
_NINF = frozenset({"-.inf", "-.Inf", "-.INF"})
_NAN = frozenset({".nan", ".NaN", ".NAN"})


@dataclass
class SourceDocument:
    """One YAML document: its plain value and where each part of it came from."""

    path: str  # relative to the manifest root, POSIX separators
    index: int  # 0-based document number within the file
    data: Any
    line: int  # 1-based line of the document start
    values: dict[FieldPath, tuple[int, int]] = field(default_factory=dict)
    keys: dict[FieldPath, tuple[int, int]] = field(default_factory=dict)
    text_lines: list[str] = field(default_factory=list, repr=False)

    def location(self, fpath: FieldPath, *, key: bool = False) -> Location:
        """The location of a field, or of its closest existing parent."""
        table = self.keys if key else self.values
        probe = fpath
        while probe:
            hit = table.get(probe) or self.values.get(probe)
            if hit:
                return Location(self.path, hit[0], hit[1])
            probe = probe[:-1]
        if self.keys:  # the document itself: point at its first key, not at the "---"
            line, col = min(self.keys.values())
            return Location(self.path, line, col)
        return Location(self.path, self.line, 1)


class _Abort(Exception):
    def __init__(self, diag: Diagnostic) -> None:
        self.diag = diag


def resolve_scalar(value: str, plain: bool) -> Any:
    if not plain:
        return value
    if value in _NULLS:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if _INT_RE.match(value):
        return int(value.replace("_", ""))
    if _OCT_RE.match(value):
        return int(value[2:], 8)
    if _HEX_RE.match(value):
        return int(value[2:], 16)
    if _FLOAT_RE.match(value) and any(c.isdigit() for c in value):
        return float(value.replace("_", ""))
    if value in _INF:
        return math.inf
    if value in _NINF:
        return -math.inf
    if value in _NAN:
        return math.nan
    return value


def _node_count(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(_node_count(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_node_count(v) for v in value)
    return 1


class _Builder:
    """Builds plain values from parser events, one document at a time.

    It may parse a tail of the file: `first_line` (0-based) is where that tail starts in the
    file, and every position it records is a position in the whole file.
    """

    def __init__(
        self,
        relpath: str,
        text: str,
        lines: list[str],
        *,
        first_line: int = 0,
        first_index: int = 0,
        loader: Any = FAST_LOADER,
    ) -> None:
        self.relpath = relpath
        self.text = text
        self.lines = lines
        self.first_line = first_line
        self.first_index = first_index
        self.loader = loader
        self.docs: list[SourceDocument] = []
        # Where the document being built starts: 0-based line in the file, and the index in
        # `text` of that line's first character.
        self.doc_line = first_line
        self.doc_offset = 0

    def pos(self, mark: Any) -> tuple[int, int]:
        return mark.line + 1 + self.first_line, mark.column + 1

    def loc(self, mark: Any) -> Location:
        return Location(self.relpath, *self.pos(mark))

    def run(self) -> list[SourceDocument]:
        events = yaml.parse(self.text, Loader=self.loader)
        doc_index = self.first_index
        for ev in events:
            if isinstance(ev, yaml.DocumentStartEvent):
                mark: Any = ev.start_mark  # parser events always carry their marks
                self.doc_line = mark.line + self.first_line
                self.doc_offset = mark.index - mark.column
                start_line = self.doc_line + 1
                doc = SourceDocument(
                    self.relpath, doc_index, None, start_line, text_lines=self.lines
                )
                doc.data = self._document(events, doc)
                self.docs.append(doc)
                doc_index += 1
        return self.docs

    def _document(self, events: Any, doc: SourceDocument) -> Any:
        anchors: dict[str, Any] = {}
        anchor_sizes: dict[str, int] = {}
        alias_budget = [MAX_ALIAS_NODES]
        # Explicit stack instead of recursion: deep nesting must fail cleanly, not crash.
        stack: list[tuple[Any, FieldPath, str | None, Any]] = []
        pending_key: list[tuple[str, Any] | None] = []
        root: list[Any] = []

        def attach(value: Any, mark: Any, anchor: str | None) -> None:
            if anchor:
                anchors[anchor] = value
                anchor_sizes[anchor] = _node_count(value)
            if not stack:
                root.append(value)
                doc.values[()] = self.pos(mark)
                return
            container, cpath, _, _ = stack[-1]
            if isinstance(container, list):
                fpath = (*cpath, len(container))
                container.append(value)
                doc.values.setdefault(fpath, self.pos(mark))
                return
            key_info = pending_key[-1]
            if key_info is None:
                if isinstance(value, (dict, list)):
                    raise _Abort(
                        error(
                            "GW001",
                            "a mapping key must be a plain scalar",
                            location=self.loc(mark),
                            field=_dotted(cpath),
                            hint="write the key as a plain string",
                        )
                    )
                pending_key[-1] = ("" if value is None else str(value), mark)
                return
            key, key_mark = key_info
            pending_key[-1] = None
            fpath = (*cpath, key)
            if key == "<<" and isinstance(value, (dict, list)):
                for src in value if isinstance(value, list) else [value]:
                    if isinstance(src, dict):
                        for k, v in src.items():
                            container.setdefault(k, v)
                return
            if key in container:
                first = doc.keys.get(fpath)
                raise _Abort(
                    error(
                        "GW002",
                        f'duplicate key "{key}"'
                        + (f" (first defined on line {first[0]})" if first else ""),
                        location=self.loc(key_mark),
                        field=_dotted(fpath),
                        hint="remove one of the two; YAML would silently keep only the last",
                    )
                )
            container[key] = value
            doc.keys[fpath] = self.pos(key_mark)
            doc.values[fpath] = self.pos(mark)

        def child_path() -> FieldPath:
            if not stack:
                return ()
            container, cpath, _, _ = stack[-1]
            if isinstance(container, list):
                return (*cpath, len(container))
            key_info = pending_key[-1]
            return (*cpath, key_info[0]) if key_info else cpath

        for ev in events:
            if isinstance(ev, yaml.ScalarEvent):
                plain = bool(ev.implicit[0]) and not ev.style
                if ev.tag == "tag:yaml.org,2002:str" or ev.tag == "!":
                    value: Any = ev.value
                elif ev.tag:
                    value = resolve_scalar(ev.value, True)
                else:
                    value = resolve_scalar(ev.value, plain)
                attach(value, ev.start_mark, ev.anchor)
            elif isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if len(stack) >= MAX_DEPTH:
                    raise _Abort(
                        error(
                            "GW005",
                            f"nesting deeper than {MAX_DEPTH} levels",
                            location=self.loc(ev.start_mark),
                            hint="manifests are shallow; this looks like generated or hostile "
                            "input",
                        )
                    )
                container: Any = {} if isinstance(ev, yaml.MappingStartEvent) else []
                stack.append((container, child_path(), ev.anchor, ev.start_mark))
                pending_key.append(None)
            elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                container, _, anchor, mark = stack.pop()
                pending_key.pop()
                attach(container, mark, anchor)
            elif isinstance(ev, yaml.AliasEvent):
                if ev.anchor not in anchors:
                    raise _Abort(
                        error(
                            "GW001",
                            f'unknown alias "*{ev.anchor}"',
                            location=self.loc(ev.start_mark),
                            hint="define the anchor with &name before using it",
                        )
                    )
                alias_budget[0] -= anchor_sizes[ev.anchor]
                if alias_budget[0] < 0:
                    raise _Abort(
                        error(
                            "GW003",
                            f"aliases expand to more than {MAX_ALIAS_NODES} values",
                            location=self.loc(ev.start_mark),
                            hint="this is an alias bomb or a very repetitive file; "
                            "write the values out or split the file",
                        )
                    )
                attach(anchors[ev.anchor], ev.start_mark, None)
            elif isinstance(ev, yaml.DocumentEndEvent):
                break
        return root[0] if root else None


def _dotted(fpath: FieldPath) -> str:
    out = ""
    for part in fpath:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


dotted = _dotted


def _parser_depth_limit(exc: yaml.MarkedYAMLError) -> bool:
    """Whether the parser stopped at a nesting limit of its own. libyaml 0.2.6 (in PyYAML
    6.0.3+ wheels) stops at 1,000 levels, and its scanner reads up to 1,024 characters ahead
    on a line, so on a line of brackets it stops before gatewayctl's limit is reached."""
    problem = (exc.problem or "").lower()
    return "nesting" in problem or "depth" in problem


def parse_text(
    relpath: str, text: str, *, loader: Any = FAST_LOADER
) -> tuple[list[SourceDocument], list[Diagnostic]]:
    """Parse one file's text. On a fatal problem, returns the documents before it and the error."""
    lines = text.splitlines()
    builder = _Builder(relpath, text, lines, loader=loader)
    try:
        return builder.run(), []
    except _Abort as abort:
        return builder.docs, [abort.diag]
    except yaml.MarkedYAMLError as exc:
        if loader is not PURE_LOADER and _parser_depth_limit(exc):
            # Again from the start of that document, with the parser that has no limit of
            # its own: gatewayctl's limit then decides, at the same place. Hostile input only.
            tail = _Builder(
                relpath,
                text[builder.doc_offset :],
                lines,
                first_line=builder.doc_line,
                first_index=len(builder.docs),
                loader=PURE_LOADER,
            )
            try:
                tail_docs, diags = tail.run(), []
            except _Abort as abort:
                tail_docs, diags = tail.docs, [abort.diag]
            except yaml.MarkedYAMLError as again:
                tail_docs, diags = tail.docs, [_syntax_error(tail, again)]
            return builder.docs + tail_docs, diags
        return builder.docs, [_syntax_error(builder, exc)]
    except yaml.YAMLError as exc:
        return builder.docs, [
            error("GW001", f"YAML error: {exc}", location=Location(relpath, 1, 1))
        ]


def _syntax_error(builder: _Builder, exc: yaml.MarkedYAMLError) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    loc = builder.loc(mark) if mark is not None else Location(builder.relpath, 1, 1)
    problem = exc.problem or exc.context or "invalid YAML"
    return error(
        "GW001",
        f"YAML syntax error: {problem}",
        location=loc,
        hint="check indentation and quoting around this position",
    )
