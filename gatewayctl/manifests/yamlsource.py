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

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from gatewayctl.diagnostics import Diagnostic, Location, error
from gatewayctl.manifests.yamlscalars import resolve_scalar

MAX_DEPTH = 48
MAX_ALIAS_NODES = 100_000

# libyaml's event parser when PyYAML has it, else PyYAML's pure-Python one: the same events.
# The limits above are gatewayctl's own, applied to those events, whatever the parser.
FAST_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
PURE_LOADER: Any = yaml.SafeLoader

FieldPath = tuple[str | int, ...]

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
    """A problem after which the rest of the document cannot be read."""

    def __init__(self, diag: Diagnostic, mark: Any) -> None:
        self.diag = diag
        self.mark = mark


def _node_count(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(_node_count(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_node_count(v) for v in value)
    return 1


def _words(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "a boolean"
    for kind, words in ((dict, "a mapping"), (list, "a list"), (str, "a string")):
        if isinstance(value, kind):
            return words
    return "a number"


@dataclass
class _Open:
    """A mapping or sequence being built."""

    container: Any
    path: FieldPath
    anchor: str | None
    mark: Any
    merged: set[str] = field(default_factory=set)  # keys that came from `<<`, not written here
    has_merge: bool = False  # a `<<` was seen
    pending: tuple[str, Any] | None = None  # a mapping's key waiting for its value


class _Builder:
    """Builds plain values from parser events, one document at a time.

    It may parse a tail of the file: `first_line` (0-based) is where that tail starts in the
    file, and every position it records is a position in the whole file. Problems that leave
    the document readable (a duplicate key) are collected in `problems`; the others end the
    document with _Abort.
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
        self.problems: list[Diagnostic] = []
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
                doc.data = _DocumentBuilder(self, doc).build(events)
                self.docs.append(doc)
                doc_index += 1
        return self.docs


class _DocumentBuilder:
    """One document's values and positions, from its events."""

    def __init__(self, owner: _Builder, doc: SourceDocument) -> None:
        self.owner = owner
        self.doc = doc
        self.anchors: dict[str, Any] = {}
        self.anchor_sizes: dict[str, int] = {}
        self.anchor_paths: dict[int, FieldPath] = {}  # id(anchored mapping) -> where written
        self.alias_budget = MAX_ALIAS_NODES
        # Explicit stack instead of recursion: deep nesting must fail cleanly, not crash.
        self.stack: list[_Open] = []
        self.root: list[Any] = []

    def build(self, events: Any) -> Any:
        loc = self.owner.loc
        for ev in events:
            if isinstance(ev, yaml.ScalarEvent):
                plain = bool(ev.implicit[0]) and not ev.style
                if ev.tag == "tag:yaml.org,2002:str" or ev.tag == "!":
                    value: Any = ev.value
                elif ev.tag:
                    value = resolve_scalar(ev.value, True)
                else:
                    value = resolve_scalar(ev.value, plain)
                self.attach(value, ev.start_mark, ev.anchor)
            elif isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if len(self.stack) >= MAX_DEPTH:
                    raise _Abort(
                        error(
                            "GW005",
                            f"nesting deeper than {MAX_DEPTH} levels",
                            location=loc(ev.start_mark),
                            hint="manifests are shallow; this looks like generated or hostile "
                            "input",
                        ),
                        ev.start_mark,
                    )
                container: Any = {} if isinstance(ev, yaml.MappingStartEvent) else []
                self.stack.append(_Open(container, self.child_path(), ev.anchor, ev.start_mark))
            elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                done = self.stack.pop()
                if done.anchor and isinstance(done.container, dict):
                    self.anchor_paths[id(done.container)] = done.path
                self.attach(done.container, done.mark, done.anchor)
            elif isinstance(ev, yaml.AliasEvent):
                self.attach(self.alias(ev), ev.start_mark, None)
            elif isinstance(ev, yaml.DocumentEndEvent):
                break
        return self.root[0] if self.root else None

    def alias(self, ev: Any) -> Any:
        if ev.anchor not in self.anchors:
            raise _Abort(
                error(
                    "GW001",
                    f'unknown alias "*{ev.anchor}"',
                    location=self.owner.loc(ev.start_mark),
                    hint="define the anchor with &name before using it",
                ),
                ev.start_mark,
            )
        self.alias_budget -= self.anchor_sizes[ev.anchor]
        if self.alias_budget < 0:
            raise _Abort(
                error(
                    "GW003",
                    f"aliases expand to more than {MAX_ALIAS_NODES} values",
                    location=self.owner.loc(ev.start_mark),
                    hint="this is an alias bomb or a very repetitive file; "
                    "write the values out or split the file",
                ),
                ev.start_mark,
            )
        return self.anchors[ev.anchor]

    def child_path(self) -> FieldPath:
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.container, list):
            return (*top.path, len(top.container))
        return (*top.path, top.pending[0]) if top.pending else top.path

    def attach(self, value: Any, mark: Any, anchor: str | None) -> None:
        pos = self.owner.pos(mark)
        if anchor:
            self.anchors[anchor] = value
            self.anchor_sizes[anchor] = _node_count(value)
        if not self.stack:
            self.root.append(value)
            self.doc.values[()] = pos
            return
        top = self.stack[-1]
        if isinstance(top.container, list):
            fpath = (*top.path, len(top.container))
            top.container.append(value)
            self.doc.values.setdefault(fpath, pos)
            return
        if top.pending is None:
            if isinstance(value, (dict, list)):
                raise _Abort(
                    error(
                        "GW001",
                        "a mapping key must be a plain scalar",
                        location=self.owner.loc(mark),
                        field=_dotted(top.path),
                        hint="write the key as a plain string",
                    ),
                    mark,
                )
            top.pending = ("" if value is None else str(value), mark)
            return
        key, key_mark = top.pending
        top.pending = None
        fpath = (*top.path, key)
        if (key in top.container and key not in top.merged) or (key == "<<" and top.has_merge):
            self.duplicate(key, key_mark, fpath)
            return
        if key == "<<":
            top.has_merge = True
            self.doc.keys[fpath] = self.owner.pos(key_mark)
            self.merge(top, value, mark, fpath)
            return
        top.merged.discard(key)  # written here: it overrides a merged value
        top.container[key] = value
        self.doc.keys[fpath] = self.owner.pos(key_mark)
        self.doc.values[fpath] = pos

    def duplicate(self, key: str, key_mark: Any, fpath: FieldPath) -> None:
        first = self.doc.keys.get(fpath)
        self.owner.problems.append(
            error(
                "GW002",
                f'duplicate key "{key}"'
                + (f" (first defined on line {first[0]})" if first else ""),
                location=self.owner.loc(key_mark),
                field=_dotted(fpath),
                hint="remove one of the two; YAML would silently keep only the last",
            )
        )

    def merge(self, top: _Open, value: Any, mark: Any, fpath: FieldPath) -> None:
        """YAML's merge key: the keys of the merged mappings that this mapping does not write
        itself; of several mappings, the first that has a key gives it."""
        sources = value if isinstance(value, list) else [value]
        wrong = next((src for src in sources if not isinstance(src, dict)), None)
        if wrong is not None or not sources:
            got = _words(value)
            if isinstance(value, list) and sources:
                got = f"a list holding {_words(wrong)}"
            self.owner.problems.append(
                error(
                    "GW001",
                    f"a merge key (<<) takes a mapping or a list of mappings, got {got}",
                    location=self.owner.loc(mark),
                    field=_dotted(fpath),
                    hint="merge an anchored mapping: <<: *name, or several: <<: [*a, *b]",
                )
            )
            return
        for i, src in enumerate(sources):
            written = self.anchor_paths.get(id(src))
            if written is None:  # an inline mapping, written under this `<<`
                written = (*fpath, i) if isinstance(value, list) else fpath
            for k, v in src.items():
                if k in top.container:
                    continue
                top.container[k] = v
                top.merged.add(k)
                # Positions of a merged key: where the merged mapping writes it.
                for table in (self.doc.keys, self.doc.values):
                    hit = table.get((*written, k))
                    if hit is not None:
                        table[(*top.path, k)] = hit


def _dotted(fpath: FieldPath) -> str:
    out = ""
    for part in fpath:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


dotted = _dotted

# The start of a document: where reading resumes after a problem that ends a document.
_DOCUMENT_START = re.compile(r"^---(?=[ \t\r\n]|$)", re.M)


def _parser_depth_limit(exc: yaml.MarkedYAMLError) -> bool:
    """Whether the parser stopped at a nesting limit of its own. libyaml 0.2.6 (in PyYAML
    6.0.3+ wheels) stops at 1,000 levels, and its scanner reads up to 1,024 characters ahead
    on a line, so on a line of brackets it stops before gatewayctl's limit is reached."""
    problem = (exc.problem or "").lower()
    return "nesting" in problem or "depth" in problem


def parse_text(
    relpath: str, text: str, *, loader: Any = FAST_LOADER, lines: list[str] | None = None
) -> tuple[list[SourceDocument], list[Diagnostic]]:
    """Parse one file's text into its documents and the problems found.

    A problem that ends a document (a syntax error, a limit) does not end the file: reading
    resumes at the next `---` after it, so the documents after a broken one are still read
    (and references to them are not reported as dangling).
    """
    lines = text.splitlines() if lines is None else lines
    docs: list[SourceDocument] = []
    diags: list[Diagnostic] = []
    offset, first_line, use = 0, 0, loader
    while True:
        builder = _Builder(
            relpath,
            text[offset:],
            lines,
            first_line=first_line,
            first_index=len(docs),
            loader=use,
        )
        failure: Diagnostic | None = None
        stop: Any = None
        try:
            builder.run()
        except _Abort as abort:
            failure, stop = abort.diag, abort.mark
        except yaml.MarkedYAMLError as exc:
            if use is not PURE_LOADER and _parser_depth_limit(exc):
                # Again from the start of that document, with the parser that has no limit
                # of its own: gatewayctl's limit then decides, at the same place.
                docs += builder.docs
                diags += builder.problems
                offset += builder.doc_offset
                first_line = builder.doc_line
                use = PURE_LOADER
                continue
            failure, stop = _syntax_error(builder, exc), exc.problem_mark or exc.context_mark
        except yaml.YAMLError as exc:
            failure = error("GW001", f"YAML error: {exc}", location=Location(relpath, 1, 1))
        docs += builder.docs
        diags += builder.problems
        if failure is None:
            return docs, diags
        diags.append(failure)
        # From where the problem was noticed (that may be the next document's `---`), but past
        # the start of the broken document, so that reading always moves on.
        after = offset + (stop.index if stop is not None else builder.doc_offset)
        found = _DOCUMENT_START.search(text, max(after, offset + builder.doc_offset + 1))
        if found is None:
            return docs, diags
        first_line += text.count("\n", offset, found.start())
        offset, use = found.start(), loader


def _syntax_error(builder: _Builder, exc: yaml.MarkedYAMLError) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    loc = builder.loc(mark) if mark is not None else Location(builder.relpath, 1, 1)
    problem = exc.problem or exc.context or "invalid YAML"
    # Where the structure that broke began ("while parsing a flow mapping"): the line the
    # mistake usually is on, when the problem is only noticed lines later.
    start = exc.context_mark
    if (
        exc.problem
        and exc.context
        and start is not None
        and (mark is None or (start.line, start.column) != (mark.line, mark.column))
    ):
        line, column = builder.pos(start)
        problem += f" ({exc.context} that started at line {line}, column {column})"
    if _tab_at(builder, mark):
        # libyaml says only "found character that cannot start any token"; the character is
        # what the user needs to know (an editor that indents with tabs).
        return error(
            "GW001",
            "YAML syntax error: a tab character, where YAML allows only spaces",
            location=loc,
            hint="YAML indents and separates with spaces, never tabs: replace the tab with "
            "spaces (and set the editor to insert spaces in YAML files)",
        )
    misplaced = _misindented(builder, mark) if exc.problem in _INDENT_PROBLEMS else None
    if exc.problem == "did not find expected '-' indicator" and start is not None:
        misplaced = _misaligned_item(builder, mark, start)
    if misplaced is not None:
        return error("GW001", f"YAML syntax error: {misplaced[0]}", location=loc,
                     hint=misplaced[1])
    return error(
        "GW001",
        f"YAML syntax error: {problem}",
        location=loc,
        hint="check indentation and quoting around this position",
    )


# What libyaml says when a key is indented as no mapping above it is: one space too many
# after a scalar value, or a column between two levels.
_INDENT_PROBLEMS = frozenset({
    "mapping values are not allowed in this context",
    "did not find expected key",
    "could not find expected ':'",
})
_KEY_LINE = re.compile(r"( *)(- +)?([^\s#'\"\-{\[][^:#]*?|\"[^\"]*\"|'[^']*') *:(?:\s|$)")


def _misindented(builder: _Builder, mark: Any) -> tuple[str, str] | None:
    """(message, hint) when the line the parser stopped on is a key whose indentation lines
    up with no mapping open above it; None otherwise (libyaml's words stand)."""
    if mark is None:
        return None
    line, _ = builder.pos(mark)
    if not 0 < line <= len(builder.lines):
        return None
    here = _KEY_LINE.match(builder.lines[line - 1])
    if here is None or here.group(2):
        return None
    indent = len(here.group(1))
    # The mappings open at that line: walking up, each key less indented than every key
    # below it (a `- key:` item opens its mapping at the key's column, its list at the dash).
    levels: list[tuple[int, str, int]] = []  # (indentation, key, 1-based line)
    deepest = 1 << 30
    for number in range(line - 1, builder.doc_line, -1):
        key = _KEY_LINE.match(builder.lines[number - 1])
        if key is None:
            continue
        column = len(key.group(1)) + len(key.group(2) or "")
        if column < deepest:
            levels.append((column, key.group(3).strip(), number))
            deepest = column
        if key.group(2):
            deepest = min(deepest, len(key.group(1)))
        if deepest == 0:
            break
    if not levels or any(column == indent for column, _, _ in levels):
        return None
    # the nearest level on each side: one of them is where the key belongs
    near = ([lv for lv in levels if lv[0] > indent][-1:]
            + [lv for lv in levels if lv[0] < indent][:1])
    ways = [f"by {_spaces(column) if not i else column} as `{key}` (line {number})"
            for i, (column, key, number) in enumerate(near)]
    choice = ", whichever mapping it belongs to" if len(ways) > 1 else ""
    return (f"line {line} is indented {_spaces(indent)}, which lines up with no key above it",
            f"YAML nests by indentation: indent it {', or '.join(ways)}{choice}")


def _misaligned_item(builder: _Builder, mark: Any, start: Any) -> tuple[str, str] | None:
    """(message, hint) when the parser stopped on a list item whose `-` is not in the column
    of the list's first item (`start`, where libyaml says the list began)."""
    line, column = builder.pos(mark)
    first_line, first_column = builder.pos(start)
    if not 0 < line <= len(builder.lines) or column == first_column:
        return None
    if not builder.lines[line - 1].lstrip(" ").startswith("-"):
        return None
    return (f"the `-` on line {line} is indented {_spaces(column - 1)}, the list's first item "
            f"(line {first_line}) {first_column - 1}",
            f"align the items of a list: indent this `-` by {_spaces(first_column - 1)}, as "
            f"on line {first_line}")


def _spaces(n: int) -> str:
    return f"{n} space" + ("" if n == 1 else "s")


def _tab_at(builder: _Builder, mark: Any) -> bool:
    """Whether the parser stopped at a tab character."""
    if mark is None:
        return False
    line, column = builder.pos(mark)
    if not 0 < line <= len(builder.lines):
        return False
    text = builder.lines[line - 1]
    return 0 < column <= len(text) and text[column - 1] == "\t"
