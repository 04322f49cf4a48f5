"""Label selectors as the `labelSelector` query parameter spells them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from .status import APIError

Matcher = Callable[[Mapping[str, str]], bool]

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")


def _split_terms(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        terms.append(current)
    return terms


def _term(term: str) -> Matcher:
    eq = _EQ_RE.match(term)
    if eq:
        key, op, value = eq.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    st = _SET_RE.match(term)
    if st:
        negate, key, op, values_text = st.groups()
        if op:
            values = {v.strip() for v in values_text.split(",") if v.strip()}
            if op == "in":
                return lambda labels: labels.get(key) in values
            return lambda labels: labels.get(key) not in values
        if negate:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise APIError(400, f'unable to parse requirement: found \'{term.strip()}\', '
                        "expected: in, notin, =, ==, !=, gt, lt", "BadRequest")


def parse_selector(selector: str | None) -> Matcher:
    if not selector or not selector.strip():
        return lambda labels: True
    matchers = [_term(t) for t in _split_terms(selector)]
    return lambda labels: all(m(labels) for m in matchers)
