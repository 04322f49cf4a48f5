"""HTTP to one Kubernetes API server: the only module that imports the `kubernetes` client.

Loads the kubeconfig (or the in-cluster configuration), sends requests with bounded retries of
idempotent calls, and turns every client or transport failure, once, into the typed errors of
`errors.py`, keeping the server's own Status message. It knows no gatewayctl operation: what to
read, apply or delete is `api.py`'s job.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as _k8s_client
from kubernetes import config as _k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from .errors import (
    KubeConfigError,
    KubeError,
    KubeServerError,
    KubeTimeout,
    KubeUnreachable,
    error_from_status,
)
from .options import KubeOptions

# The client is untyped; keep that at this edge.
k8s_client: Any = _k8s_client
k8s_config: Any = _k8s_config

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
Query = list[tuple[str, str]]


def _kubeconfig_path(explicit: str | None) -> str:
    if explicit:
        return explicit
    env = os.environ.get("KUBECONFIG")
    if env:
        return env.split(os.pathsep)[0]
    return str(Path.home() / ".kube" / "config")


class Transport:
    """A connection to one API server: `request` and nothing gatewayctl-specific."""

    def __init__(self, options: KubeOptions | None = None) -> None:
        self.options = options or KubeOptions()
        configuration = k8s_client.Configuration()
        path = _kubeconfig_path(self.options.kubeconfig)
        context_namespace: str | None = None
        try:
            if os.path.exists(path) or self.options.kubeconfig:
                k8s_config.load_kube_config(
                    config_file=path, context=self.options.context,
                    client_configuration=configuration)
                context_namespace = self._context_namespace(path)
            elif os.environ.get("KUBERNETES_SERVICE_HOST"):
                k8s_config.load_incluster_config(client_configuration=configuration)
                if IN_CLUSTER_NAMESPACE_FILE.exists():
                    context_namespace = IN_CLUSTER_NAMESPACE_FILE.read_text().strip()
            else:
                raise KubeConfigError(
                    f"no kubeconfig at {path} and not running inside a cluster",
                    hint="set KUBECONFIG or pass --kubeconfig/--context")
        except (ConfigException, OSError, ValueError, TypeError) as e:
            raise KubeConfigError(f"cannot load Kubernetes configuration from {path}: {e}",
                                  hint="check --context and the kubeconfig file") from None
        # Retries are ours (bounded, idempotent calls only), not urllib3's silent ones.
        configuration.retries = False
        self.namespace = self.options.namespace or context_namespace or "default"
        self.server = str(configuration.host)
        self._api: Any = k8s_client.ApiClient(configuration)

    def _context_namespace(self, path: str) -> str | None:
        contexts, active = k8s_config.list_kube_config_contexts(config_file=path)
        chosen = active
        if self.options.context:
            chosen = next((c for c in contexts if c["name"] == self.options.context), active)
        ns = ((chosen or {}).get("context") or {}).get("namespace")
        return str(ns) if ns else None

    def close(self) -> None:
        self._api.close()

    def request(
        self, method: str, path: str, *, what: str, query: Query | None = None,
        body: Any = None, content_type: str = "application/json",
        idempotent: bool | None = None,
    ) -> dict[str, Any]:
        return self.request_with_status(
            method, path, what=what, query=query, body=body, content_type=content_type,
            idempotent=idempotent)[1]

    def request_with_status(
        self, method: str, path: str, *, what: str, query: Query | None = None,
        body: Any = None, content_type: str = "application/json",
        idempotent: bool | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """(status, body) of a successful call; a failure raises a typed KubeError."""
        if idempotent is None:
            idempotent = method in ("GET", "DELETE") or content_type == APPLY_CONTENT_TYPE
        attempts = 1 + (self.options.retries if idempotent else 0)
        last: KubeError | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(self._delay(attempt, last))
            try:
                return self._send(method, path, query or [], body, content_type, what)
            except (KubeServerError, KubeTimeout, KubeUnreachable) as e:
                last = e
        assert last is not None
        if attempts > 1:
            last.message = f"{last.message} (after {attempts} attempts)"
        raise last

    def _delay(self, attempt: int, last: KubeError | None) -> float:
        retry_after = getattr(last, "retry_after", None)
        if isinstance(retry_after, float):
            return min(retry_after, 8.0)
        base = self.options.backoff * (2 ** (attempt - 1))
        return float(min(base, 8.0) * (1 + random.random() * 0.1))

    def _send(
        self, method: str, path: str, query: Query, body: Any, content_type: str, what: str,
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            serialized = self._api.param_serialize(
                method, path, query_params=list(query), header_params=headers, body=body,
                auth_settings=["BearerToken"])
            response: Any = self._api.call_api(
                *serialized, _request_timeout=self.options.request_timeout)
            data = response.read() or b""
            status = int(response.status)
            retry_after_header = response.getheader("Retry-After")
        except ApiException as e:
            status, data, retry_after_header = int(e.status or 0), (e.body or "").encode(), None
        except urllib3.exceptions.NewConnectionError as e:
            # Checked first: urllib3 makes it a subclass of ConnectTimeoutError.
            raise KubeUnreachable(
                f"{what}: cannot reach the Kubernetes API server at {self.server}: {e}",
                hint="check the network, the kubeconfig server address and the context"
            ) from None
        except urllib3.exceptions.TimeoutError as e:
            raise KubeTimeout(
                f"{what}: the Kubernetes API server at {self.server} did not answer within "
                f"{self.options.request_timeout:g}s ({e})",
                hint="the server may be overloaded; try again or raise the timeout") from None
        except urllib3.exceptions.HTTPError as e:
            raise KubeUnreachable(
                f"{what}: cannot reach the Kubernetes API server at {self.server}: {e}",
                hint="check the network, the kubeconfig server address and the context"
            ) from None
        text = data.decode("utf-8", errors="replace")
        try:
            payload = json.loads(text) if text else {}
        except ValueError:
            payload = None
        if 200 <= status < 300:
            return status, payload if isinstance(payload, dict) else {}
        error = error_from_status(status, payload, text, what)
        if retry_after_header and retry_after_header.isdigit():
            error.retry_after = float(retry_after_header)  # type: ignore[attr-defined]
        raise error
