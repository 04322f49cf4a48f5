"""`gatewayctl rollout ...` through the CLI: edits, Git commits, exit codes, messages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.rollout.fake_prometheus import FakePrometheus
from tests.rollout.helpers import ROLLOUT, changed, cli, git, make_root

CANARY, STABLE = "r_chat_gpt-4o-2024-11-20", "r_chat_gpt-4o-2024-08-06"
STAMP_LINE = re.compile(
    r'^    gatewayctl\.dev/step-started-at: "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"\n$')


def invoke(*args: str) -> tuple[int, str, str]:
    runner = cli()
    result = runner.invoke(["rollout", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path / "repo", git=True)


def test_promote_commit_edits_only_the_step_and_records_its_start(root: Path) -> None:
    before = (root / "rollout.yaml").read_text()
    code, out, err = invoke("promote", "chat-nov", "--root", str(root), "--commit")
    assert (code, err) == (0, "")
    after = (root / "rollout.yaml").read_text()
    removed, added = changed(before, after)
    assert removed == ["  step: 1      # 5%\n"]
    assert added[0] == "  annotations:\n" and STAMP_LINE.match(added[1])
    assert added[2:] == ["  step: 2      # 5%\n"]
    assert out.splitlines()[0] == ("rollout chat-nov: promote step 1/3 (progressing), canary "
                                   "5% -> step 2/3 (progressing), canary 25%")
    assert out.splitlines()[1] == "edited rollout.yaml (+3 -1 lines)"
    assert git(root, "log", "-1", "--format=%s") == "rollout chat-nov: promote to step 2/3 " \
        "(canary 25%)"
    assert git(root, "show", "--name-only", "--format=", "HEAD") == "rollout.yaml"
    assert git(root, "status", "--porcelain") == ""


def test_dry_run_shows_the_diff_and_writes_nothing(root: Path) -> None:
    code, out, _ = invoke("abort", "chat-nov", "--root", str(root), "--dry-run")
    assert code == 0
    assert "-  state: progressing\n+  state: aborted\n" in out
    assert (root / "rollout.yaml").read_text() == ROLLOUT


def test_abort_pause_resume_and_the_restart_rule(root: Path) -> None:
    assert invoke("pause", "chat-nov", "--root", str(root))[0] == 0
    assert "state: paused" in (root / "rollout.yaml").read_text()
    assert invoke("resume", "chat-nov", "--root", str(root))[0] == 0
    assert invoke("abort", "chat-nov", "--root", str(root))[0] == 0
    code, out, err = invoke("promote", "chat-nov", "--root", str(root))
    assert (code, out) == (1, "")
    assert err == ("error: the rollout was aborted at step 1; it restarts only explicitly\n"
                   "  hint: run `rollout promote NAME --to 1` to start again from the first "
                   "step\n")
    code, out, _ = invoke("promote", "chat-nov", "--root", str(root), "--to", "1")
    assert code == 0 and "-> step 1/3 (progressing), canary 5%" in out


def test_unknown_rollout_and_bad_options(root: Path) -> None:
    code, _, err = invoke("status", "chat-nvo", "--root", str(root))
    assert code == 1
    assert err == f"error: no Rollout named chat-nvo under {root}\n" \
        "  hint: did you mean chat-nov?\n"
    code, _, err = invoke("promote", "chat-nov", "--root", str(root), "--apply")
    assert (code, err.splitlines()[0]) == (
        1, "error: --apply needs --live SOURCE (local, kubernetes, dir:PATH)")


def test_status_json(root: Path) -> None:
    code, out, _ = invoke("status", "chat-nov", "--root", str(root), "-o", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["git"]["weights"] == {"gpt-4o-2024-08-06": 95, "gpt-4o-2024-11-20": 5}
    assert (doc["step"], doc["state"], doc["lastAnalysis"]) == (1, "progressing", None)
    assert doc["pause"]["elapsed"] is False  # 10m from the commit a moment ago


def traffic(fake: FakePrometheus, cluster: str, requests: int, errors: int) -> None:
    fake.add_traffic(cluster, requests, errors)


@pytest.mark.parametrize(("canary", "code", "verdict"), [
    ((200, 2), 0, "PASS"), ((200, 20), 2, "FAIL"), ((40, 0), 3, "INCONCLUSIVE")])
def test_analyze_exit_codes(root: Path, canary: tuple[int, int], code: int,
                            verdict: str) -> None:
    with FakePrometheus() as fake:
        traffic(fake, CANARY, *canary)
        traffic(fake, STABLE, 800, 0)
        got, out, err = invoke("analyze", "chat-nov", "--root", str(root), "--prometheus",
                               fake.url)
    assert (got, err) == (code, "")
    assert out.splitlines()[0].endswith(f": {verdict}")
    status = invoke("status", "chat-nov", "--root", str(root))[1]
    assert f"last analysis: {verdict} at " in status


def test_analyze_markdown_and_json(root: Path) -> None:
    with FakePrometheus() as fake:
        traffic(fake, CANARY, 200, 20)
        traffic(fake, STABLE, 800, 0)
        _, md, _ = invoke("analyze", "chat-nov", "--root", str(root), "--prometheus", fake.url,
                          "-o", "markdown")
        _, js, _ = invoke("analyze", "chat-nov", "--root", str(root), "--prometheus", fake.url,
                          "-o", "json")
    assert "| error-rate | ❌ fail | 10.00% | 0.00% | max 2.00% | canary 10.00% > 2.00% |" in md
    doc = json.loads(js)
    assert (doc["verdict"], doc["canary"]["attempts"], doc["canary"]["errors"]) == (
        "fail", 200, 20)


def test_analyze_without_prometheus_is_an_error(root: Path) -> None:
    code, _, err = invoke("analyze", "chat-nov", "--root", str(root), "--prometheus",
                          "http://127.0.0.1:9")
    assert code == 1
    assert err.startswith("error: cannot reach Prometheus at http://127.0.0.1:9: ")


def test_advance_waits_while_the_pause_runs_and_aborts_a_failure_at_once(root: Path) -> None:
    with FakePrometheus() as fake:
        traffic(fake, CANARY, 200, 0)
        traffic(fake, STABLE, 800, 0)
        code, out, _ = invoke("advance", "chat-nov", "--root", str(root), "--prometheus",
                              fake.url)
    assert code == 0
    assert re.search(r"^decision: wait: analysis passed; pause 10m: \d+m\d\ds left", out, re.M)
    assert (root / "rollout.yaml").read_text() == ROLLOUT
    with FakePrometheus() as fake:
        traffic(fake, CANARY, 200, 30)
        traffic(fake, STABLE, 800, 0)
        code, out, _ = invoke("advance", "chat-nov", "--root", str(root), "--prometheus",
                              fake.url)
    assert code == 2
    assert "decision: abort: analysis failed: error-rate" in out
    assert "state: aborted" in (root / "rollout.yaml").read_text()


def test_advance_starts_a_rollout_at_step_zero(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r", ROLLOUT.replace("step: 1      # 5%", "step: 0"))
    with FakePrometheus() as fake:
        code, out, _ = invoke("advance", "chat-nov", "--root", str(root), "--prometheus",
                              fake.url)
        assert fake.queries == []  # nothing to analyze before the canary has traffic
    assert code == 0 and "decision: start" in out
    assert "  step: 1\n" in (root / "rollout.yaml").read_text()


def test_a_paused_rollout_holds_but_a_failing_one_is_still_aborted(root: Path) -> None:
    invoke("pause", "chat-nov", "--root", str(root))
    with FakePrometheus() as fake:
        traffic(fake, CANARY, 200, 0)
        traffic(fake, STABLE, 800, 0)
        code, out, _ = invoke("advance", "chat-nov", "--root", str(root), "--prometheus",
                              fake.url)
    assert code == 0
    assert out.splitlines()[-1] == ("decision: hold: the rollout is paused; `rollout resume` "
                                    "lets it advance again")
    with FakePrometheus() as fake:
        traffic(fake, CANARY, 200, 30)
        traffic(fake, STABLE, 800, 0)
        code, out, _ = invoke("advance", "chat-nov", "--root", str(root), "--prometheus",
                              fake.url)
    assert code == 2 and "decision: abort" in out
    assert "state: aborted" in (root / "rollout.yaml").read_text()


def test_break_glass_apply_to_a_bundle_dir_and_status_reads_it_back(root: Path,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "live"
    code, text, err = invoke("promote", "chat-nov", "--root", str(root), "--apply", "--live",
                             f"dir:{out}")
    assert (code, err) == (0, "")
    assert "+ backend gpt-4o-2024-11-20: 25%" in text  # the plan it applied
    assert text.rstrip().endswith("Apply complete: 10 created, 0 changed, 0 deleted.")
    code, text, _ = invoke("status", "chat-nov", "--root", str(root), "--live", f"dir:{out}")
    assert code == 0
    assert f"  live:   gpt-4o-2024-08-06 75%, gpt-4o-2024-11-20 25% (dir:{out})" in text


def test_advance_completes_after_the_last_step(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r", ROLLOUT.replace("step: 1      # 5%", "step: 3"), git=True)
    with FakePrometheus() as fake:
        traffic(fake, CANARY, 300, 1)
        code, out, _ = invoke("advance", "chat-nov", "--root", str(root), "--prometheus",
                              fake.url, "--commit")
    assert code == 0
    assert "decision: complete: analysis passed at the last step" in out
    assert "  state: completed\n" in (root / "rollout.yaml").read_text()
    assert git(root, "log", "-1", "--format=%s") == "rollout chat-nov: complete (canary 100%)"


def test_analyze_cost_per_request_from_token_counters(tmp_path: Path) -> None:
    text = ROLLOUT.replace("      - {name: error-rate, max: 0.02}\n",
                           "      - {name: cost-per-request, maxIncrease: 20%}\n"
                           "      - {name: tokens-per-request, max: 1000}\n")
    root = make_root(tmp_path / "r", text)
    with FakePrometheus() as fake:
        traffic(fake, CANARY, 200, 0)
        traffic(fake, STABLE, 800, 0)
        for cluster, n, completion in ((CANARY, 200, 350), (STABLE, 800, 300)):
            fake.add("envoy_gatewayctl_backend_prompt_tokens", {"backend": cluster},
                     [(1, 0), (2, n * 500)])
            fake.add("envoy_gatewayctl_backend_completion_tokens", {"backend": cluster},
                     [(1, 0), (2, n * completion)])
        code, out, _ = invoke("analyze", "chat-nov", "--root", str(root), "--prometheus",
                              fake.url)
    assert code == 0, out
    assert "canary $0.004750 vs stable $0.004250 (+11.8%; bound $0.005100)" in out
    assert "canary 850 <= 1000" in out


def test_break_glass_abort_sets_live_to_stable_even_when_git_already_says_aborted(
        root: Path, tmp_path: Path) -> None:
    """`advance` committed an abort that was never applied: live still gives the canary 25%."""
    out = tmp_path / "live"
    assert invoke("promote", "chat-nov", "--root", str(root), "--apply", "--live",
                  f"dir:{out}")[0] == 0
    assert invoke("abort", "chat-nov", "--root", str(root), "--commit")[0] == 0
    status = invoke("status", "chat-nov", "--root", str(root), "--live", f"dir:{out}")[1]
    assert f"  live:   gpt-4o-2024-08-06 75%, gpt-4o-2024-11-20 25% (dir:{out})" in status
    assert "  ⚠ live differs from Git:" in status

    code, text, err = invoke("abort", "chat-nov", "--root", str(root), "--apply", "--live",
                             f"dir:{out}")

    assert (code, err) == (0, "")
    assert "already aborted" in text
    status = invoke("status", "chat-nov", "--root", str(root), "--live", f"dir:{out}")[1]
    assert "gpt-4o-2024-11-20 25%" not in status
    assert "⚠ live differs from Git" not in status
    doc = json.loads(invoke("status", "chat-nov", "--root", str(root), "--live", f"dir:{out}",
                            "-o", "json")[1])
    assert doc["live"]["matchesGit"] is True


def test_abort_without_apply_says_the_live_gateway_is_unchanged(root: Path) -> None:
    code, text, _ = invoke("abort", "chat-nov", "--root", str(root))
    assert code == 0
    assert text.splitlines()[-1] == (
        "the live gateway is unchanged: the canary keeps its traffic until this change is "
        "applied (merge it and let the default branch's apply job run, or `gatewayctl apply`); "
        "to stop it now, run `gatewayctl rollout abort chat-nov --apply --live kubernetes` "
        "(break-glass)")


def test_already_done_is_exit_0_for_promote_and_abort_alike(tmp_path: Path) -> None:
    done = make_root(tmp_path / "done", ROLLOUT.replace("state: progressing",
                                                         "state: completed"))
    stopped = make_root(tmp_path / "stopped", ROLLOUT.replace("state: progressing",
                                                               "state: aborted"))
    promote = invoke("promote", "chat-nov", "--root", str(done))
    abort = invoke("abort", "chat-nov", "--root", str(stopped))
    assert (promote[0], abort[0]) == (0, 0)
    assert "already completed" in promote[1] and "already aborted" in abort[1]
    assert (done / "rollout.yaml").read_text().count("state: completed") == 1


def test_a_root_with_errors_is_not_edited(tmp_path: Path) -> None:
    """A repository's top that holds two roots (here, a fixture beside the real one) is no
    root: the rollout found there is not necessarily the one meant, so nothing is edited."""
    top = tmp_path / "repo"
    make_root(top / "gateway")
    make_root(top / "tests" / "fixtures" / "root")
    before = (top / "tests" / "fixtures" / "root" / "rollout.yaml").read_text()

    code, out, err = invoke("promote", "chat-nov", "--root", str(top))

    assert code == 1 and out == ""
    assert err.startswith(f"error: the manifests under {top} have errors, so nothing was edited: ")
    assert "hint: run `gatewayctl validate" in err
    for root in (top / "gateway", top / "tests" / "fixtures" / "root"):
        assert (root / "rollout.yaml").read_text() == before
