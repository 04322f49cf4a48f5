"""Manifest root -> checked manifests -> IR, the first step of render, plan and apply."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gatewayctl.diagnostics import Diagnostic
from gatewayctl.errors import UsageError, ValidationFailed
from gatewayctl.gcpause import cycle_collection_paused
from gatewayctl.ir import GatewayIR
from gatewayctl.manifests.manifest_set import ManifestSet, load_manifest_set


class ManifestErrors(ValidationFailed):
    """The manifests have errors: the message is their text form, and the diagnostics stay
    data (`diagnostics`) for an edge that prints another form (`-o json`)."""

    def __init__(self, message: str, diagnostics: Sequence[Diagnostic]) -> None:
        super().__init__(message)
        self.diagnostics = diagnostics


@dataclass(frozen=True)
class CompiledRoot:
    root: Path
    manifests: ManifestSet
    ir: GatewayIR
    warnings: tuple[Diagnostic, ...]


def compile_root(root: Path, *, local: bool = False) -> CompiledRoot:
    """Load, check and compile a root; bad manifests raise ValidationFailed with every error.
    `local`: for the Envoy gatewayctl runs itself (compile_gateway)."""
    from gatewayctl.compile import compile_gateway
    from gatewayctl.validate import format_text

    if not root.exists():
        raise UsageError(f"{root} does not exist", hint="give the folder that holds the manifests")
    mset, diags = load_manifest_set(root)
    errors = [d for d in diags if d.is_error]
    if errors:
        raise ManifestErrors(
            format_text(diags, mset, colour=False).rstrip("\n")
            + f"\nnothing was rendered: fix the errors above "
            f"(gatewayctl validate {root})",
            diags,  # as loaded: a capped list keeps the count of what it does not show
        )
    with cycle_collection_paused():
        ir = compile_gateway(mset, local=local)
    return CompiledRoot(root, mset, ir, tuple(d for d in diags if not d.is_error))
