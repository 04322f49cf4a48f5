"""The automaton compiler (manifests/output_dfa.py, output_syntax.py) against RE2's Python
binding in Latin-1 mode (one character per byte, as Envoy's RE2 reads the guardrails' text:
test_envoy.py checks that against Envoy itself), on seeded random texts; and the RE2 syntax it
reads that Python's parser would read otherwise."""

from __future__ import annotations

import random

import pytest

from gatewayctl.manifests.output_dfa import compile_patterns, compile_problem
from gatewayctl.manifests.output_syntax import to_python_syntax

re2 = pytest.importorskip("re2")

# Empty assertions with and without (?m), RE2-only syntax, and mixes of them.
PATTERNS = [
    r"\bcat\b", r"\Bat\b", r"(?m)^secret$", r"(?m)^a|b$", r"a\z", r"\Aab", r"x$", r"^x",
    r"(?m)^\s*rm -rf", r"\b\w+@\w+\b", r"(?i)\bk[a-z]*s\b", r"a\B.", r"(?m)$\n^b",
    r"[[:alpha:]]x", r"[[:^digit:]]9", r"\Qa.b\E", r"(?U)a+b", r"a(?i)b|c", r"(?i)é",
    r"(?i)ÀÞ", r"\C\Cz", r"(?i)[^é]x", r"\b(?m:^)x", r"(?s)a.\z|(?m)q$", r"\pL\PL\d",
    r"[\p{Lu}_]at", r"\p{^Ll}s", r"(?m:^$)\nx", r"\b\b\Bq|z(?-m:$)", r"(?i)(?m)^CAT\b",
    r"\x{41}\x{e9}", r"[^\x{61}]\b", r"(a|\b)+c", r"(?m)(^|x)y($|z)",
]
ALPHABET = ["a", "b", "c", "x", "y", "z", "q", "s", "k", "K", "at", "cat", "CAT", " ", "\n",
            "\n\n", "_", "9", "é", "É", "ã", "secret", "rm -rf", "@", ".", "À", "Þ", "þ", "\t",
            "A", "\u212a", "\u3a40", "\U0001f600", "a.b", "Aé"]


def _texts(seed: str, n: int) -> list[bytes]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        text = "".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 12)))
        raw = text.encode()
        if rnd.random() < 0.2:
            raw = text.encode("latin-1", "replace")  # bytes that are not UTF-8
        out.append(raw)
    return out


def _re2(pattern: str) -> object:
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    return re2.compile(pattern.encode(), options)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_automaton_equals_re2_in_latin1_mode(pattern: str) -> None:
    dfa = compile_patterns([pattern])
    rx = _re2(pattern)
    verdicts = set()
    for raw in _texts(pattern, 2500):
        want = rx.search(raw) is not None  # type: ignore[attr-defined]
        assert dfa.search(raw) == want, (pattern, raw)
        verdicts.add(want)
    assert verdicts == {True, False}, pattern  # both verdicts came up


def test_patterns_together_equal_any_of_them() -> None:
    dfa = compile_patterns(PATTERNS[:12])
    rxs = [_re2(p) for p in PATTERNS[:12]]
    for raw in _texts("together", 2000):
        assert dfa.search(raw) == any(r.search(raw) is not None for r in rxs), raw  # type: ignore[attr-defined]


def test_streamed_walk_equals_whole_walk_at_every_cut() -> None:
    """The state carried between two pieces of a text gives the whole text's verdict, wherever
    it is cut (the look-behind class is in the state; look-ahead waits for the next byte)."""
    for pattern in PATTERNS:
        dfa = compile_patterns([pattern])
        for raw in _texts("cut" + pattern, 60):
            whole = dfa.search(raw)
            for k in range(len(raw) + 1):
                s = dfa.step(dfa.step(dfa.start, raw[:k]), raw[k:])
                assert (s == 0 or s in dfa.ends) == whole, (pattern, raw, k)


@pytest.mark.parametrize(("pattern", "python"), [
    (r"a\z", r"a\Z"),
    (r"\C", "(?s:.)"),
    (r"\Qa.b\E+", r"a\.b+"),
    (r"[[:alpha:]]", "[A-Za-z]"),
    (r"[[:^digit:]x]", r"[\x00-\x2f\x3a-\xffx]"),
    (r"(?U)a+", "a+"),
    (r"a(?i)b|c", "a(?i:b)|(?i:c)"),
    (r"(x(?i)y|z)w", "(x(?i:y)|(?i:z))w"),
    (r"(?<n>a)", "(?P<n>a)"),
    (r"\x{41}", r"\x41"),
    (r"[]a]", "[]a]"),
    (r"\pZ", r"[\x20-\x20\xa0-\xa0]"),
])
def test_re2_syntax_rewritten_for_pythons_parser(pattern: str, python: str) -> None:
    assert to_python_syntax(pattern, "p") == python


def test_posix_class_is_a_class_not_a_set_of_its_letters() -> None:
    """Python's parser reads [[:alpha:]] as the set `[:alph` followed by `]`: RE2 reads the
    letters. Before the rewrite the automaton matched ":]" and not "q"."""
    dfa = compile_patterns(["[[:alpha:]]"])
    assert dfa.search(b"q") and not dfa.search(b":]") and not dfa.search(b"1")


@pytest.mark.parametrize(("pattern", "message"), [
    (r"\p{Greek}", "the Unicode class 'Greek' is not supported"),
    (r"x\x{100}", "\\x{100} is above 0xFF"),
    (r"x*", "it matches an empty text"),
    (r"^", "it matches an empty text"),
    (r"(?m)$", "it matches an empty text"),
])
def test_what_stays_refused(pattern: str, message: str) -> None:
    problem = compile_problem(pattern)
    assert problem is not None and message in problem.message, problem


@pytest.mark.parametrize(("pattern", "states"), [
    ("cat", 4),            # the match (row 0), idle (= start), 'c', 'ca'
    (r"\bcat\b", 6),       # + idle after a word byte, + 'cat' waiting for the next byte
    (r"(?m)^cat$", 6),     # + idle after a newline, + 'cat' waiting for a newline or the end
    (r"\Acat\z", 6),       # + the start apart from idle, + 'cat' waiting for the end
    (r"cat\b", 5),         # + 'cat' waiting: a look-ahead alone costs one state per match end
])
def test_what_assertions_cost_in_states(pattern: str, states: int) -> None:
    """Rows of the table (row 0, the match, included): the figures docs/data-plane.md gives."""
    assert compile_patterns([pattern]).states == states
