"""Output deny patterns as one byte-level DFA that finds a match anywhere in a text.

The output guardrails (render/envoy/lua/outguard.lua) match what a model returns inside the
body filter, chunk by chunk, without yielding to Envoy (a Lua `httpCall` made while a stream's
chunks are read ends streaming): so the patterns cannot go to Envoy's RE2 there. They are
compiled here, at render time, into one deterministic automaton over bytes whose state is kept
across chunks, so a phrase split between two chunks is still found.

The automaton has the semantics Envoy's RE2 has where the request guardrails use it (measured
on Envoy 1.40 through the RBAC filter, docs/data-plane.md): the text and the pattern are bytes,
one character per byte (RE2's Latin-1 mode), so `.` is one byte other than a newline, `[^a]`
any byte but `a`, and a non-ASCII letter in a pattern is the sequence of its UTF-8 bytes.
Only the part of RE2's syntax whose meaning is plain is compiled: literals, classes (`\\d`
`\\s` `\\w` as RE2 defines them, ASCII), `.` (any byte with `(?s)`), groups, alternation,
`* + ? {m,n}` (lazy forms too: for finding a match they are the same), `(?i)` on ASCII letters,
and `^`/`$` (`\\A`) at the start and end of the text. The pattern is read by Python's own
parser of that syntax (`re._parser`), as RE2 reads it; what this compiler cannot express the
way RE2 does (`\\b`, `(?m)`, a non-ASCII letter under `(?i)`, ...) is refused with a hint
(`compile_problem`), as is an automaton past MAX_STATES. That Envoy's RE2 and this automaton
agree is checked by a differential test (tests/outguard/test_envoy.py).

Table layout (what outguard.lua walks): bytes map to classes (`classes[b + 1]`, 1-based
class numbers); a state is its row's offset `id * width` in `next`, so one step is
`s = next[s + classes[b + 1]]`. State 0 is the match (absorbing: the walk can stop), `start`
is the state before any byte, `idle` the state in which no match is in progress (a new match
may only begin), and `ends` the states in which the text matches if it ends there (`$`).
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# A bound on the automaton of one route's patterns: its table is in the Lua filter's data.
MAX_STATES = 2_000
# A bound on the intermediate automaton (`{m,n}` repeats copies of its body).
MAX_NFA_STATES = 50_000
MAX_BYTE = 0xFF


class Unsupported(ValueError):
    """A pattern this compiler cannot turn into the automaton; `hint` says what to write."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Dfa:
    """The compiled automaton, in the layout outguard.lua reads (see the module docstring)."""

    width: int
    classes: tuple[int, ...]
    next: tuple[int, ...]
    start: int
    idle: int
    ends: tuple[int, ...]

    @property
    def states(self) -> int:
        return len(self.next) // self.width

    def to_data(self) -> dict[str, object]:
        return {"width": self.width, "classes": list(self.classes), "next": list(self.next),
                "start": self.start, "idle": self.idle, "ends": list(self.ends)}

    def step(self, state: int, data: bytes) -> int:
        """The table walk outguard.lua does, in Python (tests, explain)."""
        for b in data:
            if state == 0:
                return 0
            state = self.next[state + self.classes[b] - 1]
        return state

    def search(self, text: bytes) -> bool:
        """Whether a pattern matches somewhere in the whole text."""
        state = self.step(self.start, text)
        return state == 0 or state in self.ends


# Byte sets: sorted, disjoint, inclusive (lo, hi) ranges ---------------------

Ranges = list[tuple[int, int]]

_DIGIT: Ranges = [(0x30, 0x39)]
_SPACE: Ranges = [(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)]  # RE2: [\t\n\f\r ]
_WORD: Ranges = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]


def _normalise(ranges: Iterable[tuple[int, int]]) -> Ranges:
    out: Ranges = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _negate(ranges: Ranges) -> Ranges:
    out: Ranges = []
    prev = 0
    for lo, hi in _normalise(ranges):
        if lo > prev:
            out.append((prev, lo - 1))
        prev = hi + 1
    if prev <= MAX_BYTE:
        out.append((prev, MAX_BYTE))
    return out


def _fold(ranges: Ranges, where: str) -> Ranges:
    """The set under (?i): ASCII letters with their other case; a cased byte above ASCII is
    refused (whether RE2 folds it depends on the build: not compiled here)."""
    out = list(ranges)
    for lo, hi in ranges:
        for c in range(lo, hi + 1):
            ch = chr(c)
            if c >= 0x80 and (ch.lower() != ch or ch.upper() != ch):
                raise Unsupported(
                    f"{where}: a non-ASCII letter under (?i) is not supported",
                    "spell both cases out, e.g. (é|É), or drop (?i) around that part")
            if ch.isalpha() and c < 0x80:
                out.append((ord(ch.lower()), ord(ch.lower())))
                out.append((ord(ch.upper()), ord(ch.upper())))
    return _normalise(out)


# The automaton with empty moves ------------------------------------------------------------


class _Nfa:
    def __init__(self) -> None:
        self.eps: list[list[int]] = []
        self.edges: list[list[tuple[int, int, int]]] = []
        self.bol: list[list[int]] = []  # empty moves allowed at the start of the text only
        self.eol: list[list[int]] = []  # empty moves allowed at the end of the text only

    def new(self) -> int:
        if len(self.eps) >= MAX_NFA_STATES:
            raise Unsupported("output deny pattern: too large for the automaton",
                              "use smaller repeat counts ({m,n}) or split the pattern")
        self.eps.append([])
        self.edges.append([])
        self.bol.append([])
        self.eol.append([])
        return len(self.eps) - 1

    def charset(self, ranges: Ranges, a: int, b: int) -> None:
        """Moves from a to b over any byte in ranges."""
        for lo, hi in ranges:
            self.edges[a].append((lo, hi, b))


_I, _S, _M, _X = re.IGNORECASE, re.DOTALL, re.MULTILINE, re.VERBOSE


def _compile_items(nfa: _Nfa, items: Sequence[tuple[Any, Any]], flags: int,
                   a: int, b: int, where: str) -> None:
    cur = a
    for n, (op, av) in enumerate(items):
        nxt = b if n == len(items) - 1 else nfa.new()
        _compile_item(nfa, str(op), av, flags, cur, nxt, where)
        cur = nxt
    if not items:
        nfa.eps[a].append(b)


def _class_ranges(items: Sequence[tuple[Any, Any]], where: str) -> Ranges:
    ranges: Ranges = []
    negate = False
    for op, av in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            ranges.append((int(av), int(av)))
        elif name == "RANGE":
            lo, hi = av
            ranges.append((lo, hi))
        elif name == "CATEGORY":
            ranges.extend(_category(str(av), where))
        else:
            raise Unsupported(f"{where}: {name} inside a class is not supported",
                              "use literal characters, ranges and \\d \\s \\w in classes")
    return _negate(ranges) if negate else _normalise(ranges)


def _category(name: str, where: str) -> Ranges:
    table = {"CATEGORY_DIGIT": _DIGIT, "CATEGORY_SPACE": _SPACE, "CATEGORY_WORD": _WORD}
    if name in table:
        return list(table[name])
    if name.startswith("CATEGORY_NOT_") and "CATEGORY_" + name[13:] in table:
        return _negate(table["CATEGORY_" + name[13:]])
    raise Unsupported(f"{where}: {name} is not supported", "use \\d, \\s or \\w")


def _compile_item(nfa: _Nfa, op: str, av: Any, flags: int, a: int, b: int,
                  where: str) -> None:
    fold = bool(flags & _I)
    if op in ("LITERAL", "NOT_LITERAL", "ANY", "IN"):
        if op == "LITERAL":
            ranges: Ranges = [(int(av), int(av))]
        elif op == "NOT_LITERAL":
            c = int(av)
            ranges = _negate(_fold([(c, c)], where) if fold else [(c, c)])
            fold = False
        elif op == "ANY":
            ranges = [(0, MAX_BYTE)] if flags & _S else _negate([(0x0A, 0x0A)])
            fold = False
        else:
            items = av
            assert isinstance(items, list)
            if fold and items and str(items[0][0]) == "NEGATE":
                ranges = _negate(_fold(_class_ranges(items[1:], where), where))
                fold = False
            else:
                ranges = _class_ranges(items, where)
        if fold:
            ranges = _fold(ranges, where)
        nfa.charset(ranges, a, b)
    elif op == "BRANCH":
        _, branches = av
        for branch in branches:
            _compile_items(nfa, list(branch), flags, a, b, where)
    elif op == "SUBPATTERN":
        _group, add, remove, body = av
        if (add | remove) & (_M | _X):
            raise Unsupported(f"{where}: the m and x flags are not supported",
                              "leave out (?m) and (?x); ^ and $ mean the text's start and end")
        _compile_items(nfa, list(body), (flags | add) & ~remove, a, b, where)
    elif op in ("MAX_REPEAT", "MIN_REPEAT"):
        lo, hi, body = av
        items = list(body)
        cur = a
        for _ in range(lo):
            nxt = nfa.new()
            _compile_items(nfa, items, flags, cur, nxt, where)
            cur = nxt
        if hi == re._constants.MAXREPEAT:  # type: ignore[attr-defined]
            loop = nfa.new()
            nfa.eps[cur].append(loop)
            inner = nfa.new()
            _compile_items(nfa, items, flags, loop, inner, where)
            nfa.eps[inner].append(loop)
            nfa.eps[loop].append(b)
        else:
            for _ in range(hi - lo):
                nxt = nfa.new()
                nfa.eps[cur].append(b)
                _compile_items(nfa, items, flags, cur, nxt, where)
                cur = nxt
            nfa.eps[cur].append(b)
    elif op == "AT":
        kind = str(av)
        if kind in ("AT_BEGINNING", "AT_BEGINNING_STRING"):
            nfa.bol[a].append(b)
        elif kind == "AT_END":
            nfa.eol[a].append(b)
        else:
            raise Unsupported(
                f"{where}: {_AT_NAMES.get(kind, kind)} is not supported",
                "the output automaton has no word boundaries; spell the characters around "
                "the word instead, e.g. (^|[^A-Za-z0-9_])word([^A-Za-z0-9_]|$)")
    else:
        raise Unsupported(f"{where}: {_OP_NAMES.get(op, op)} is not supported",
                          "use literals, classes, ., groups, |, * + ? {m,n}, (?i), ^ and $")


_AT_NAMES = {"AT_BOUNDARY": "\\b", "AT_NON_BOUNDARY": "\\B", "AT_END_STRING": "\\Z"}
_OP_NAMES = {"GROUPREF": "a back reference", "ASSERT": "a lookaround",
             "ASSERT_NOT": "a lookaround", "ATOMIC_GROUP": "an atomic group",
             "POSSESSIVE_REPEAT": "a possessive repeat"}


def _parse(pattern: str, where: str) -> tuple[list[tuple[Any, Any]], int]:
    # RE2 reads the pattern's UTF-8 bytes one character per byte, as it reads the text
    latin1 = pattern.encode("utf-8").decode("latin-1")
    try:
        tree = re._parser.parse(latin1, 0)  # type: ignore[attr-defined]
    except re.error as exc:
        raise Unsupported(f"{where}: the automaton compiler cannot read it ({exc.msg})",
                          "write the flags first, e.g. (?i)phrase or (?i:phrase), and use "
                          "only literals, classes, ., groups, |, * + ? {m,n}, ^ and $") from None
    flags = int(tree.state.flags)
    if flags & (_M | _X):
        raise Unsupported(f"{where}: the m and x flags are not supported",
                          "leave out (?m) and (?x); ^ and $ mean the text's start and end")
    return list(tree), flags


# Subset construction -----------------------------------------------------------------------


def _closure(nfa: _Nfa, states: Iterable[int], at_start: bool, at_end: bool) -> frozenset[int]:
    seen = set(states)
    stack = list(seen)
    while stack:
        s = stack.pop()
        targets = list(nfa.eps[s])
        if at_start:
            targets += nfa.bol[s]
        if at_end:
            targets += nfa.eol[s]
        for t in targets:
            if t not in seen:
                seen.add(t)
                stack.append(t)
    return frozenset(seen)


def compile_patterns(patterns: Sequence[str]) -> Dfa:
    """One automaton that reaches its match state as soon as any pattern matches."""
    nfa = _Nfa()
    starts = []
    accept = nfa.new()
    for i, pattern in enumerate(patterns):
        where = (f"output deny pattern {i}" if len(patterns) > 1
                 else "output deny pattern")
        items, flags = _parse(pattern, where)
        s = nfa.new()
        _compile_items(nfa, items, flags, s, accept, where)
        starts.append(s)
    return _determinise(nfa, starts, accept)


def _determinise(nfa: _Nfa, starts: list[int], accept: int) -> Dfa:
    # byte intervals: the boundaries of every edge's range
    cuts = {0, 256}
    for edges in nfa.edges:
        for lo, hi, _ in edges:
            cuts.add(lo)
            cuts.add(hi + 1)
    bounds = sorted(cuts)
    intervals = list(zip(bounds, bounds[1:], strict=False))
    restart = _closure(nfa, starts, False, False)
    first = _closure(nfa, starts, True, False)
    ids: dict[frozenset[int], int] = {}
    order: list[frozenset[int]] = []
    rows: list[list[int]] = []

    def state_id(states: frozenset[int]) -> int:
        if accept in states:
            return 0
        if states not in ids:
            if len(order) >= MAX_STATES:
                raise Unsupported(
                    f"output deny patterns: more than {MAX_STATES} automaton states",
                    "use fewer or simpler patterns: long repeats of classes ([a-z]{20}) and "
                    "many overlapping alternatives multiply states")
            ids[states] = len(order) + 1
            order.append(states)
        return ids[states]

    start = state_id(first)
    idle = state_id(restart)
    done = 0
    while done < len(order):
        states = order[done]
        done += 1
        row = []
        for lo, _hi in intervals:
            moved = {t for s in states for blo, bhi, t in nfa.edges[s] if blo <= lo <= bhi}
            row.append(state_id(_closure(nfa, moved | restart, False, False)))
        rows.append(row)
    ends = sorted(i for states, i in ids.items()
                  if accept in _closure(nfa, states, i == start, True))
    if start == 0 or start in ends:
        raise Unsupported("output deny pattern: it matches an empty text, so it would match "
                          "every answer",
                          "make it match at least one character (a+ rather than a*)")
    # merge byte intervals that every state treats alike into classes
    columns: dict[tuple[int, ...], int] = {}
    interval_class = []
    for k in range(len(intervals)):
        column = tuple(row[k] for row in rows)
        interval_class.append(columns.setdefault(column, len(columns)))
    width = len(columns)
    classes = [0] * 256
    for (lo, hi), c in zip(intervals, interval_class, strict=True):
        for byte in range(lo, hi):
            classes[byte] = c + 1
    table = [0] * ((len(rows) + 1) * width)  # row 0: the match state, absorbing
    for sid, row in enumerate(rows, start=1):
        for k, target in enumerate(row):
            table[sid * width + interval_class[k]] = target * width
    return Dfa(width, tuple(classes), tuple(table), start * width, idle * width,
               tuple(e * width for e in ends))


def compile_problem(pattern: str) -> Unsupported | None:
    """None when the pattern compiles into an output automaton; else why not."""
    try:
        compile_patterns([pattern])
    except Unsupported as problem:
        return problem
    return None
