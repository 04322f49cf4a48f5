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

    def format(self) -> str:
        where = f"{self.location}: " if self.location else ""
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
    unique = {(d.sort_key(), d.field, d.severity): d for d in diags}
    return [unique[k] for k in sorted(unique)]


def has_errors(diags: Sequence[Diagnostic]) -> bool:
    return any(d.is_error for d in diags)


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest candidate, for "did you mean" hints, or None."""
    matches = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return matches[0] if matches else None


@dataclass
class DiagnosticSink:
    """Collects diagnostics during one pass."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, diag: Diagnostic) -> None:
        self.items.append(diag)

    def extend(self, diags: Iterable[Diagnostic]) -> None:
        self.items.extend(diags)
