"""RE2's pattern syntax rewritten into the form Python's regex parser reads, for output_dfa.py.

The output automaton reads a deny pattern with Python's parser (`re._parser`), whose syntax is
RE2's for most constructs. The RE2 constructs it does not read, or reads otherwise, are
rewritten here into equivalents it reads the way RE2 means them (in RE2's Latin-1 mode, one
character per byte, as Envoy's RE2 matches): `\\z` (end of text; Python's `\\Z`), `\\C` (any
byte), `\\Q...\\E` (a quoted literal), `\\x{HH}`, Unicode general categories (`\\pL`,
`\\p{Lu}`, `\\PN`: the characters \\x00-\\xFF of that category), POSIX classes `[[:alpha:]]` and
`[[:^alpha:]]` (Python would read `[[:alpha:]]` as a set of `[:alph` followed by `]`), the
`U` flag (ungreedy: the same set of texts matches, so it is dropped), and `(?<name>re)`.
What is refused (Unsupported): a Unicode script (`\\p{Greek}`: Python has no script data
to compute its bytes from) and a `\\x{...}` above 0xFF (no byte is that character). The
input is already read one character per byte (Latin-1). Pure.
"""

from __future__ import annotations

import re
import unicodedata


class Unsupported(ValueError):
    """A pattern this compiler cannot turn into the automaton; `hint` says what to write."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


# RE2's POSIX classes (ASCII, as RE2 defines them), as Python class contents.
_POSIX = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z",
    "print": " -~", "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\x0b\\x0c\\r ",
    "upper": "A-Z", "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f",
}
_POSIX_RE = re.compile(r"\[:(\^?)([a-z]+):\]")
_FLAGS_RE = re.compile(r"\(\?([imsU]*)(?:-([imsU]*))?([:)])")
_HEX_RE = re.compile(r"\\x\{([0-9A-Fa-f]+)\}")


def _posix(name: str, negated: bool, where: str) -> str:
    if name not in _POSIX:
        raise Unsupported(f"{where}: [:{name}:] is not a POSIX class",
                          "use one of " + ", ".join(sorted(_POSIX)))
    body = _POSIX[name]
    if not negated:
        return body
    allowed = re.compile(f"[{body}]")
    return _ranges([c for c in range(0x100) if not allowed.match(chr(c))])


def _class_name(pattern: str, i: int, where: str) -> tuple[str, int]:
    """The name after \\p or \\P at i (one letter, or in braces) and where it ends."""
    if pattern.startswith("{", i):
        end = pattern.find("}", i)
        if end < 0:
            raise Unsupported(f"{where}: \\p{{ is not closed", "write \\p{Lu} or \\pL")
        return pattern[i + 1:end], end + 1
    return pattern[i:i + 1], i + 1


def _unicode_class(name: str, negated: bool, where: str) -> str:
    """A Unicode general category as RE2 applies it in Latin-1 mode: to the characters
    \\x00-\\xFF, one per byte (`\\pL` is A-Za-z, ª, µ, º and À-ÿ but × ÷)."""
    if name.startswith("^"):
        name, negated = name[1:], not negated
    if name == "Any":
        def member(c: str) -> bool:
            return True
    elif name in _CATEGORIES:
        def member(c: str) -> bool:
            return unicodedata.category(c).startswith(name)
    else:
        raise Unsupported(f"{where}: the Unicode class {name!r} is not supported",
                          "use a general category (\\pL, \\p{Lu}, \\pN, ...) or spell "
                          "the bytes as a class, e.g. [A-Za-z]")
    return _ranges([c for c in range(0x100) if member(chr(c)) != negated])


# Unicode general categories and their one-letter groups, as RE2 names them
_CATEGORIES = frozenset((
    "C", "Cc", "Cf", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn",
    "N", "Nd", "Nl", "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk",
    "Sm", "So", "Z", "Zl", "Zp", "Zs"))


def _ranges(codes: list[int]) -> str:
    out, k = [], 0
    while k < len(codes):
        lo = codes[k]
        while k + 1 < len(codes) and codes[k + 1] == codes[k] + 1:
            k += 1
        out.append(f"\\x{lo:02x}-\\x{codes[k]:02x}")
        k += 1
    return "".join(out)


def _hex(digits: str, where: str) -> str:
    value = int(digits, 16)
    if value > 0xFF:
        raise Unsupported(f"{where}: \\x{{{digits}}} is above 0xFF",
                          "Envoy's RE2 reads one character per byte: write the character's "
                          "UTF-8 bytes, e.g. \\xC3\\xA9 for é")
    return f"\\x{value:02x}"


def to_python_syntax(pattern: str, where: str) -> str:
    """The pattern (one character per byte) in the syntax Python's parser reads as RE2 means it."""
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    # `(?i)` in the middle of a group applies to the rest of it (every later alternative
    # too): it becomes `(?i:` closed at each `|` and reopened after it, and at the group's end
    scoped: list[list[str]] = [[]]
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt in "pP":
                name, i = _class_name(pattern, i + 2, where)
                body = _unicode_class(name, nxt == "P", where)
                out.append(body if in_class else f"[{body}]")
                continue
            hexed = _HEX_RE.match(pattern, i)
            if hexed:
                out.append(_hex(hexed.group(1), where))
                i = hexed.end()
                continue
            if nxt == "Q":
                end = pattern.find("\\E", i + 2)
                literal = pattern[i + 2:] if end < 0 else pattern[i + 2:end]
                out.append("".join(re.escape(c) for c in literal))
                i = n if end < 0 else end + 2
                continue
            if not in_class and nxt == "z":
                out.append("\\Z")
            elif not in_class and nxt == "C":
                out.append("(?s:.)")
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            posix = _POSIX_RE.match(pattern, i)
            if posix:
                out.append(_posix(posix.group(2), posix.group(1) == "^", where))
                i = posix.end()
                continue
            if ch == "]":
                in_class = False
            out.append(ch)
            i += 1
            continue
        if ch == "[":
            in_class = True
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":  # a leading ] is a literal
                j += 1
            out.append(pattern[i:j])
            i = j
            continue
        if pattern.startswith("(?<", i) and not pattern.startswith(("(?<=", "(?<!"), i):
            out.append("(?P<")
            scoped.append([])
            i += 3
            continue
        flags = _FLAGS_RE.match(pattern, i)
        if flags:
            on, off, closer = (flags.group(1).replace("U", ""),
                            (flags.group(2) or "").replace("U", ""), flags.group(3))
            opener = f"(?{on}{'-' + off if off else ''}:" if on or off else "(?:"
            if closer == ":":
                out.append(opener)
                scoped.append([])
            elif on or off:
                out.append(opener)
                scoped[-1].append(opener)
            i = flags.end()
            continue
        if ch == "(":
            scoped.append([])
        elif ch in ")|":
            out.append(")" * len(scoped[-1]))
            if ch == ")" and len(scoped) > 1:
                scoped.pop()
            elif ch == "|":
                out.append(ch + "".join(scoped[-1]))
                i += 1
                continue
        out.append(ch)
        i += 1
    return "".join(out) + ")" * len(scoped[0])
