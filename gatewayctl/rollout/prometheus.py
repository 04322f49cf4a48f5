"""The only code that talks to Prometheus: its HTTP query API over urllib, behind one error.

`query` runs an instant query and returns the `data` of Prometheus' answer (a vector, a matrix
of raw samples for a range selector, or a scalar). Every failure (refused connection, timeout,
an HTTP error, `"status": "error"`) becomes one `PrometheusError` that keeps Prometheus' own
message. No retries: `rollout analyze` runs on a schedule, and an unreachable Prometheus is an
error the pipeline should show, not hide.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from gatewayctl.errors import GatewayctlError


class PrometheusError(GatewayctlError):
    """A query could not be answered."""


@dataclass(frozen=True)
class Series:
    """One time series: its labels (sorted) and its samples (unix seconds, value)."""

    labels: tuple[tuple[str, str], ...]
    samples: tuple[tuple[float, float], ...]

    def label(self, name: str) -> str:
        return dict(self.labels).get(name, "")


class PrometheusClient:
    def __init__(self, url: str, *, timeout: float = 10.0, flag: str = "--prometheus") -> None:
        """flag: the option that gave the URL, for the hints."""
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise GatewayctlError(f"{url!r} is not a Prometheus URL",
                                  hint="give its base URL, e.g. http://prometheus:9090")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.flag = flag

    def query(self, expr: str, at: float) -> dict[str, Any]:
        """An instant query at unix time `at`; returns Prometheus' `data` object."""
        params = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
        request = urllib.request.Request(
            f"{self.url}/api/v1/query", data=params.encode(), method="POST",
            headers={"content-type": "application/x-www-form-urlencoded",
                     "accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:  # noqa: S310
                body = resp.read()
        except urllib.error.HTTPError as err:
            detail = _error_message(err.read()) or err.reason
            raise PrometheusError(f"Prometheus at {self.url} answered {err.code}: {detail}",
                                  hint=f"the query was: {expr}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {reason}",
                                  hint=f"check {self.flag} and that Prometheus is running") \
                from None
        try:
            answer = json.loads(body)
        except ValueError:
            raise PrometheusError(f"{self.url} did not answer with Prometheus JSON",
                                  hint=f"check that {self.flag} points at Prometheus") from None
        if not isinstance(answer, dict) or answer.get("status") != "success":
            detail = answer.get("error", "unknown error") if isinstance(answer, dict) else "?"
            raise PrometheusError(f"Prometheus refused the query: {detail}",
                                  hint=f"the query was: {expr}")
        data = answer.get("data")
        if not isinstance(data, dict):
            raise PrometheusError("Prometheus answered without data")
        return data

    def series(self, expr: str, at: float) -> list[Series]:
        """A range selector's raw samples (a matrix) or an instant vector, as `Series`."""
        data = self.query(expr, at)
        kind = data.get("resultType")
        out: list[Series] = []
        for item in data.get("result") or []:
            labels = tuple(sorted((str(k), str(v)) for k, v in item.get("metric", {}).items()))
            if kind == "matrix":
                samples = tuple((float(t), _number(v)) for t, v in item.get("values", []))
            else:
                t, v = item.get("value", (at, "NaN"))
                samples = ((float(t), _number(v)),)
            out.append(Series(labels, samples))
        if kind == "scalar":
            t, v = data.get("result", (at, "NaN"))
            out.append(Series((), ((float(t), _number(v)),)))
        return out


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _error_message(body: bytes) -> str:
    try:
        answer = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:300]
    return str(answer.get("error", "")) if isinstance(answer, dict) else ""
