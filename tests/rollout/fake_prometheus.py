"""A tiny stand-in for Prometheus' query API (`POST /api/v1/query`), for fast CLI tests.

It answers each query with the series stored under the query's leading metric name, as a
matrix for a range selector (`name{...}[5m]`) and as a vector otherwise, in Prometheus' JSON
shape; `{"status": "error"}` with HTTP 400 for a query starting with `bad`. The end-to-end
tests use the real Prometheus; this one only makes exit-code tests fast.
"""

from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from tests.fakes.http import HTTPFake

Sample = tuple[float, float]


class _Handler(BaseHTTPRequestHandler):
    api: FakePrometheus

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        status, body = self.api.answer(form["query"][0])
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakePrometheus(HTTPFake):
    def __init__(self) -> None:
        self.series: dict[str, list[tuple[dict[str, str], list[Sample]]]] = {}
        self.queries: list[str] = []

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    def add(self, metric: str, labels: dict[str, str], samples: list[Sample]) -> None:
        self.series.setdefault(metric, []).append((labels, samples))

    def add_traffic(self, cluster: str, requests: int, errors: int) -> None:
        """What Envoy's counters show after `requests` to `cluster`, `errors` of them 5xx,
        all answered within 250 ms."""
        self.add("envoy_cluster_upstream_rq_completed", {"envoy_cluster_name": cluster},
                 [(1, 0), (2, requests)])
        self.add("envoy_cluster_upstream_rq_xx", {"envoy_cluster_name": cluster,
                                                  "envoy_response_code_class": "2"},
                 [(1, 0), (2, requests - errors)])
        if errors:
            self.add("envoy_cluster_upstream_rq_xx", {"envoy_cluster_name": cluster,
                                                      "envoy_response_code_class": "5"},
                     [(2, errors)])
        for le, count in (("250", requests), ("+Inf", requests)):
            self.add("envoy_cluster_upstream_rq_time_bucket",
                     {"envoy_cluster_name": cluster, "le": le}, [(1, 0), (2, count)])

    def answer(self, query: str) -> tuple[int, dict[str, Any]]:
        self.queries.append(query)
        if query.startswith("bad"):
            return 400, {"status": "error", "errorType": "bad_data",
                         "error": "1:4: parse error: unexpected end of input"}
        name = re.match(r"^(?:count\()?([a-zA-Z_:][a-zA-Z0-9_:]*)", query)
        found = self.series.get(name.group(1) if name else "", [])
        if query.startswith("count("):
            result = [{"metric": {}, "value": [0, str(len(found))]}] if found else []
            return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}
        if query.rstrip(")").endswith("]") and not query.startswith("sum("):
            result = [{"metric": {"__name__": name.group(1) if name else "", **labels},
                       "values": [[t, str(v)] for t, v in samples]} for labels, samples in found]
            return 200, {"status": "success", "data": {"resultType": "matrix", "result": result}}
        # a plain selector keeps the metric's name, as Prometheus' answer does; an aggregation
        # (sum(...)) drops it
        named = {} if query.startswith("sum(") or not name else {"__name__": name.group(1)}
        result = [{"metric": {**named, **labels}, "value": [samples[-1][0], str(samples[-1][1])]}
                  for labels, samples in found]
        return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}
