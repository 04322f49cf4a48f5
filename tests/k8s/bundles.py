"""Envoy bundles for the Kubernetes tests: the real renderer's, and hand-made file sets for
the layouts the Kubernetes renderer must refuse."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gatewayctl.ir import GatewayIR
from gatewayctl.render.envoy import EnvoyOptions, render_envoy


def envoy_bundle(ir: GatewayIR, **options: Any) -> FilesBundle:
    """The real renderer's files (frozen into a FilesBundle so tests can edit copies)."""
    return FilesBundle(dict(render_envoy(ir, EnvoyOptions(**options)).files()))


@dataclass(frozen=True)
class FilesBundle:
    contents: dict[str, str]

    def files(self) -> Mapping[str, str]:
        return dict(self.contents)

    def replace(self, name: str, text: str) -> FilesBundle:
        return FilesBundle({**self.contents, name: text})
