"""No output of any command shows a secret (SPEC section 7).

Every command runs, as users run it (a new `gatewayctl` process), over manifest roots full of
canaries: provider and consumer keys in `.secrets/` (what the local gateway reads), a key in a
manifest comment, literal credentials in the wrong fields, a link to a credentials file outside
the root, credentials in the environment (GitLab and CI job tokens, a provider key), and a
Kubernetes token in the kubeconfig. Then every output is scanned: stdout and stderr (text, JSON,
markdown), reports, rendered files, saved plans, the objects stored in the cluster, the
merge-request note, the local gateway's logs and state, what the mock provider saw, responses
through the gateway, and crash logs. Not one canary, nor any 12 characters of one, may appear.

To cover a new command, run it through `World.run` (or scan its files with `World.scan`) in
the test of its area, or add a test here.
"""

from __future__ import annotations

import base64
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from gatewayctl.local.process import free_port
from tests.cli.helpers import gatewayctl, git, git_checkout
from tests.conftest import REPO
from tests.fakes.gitlab_api import GitLabAPIServer
from tests.fakes.http import ServedHTTP
from tests.fakes.kubeapi import KubeAPIServer

FIXTURE_ROOT = REPO / "tests" / "plan" / "fixtures" / "root"

# Secrets the gateway reads from .secrets/ (one shaped like a provider key, one not shaped like
# anything: a secret need not look like one to stay unprinted).
PROVIDER_KEY = "sk-proj-CanaryProvider-sQ9Jc9EWnJAifOjM611rVh08"
CONSUMER_KEY = "canary-consumer-ju2pJ0xLKslaUPHfSLwJdlih"
HELPDESK_KEY = "sk-CanaryHelpdesk-h3PynqkwPDXN3PBfzd4eYUAc"
# A key someone left in a manifest comment (valid YAML, no field holds it).
COMMENT_KEY = "sk-proj-CanaryComment-o7k9VEsr7NNjnGT8v7JmAcRP"
# Credentials of the environment a CI job runs in.
GITLAB_TOKEN = "glpat-prQua90RdOvneIMeENDKiyEQ"
JOB_TOKEN = "glcbt-TewloB5FmLxwk1SiEEf2WDbp"
ENV_PROVIDER_KEY = "sk-CanaryEnvironment-mTP2ue0fshSN8L31wcfk7shD"
KUBE_TOKEN = "canary-kube-0pCpk8PjToDbUROFjBksypuI"
WRONG_KUBE_TOKEN = "canary-wrong-kube-vbEnqF7nfr7JAuhzMeByIkZv"
# Literal credentials in the wrong fields, and what a link out of the root would expose.
LITERAL_OPENAI = "sk-proj-CanaryLiteral-x0rv8ZH1CaWc3gsCJ9L7zoRh"
LITERAL_ANTHROPIC = "sk-ant-api03-Canary-9rMpiIzAA6YKaHUa3EQpYsF7"
LITERAL_AWS = "AKIALY4VEDRHODPYZ5TC"  # AKIA and 16 capitals or digits
LITERAL_RANDOM = "JSAtKeZg6P4mZhbUqzpFKqQu0CanaryRnd"  # no known shape: looks random
DOCKER_AUTH = base64.b64encode(b"canary:P0qAlzQVlO5O7AGtp5nxEaYN").decode()

CANARIES = (
    PROVIDER_KEY, CONSUMER_KEY, HELPDESK_KEY, COMMENT_KEY, GITLAB_TOKEN, JOB_TOKEN,
    ENV_PROVIDER_KEY, KUBE_TOKEN, WRONG_KUBE_TOKEN, LITERAL_OPENAI, LITERAL_ANTHROPIC,
    LITERAL_AWS, LITERAL_RANDOM, DOCKER_AUTH,
)


def _pieces(secret: str) -> set[str]:
    """The secret, every 12-character window of it (a truncated echo is a leak too), and its
    base64 form (a secret copied into a Kubernetes Secret or a header)."""
    windows = {secret[i : i + 12] for i in range(len(secret) - 11)}
    encoded = base64.b64encode(secret.encode()).decode()
    return windows | {encoded[:16]}


def pieces_of(canaries: tuple[str, ...]) -> dict[str, str]:
    """What to look for: piece -> the canary it belongs to. Pieces two canaries share
    ("sk-proj-Cana") would blame the wrong one; each canary has a random part of its own, whose
    pieces are enough."""
    every = [piece for secret in canaries for piece in _pieces(secret)]
    return {
        piece: secret
        for secret in canaries
        for piece in _pieces(secret)
        if every.count(piece) == 1
    }


PIECES = pieces_of(CANARIES)


def leaks(text: str, pieces: dict[str, str] = PIECES) -> list[str]:
    """Which canaries the text shows."""
    return sorted({secret for piece, secret in pieces.items() if piece in text})


class World:
    """A place to run commands with canaries all around, and to collect what they print."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.state = tmp_path / "state"
        self.tmpdir = tmp_path / "tmp"  # crash logs land here (TMPDIR)
        self.tmpdir.mkdir()
        self.env = {
            "GITLAB_TOKEN": GITLAB_TOKEN,
            "CI_JOB_TOKEN": JOB_TOKEN,
            "OPENAI_API_KEY": ENV_PROVIDER_KEY,
            "GATEWAYCTL_STATE_DIR": str(self.state),
            "TMPDIR": str(self.tmpdir),
            "NO_COLOR": "1",
        }
        self.found: dict[str, list[str]] = {}

    def run(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 180) -> tuple[int, str]:
        proc = gatewayctl(*args, env={**self.env, **(env or {})}, cwd=cwd or self.tmp,
                          timeout=timeout)
        self.check(f"gatewayctl {' '.join(args)}", proc.stdout + "\n" + proc.stderr)
        return proc.returncode, proc.stdout + proc.stderr

    def check(self, where: str, text: str) -> None:
        shown = leaks(text)
        if shown:
            self.found.setdefault(where, []).extend(shown)

    def scan(self, where: str, path: Path) -> None:
        """Every file under `path` (or the file itself), hidden ones included."""
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            self.check(f"{where}: {f.relative_to(self.tmp)}",
                       f.read_bytes().decode("utf-8", "replace"))

    def assert_clean(self) -> None:
        self.scan("crash logs and temporary files", self.tmpdir)
        assert not self.found, "secrets shown:\n" + "\n".join(
            f"  {where}: {', '.join(secrets)}" for where, secrets in sorted(self.found.items()))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    gatewayctl("down", env=w.env, cwd=tmp_path)  # never leave a gateway behind


def add_secrets(root: Path) -> None:
    for secret, key, value in (("openai-credentials", "api-key", PROVIDER_KEY),
                               ("search-app-key", "key", CONSUMER_KEY),
                               ("helpdesk-key", "key", HELPDESK_KEY)):
        folder = root / ".secrets" / secret
        folder.mkdir(parents=True, exist_ok=True)
        (folder / key).write_text(value + "\n")


def valid_root(path: Path) -> Path:
    """The plan fixture (a rollout, a prompt, key-protected routes, consumers) as a Git
    checkout, with the keys in .secrets/ (ignored by Git) and a key in a comment."""
    root = git_checkout(path, FIXTURE_ROOT)
    routes = root / "routes.yaml"
    routes.write_text(f"# the old key was {COMMENT_KEY}; rotated\n" + routes.read_text())
    (root / ".gitignore").write_text(".secrets/\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "comment")
    add_secrets(root)
    return root


def set_step(root: Path, step: int) -> None:
    routes = root / "routes.yaml"
    text = routes.read_text()
    assert "  step: 1\n" in text
    routes.write_text(text.replace("  step: 1\n", f"  step: {step}\n"))


LEAKY = f"""\
apiVersion: gatewayctl.dev/v1alpha1
kind: Model
metadata: {{name: leaky}}
spec:
  provider: openai
  contextWindow: "{LITERAL_OPENAI}"
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Route
metadata: {{name: leaky-route}}
spec:
  backends: [{{model: gpt-4o-2024-08-06, weight: 100}}]
  timeout: "{LITERAL_ANTHROPIC}"
  retry: {{perTryTimeout: "Bearer {LITERAL_RANDOM}"}}
  policies: [{LITERAL_OPENAI.lower()}]
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Policy
metadata: {{name: "{LITERAL_AWS}"}}
spec:
  {LITERAL_RANDOM}: 1
"""


def invalid_root(path: Path) -> Path:
    """The valid root plus literal credentials in wrong fields and a link to a runner's
    Docker credentials outside the root."""
    root = valid_root(path)
    (root / "leaky.yaml").write_text(LEAKY)
    docker = path.parent / "home" / ".docker"
    docker.mkdir(parents=True)
    config = docker / "config.json"
    config.write_text(json.dumps({"auths": {"registry.example.com": {"auth": DOCKER_AUTH}}}))
    (root / "docker.yaml").symlink_to(config)
    return root


# --- validate, render, plan and apply on folders and Git ------------------------------------


def test_validate_render_plan_apply_show_no_secret(world: World) -> None:
    root = valid_root(world.tmp / "root")
    cq, ju = world.tmp / "reports" / "cq.json", world.tmp / "reports" / "junit.xml"
    reports = ["--report", f"codequality={cq}", "--report", f"junit={ju}"]
    assert world.run("validate", str(root), *reports)[0] == 0
    assert world.run("validate", str(root), "-o", "json", "--strict")[0] in (0, 1)
    world.scan("validate reports", world.tmp / "reports")

    out = world.tmp / "bundle"
    assert world.run("render", str(root), "--out", str(out))[0] == 0
    world.scan("render --out", out)

    set_step(root, 2)
    saved = world.tmp / "plan.json"
    for fmt in ("text", "json", "markdown"):
        assert world.run("plan", str(root), "--live", f"dir:{out}", "-o", fmt,
                         "--detailed-exitcode")[0] == 2
    assert world.run("plan", str(root), "--live", "git:HEAD", "-o", "markdown")[0] == 0
    assert world.run("plan", str(root), "--live", f"dir:{out}", "--out", str(saved))[0] == 0
    world.scan("plan --out", saved)
    code, text = world.run("apply", str(saved), "--live", f"dir:{out}", "--auto-approve")
    assert code == 0, text
    world.scan("apply --live dir:", out)

    assert world.run("rollout", "status", "chat-nov", "--root", str(root))[0] == 0
    assert world.run("rollout", "status", "chat-nov", "--root", str(root), "-o", "json")[0] == 0
    assert world.run("rollout", "promote", "chat-nov", "--root", str(root))[0] == 0
    assert world.run("schema", "export", str(world.tmp / "schemas"))[0] == 0
    world.assert_clean()


def test_every_command_on_a_root_with_literal_credentials_shows_none(world: World) -> None:
    root = invalid_root(world.tmp / "root")
    cq, ju = world.tmp / "reports" / "cq.json", world.tmp / "reports" / "junit.xml"
    code, text = world.run("validate", str(root), "--report", f"codequality={cq}",
                           "--report", f"junit={ju}")
    assert code == 1 and "error[GW402]" in text and "error[GW009]" in text
    assert world.run("validate", str(root), "-o", "json")[0] == 1
    world.scan("validate reports", world.tmp / "reports")
    out = world.tmp / "bundle"
    assert world.run("render", str(root), "--out", str(out))[0] == 1
    for fmt in ("text", "json", "markdown"):
        assert world.run("plan", str(root), "--live", f"dir:{out}", "-o", fmt)[0] == 1
    assert world.run("plan", str(root), "--live", "git:HEAD")[0] == 1
    assert world.run("apply", str(root), "--live", f"dir:{out}", "--auto-approve")[0] == 1
    world.run("rollout", "status", "chat-nov", "--root", str(root))  # read-only: may answer
    assert world.run("rollout", "promote", "chat-nov", "--root", str(root))[0] == 1
    assert world.run("up", str(root), "--port", str(free_port()), "--admin-port",
                     str(free_port()))[0] == 1
    world.assert_clean()


# --- Kubernetes and the merge-request note ----------------------------------------------------


def test_kubernetes_plan_apply_and_the_merge_request_note_show_no_secret(world: World) -> None:
    root = valid_root(world.tmp / "root")
    with KubeAPIServer(namespaces=("ai-gateway",), token=KUBE_TOKEN) as kube, \
            GitLabAPIServer() as gitlab:
        kubeconfig = kube.write_kubeconfig(world.tmp / "kubeconfig", token=KUBE_TOKEN)
        wrong = kube.write_kubeconfig(world.tmp / "wrong-kubeconfig", token=WRONG_KUBE_TOKEN)
        gitlab.add_token(GITLAB_TOKEN, "gatewayctl-bot", role="developer")
        project = gitlab.add_project("platform/gateway-config")
        gitlab.add_merge_request(project.id, source_branch="feature")
        ci = {"CI_API_V4_URL": gitlab.api_url, "CI_SERVER_URL": gitlab.url,
              "CI_PROJECT_ID": str(project.id), "CI_PROJECT_PATH": "platform/gateway-config",
              "CI_MERGE_REQUEST_IID": "1"}
        kube_args = ["--live", "kubernetes", "--kubeconfig", str(kubeconfig)]

        code, text = world.run("plan", str(root), *kube_args, "-o", "markdown",
                               "--gitlab-comment", "--require-comment", env=ci)
        assert code == 0, text
        assert world.run("apply", str(root), *kube_args, "--auto-approve", "--timeout",
                         "10s")[0] == 0
        set_step(root, 2)
        for fmt in ("text", "json"):
            assert world.run("plan", str(root), *kube_args, "-o", fmt)[0] == 0
        assert world.run("rollout", "status", "chat-nov", "--root", str(root), "--live",
                         "kubernetes", env={"KUBECONFIG": str(kubeconfig)})[0] == 0
        assert world.run("plan", str(root), "--live", "kubernetes", "--kubeconfig",
                         str(wrong))[0] == 1

        world.check("objects stored in the cluster", json.dumps(kube.dump()))
        for note in gitlab.notes(project.id, 1):
            world.check("merge-request note", json.dumps(note))
        assert gitlab.notes(project.id, 1), "the plan was not posted"
    world.assert_clean()


# --- the local gateway -------------------------------------------------------------------------


class _EchoingProvider(BaseHTTPRequestHandler):
    """An upstream that refuses the credential and, like some providers do, echoes it back."""

    seen: list[str] = []  # the credentials it was sent

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.seen.append(str(self.headers.get("authorization")))
        body = json.dumps({"error": {
            "message": f"Incorrect API key provided: {self.headers.get('authorization')}",
            "type": "invalid_request_error", "code": "invalid_api_key"}}).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("www-authenticate", f"Bearer realm={self.headers.get('authorization')}")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echoing_provider() -> Iterator[int]:
    with ServedHTTP(_EchoingProvider) as served:
        yield served.port


def local_root(path: Path, listener: int, endpoint: str) -> Path:
    root = path / "root"
    shutil.copytree(FIXTURE_ROOT, root)
    gateway = (root / "gateway.yaml").read_text()
    gateway = gateway.replace("listener: {port: 8080}", f"listener: {{port: {listener}}}")
    (root / "gateway.yaml").write_text(gateway.replace("https://api.openai.com", endpoint))
    add_secrets(root)
    return root


def call(listener: int, key: str) -> str:
    """A chat completion through the gateway; the whole response (status, headers, body)."""
    body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
    req = urllib.request.Request(
        f"http://127.0.0.1:{listener}/v1/chat/completions", data=body.encode(), method="POST",
        headers={"content-type": "application/json", "authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback
            return f"{resp.status}\n{resp.headers}\n{resp.read().decode()}"
    except urllib.error.HTTPError as err:
        return f"{err.code}\n{err.headers}\n{err.read().decode()}"


def _state_port(world: World, name: str) -> int:
    return int(json.loads((world.state / "state.json").read_text())[name])


@pytest.mark.envoy
@pytest.mark.slow
def test_the_local_gateway_shows_no_secret(world: World) -> None:
    listener = free_port()
    unreachable = f"http://127.0.0.1:{free_port()}"  # the mock stands in for the provider
    root = local_root(world.tmp, listener, unreachable)

    code, text = world.run("up", str(root), "--admin-port", str(free_port()))
    assert code == 0, text
    world.check("a chat completion with a consumer key", call(listener, CONSUMER_KEY))
    world.check("a chat completion with a wrong key", call(listener, HELPDESK_KEY[:-3] + "xyz"))
    mock = _state_port(world, "mock_port")
    with urllib.request.urlopen(f"http://127.0.0.1:{mock}/_mock/requests",  # noqa: S310
                                timeout=5) as resp:
        world.check("what the mock provider saw (/_mock/requests)", resp.read().decode())
    for args in (("status",), ("logs", "--tail", "all"), ("logs", "access", "--tail", "all")):
        assert world.run(*args)[0] == 0
    set_step(root, 2)
    assert world.run("plan", str(root), "--live", "local", "-o", "json",
                     "--detailed-exitcode")[0] == 2
    assert world.run("apply", str(root), "--live", "local", "--auto-approve")[0] == 0
    assert world.run("down")[0] == 0
    # state/secrets/ is the gateway's secret volume, the one place the keys must be: private.
    volume = world.state / "secrets"
    for path in [volume, *volume.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    for path in world.state.iterdir():
        if path != volume:
            world.scan("local gateway state and logs", path)
    world.assert_clean()


@pytest.mark.envoy
@pytest.mark.slow
def test_an_upstream_that_echoes_the_credential_does_not_reach_the_client(
    world: World, echoing_provider: int
) -> None:
    listener = free_port()
    root = local_root(world.tmp, listener, f"http://127.0.0.1:{echoing_provider}")

    code, text = world.run("up", str(root), "--port", str(listener), "--admin-port",
                           str(free_port()))
    assert code == 0, text
    _EchoingProvider.seen.clear()
    response = call(listener, CONSUMER_KEY)
    # The provider got the real key and echoed it; the client must not get it back.
    assert f"Bearer {PROVIDER_KEY}" in _EchoingProvider.seen, _EchoingProvider.seen
    assert response.split("\n", 1)[0] in ("401", "502", "503"), response
    world.check("the response to a request the provider refused", response)
    assert world.run("logs", "--tail", "all")[0] == 0
    assert world.run("logs", "access", "--tail", "all")[0] == 0
    assert world.run("down")[0] == 0
    world.assert_clean()


def test_the_scan_finds_what_it_looks_for(world: World) -> None:
    # The scanner itself: whole, truncated and base64 forms are found; masked text is not.
    assert leaks(f"key: {PROVIDER_KEY}") == [PROVIDER_KEY]
    assert leaks(f'got "{LITERAL_OPENAI[:20]}..."') == [LITERAL_OPENAI]
    assert leaks(base64.b64encode(CONSUMER_KEY.encode()).decode()) == [CONSUMER_KEY]
    assert leaks("sk-proj-**** and .secrets/openai-credentials/api-key") == []
    # And the harness reports what it finds, in outputs and in files.
    world.check("an output", f"Bearer {CONSUMER_KEY[:-4]}")
    (world.tmpdir / "gatewayctl-crash-1.log").write_text(f"token={KUBE_TOKEN}\n")
    with pytest.raises(AssertionError) as found:
        world.assert_clean()
    assert f"an output: {CONSUMER_KEY}" in str(found.value)
    assert f"crash logs and temporary files: tmp/gatewayctl-crash-1.log: {KUBE_TOKEN}" in str(
        found.value
    )
    world.found.clear()


# --- explain, test, import litellm, render --target litellm ------------------------------------

REQUEST_TESTS = """\
apiVersion: gatewayctl.dev/v1alpha1
kind: RequestTest
metadata: {name: keys}
spec:
  cases:
    - name: search reaches chat
      consumer: search-app
      request: {model: chat, messages: [{role: user, content: hi}]}
      expect: {status: 200, route: chat}
    - name: a helpdesk request fails on purpose
      consumer: helpdesk
      request: {model: chat, messages: [{role: user, content: hi}]}
      expect: {status: 418}
"""

LITELLM_CONFIG = f"""\
model_list:
  - model_name: gpt-4o
    litellm_params: {{model: openai/gpt-4o, api_key: {LITERAL_OPENAI}, rpm: 10}}
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_key: {LITERAL_ANTHROPIC}
      aws_secret_access_key: {LITERAL_RANDOM}
  - model_name: local
    litellm_params: {{model: openai/x, api_base: "https://u:{LITERAL_AWS}@llm.example.com/v1"}}
general_settings: {{master_key: {CONSUMER_KEY}, database_url: "postgresql://u:{HELPDESK_KEY}@db/x"}}
"""


def test_explain_test_and_litellm_show_no_secret(world: World) -> None:
    root = valid_root(world.tmp / "root")
    (root / "tests.yaml").write_text(REQUEST_TESTS)
    request = world.tmp / "request.json"
    request.write_text(json.dumps({
        "model": "support", "messages": [{"role": "user", "content": PROVIDER_KEY}],
        "prompt_variables": {"product": LITERAL_OPENAI, "language": ENV_PROVIDER_KEY}}))
    for args in ([], ["-o", "json"], ["--consumer", "helpdesk"],
                 ["-H", f"authorization: Bearer {CONSUMER_KEY}", "-o", "json"],
                 ["-H", f"x-api-key: {HELPDESK_KEY}"]):
        assert world.run("explain", str(root), "--request", str(request), *args)[0] == 0
    code, text = world.run("test", str(root), "--report", f"junit={world.tmp / 'reports.xml'}")
    assert code == 1 and "a helpdesk request fails on purpose" in text
    world.scan("test --report junit", world.tmp / "reports.xml")

    # live: the keys come from the local gateway's state, and must not be shown either
    listener = free_port()
    assert world.run("up", str(root), "--port", str(listener), "--admin-port",
                     str(free_port()))[0] == 0
    code, text = world.run("test", str(root), "--live", "local")
    assert code == 1 and "1 passed, 1 failed (live: local gateway)" in text, text
    assert world.run("down")[0] == 0

    out = world.tmp / "litellm"
    assert world.run("render", str(root), "--target", "litellm", "--out", str(out))[0] == 0
    assert world.run("render", str(root), "--target", "litellm")[0] == 0
    world.scan("render --target litellm", out)

    config = world.tmp / "litellm-config.yaml"
    config.write_text(LITELLM_CONFIG)
    imported = world.tmp / "imported"
    code, text = world.run("import", "litellm", str(config), "--out", str(imported))
    assert code == 0 and "a literal API key" in text, text
    world.scan("import litellm --out", imported)
    assert world.run("validate", str(imported))[0] == 0
    world.assert_clean()
