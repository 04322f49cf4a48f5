"""A real Prometheus (Debian's `prometheus`) for the rollout tests, on 127.0.0.1 only.

Started with a temporary config and storage folder, scraping Envoy's admin
`/stats/prometheus` every second; stopped (SIGTERM, then SIGKILL) when the test ends. A missing
binary fails the test with a clear message: CI installs the package.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType

import pytest

from gatewayctl.local.process import free_port

INSTALL_HINT = (
    "the `prometheus` binary is not on PATH; the end-to-end rollout tests need Debian's "
    "package: apt-get install -y prometheus"
)


def find_prometheus() -> str:
    found = shutil.which("prometheus")
    if found is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return found


class Prometheus:
    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        *,
        interval: str = "1s",
        labels: dict[str, str] | None = None,
        rules: dict[str, object] | None = None,
    ) -> None:
        """labels: added to every scraped series (as Kubernetes service discovery adds
        `namespace`); rules: a rule file's content (groups), evaluated every interval."""
        self.binary = find_prometheus()
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "prometheus.yml"
        rule_line = ""
        if rules is not None:
            (workdir / "rules.yml").write_text(json.dumps(rules), encoding="utf-8")
            rule_line = f"rule_files: [{json.dumps(str(workdir / 'rules.yml'))}]\n"
        self.config.write_text(
            f"global: {{scrape_interval: {interval}, scrape_timeout: {interval}, "
            f"evaluation_interval: {interval}}}\n"
            + rule_line
            + "scrape_configs:\n"
            "  - job_name: envoy\n"
            "    metrics_path: /stats/prometheus\n"
            f"    static_configs: [{{targets: {json.dumps(targets)}, "
            f"labels: {json.dumps(labels or {})}}}]\n",
            encoding="utf-8")
        self.log = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prometheus:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, f"--config.file={self.config}",
                 f"--storage.tsdb.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}",
                 "--storage.tsdb.retention.time=1h", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus not ready in 30s: {self.log.read_text()[-2000:]}")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def query(self, expr: str, *, at: float | None = None) -> list[dict[str, object]]:
        """An instant query, evaluated now or at the Unix time `at`."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310
            answer = json.loads(resp.read())
        result: list[dict[str, object]] = answer["data"]["result"]
        return result

    def value(self, expr: str, *, at: float | None = None) -> float | None:
        result = self.query(expr, at=at)
        if not result:
            return None
        value = result[0]["value"]
        assert isinstance(value, list)
        return float(value[1])

    def wait_for(self, expr: str, predicate: object, *, timeout: float = 30.0) -> float:
        """Poll an instant query until `predicate(value)` holds; returns the value."""
        assert callable(predicate)
        deadline = time.monotonic() + timeout
        last: float | None = None
        while time.monotonic() < deadline:
            last = self.value(expr)
            if last is not None and predicate(last):
                return last
            time.sleep(0.25)
        raise AssertionError(f"{expr} never satisfied the condition in {timeout}s "
                             f"(last value {last})")
