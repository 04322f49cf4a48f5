"""What a change costs on the gateway's own measured traffic (`plan --traffic`).

Input: the successful requests of a window and their tokens, per consumer, route and the model
that answered (the gateway's `envoy_gatewayctl_consumer_*` counters), the live IR (what runs:
prices, weights, prompts, fallbacks) and the desired IR (the change). Output: requests, tokens
and cost per 30-day month before and after, per route and per consumer, and the budgets the
change would exhaust, with the day of the month.

Before: the measured tokens of each answering model at the live prices. After: the same
requests and completion tokens per request of each route, split by the desired weights; the
prompt tokens per request moved by the change of the route's prompt (the active versions'
literal text, weighted, ~4 bytes a token); the share the fallbacks answered kept, now answered
by the desired route's first fallback (none: those requests would fail and cost nothing); the
desired prices. A route that no longer exists costs nothing after (its clients get 404).

Pure: no I/O (`gatewayctl.traffic` fetches the window from Prometheus).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gatewayctl.ir import GatewayIR, PromptIR, RouteIR

MONTH_S = 30 * 86400
BYTES_PER_TOKEN = 4


@dataclass(frozen=True)
class Usage:
    """One consumer's successful requests on one route answered by one model, in the window."""

    consumer: str
    route: str
    model: str
    requests: float
    prompt_tokens: float
    completion_tokens: float


@dataclass(frozen=True)
class TrafficSample:
    source: str  # where it was measured ("prometheus http://...")
    window_s: float
    usage: tuple[Usage, ...]


@dataclass(frozen=True)
class CostLine:
    name: str
    requests: float  # per month
    prompt_tokens: float  # per month
    completion_tokens: float  # per month
    before_usd: float  # per month
    after_usd: float  # per month
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BudgetLine:
    consumer: str
    budget_before: float | None
    budget_after: float | None
    before_usd: float
    after_usd: float
    day_before: int | None  # the day of a 30-day month the budget runs out; None: it lasts
    day_after: int | None

    @property
    def exhausted_by_change(self) -> bool:
        return self.day_after is not None and (self.day_before is None
                                                or self.day_after < self.day_before)


@dataclass(frozen=True)
class TrafficReport:
    source: str
    window_s: float
    routes: tuple[CostLine, ...]
    consumers: tuple[CostLine, ...]
    budgets: tuple[BudgetLine, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def before_usd(self) -> float:
        return sum(r.before_usd for r in self.routes)

    @property
    def after_usd(self) -> float:
        return sum(r.after_usd for r in self.routes)


def prompt_tokens_of(prompt: PromptIR | None) -> float:
    """Tokens a request's injected system message adds, on average over the active versions
    (literal text only: variables are the client's)."""
    if prompt is None:
        return 0.0
    total = 0.0
    for version in prompt.active:
        text = sum(len(p.text.encode("utf-8")) for p in version.parts if p.variable is None)
        total += version.weight / 100 * math.ceil(text / BYTES_PER_TOKEN)
    return total


def _price(ir: GatewayIR | None, model: str) -> tuple[float, float] | None:
    if ir is None:
        return None
    found = next((m for m in ir.models if m.name == model), None)
    return None if found is None else (found.input_per_million, found.output_per_million)


def _cost(price: tuple[float, float] | None, prompt: float, completion: float) -> float:
    if price is None:
        return 0.0
    return (prompt * price[0] + completion * price[1]) / 1e6


def _route(ir: GatewayIR | None, name: str) -> RouteIR | None:
    return None if ir is None else next((r for r in ir.routes if r.name == name), None)


@dataclass
class _Sum:
    requests: float = 0.0
    prompt: float = 0.0
    completion: float = 0.0
    before: float = 0.0
    after: float = 0.0
    notes: list[str] = field(default_factory=list)

    def add(self, other: _Sum) -> None:
        self.requests += other.requests
        self.prompt += other.prompt
        self.completion += other.completion
        self.before += other.before
        self.after += other.after
        for note in other.notes:
            if note not in self.notes:
                self.notes.append(note)


def _cell(u: Usage, live: GatewayIR | None, desired: GatewayIR, scale: float) -> _Sum:
    out = _Sum(u.requests * scale, u.prompt_tokens * scale, u.completion_tokens * scale)
    price = _price(live, u.model) or _price(desired, u.model)
    out.before = _cost(price, u.prompt_tokens, u.completion_tokens) * scale
    if u.requests <= 0:
        return out
    route = _route(desired, u.route)
    if route is None:
        out.notes.append(f"route {u.route} is removed: its requests would get 404")
        return out
    old = _route(live, u.route)
    per_prompt = u.prompt_tokens / u.requests
    per_completion = u.completion_tokens / u.requests
    shift = prompt_tokens_of(route.prompt) - prompt_tokens_of(old.prompt if old else None)
    if shift:
        out.notes.append(f"prompt: {shift:+.0f} tokens per request")
    per_prompt = max(0.0, per_prompt + shift)
    primary = {b.model for b in (old or route).backends}
    if u.model in primary:
        one = sum(b.weight / 100 * _cost(_price(desired, b.model), per_prompt, per_completion)
                  for b in route.backends if b.weight > 0)
    elif route.fallback:
        one = _cost(_price(desired, route.fallback[0]), per_prompt, per_completion)
    else:
        out.notes.append("answered by a fallback the route no longer has: those requests "
                         "would fail")
        one = 0.0
    out.after = one * u.requests * scale
    return out


def _day(monthly: float, budget: float | None) -> int | None:
    if budget is None or monthly <= budget:
        return None
    return max(1, math.ceil(budget / (monthly / 30)))


def _budget(ir: GatewayIR | None, consumer: str) -> float | None:
    if ir is None:
        return None
    found = next((c for c in ir.consumers if c.name == consumer), None)
    return None if found is None else found.budget_usd_per_month


def _lines(groups: dict[str, _Sum]) -> tuple[CostLine, ...]:
    return tuple(CostLine(name, s.requests, s.prompt, s.completion, s.before, s.after,
                          tuple(s.notes)) for name, s in sorted(groups.items()))


def compute_traffic(sample: TrafficSample, live: GatewayIR | None,
                    desired: GatewayIR) -> TrafficReport:
    scale = MONTH_S / sample.window_s if sample.window_s > 0 else 0.0
    routes: dict[str, _Sum] = defaultdict(_Sum)
    consumers: dict[str, _Sum] = defaultdict(_Sum)
    for u in sample.usage:
        cell = _cell(u, live, desired, scale)
        routes[u.route].add(cell)
        consumers[u.consumer].add(cell)
    for route in desired.routes:
        routes.setdefault(route.name, _Sum(notes=["no traffic in the window"]))
    notes = []
    if live is None:
        notes.append("no live IR: 'before' uses the desired prices")
    budgets = []
    names = sorted({c.name for c in desired.consumers} | set(consumers))
    for name in names:
        before_budget, after_budget = _budget(live, name), _budget(desired, name)
        if before_budget is None and after_budget is None:
            continue
        s = consumers.get(name, _Sum())
        budgets.append(BudgetLine(name, before_budget, after_budget, s.before, s.after,
                                  _day(s.before, before_budget), _day(s.after, after_budget)))
    return TrafficReport(sample.source, sample.window_s, _lines(routes), _lines(consumers),
                         tuple(budgets), tuple(notes))


# -- formats ----------------------------------------------------------------------------------

def _usd(value: float) -> str:
    return f"${value:,.2f}"


def _count(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    return f"{value:,.0f}"


def _change(before: float, after: float) -> str:
    if before == after:
        return "unchanged"
    if before == 0:
        return "new"
    return f"{(after - before) / before * 100:+.1f}%"


def _window(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _budget_text(b: BudgetLine) -> str:
    budget = b.budget_after if b.budget_after is not None else b.budget_before
    head = f"{b.consumer}: budget {_usd(budget or 0)}/month, {_usd(b.before_usd)} -> " \
           f"{_usd(b.after_usd)}"
    if b.exhausted_by_change:
        before = "it lasts the month" if b.day_before is None else f"day {b.day_before}"
        return f"{head}: EXHAUSTED on day {b.day_after} after this change (before: {before})"
    if b.day_after is not None:
        return f"{head}: exhausted on day {b.day_after} (already before this change)"
    return f"{head}: lasts the month"


def _rows(lines: Iterable[CostLine]) -> list[tuple[str, ...]]:
    return [(c.name, _count(c.requests), _count(c.prompt_tokens + c.completion_tokens),
             _usd(c.before_usd), _usd(c.after_usd), _change(c.before_usd, c.after_usd),
             "; ".join(c.notes)) for c in lines]


def format_traffic_text(report: TrafficReport) -> str:
    head = ("", "requests/mo", "tokens/mo", "before", "after", "change", "")
    out = [f"Cost from measured traffic ({report.source}, last {_window(report.window_s)}, "
           "per 30-day month):"]
    for title, lines in (("route", report.routes), ("consumer", report.consumers)):
        rows = [(title, *head[1:]), *_rows(lines)]
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        for r in rows:
            cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, 6)]
            out.append(("  " + "  ".join(cells) + ("  " + r[6] if r[6] else "")).rstrip())
    out.append(f"  total: {_usd(report.before_usd)} -> {_usd(report.after_usd)} "
               f"({_change(report.before_usd, report.after_usd)})")
    if report.budgets:
        out.append("  budgets:")
        out += [f"    {_budget_text(b)}" for b in report.budgets]
    out += [f"  note: {n}" for n in report.notes]
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def format_traffic_markdown(report: TrafficReport) -> str:
    out = ["### Cost from measured traffic", "",
           f"{report.source}, last {_window(report.window_s)}, projected to a 30-day month. "
           f"Total {_usd(report.before_usd)} → {_usd(report.after_usd)} "
           f"({_change(report.before_usd, report.after_usd)}).", ""]
    exhausted = [b for b in report.budgets if b.exhausted_by_change]
    if exhausted:
        out += ["**Budgets this change would exhaust:** "
                + "; ".join(f"{b.consumer} on day {b.day_after}" for b in exhausted), ""]
    for title, lines in (("Route", report.routes), ("Consumer", report.consumers)):
        out += [f"| {title} | Requests/month | Tokens/month | Before | After | Change | |",
                "|---|---:|---:|---:|---:|---:|---|"]
        out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in _rows(lines)]
        out.append("")
    if report.budgets:
        out += ["Budgets:", ""] + [f"- {_md(_budget_text(b))}" for b in report.budgets] + [""]
    out += [f"_{_md(n)}_" for n in report.notes]
    return "\n".join(out).rstrip("\n") + "\n"


def traffic_to_json(report: TrafficReport) -> dict[str, Any]:
    def line(c: CostLine) -> dict[str, Any]:
        return {"name": c.name, "requests_per_month": round(c.requests, 3),
                "prompt_tokens_per_month": round(c.prompt_tokens, 3),
                "completion_tokens_per_month": round(c.completion_tokens, 3),
                "before_usd_per_month": round(c.before_usd, 6),
                "after_usd_per_month": round(c.after_usd, 6), "notes": list(c.notes)}

    return {
        "source": report.source,
        "window_seconds": report.window_s,
        "month_days": 30,
        "before_usd_per_month": round(report.before_usd, 6),
        "after_usd_per_month": round(report.after_usd, 6),
        "routes": [line(c) for c in report.routes],
        "consumers": [line(c) for c in report.consumers],
        "budgets": [{"consumer": b.consumer, "budget_before": b.budget_before,
                     "budget_after": b.budget_after,
                     "before_usd_per_month": round(b.before_usd, 6),
                     "after_usd_per_month": round(b.after_usd, 6),
                     "exhausted_on_day_before": b.day_before,
                     "exhausted_on_day_after": b.day_after,
                     "exhausted_by_change": b.exhausted_by_change} for b in report.budgets],
        "notes": list(report.notes),
    }
