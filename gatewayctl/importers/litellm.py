"""A LiteLLM proxy config (`config.yaml`) as gatewayctl manifests (`import litellm`).

- `model_list`: each `model_name` is a Route (public model = the name); each deployment a
  Model behind a Provider. The provider comes from the `litellm_params.model` prefix
  (`openai/`, `azure/`, `anthropic/`; any other prefix with an `api_base` is an
  OpenAI-compatible server) and `api_base` (an OpenAI base's trailing `/v1` is gatewayctl's
  own path; Azure gets its v1 API path `/openai`); providers with the same type, endpoint and
  key are one. The upstream model is the rest of the model string.
- Weights: `weight`, else `rpm`, else `tpm`, else equal shares (LiteLLM's simple-shuffle),
  as integer percentages summing to 100.
- Keys: `os.environ/NAME` becomes the secretRef `{name: name-lowercased-dashed, key:
  api-key}`; a literal key becomes the secretRef `<provider>-credentials/api-key` with a
  warning; the literal is never written, printed or kept. `general_settings.master_key`
  becomes a Consumer `master` and a default policy that requires a key.
- `rpm`/`tpm` of a group's deployments: one route-wide per-minute request/token limit (their
  sum). `num_retries` (deployment, router_settings, litellm_settings), `timeout`
  (deployment, router_settings.timeout, litellm_settings.request_timeout): the route's retry
  attempts and timeout. Prices: `input_cost_per_token`/`output_cost_per_token` (model_info
  or litellm_params), per million.
- `fallbacks` (router_settings or litellm_settings): the route's fallback models, those of
  each group named in order; a group named `fallback/<model>` (as `render --target litellm`
  writes) only serves fallbacks and is no route of its own.

Whatever has no gatewayctl equivalent (callbacks, caching, other routing strategies, context
window fallbacks, `api_version`, other litellm_params, unsupported providers) is listed in
`ImportResult.not_expressed`. Pure: data in, manifest texts and notes out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

API_VERSION = "gatewayctl.dev/v1alpha1"
DEFAULT_ENDPOINTS = {"openai": "https://api.openai.com", "anthropic": "https://api.anthropic.com"}
PREFIX_TYPES = {"openai": "openai", "azure": "azure-openai", "anthropic": "anthropic",
                "text-completion-openai": "openai", "hosted_vllm": "openai-compatible",
                "openai_like": "openai-compatible", "custom_openai": "openai-compatible"}
FALLBACK_GROUP = "fallback/"
# What LiteLLM configs put where a server needs no key (its clients refuse an empty one).
NO_KEYS = {"", "none", "empty", "no-key", "not-needed"}
KNOWN_PARAMS = {"model", "api_base", "api_key", "api_version", "weight", "rpm", "tpm",
                "num_retries", "max_retries", "timeout", "input_cost_per_token",
                "output_cost_per_token"}
ROUTER_KNOWN = {"routing_strategy", "fallbacks", "num_retries", "timeout"}
LITELLM_KNOWN = {"fallbacks", "num_retries", "request_timeout", "drop_params"}
GENERAL_KNOWN = {"master_key"}


class ImportError_(ValueError):  # noqa: N801 - ImportError is a builtin
    """The file is not a LiteLLM proxy config gatewayctl can read."""


@dataclass
class ImportResult:
    files: dict[str, str]
    not_expressed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # literal keys replaced, and the like
    secrets: list[tuple[str, str, str]] = field(default_factory=list)  # (secret, key, from)


def _dns(text: str, fallback: str = "x") -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)[:63].strip("-")
    return name or fallback


def _model_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-.")
    return re.sub(r"-{2,}", "-", name)[:253].strip("-.") or "model"


def _unique(base: str, taken: set[str]) -> str:
    name, n = base, 2
    while name in taken:
        name = f"{base}-{n}"
        n += 1
    taken.add(name)
    return name


def _seconds(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    ms = int(round(float(value) * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _shares(weights: list[float]) -> list[int]:
    total = sum(weights)
    if total <= 0:
        weights, total = [1.0] * len(weights), float(len(weights))
    exact = [100 * w / total for w in weights]
    shares = [int(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in order[: 100 - sum(shares)]:
        shares[i] += 1
    return shares


def _price(per_token: Any) -> float | None:
    if isinstance(per_token, bool) or not isinstance(per_token, (int, float)):
        return None
    return round(float(per_token) * 1e6, 9)


@dataclass
class _Deployment:
    group: str
    index: int
    params: dict[str, Any]
    info: dict[str, Any]
    top: dict[str, Any]


class _Importer:
    def __init__(self, config: Mapping[str, Any], gateway: str, namespace: str) -> None:
        self.config = config
        self.gateway = gateway
        self.namespace = namespace
        self.result = ImportResult({})
        self.providers: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.provider_names: set[str] = set()
        self.models: dict[str, dict[str, Any]] = {}
        self.model_names: set[str] = set()
        self.model_keys: dict[tuple[str, str, str], str] = {}
        # Literal keys compared in memory only, so that deployments sharing one share a
        # provider; never part of the result.
        self._literals: dict[str, int] = {}

    def note(self, text: str) -> None:
        if text not in self.result.not_expressed:
            self.result.not_expressed.append(text)

    # -- keys ------------------------------------------------------------------------------
    def secret_ref(self, value: Any, owner: str, where: str) -> dict[str, str] | None:
        if value is None or (isinstance(value, str) and value.strip().lower() in NO_KEYS):
            return None
        if isinstance(value, str) and value.startswith("os.environ/"):
            env = value[len("os.environ/"):]
            # OPENAI_API_KEY -> openai/api-key, AZURE_EU_KEY -> azure-eu/key: the reverse of
            # `render --target litellm`'s variable names, so a round trip keeps the Secret
            name, key = _dns(env, "api-key"), "api-key"
            for suffix, suffix_key in (("_API_KEY", "api-key"), ("_KEY", "key")):
                if env.upper().endswith(suffix) and len(env) > len(suffix):
                    name, key = _dns(env[: len(env) - len(suffix)], "api-key"), suffix_key
                    break
            self.result.secrets.append((name, key, f"environment variable {env}"))
            return {"name": name, "key": key}
        # A literal: never written, printed or kept.
        name = f"{owner}-credentials"
        self.result.warnings.append(
            f"{where}: a literal API key; it becomes the secretRef {name}/api-key and is not "
            f"written anywhere: put it in the Kubernetes Secret {name} (key api-key) and "
            "rotate it, since it was in a config file")
        self.result.secrets.append((name, "api-key", f"the literal key of {where}"))
        return {"name": name, "key": "api-key"}

    def clean_url(self, url: str, where: str) -> str:
        """Scheme, host, port and path only: a user name and password in the URL are a
        credential (never written), a query or fragment is not sent by gatewayctl."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        if parts.username is not None or parts.password is not None:
            self.result.warnings.append(
                f"{where}: api_base holds a user name and password; they are not written: "
                "give the provider its credential as a Secret")
        if parts.query or parts.fragment:
            self.note(f"{where}: the query or fragment of api_base (the gateway sends requests "
                      "to scheme, host, port and path only)")
        return f"{parts.scheme}://{host}{parts.path}"

    # -- providers and models --------------------------------------------------------------
    def provider(self, dep: _Deployment, prefix: str) -> str | None:
        params = dep.params
        where = f"model_list[{dep.index}] ({dep.group})"
        ptype = PREFIX_TYPES.get(prefix)
        base = params.get("api_base")
        if ptype is None:
            if not isinstance(base, str):
                self.note(f"{where}: provider `{prefix}` (no provider type of gatewayctl; this "
                          "deployment was not imported)")
                return None
            ptype = "openai-compatible"
        if isinstance(base, str) and base:
            url = self.clean_url(base, where).rstrip("/")
            if ptype in ("openai", "openai-compatible") and url.endswith("/v1"):
                url = url[:-3]
            if ptype == "azure-openai" and not url.endswith("/openai"):
                url += "/openai"
        elif ptype in DEFAULT_ENDPOINTS:
            url = DEFAULT_ENDPOINTS[ptype]
        else:
            self.note(f"{where}: no api_base for {prefix} (this deployment was not imported)")
            return None
        if ptype == "azure-openai" and params.get("api_version") is not None:
            self.note(f"{where}: api_version (the gateway calls Azure OpenAI's v1 API, which "
                      "takes none)")
        key_value = params.get("api_key")
        if isinstance(key_value, str) and key_value.startswith("os.environ/"):
            key_id = key_value
        elif key_value and str(key_value).strip().lower() not in NO_KEYS:
            key_id = f"literal {self._literals.setdefault(str(key_value), len(self._literals))}"
        else:
            key_id = ""
        ident = (ptype, url, key_id)
        if ident in self.providers:
            return str(self.providers[ident]["metadata"]["name"])
        host = urlsplit(url).hostname or ptype
        base_name = ptype if ptype != "openai-compatible" else _dns(host.split(".")[0])
        name = _unique(_dns(base_name, "provider"), self.provider_names)
        spec: dict[str, Any] = {"type": ptype, "endpoint": url}
        ref = self.secret_ref(key_value, name, where)
        if ref is not None:
            spec["auth"] = {"secretRef": ref}
        self.providers[ident] = {"apiVersion": API_VERSION, "kind": "Provider",
                                 "metadata": {"name": name}, "spec": spec}
        return name

    def model(self, dep: _Deployment) -> str | None:
        raw = dep.params.get("model")
        where = f"model_list[{dep.index}] ({dep.group})"
        if not isinstance(raw, str) or not raw:
            self.note(f"{where}: no litellm_params.model (not imported)")
            return None
        prefix, sep, upstream = raw.partition("/")
        if not sep:
            prefix, upstream = "openai", raw
        provider = self.provider(dep, prefix)
        if provider is None:
            return None
        info_name = dep.info.get("gatewayctl_model")
        wanted = _model_name(info_name if isinstance(info_name, str)
                             else upstream.rsplit("/", 1)[-1])
        key = (wanted, provider, upstream)
        if key in self.model_keys:  # the same deployment in another group: one Model
            return self.model_keys[key]
        name = _unique(wanted, self.model_names)
        self.model_keys[key] = name
        spec: dict[str, Any] = {"provider": provider, "upstreamModel": upstream}
        pin = _price(dep.info.get("input_cost_per_token", dep.params.get("input_cost_per_token")))
        pout = _price(dep.info.get("output_cost_per_token",
                                   dep.params.get("output_cost_per_token")))
        if pin is not None or pout is not None:
            spec["pricing"] = {"inputPerMillion": pin or 0.0, "outputPerMillion": pout or 0.0}
        window = dep.info.get("max_input_tokens")
        if isinstance(window, int) and not isinstance(window, bool) and window > 0:
            spec["contextWindow"] = window
        self.models[name] = {"apiVersion": API_VERSION, "kind": "Model",
                             "metadata": {"name": name}, "spec": spec}
        for extra in sorted(set(dep.params) - KNOWN_PARAMS):
            self.note(f"{where}: litellm_params.{extra}")
        return name

    # -- the whole file --------------------------------------------------------------------
    def deployments(self) -> list[_Deployment]:
        items = self.config.get("model_list")
        if not isinstance(items, list) or not items:
            raise ImportError_("the file has no model_list: not a LiteLLM proxy config")
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("model_name"), str):
                self.note(f"model_list[{i}]: no model_name (not imported)")
                continue
            raw_params, raw_info = item.get("litellm_params"), item.get("model_info")
            params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
            info: dict[str, Any] = raw_info if isinstance(raw_info, dict) else {}
            top = {k: v for k, v in item.items() if k in ("rpm", "tpm")}
            out.append(_Deployment(item["model_name"], i, dict(params), dict(info), top))
        return out

    def setting(self, key: str, *sections: str) -> Any:
        for section in sections:
            block = self.config.get(section)
            if isinstance(block, dict) and key in block:
                return block[key]
        return None

    def fallbacks(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for section in ("router_settings", "litellm_settings"):
            block = self.config.get(section)
            items = block.get("fallbacks") if isinstance(block, dict) else None
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict):
                    for group, targets in item.items():
                        if isinstance(targets, list):
                            out.setdefault(str(group), [str(t) for t in targets])
        return out

    def run(self) -> ImportResult:
        deps = self.deployments()
        fallbacks = self.fallbacks()
        only_fallback = {g for g in {d.group for d in deps} if g.startswith(FALLBACK_GROUP)}
        groups: dict[str, list[tuple[_Deployment, str]]] = {}
        for dep in deps:
            model = self.model(dep)
            if model is not None:
                groups.setdefault(dep.group, []).append((dep, model))
        retries_default = self.setting("num_retries", "router_settings", "litellm_settings")
        timeout_default = self.setting("timeout", "router_settings") or self.setting(
            "request_timeout", "litellm_settings")
        routes, policies = [], []
        route_names: set[str] = set()
        for group, members in groups.items():
            if group in only_fallback:
                continue
            route_name = _unique(_dns(group, "route"), route_names)
            weights = []
            for dep, _ in members:
                w = dep.params.get("weight", dep.params.get("rpm", dep.top.get("rpm",
                                   dep.params.get("tpm", dep.top.get("tpm", 1)))))
                weights.append(float(w) if isinstance(w, (int, float)) else 1.0)
            merged: dict[str, int] = {}
            for (_, model), share in zip(members, _shares(weights), strict=True):
                merged[model] = merged.get(model, 0) + share
            spec: dict[str, Any] = {}
            if route_name != group:
                spec["model"] = group
            spec["backends"] = [{"model": m, "weight": w} for m, w in merged.items()]
            chain: list[str] = []
            for target in fallbacks.get(group, []):
                for _, model in groups.get(target, []):
                    if model not in chain and model not in merged:
                        chain.append(model)
                if target not in groups:
                    self.note(f"fallbacks of {group}: {target} is no model group of this file")
            if chain:
                spec["fallback"] = chain
            retries = [d.params.get("num_retries", d.params.get("max_retries"))
                       for d, _ in members]
            attempt = next((r for r in retries if isinstance(r, int)), retries_default)
            if isinstance(attempt, int) and not isinstance(attempt, bool) and attempt >= 0:
                spec["retry"] = {"attempts": min(attempt, 10)}
            timeout = next((d.params["timeout"] for d, _ in members if "timeout" in d.params),
                           timeout_default)
            if _seconds(timeout) is not None:
                spec["timeout"] = _seconds(timeout)
            rpm = [d.params.get("rpm", d.top.get("rpm")) for d, _ in members]
            tpm = [d.params.get("tpm", d.top.get("tpm")) for d, _ in members]
            policy: dict[str, Any] = {}
            if all(isinstance(x, int) for x in rpm):
                policy["rateLimit"] = {"requests": sum(rpm), "per": "minute", "by": "route"}
            if all(isinstance(x, int) for x in tpm):
                policy["tokenLimit"] = {"tokens": sum(tpm), "per": "minute", "by": "route"}
            if policy:
                name = f"{route_name}-limits"
                policies.append({"apiVersion": API_VERSION, "kind": "Policy",
                                 "metadata": {"name": name}, "spec": policy})
                spec["policies"] = [name]
            routes.append({"apiVersion": API_VERSION, "kind": "Route",
                           "metadata": {"name": route_name}, "spec": spec})
        gateway_spec: dict[str, Any] = {"namespace": self.namespace}
        consumers = []
        master = self.setting("master_key", "general_settings")
        if master:
            ref = self.secret_ref(master, "master-key", "general_settings.master_key")
            policies.append({"apiVersion": API_VERSION, "kind": "Policy",
                             "metadata": {"name": "require-key"},
                             "spec": {"auth": {"apiKeys": True}}})
            gateway_spec["defaultPolicies"] = ["require-key"]
            consumers.append({"apiVersion": API_VERSION, "kind": "Consumer",
                              "metadata": {"name": "master"},
                              "spec": {"apiKeySecretRef": ref}})
        self.unexpressed_settings()
        gateway = {"apiVersion": API_VERSION, "kind": "Gateway",
                   "metadata": {"name": self.gateway}, "spec": gateway_spec}
        files = {"gateway.yaml": [gateway], "providers.yaml": list(self.providers.values()),
                 "models.yaml": list(self.models.values()), "routes.yaml": routes,
                 "policies.yaml": policies, "consumers.yaml": consumers}
        self.result.files = {name: _dump(docs) for name, docs in files.items() if docs}
        return self.result

    def unexpressed_settings(self) -> None:
        for section, known in (("router_settings", ROUTER_KNOWN),
                               ("litellm_settings", LITELLM_KNOWN),
                               ("general_settings", GENERAL_KNOWN)):
            block = self.config.get(section)
            if isinstance(block, dict):
                for key in sorted(set(block) - known):
                    self.note(f"{section}.{key}")
        if self.setting("drop_params", "litellm_settings") is True:
            self.note("litellm_settings.drop_params (the gateway forwards every parameter; a "
                      "provider refuses those it does not know)")
        strategy = self.setting("routing_strategy", "router_settings")
        if strategy not in (None, "simple-shuffle"):
            self.note(f"router_settings.routing_strategy {strategy} (the gateway splits by "
                      "weight, as simple-shuffle)")
        for key in sorted(set(self.config) - {"model_list", "router_settings",
                                              "litellm_settings", "general_settings"}):
            self.note(f"{key} (section)")


def _dump(docs: list[dict[str, Any]]) -> str:
    head = "# Imported from a LiteLLM proxy config by gatewayctl (import litellm).\n"
    return head + "---\n".join(
        yaml.safe_dump(d, sort_keys=False, width=100, allow_unicode=True) for d in docs)


def import_litellm(config: Any, *, gateway: str = "ai-gateway",
                   namespace: str = "ai-gateway") -> ImportResult:
    if not isinstance(config, dict):
        raise ImportError_("the file is not a YAML mapping: not a LiteLLM proxy config")
    return _Importer(config, gateway, namespace).run()
