"""The local gateway's Envoy config: which providers the mock serves, rendering, validation.

The mock rule. A provider is sent to the built-in mock provider unless BOTH hold:
  * it needs no credential, or its credential exists as `<root>/.secrets/<name>/<key>`
    (a generated placeholder does not count), and
  * its endpoint accepts a TCP connection from this machine within 1.5 s.
So a checkout without `.secrets/` is served entirely by the mock (no account, no traffic
leaves the machine), a local OpenAI-compatible server on 127.0.0.1 is used as is, and a real
provider is used only when its key was put in `.secrets/` and it can be reached.
`mock_all=True` sends every provider to the mock regardless.

Owns the mapping from IR + local ports to a rendered, validated bundle; starts no processes.
"""

from __future__ import annotations

import json
import shlex
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gatewayctl.atomic import write_atomic
from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import GatewayIR, ProviderIR, RouteIR, SecretRefIR
from gatewayctl.local.module import envoy_env
from gatewayctl.local.process import HOST, find_envoy, validate_config
from gatewayctl.local.state import (
    MOCK_AWS_CREDENTIAL,
    MOCK_CREDENTIAL,
    SECRETS_SOURCE,
    LocalState,
    SecretsReport,
    StateDir,
)

NODE_ID = "gatewayctl-local"
_REACH_TIMEOUT = 1.5


@dataclass(frozen=True)
class Ports:
    listener: int
    admin: int
    mock: int
    redis: int = 0  # global limits only (local/limits.py)
    ratelimit: int = 0
    cache_store: int = 0

    @classmethod
    def of(cls, state: LocalState) -> Ports:
        return cls(state.listener_port, state.admin_port, state.mock_port, state.redis_port,
                   state.ratelimit_port, state.cache_store_port)


@dataclass(frozen=True)
class ProviderChoice:
    mocked: tuple[str, ...]
    real: tuple[str, ...]
    reasons: tuple[tuple[str, str], ...]  # (provider, why it is mocked)


@dataclass(frozen=True)
class LocalBundle:
    lds: dict[str, Any]
    cds: dict[str, Any]
    bootstrap: str
    validate: str
    rds: dict[str, Any] = field(default_factory=dict)
    notice: str | None = None  # said once by `up` / `apply` (the module's Lua fallback)
    filters: str = "lua"  # the gateway's filters as served: lua or module (never auto)

    @property
    def version(self) -> str:
        return str(self.lds.get("version_info", ""))

    @property
    def docs(self) -> dict[str, dict[str, Any]]:
        return {"lds": self.lds, "cds": self.cds, "rds": self.rds}


def secret_refs(ir: GatewayIR) -> list[SecretRefIR]:
    refs = [p.credential for p in ir.providers if p.credential is not None]
    if ir.limits.scope == "global" and ir.limits.redis_password is not None:
        refs.append(ir.limits.redis_password)  # the local Redis requires it (redis_server.py)
    return refs + ir.consumer_and_jwks_secrets()


def prepare_local_secrets(state: StateDir, ir: GatewayIR, root: Path) -> SecretsReport:
    """The secret files `ir` needs, in the state directory: copied from `<root>/.secrets/` or
    made up (StateDir.prepare_secrets), after the check that every JWKS is there and is one."""
    check_jwks_files(ir, root)
    return state.prepare_secrets(root, secret_refs(ir))


def check_jwks_files(ir: GatewayIR, root: Path) -> None:
    """Every JWKS given as a Secret (`jwks.secretRef`) must be in `<root>/.secrets/` as a
    JWKS document. Unlike an API key, the local gateway cannot make one up (a placeholder is
    no JSON, and Envoy would refuse the whole configuration with a message about an internal
    provider name); the error names the manifest field, where the manifests can be read."""
    for provider in ir.jwt_providers():
        ref = provider.jwks_secret
        if ref is None:
            continue
        shown = f"{SECRETS_SOURCE}/{ref.name}/{ref.key}"
        path = root / SECRETS_SOURCE / ref.name / ref.key
        if not path.is_file():
            problem = f"the JWKS file {shown} does not exist in {root}"
            hint = (f"put the public keys of {provider.issuer} there as a JWKS document "
                    "(what the Kubernetes Secret holds); the local gateway makes up "
                    "placeholders for API keys, not for keys that sign tokens")
        else:
            reason = _jwks_problem(path)
            if reason is None:
                continue
            problem = f"{shown} is not a JWKS document: {reason}"
            hint = 'a JWKS is JSON: {"keys": [{"kty": "RSA", ...}, ...]}'
        raise GatewayctlError(f"{_jwks_field(root, ref)}{problem}", hint=hint)


def _jwks_problem(path: Path) -> str | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"not JSON ({exc})" if isinstance(exc, ValueError) else str(exc)
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or not keys:
        return 'no "keys" list, or an empty one'
    return None


def _jwks_field(root: Path, ref: SecretRefIR) -> str:
    """`file:line:col: Policy/NAME spec.auth.jwt[i].jwks.secretRef: ` of the first manifest
    field naming `ref`, or "" when the root cannot be read (a saved plan's apply)."""
    from gatewayctl.manifests.manifest_set import load_manifest_set
    from gatewayctl.manifests.yamlsource import dotted

    if not root.is_dir():
        return ""
    mset, _ = load_manifest_set(root)
    for policy in mset.policies.values():
        auth = policy.spec.auth
        for i, issuer in enumerate(auth.jwt if auth is not None else ()):
            secret = issuer.jwks.secretRef
            if secret is not None and (secret.name, secret.key) == (ref.name, ref.key):
                fpath = ("spec", "auth", "jwt", i, "jwks", "secretRef")
                return f"{policy.location(*fpath)}: {policy.ref} {dotted(fpath)}: "
    return ""


def choose_providers(ir: GatewayIR, secrets: SecretsReport, *, mock_all: bool = False,
                     known: Mapping[str, bool] | None = None) -> ProviderChoice:
    """Apply the mock rule (module docstring).

    `known` gives reachability already established (by `up`) so only new endpoints are probed.
    """
    reasons: dict[str, str] = {}
    to_probe: list[ProviderIR] = []
    for p in ir.providers:
        if mock_all:
            reasons[p.name] = "every provider is mocked (--mock-all)"
        elif p.credential is not None and not secrets.is_real(p.credential):
            reasons[p.name] = (f"no credential in {SECRETS_SOURCE}/{p.credential.name}/"
                               f"{p.credential.key}")
        else:
            to_probe.append(p)
    known = known or {}
    probed = {**probe_endpoints([p for p in to_probe if p.name not in known]), **known}
    for p in to_probe:
        if not probed.get(p.name, False):
            reasons[p.name] = f"{p.host}:{p.port} is not reachable"
    mocked = tuple(sorted(reasons))
    real = tuple(sorted(p.name for p in ir.providers if p.name not in reasons))
    return ProviderChoice(mocked, real, tuple(sorted(reasons.items())))


def probe_endpoints(providers: list[ProviderIR]) -> dict[str, bool]:
    """TCP-connect to each endpoint in parallel; all of it bounded by one short timeout."""
    result: dict[str, bool] = {p.name: False for p in providers}

    def probe(p: ProviderIR) -> None:
        try:
            with socket.create_connection((p.host, p.port), timeout=_REACH_TIMEOUT):
                result[p.name] = True
        except OSError:
            pass

    threads = [threading.Thread(target=probe, args=(p,), daemon=True) for p in providers]
    for t in threads:
        t.start()
    deadline = time.monotonic() + _REACH_TIMEOUT + 0.5
    for t in threads:  # a slow DNS lookup is abandoned (daemon thread), never waited for
        t.join(max(0.0, deadline - time.monotonic()))
    return dict(result)


def _mock_credential(p: ProviderIR) -> SecretRefIR | None:
    """What a mocked provider is sent: the mock's placeholder for a provider with a credential,
    and also for the native APIs, whose mocks require one as the real APIs do (Bedrock: the
    mock's AWS credentials file, which its signer uses and the mock checks)."""
    if p.api == "bedrock":
        return MOCK_AWS_CREDENTIAL
    if p.credential is not None or p.api != "openai":
        return MOCK_CREDENTIAL
    return None


def without_credentials(ir: GatewayIR, mocked: tuple[str, ...]) -> GatewayIR:
    """The IR with the credential of every mocked provider swapped for the mock's placeholder,
    so that a real key in `.secrets/` never reaches the mock (which records what it gets)."""
    providers = tuple(
        replace(p, credential=_mock_credential(p)) if p.name in mocked else p
        for p in ir.providers)
    return replace(ir, providers=providers) if providers != ir.providers else ir


def render_local(ir: GatewayIR, state: StateDir, ports: Ports,
                 choice: ProviderChoice) -> LocalBundle:
    from gatewayctl.local.module import prepare_module
    from gatewayctl.render.envoy import loopback_options, render_envoy

    prepared = prepare_module(ir, state.modules_dir, state.module_search_path, find_envoy())
    ir = prepared.ir
    options = loopback_options(
        admin_port=ports.admin,
        listener_port=ports.listener,
        secrets_dir=str(state.secrets_dir),
        config_dir=str(state.config_dir),
        access_log_path=str(state.access_log),
        provider_overrides={name: f"http://{HOST}:{ports.mock}" for name in choice.mocked},
        node_id=NODE_ID,
        node_cluster=ir.name,
        ratelimit_address=f"{HOST}:{ports.ratelimit}" if ports.ratelimit else None,
        cache_store_address=f"{HOST}:{ports.cache_store}" if ports.cache_store else None,
    )
    bundle = render_envoy(without_credentials(ir, choice.mocked), options)
    files = bundle.files()
    return LocalBundle(lds=dict(bundle.lds), cds=dict(bundle.cds), rds=dict(bundle.rds),
                       bootstrap=_text(files["bootstrap.yaml"]),
                       validate=_text(files["validate.yaml"]), notice=prepared.notice,
                       filters=ir.data_plane_filters)


def _text(content: str | bytes) -> str:
    return content.decode("utf-8") if isinstance(content, bytes) else content


def validate_local(bundle: LocalBundle, state: StateDir) -> float:
    """`envoy --mode validate` on the bundle's static twin; returns the seconds it took."""
    path = state.envoy_dir / "validate.yaml"
    write_atomic(path, bundle.validate)
    started = time.monotonic()
    validate_config(path, env=envoy_env(state.module_search_path))
    return time.monotonic() - started


def load_ir(root: Path) -> GatewayIR:
    """Load and compile a manifest root; manifest errors become one GatewayctlError."""
    from gatewayctl.compile import compile_gateway
    from gatewayctl.manifests.manifest_set import load_manifest_set

    if not root.is_dir():
        raise GatewayctlError(f"{root} is not a folder",
                              hint="give the folder that holds the manifests")
    mset, diags = load_manifest_set(root)
    errors = [d for d in diags if d.is_error and d.code != "GW010"]
    if errors:
        total = diags.errors  # every error, also those a long list does not show
        shown = "\n".join(d.format(str(root)) for d in errors[:5])
        more = f"\n... and {total - 5} more" if total > 5 else ""
        raise GatewayctlError(f"{root} has {total} manifest error(s):\n{shown}{more}",
                              hint=f"run `gatewayctl validate {root}` for details")
    return compile_gateway(mset, local=True)


def example_curl(ir: GatewayIR, port: int, secrets_dir: Path) -> str:
    """A ready-to-paste chat completion to the first route. When the route needs a consumer
    key, the command reads it from its file (`$(cat ...)`): the key itself is never printed."""
    url = f"http://{HOST}:{port}/v1/chat/completions"
    if not ir.routes:
        return f"curl -sS http://{HOST}:{port}/v1/models"
    route = ir.routes[0]
    body: dict[str, object] = {"model": route.public_model,
                               "messages": [{"role": "user", "content": "Say hello"}]}
    if route.prompt is not None:
        required = sorted({v for pv in route.prompt.active for v in pv.required})
        if required:
            body["prompt_variables"] = {v: "example" for v in required}
    parts = [shlex.quote(p) for p in ("curl", "-sS", url, "-H", "content-type: application/json")]
    key = _consumer_key_file(ir, route, secrets_dir)
    if key is not None:
        # Double quotes keep the command substitution live; the path is quoted inside it.
        parts += ["-H", f'"authorization: Bearer $(cat {shlex.quote(str(key))})"']
    parts += ["-d", shlex.quote(json.dumps(body, separators=(",", ":")))]
    return " ".join(parts)


def _consumer_key_file(ir: GatewayIR, route: RouteIR, secrets_dir: Path) -> Path | None:
    if not route.policy.api_keys:
        return None
    allowed = route.policy.allow_consumers
    for consumer in ir.consumers:
        if consumer.api_key is not None and (allowed is None or consumer.name in allowed):
            return secrets_dir / consumer.api_key.name / consumer.api_key.key
    return None
