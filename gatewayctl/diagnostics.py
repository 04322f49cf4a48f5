"""Diagnostics: what is wrong, where, and what would be valid.

A `Diagnostic` is data. Every stage collects them in one pass and hands them back; only the CLI
prints them. Codes are stable and documented in docs/diagnostics.md.

A diagnostic never carries a secret: whatever text it is given (a value quoted in the summary,
a key in the field path, a name in the resource) is masked on creation, so no output built from
it (text, JSON, Code Quality, JUnit) can show a credential-looking string from the input.
"""

from __future__ import annotations

import difflib
import enum
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gatewayctl.redaction import redact


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Location:
    path: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"

    def under(self, root: str | None) -> str:
        """`path:line:col` with the path as the user can open it: under `root` as given."""
        return f"{shown_path(root, self.path)}:{self.line}:{self.column}"


def shown_path(root: str | None, path: str) -> str:
    """A manifest's path (relative to its root) joined to the root as the user gave it:
    `examples/basic/gateway.yaml` for `validate examples/basic`, `gateway.yaml` for `.`. A
    root that is one file is that file's folder."""
    if not root:
        return path
    base = Path(root)
    if base.is_file():
        base = base.parent
    return (base / path).as_posix()


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    code: str
    summary: str
    location: Location | None = None
    field: str = ""
    hint: str | None = None
    resource: str = ""  # "Kind/name" when the problem belongs to one resource

    def __post_init__(self) -> None:
        for name in ("summary", "field", "resource"):
            object.__setattr__(self, name, redact(getattr(self, name)))
        if self.hint is not None:
            object.__setattr__(self, "hint", redact(self.hint))

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple[str, int, int, str, str]:
        loc = self.location or Location("", 0, 0)
        return (loc.path, loc.line, loc.column, self.code, self.summary)

    def message(self) -> str:
        return f"{self.field}: {self.summary}" if self.field else self.summary

    def format(self, root: str | None = None) -> str:
        """The diagnostic as text; with `root` (as the user gave it), the path is under it."""
        where = f"{self.location.under(root)}: " if self.location else ""
        text = f"{where}{self.severity.value}[{self.code}] {self.message()}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def fingerprint(self) -> str:
        loc = self.location
        raw = f"{self.code}|{loc.path if loc else ''}|{self.resource}|{self.field}|{self.summary}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def to_json(self) -> dict[str, object]:
        loc = self.location
        return {
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message(),
            "summary": self.summary,
            "field": self.field,
            "hint": self.hint,
            "resource": self.resource,
            "path": loc.path if loc else None,
            "line": loc.line if loc else None,
            "column": loc.column if loc else None,
        }


def error(code: str, summary: str, **kw: object) -> Diagnostic:
    return Diagnostic(Severity.ERROR, code, summary, **kw)  # type: ignore[arg-type]


def warning(code: str, summary: str, **kw: object) -> Diagnostic:
    return Diagnostic(Severity.WARNING, code, summary, **kw)  # type: ignore[arg-type]


def sort_diagnostics(diags: Iterable[Diagnostic]) -> list[Diagnostic]:
    unique = {_key(d): d for d in diags}
    return [unique[k] for k in sorted(unique)]


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest candidate, for "did you mean" hints, or None."""
    matches = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return matches[0] if matches else None


MAX_DIAGNOSTICS = 1000

_Key = tuple[tuple[str, int, int, str, str], str, str]


def _key(d: Diagnostic) -> _Key:
    """Output order, and identity: the same problem reported twice is shown once."""
    return d.sort_key(), d.field, d.severity.value


def _rank(severity: Severity, location: Location | None) -> tuple[int, str, int, int]:
    """Which problems are kept when there are too many: errors first, then by position."""
    loc = location or Location("", 0, 0)
    return (0 if severity is Severity.ERROR else 1, loc.path, loc.line, loc.column)


class Diagnostics(list[Diagnostic]):
    """The diagnostics of one pass, in output order: at most `MAX_DIAGNOSTICS` problems, then,
    when there were more, one GW010 that counts the rest. `errors` and `warnings` count every
    problem found, shown or not."""

    def __init__(self, shown: Iterable[Diagnostic] = (), *, errors: int, warnings: int) -> None:
        super().__init__(shown)
        self.errors = errors
        self.warnings = warnings
        omitted_errors = errors - sum(1 for d in self if d.is_error)
        omitted_warnings = warnings - sum(1 for d in self if not d.is_error)
        self.omitted = omitted_errors + omitted_warnings
        if self.omitted > 0:
            self.append(
                (error if omitted_errors else warning)(
                    "GW010",
                    f"{self.omitted} more problems not shown ({omitted_errors} errors, "
                    f"{omitted_warnings} warnings): only the first {len(self)} are listed",
                    hint="fix the problems above and validate again; so many usually means "
                    "generated input or one mistake repeated",
                )
            )


def count(diags: Sequence[Diagnostic]) -> tuple[int, int]:
    """(errors, warnings) found, including those a capped list does not show."""
    if isinstance(diags, Diagnostics):
        return diags.errors, diags.warnings
    errors = sum(1 for d in diags if d.is_error)
    return errors, len(diags) - errors


@dataclass
class DiagnosticSink:
    """Collects the diagnostics of one pass, keeping at most `limit` of them.

    Memory and time stay bounded however many problems the input holds: once `limit` are
    kept, a problem that would not make the cut is only counted, and a producer can ask
    `wants()` before it spends time on a message (a "did you mean" hint, say).
    """

    limit: int = MAX_DIAGNOSTICS
    items: list[Diagnostic] = field(default_factory=list)
    errors: int = 0
    warnings: int = 0
    _seen: set[_Key] = field(default_factory=set, repr=False)
    _cutoff: tuple[int, str, int, int] | None = field(default=None, repr=False)

    def wants(self, severity: Severity, location: Location | None) -> bool:
        return self._cutoff is None or _rank(severity, location) <= self._cutoff

    def skip(self, severity: Severity) -> None:
        """Count a problem that `wants()` said would not be shown."""
        if severity is Severity.ERROR:
            self.errors += 1
        else:
            self.warnings += 1

    def add(self, diag: Diagnostic) -> None:
        key = _key(diag)
        if key in self._seen:
            return
        self.skip(diag.severity)
        if not self.wants(diag.severity, diag.location):
            return
        self._seen.add(key)
        self.items.append(diag)
        if len(self.items) >= 2 * self.limit:
            self._trim()

    def extend(self, diags: Iterable[Diagnostic]) -> None:
        for diag in diags:
            self.add(diag)

    def _trim(self) -> None:
        self.items.sort(key=lambda d: (_rank(d.severity, d.location), _key(d)))
        for dropped in self.items[self.limit :]:
            self._seen.discard(_key(dropped))
        del self.items[self.limit :]
        last = self.items[-1]
        self._cutoff = _rank(last.severity, last.location)

    def result(self) -> Diagnostics:
        if len(self.items) > self.limit:
            self._trim()
        shown = sorted(self.items, key=_key)
        return Diagnostics(shown, errors=self.errors, warnings=self.warnings)
