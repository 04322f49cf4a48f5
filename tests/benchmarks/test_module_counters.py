"""Counters a compiled filter increments itself, measured by benchmarks/dataplane_module.py
(`module-counters` against `meta-stats-log`): in a real Envoy 1.40 they come out at
/stats/prometheus under the names, labels and values of the gateway's stats access logger,
provided the filter's metrics namespace is `gatewayctl` and Envoy's runtime flag that strips
a dynamic module's namespace stays off (its default in 1.40); with the flag on, the names
change."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.dataplane_gateway import UPSTREAM_MODEL, request_body
from benchmarks.dataplane_module import (
    KEEP_NAMESPACE_RUNTIME,
    SEARCH_PATH,
    build_module,
    with_counting,
)
from benchmarks.dataplane_procs import free_port, http_call
from benchmarks.dataplane_targets import AUTH, CHAT_PATH, Placement, minimal_bootstrap, start_mock

pytestmark = [
    pytest.mark.skipif(shutil.which("envoy") is None, reason="envoy not installed"),
    pytest.mark.skipif(
        shutil.which("gcc") is None and shutil.which("cc") is None, reason="no C compiler"
    ),
]

REQUESTS = 3
LABELS = '{consumer="bench-app",route="bench-full",model="bench-model"}'
# What the benchmark's filters record per reply: one request, 28 + 16 tokens, 230,000 nano-USD.
EXPECTED = {
    f"envoy_gatewayctl_consumer_requests{LABELS}": 1 * REQUESTS,
    f"envoy_gatewayctl_consumer_prompt_tokens{LABELS}": 28 * REQUESTS,
    f"envoy_gatewayctl_consumer_completion_tokens{LABELS}": 16 * REQUESTS,
    f"envoy_gatewayctl_consumer_cost_nano_usd{LABELS}": 230000 * REQUESTS,
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., dict[str, int]]]:
    """Runs one minimal-route Envoy per call with the benchmark module's filter; returns the
    counters of /stats/prometheus whose name mentions `consumer` after REQUESTS chat requests."""
    work = tmp_path_factory.mktemp("module-counters")
    library = build_module(work / "lib")
    mock = start_mock(work, Placement(None, None))

    def serve(filter_name: str, *, stats_log: bool, runtime: dict[str, Any] | None = None
              ) -> dict[str, int]:
        port, admin = free_port(), free_port()
        bootstrap: dict[str, Any] = minimal_bootstrap(port, admin, mock.port)
        with_counting(filter_name, stats_log=stats_log)(bootstrap)
        if runtime is not None:
            bootstrap["layered_runtime"] = runtime
        run = Path(tempfile.mkdtemp(prefix=f"{filter_name}-", dir=work))
        config = run / "bootstrap.json"
        config.write_text(json.dumps(bootstrap))
        env = {**os.environ, SEARCH_PATH: str(library.parent)}
        with (run / "envoy.log").open("wb") as log:
            proc = subprocess.Popen(
                ["envoy", "-c", str(config), "--concurrency", "1", "--disable-hot-restart",
                 "-l", "warning"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=run,
            )  # fmt: skip
        try:
            _wait_ready(proc, admin, run / "envoy.log")
            body = request_body(UPSTREAM_MODEL, prompt_variables=False)
            for _ in range(REQUESTS):
                assert http_call(port, "POST", CHAT_PATH, body, AUTH)[0] == 200
            url = f"http://127.0.0.1:{admin}/stats/prometheus"
            with urllib.request.urlopen(url, timeout=10) as resp:
                text = resp.read().decode()
        finally:
            proc.terminate()
            proc.wait(30)
        return {
            name: int(value)
            for name, _, value in (line.rpartition(" ") for line in text.splitlines())
            if "consumer" in name and not name.startswith("#")
        }

    try:
        yield serve
    finally:
        mock.stop()


def _wait_ready(proc: subprocess.Popen[bytes], admin: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"envoy exited {proc.returncode}:\n{log.read_text()}")
        try:
            if http_call(admin, "GET", "/ready", None, {})[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"envoy did not get ready:\n{log.read_text()}")
        time.sleep(0.05)


def test_module_counters_read_as_the_stats_access_loggers(
    served: Callable[..., dict[str, int]],
) -> None:
    logged = served("meta", stats_log=True)
    counted = served("counters", stats_log=False)
    assert logged == EXPECTED
    assert counted == EXPECTED


def test_the_runtime_flag_keeps_the_names(served: Callable[..., dict[str, int]]) -> None:
    """The flag's default (off) is what keeps the names; the benchmark sets it off explicitly,
    as a product filter should, because with it on (a later Envoy's default, perhaps) the
    counters lose the `envoy_gatewayctl_` prefix that dashboards, alerts and `plan --traffic`
    read."""
    assert served("counters", stats_log=False, runtime={"layers": []}) == EXPECTED
    flag = "envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix"
    layer = KEEP_NAMESPACE_RUNTIME["layers"][0]
    assert layer["static_layer"] == {flag: False}
    on = {"layers": [{"name": "static", "static_layer": {flag: True}}]}
    counted = served("counters", stats_log=False, runtime=on)
    assert counted == {
        name.removeprefix("envoy_gatewayctl_"): value for name, value in EXPECTED.items()
    }
