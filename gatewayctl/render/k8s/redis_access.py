"""How a service beside the gateway reaches the user's Redis: the environment, volume and
mount that carry Gateway.spec.limits.redis's AUTH and TLS settings into its container.

Both services that keep their state in Redis (the official rate limit service, render/k8s/
ratelimit.py, and the cache store service, render/k8s/cachestore.py) take the official
service's variables, so one convention serves both:

- REDIS_AUTH: the password, or `username:password` for an ACL user. The password comes from
  the Secret through `secretKeyRef`; with a username, REDIS_PASSWORD (from the Secret) is
  defined first and REDIS_AUTH refers to it as `$(REDIS_PASSWORD)`, which Kubernetes expands
  in the pod. The rendered objects never hold the value.
- REDIS_TLS: "true" to speak TLS; REDIS_TLS_CACERT: the CA bundle from caSecretRef, mounted
  read-only (without it the system's CAs verify Redis's certificate).

This module must not read Secrets or know any value: it only names them.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import LimitsIR

CA_VOLUME = "redis-ca"
CA_DIR = "/etc/gatewayctl/redis-ca"
CA_FILE = "ca.crt"


def redis_env(limits: LimitsIR) -> list[dict[str, Any]]:
    """The container's Redis access variables, in the order Kubernetes must define them."""
    env: list[dict[str, Any]] = []
    password = limits.redis_password
    if password is not None:
        from_secret = {"secretKeyRef": {"name": password.name, "key": password.key}}
        if limits.redis_username is None:
            env.append({"name": "REDIS_AUTH", "valueFrom": from_secret})
        else:
            env.append({"name": "REDIS_PASSWORD", "valueFrom": from_secret})
            env.append({"name": "REDIS_AUTH",
                        "value": f"{limits.redis_username}:$(REDIS_PASSWORD)"})
    if limits.redis_tls:
        env.append({"name": "REDIS_TLS", "value": "true"})
        if limits.redis_ca is not None:
            env.append({"name": "REDIS_TLS_CACERT", "value": f"{CA_DIR}/{CA_FILE}"})
    return env


def redis_volumes(limits: LimitsIR) -> list[dict[str, Any]]:
    """The CA bundle's Secret volume (only its one key), when caSecretRef is set."""
    if not limits.redis_tls or limits.redis_ca is None:
        return []
    return [{
        "name": CA_VOLUME,
        "secret": {
            "secretName": limits.redis_ca.name,
            "items": [{"key": limits.redis_ca.key, "path": CA_FILE}],
        },
    }]


def redis_mounts(limits: LimitsIR) -> list[dict[str, Any]]:
    return [{"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True}
            for _ in redis_volumes(limits)]
