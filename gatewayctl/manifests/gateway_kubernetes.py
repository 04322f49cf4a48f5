"""`Gateway.spec.kubernetes`: how the gateway's pods and Service are deployed.

The knobs users of a Deployment expect (resources, placement, priority, the Service's type and
annotations, extra labels and annotations), checked here as far as they can be without a
cluster: quantities, label syntax, the Kubernetes enumerations. `affinity` is Kubernetes'
own structure, passed through as given (its three members only).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from gatewayctl import __version__
from gatewayctl.manifests.types import Strict

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
_LABEL_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
# gatewayctl's own labels: selectors and ownership depend on them.
RESERVED_LABELS = frozenset(
    {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
        "app.kubernetes.io/managed-by",
        "gatewayctl.dev/gateway",
    }
)


def _quantity(value: str | int) -> str:
    text = str(value)
    if isinstance(value, bool) or not _QUANTITY.match(text):
        raise ValueError(f"{text!r} is not a Kubernetes quantity (like 500m, 2, 256Mi, 1Gi)")
    return text


Quantity = Annotated[str | int, Field(union_mode="left_to_right")]


class ResourceList(Strict):
    cpu: Quantity | None = None
    memory: Quantity | None = None

    @field_validator("cpu", "memory")
    @classmethod
    def _check(cls, value: str | int | None) -> str | None:
        return None if value is None else _quantity(value)


class Resources(Strict):
    requests: ResourceList = Field(default_factory=ResourceList)
    limits: ResourceList = Field(default_factory=ResourceList)


class Toleration(Strict):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: Annotated[int, Field(strict=True)] | None = None


class Affinity(Strict):
    nodeAffinity: dict[str, Any] | None = None
    podAffinity: dict[str, Any] | None = None
    podAntiAffinity: dict[str, Any] | None = None


def _labels(value: dict[str, str], *, values_too: bool) -> dict[str, str]:
    for key, text in value.items():
        if len(key) > 317 or not _LABEL_NAME.match(key):
            raise ValueError(f"{key!r} is not a valid Kubernetes label or annotation key")
        if values_too and not _LABEL_VALUE.match(text):
            raise ValueError(
                f"label value {text!r} of {key!r} is not valid (63 characters at "
                "most: letters, digits, '-', '_', '.')"
            )
    return value


class ServiceSettings(Strict):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("annotations")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        return _labels(value, values_too=False)


class PodMonitorSettings(Strict):
    enabled: bool = False
    interval: Annotated[str, Field(pattern=r"^[0-9]+(ms|s|m|h)$")] = "30s"
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        return _labels(value, values_too=True)


class NetworkPolicySettings(Strict):
    enabled: bool = True


class KubernetesSettings(Strict):
    resources: Resources | None = None
    nodeSelector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    affinity: Affinity | None = None
    priorityClassName: (
        Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)] | None
    ) = None
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    podMonitor: PodMonitorSettings = Field(default_factory=PodMonitorSettings)
    networkPolicy: NetworkPolicySettings = Field(default_factory=NetworkPolicySettings)
    # The response cache's store service (global limits with a cache): gatewayctl's own image
    # (the Dockerfile at the project's top), as pushed to your registry.
    cacheStoreImage: Annotated[str, Field(min_length=1, max_length=512, pattern=r"^\S+$")] = (
        f"gatewayctl:{__version__}"
    )

    @field_validator("nodeSelector")
    @classmethod
    def _selector(cls, value: dict[str, str]) -> dict[str, str]:
        return _labels(value, values_too=True)

    @field_validator("labels")
    @classmethod
    def _extra_labels(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(RESERVED_LABELS & set(value))
        if reserved:
            raise ValueError(
                f"{', '.join(reserved)} are gatewayctl's own labels (selectors, ownership); "
                "choose other keys"
            )
        return _labels(value, values_too=True)

    @field_validator("annotations")
    @classmethod
    def _extra_annotations(cls, value: dict[str, str]) -> dict[str, str]:
        return _labels(value, values_too=False)
