r"""Output deny patterns as one byte-level DFA that finds a match anywhere in a text.

The output guardrails (render/envoy/lua/outguard.lua) match what a model returns inside the
body filter, chunk by chunk, without yielding to Envoy (a Lua `httpCall` made while a stream's
chunks are read ends streaming): so the patterns cannot go to Envoy's RE2 there. They are
compiled here, at render time, into one deterministic automaton over bytes whose state is kept
across chunks, so a phrase split between two chunks is still found.

The automaton has the semantics Envoy's RE2 has where the request guardrails use it (measured
on Envoy 1.40 through the RBAC filter, docs/data-plane.md): the text and the pattern are bytes,
one character per byte (RE2's Latin-1 mode), so `.` is one byte other than a newline, `[^a]`
any byte but `a`, a non-ASCII letter in a pattern is the sequence of its UTF-8 bytes, and
`(?i)` folds ASCII letters only (RE2 folds no byte above ASCII in this mode: measured). RE2's
syntax is read by Python's parser of it (`re._parser`), after output_syntax.py has rewritten
what that parser reads otherwise (`\z`, `\C`, `\Q..\E`, POSIX classes, `(?U)`, flags in
the middle of a group). Compiled: literals, classes, `.`, groups, alternation, repeats
(greedy or not: for finding a match they are the same), the flags i, m, s, U, and the empty
assertions `^ $ \A \z \b \B` with and without `(?m)`. Refused, with a hint
(`compile_problem`): Unicode classes, a pattern that matches the empty text (it would match
every answer), and an automaton past MAX_STATES.

Empty assertions: a state is a set of pattern positions and the class of the byte before it
(start of text, newline, ASCII word byte [0-9A-Za-z_], other), kept only where a pending
assertion looks at it; the assertions that look ahead are resolved on the next byte, or at
the end of the text (`ends`). So `\b` at most doubles the states in which it is pending,
`(?m)^` likewise, `\A`/`^` only splits the start from the idle state, and a look-ahead
(`$`, `\z`, `(?m)$`, a trailing `\b`) adds the states in which a match waits for the next
byte (or the end): it is known one byte later. `\bcat\b` has 6 rows where `cat` has 4.

Table layout (what outguard.lua walks): bytes map to classes (`classes[b + 1]`, 1-based
class numbers); a state is its row's offset `id * width` in `next`, so one step is
`s = next[s + classes[b + 1]]`. State 0 is the match (absorbing: the walk can stop), `start`
is the state before any byte, the idle states (no match in progress: a new match may only
begin) are the rows 1.., offsets up to `idle`, and `ends` the states in which the text
matches if it ends there. Pure: no I/O.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gatewayctl.manifests.output_syntax import Unsupported, to_python_syntax

__all__ = ["MAX_STATES", "Dfa", "Unsupported", "compile_patterns", "compile_problem"]

# A bound on the automaton of one route's patterns: its table is in the Lua filter's data.
MAX_STATES = 2_000
# A bound on the intermediate automaton (`{m,n}` repeats copies of its body).
MAX_NFA_STATES = 50_000
MAX_BYTE = 0xFF


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


def _fold(ranges: Ranges) -> Ranges:
    """The set under (?i): ASCII letters with their other case. In Latin-1 mode RE2 folds no
    byte above ASCII (measured on Envoy 1.40 and on the Python binding: `(?i)\xC3` does not
    match `\xE3`), so neither does the automaton."""
    out = list(ranges)
    for lo, hi in ranges:
        for c in range(max(lo, 0x41), min(hi, 0x7A) + 1):
            if 0x41 <= c <= 0x5A:
                out.append((c + 0x20, c + 0x20))
            elif 0x61 <= c <= 0x7A:
                out.append((c - 0x20, c - 0x20))
    return _normalise(out)


# The automaton with empty moves ------------------------------------------------------------

# Empty assertions, by what they look at: the byte before (or the start of the text) and the
# byte after (or the end of the text).
_BOT, _EOT, _BOL, _EOL, _WB, _NWB = "\\A", "\\z", "(?m)^", "(?m)$", "\\b", "\\B"
# The class of the byte before a position / after it; START / END: none (text's edge).
START = END = 0
NEWLINE, WORD, OTHER = 1, 2, 3


def _holds(kind: str, before: int, after: int) -> bool:
    if kind == _BOT:
        return before == START
    if kind == _EOT:
        return after == END
    if kind == _BOL:
        return before in (START, NEWLINE)
    if kind == _EOL:
        return after in (END, NEWLINE)
    boundary = (before == WORD) != (after == WORD)
    return boundary if kind == _WB else not boundary


def _byte_kind(b: int) -> int:
    if b == 0x0A:
        return NEWLINE
    return WORD if any(lo <= b <= hi for lo, hi in _WORD) else OTHER


class _Nfa:
    def __init__(self) -> None:
        self.eps: list[list[int]] = []
        self.edges: list[list[tuple[int, int, int]]] = []
        self.asserts: list[list[tuple[str, int]]] = []  # empty moves under a condition

    def new(self) -> int:
        if len(self.eps) >= MAX_NFA_STATES:
            raise Unsupported("output deny pattern: too large for the automaton",
                              "use smaller repeat counts ({m,n}) or split the pattern")
        self.eps.append([])
        self.edges.append([])
        self.asserts.append([])
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


_AT_KINDS = {"AT_BEGINNING_STRING": _BOT, "AT_END_STRING": _EOT, "AT_BOUNDARY": _WB,
             "AT_NON_BOUNDARY": _NWB}


def _compile_item(nfa: _Nfa, op: str, av: Any, flags: int, a: int, b: int,
                  where: str) -> None:
    fold = bool(flags & _I)
    if op in ("LITERAL", "NOT_LITERAL", "ANY", "IN"):
        if op == "LITERAL":
            ranges: Ranges = [(int(av), int(av))]
        elif op == "NOT_LITERAL":
            c = int(av)
            ranges = _negate(_fold([(c, c)]) if fold else [(c, c)])
            fold = False
        elif op == "ANY":
            ranges = [(0, MAX_BYTE)] if flags & _S else _negate([(0x0A, 0x0A)])
            fold = False
        else:
            items = av
            assert isinstance(items, list)
            if fold and items and str(items[0][0]) == "NEGATE":
                ranges = _negate(_fold(_class_ranges(items[1:], where)))
                fold = False
            else:
                ranges = _class_ranges(items, where)
        if fold:
            ranges = _fold(ranges)
        nfa.charset(ranges, a, b)
    elif op == "BRANCH":
        _, branches = av
        for branch in branches:
            _compile_items(nfa, list(branch), flags, a, b, where)
    elif op == "SUBPATTERN":
        _group, add, remove, body = av
        if (add | remove) & _X:
            raise Unsupported(f"{where}: the x flag is not RE2", "leave out (?x)")
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
        multiline = bool(flags & _M)
        if kind == "AT_BEGINNING":
            nfa.asserts[a].append((_BOL if multiline else _BOT, b))
        elif kind == "AT_END":
            nfa.asserts[a].append((_EOL if multiline else _EOT, b))
        else:
            nfa.asserts[a].append((_AT_KINDS[kind], b))
    else:
        raise Unsupported(f"{where}: {_OP_NAMES.get(op, op)} is not supported",
                          "RE2 has no back references or lookaround; use literals, classes, "
                          "., groups, |, repeats, flags and ^ $ \\A \\z \\b \\B")


_OP_NAMES = {"GROUPREF": "a back reference", "ASSERT": "a lookaround",
             "ASSERT_NOT": "a lookaround", "ATOMIC_GROUP": "an atomic group",
             "POSSESSIVE_REPEAT": "a possessive repeat"}


def _parse(pattern: str, where: str) -> tuple[list[tuple[Any, Any]], int]:
    # RE2 reads the pattern's UTF-8 bytes one character per byte, as it reads the text
    latin1 = to_python_syntax(pattern.encode("utf-8").decode("latin-1"), where)
    try:
        with warnings.catch_warnings():
            # "possible nested set" ([[a]): read as RE2 reads it, a literal [
            warnings.simplefilter("ignore", FutureWarning)
            tree = re._parser.parse(latin1, 0)  # type: ignore[attr-defined]
    except re.error as exc:
        raise Unsupported(f"{where}: the automaton compiler cannot read it ({exc.msg})",
                          "use RE2's syntax: literals, classes, ., groups, |, repeats, "
                          "flags, ^ $ \\A \\z \\b \\B") from None
    flags = int(tree.state.flags)
    if flags & _X:
        raise Unsupported(f"{where}: the x flag is not RE2", "leave out (?x)")
    return list(tree), flags


# Subset construction -----------------------------------------------------------------------


class _Builder:
    """The subset construction: a DFA state is (pattern positions, class of the byte before),
    the class kept only as far as a pending assertion looks at it."""

    def __init__(self, nfa: _Nfa, starts: list[int], accept: int) -> None:
        self.nfa, self.accept = nfa, accept
        self.restart = self.closure(starts, None, None)
        self.ids: dict[tuple[frozenset[int], tuple[bool, ...]], int] = {}
        self.order: list[tuple[frozenset[int], int]] = []  # positions, a byte-before class
        self.looks: dict[frozenset[int], frozenset[str]] = {}

    def closure(self, states: Iterable[int], before: int | None,
                after: int | None) -> frozenset[int]:
        """Empty moves, and (given the classes around the position) the assertions that hold."""
        nfa = self.nfa
        seen = set(states)
        stack = list(seen)
        while stack:
            s = stack.pop()
            targets = list(nfa.eps[s])
            if before is not None and after is not None:
                targets += [t for kind, t in nfa.asserts[s] if _holds(kind, before, after)]
            for t in targets:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        return frozenset(seen)

    def pending(self, states: frozenset[int]) -> frozenset[str]:
        """The assertions reachable from these positions (what the byte before matters to)."""
        if states not in self.looks:
            nfa = self.nfa
            seen, stack, kinds = set(states), list(states), set()
            while stack:
                s = stack.pop()
                for kind, t in nfa.asserts[s]:
                    kinds.add(kind)
                    if t not in seen:
                        seen.add(t)
                        stack.append(t)
                for t in nfa.eps[s]:
                    if t not in seen:
                        seen.add(t)
                        stack.append(t)
            self.looks[states] = frozenset(kinds)
        return self.looks[states]

    def state_id(self, states: frozenset[int], before: int) -> int:
        if self.accept in states:
            return 0
        kinds = self.pending(states)
        key = (states, (_BOT in kinds and before == START,
                        _BOL in kinds and before in (START, NEWLINE),
                        bool(kinds & {_WB, _NWB}) and before == WORD))
        if key not in self.ids:
            if len(self.order) >= MAX_STATES:
                raise Unsupported(
                    f"output deny patterns: more than {MAX_STATES} automaton states",
                    "use fewer or simpler patterns: long repeats of classes ([a-z]{20}) and "
                    "many overlapping alternatives multiply states")
            self.ids[key] = len(self.order) + 1
            self.order.append((states, before))
        return self.ids[key]

    def rows(self, intervals: list[tuple[int, int]]) -> list[list[int]]:
        nfa, rows, done = self.nfa, [], 0
        kinds = [_byte_kind(lo) for lo, _ in intervals]
        while done < len(self.order):
            states, before = self.order[done]
            done += 1
            around = {k: self.closure(states, before, k) for k in set(kinds)}
            row = []
            for (lo, _hi), kind in zip(intervals, kinds, strict=True):
                here = around[kind]
                if self.accept in here:  # a match that ended in an assertion before this byte
                    row.append(0)
                    continue
                moved = {t for s in here for blo, bhi, t in nfa.edges[s] if blo <= lo <= bhi}
                row.append(self.state_id(self.closure(moved | self.restart, None, None), kind))
            rows.append(row)
        return rows


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
    # byte intervals: the boundaries of every edge's range, and of the byte classes the
    # assertions look at
    cuts = {0, 256}
    for edges in nfa.edges:
        for lo, hi, _ in edges:
            cuts.add(lo)
            cuts.add(hi + 1)
    if any(nfa.asserts):
        for lo, hi in [(0x0A, 0x0A), *_WORD]:
            cuts.add(lo)
            cuts.add(hi + 1)
    bounds = sorted(cuts)
    intervals = list(zip(bounds, bounds[1:], strict=False))
    builder = _Builder(nfa, starts, accept)
    start = builder.state_id(builder.restart, START)
    if start == 0:
        raise _EMPTY
    # the idle states (no match in progress) first, so that outguard.lua tests `s <= idle`
    for before in (NEWLINE, WORD, OTHER):
        builder.state_id(builder.restart, before)
    rows = builder.rows(intervals)
    idle_ids = sorted(i for (states, _), i in builder.ids.items() if states == builder.restart)
    ends = sorted(i for i, (states, before) in enumerate(builder.order, start=1)
                  if accept in builder.closure(states, before, END))
    if start in ends:
        raise _EMPTY
    # renumber: the reachable idle states are 1..k (in the order they were found), then the rest
    reachable = _reachable(rows, start)
    keep = [i for i in idle_ids if i in reachable]
    keep += [i for i in range(1, len(rows) + 1) if i in reachable and i not in set(idle_ids)]
    new_id = {old: n for n, old in enumerate(keep, start=1)}
    new_id[0] = 0
    rows = [[new_id[t] for t in rows[old - 1]] for old in keep]
    idle = sum(1 for i in idle_ids if i in reachable)
    ends = [new_id[e] for e in ends if e in reachable]
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
    return Dfa(width, tuple(classes), tuple(table), new_id[start] * width, idle * width,
               tuple(sorted(e * width for e in ends)))


_EMPTY = Unsupported("output deny pattern: it matches an empty text, so it would match "
                     "every answer",
                     "make it match at least one character (a+ rather than a*)")


def _reachable(rows: list[list[int]], start: int) -> set[int]:
    seen, stack = {start}, [start]
    while stack:
        for t in rows[stack.pop() - 1]:
            if t != 0 and t not in seen:
                seen.add(t)
                stack.append(t)
    return seen


def compile_problem(pattern: str) -> Unsupported | None:
    """None when the pattern compiles into an output automaton; else why not."""
    try:
        compile_patterns([pattern])
    except Unsupported as problem:
        return problem
    return None
