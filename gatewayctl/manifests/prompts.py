"""Prompt templates: Jinja2 limited to what the data plane renders at request time.

A template may use variables and the `default` filter with a literal string; nothing else
(no control flow, attribute access, calls or other filters), because the Envoy data plane
renders prompts itself. The parsed form is a flat list of parts the compiler can hand over.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class VarPart:
    name: str
    default: str | None = None


Part = TextPart | VarPart


class TemplateProblem(Exception):
    def __init__(self, code: str, message: str, line: int = 1, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line
        self.hint = hint


@lru_cache(maxsize=1)
def _env() -> SandboxedEnvironment:
    return SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)


def _expr(node: nodes.Expr) -> VarPart:
    if isinstance(node, nodes.Name) and node.ctx == "load":
        return VarPart(node.name)
    if (
        isinstance(node, nodes.Filter)
        and node.name in ("default", "d")
        and isinstance(node.node, nodes.Name)
        and not node.kwargs
        and node.dyn_args is None
        and node.dyn_kwargs is None
        and len(node.args) == 1
        and isinstance(node.args[0], nodes.Const)
        and isinstance(node.args[0].value, str)
    ):
        return VarPart(node.node.name, node.args[0].value)
    raise TemplateProblem(
        "GW303",
        f"unsupported template expression on line {node.lineno}: the gateway renders only "
        "variables and default('literal') at request time",
        node.lineno,
        "write {{ name }} or {{ name | default('text') }}; no filters, calls or attributes",
    )


def parse_template(source: str) -> tuple[Part, ...]:
    """Parse a prompt template into parts, or raise TemplateProblem."""
    try:
        tree = _env().parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(
            "GW301",
            f"template does not parse: {exc.message}",
            exc.lineno or 1,
            "check the {{ }} pairs and the Jinja2 syntax",
        ) from None
    parts: list[Part] = []
    for stmt in tree.body:
        if not isinstance(stmt, nodes.Output):
            raise TemplateProblem(
                "GW303",
                f"unsupported template statement on line {stmt.lineno}: "
                f"{type(stmt).__name__.lower()} blocks are not rendered by the gateway",
                stmt.lineno,
                "use only text, {{ variable }} and {{ variable | default('text') }}",
            )
        for item in stmt.nodes:
            if isinstance(item, nodes.TemplateData):
                parts.append(TextPart(item.data))
            else:
                parts.append(_expr(item))
    merged: list[Part] = []
    for part in parts:
        if merged and isinstance(part, TextPart) and isinstance(merged[-1], TextPart):
            merged[-1] = TextPart(merged[-1].text + part.text)
        else:
            merged.append(part)
    return tuple(merged)


def used_variables(parts: tuple[Part, ...]) -> list[str]:
    return list(dict.fromkeys(p.name for p in parts if isinstance(p, VarPart)))
