"""Which cluster to talk to, and how patiently: the options of `--live kubernetes`.

Light on purpose (no client import), so that the command line can build it at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KubeOptions:
    kubeconfig: str | None = None  # default: $KUBECONFIG, then ~/.kube/config
    context: str | None = None
    namespace: str | None = None  # default: the context's namespace, then "default"
    request_timeout: float = 30.0
    retries: int = 3  # extra attempts for idempotent calls on 5xx, 429, timeouts, resets
    backoff: float = 0.5  # first retry delay in seconds; doubles each attempt, capped at 8s
    # Plan without server-side-apply dry runs (they need patch rights); also chosen on the
    # first 403 to a dry run.
    read_only: bool = False
