"""Loading a manifest root: files -> documents -> typed manifests -> cross-checked set."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gatewayctl.diagnostics import Diagnostic, Diagnostics, DiagnosticSink, error
from gatewayctl.gcpause import cycle_collection_paused
from gatewayctl.manifests.credentials import find_credential, scan_document
from gatewayctl.manifests.documents import Manifest, load_manifest
from gatewayctl.manifests.files import discover, read_file
from gatewayctl.manifests.kinds import (
    SPEC_MODELS,
    ConsumerSpec,
    GatewaySpec,
    ModelSpec,
    PolicySpec,
    PromptSpec,
    ProviderSpec,
    RequestTestSpec,
    RolloutSpec,
    RouteSpec,
)
from gatewayctl.manifests.yamlsource import SourceDocument


@dataclass(frozen=True)
class RejectedDocument:
    """A document of a known kind that did not validate: its references are still checked
    (one run reports a dangling reference beside a schema error of the same resource), except
    in the fields that already have an error."""

    doc: SourceDocument
    kind: str
    resource: str  # "Kind/name", or "" when the name is missing
    bad_fields: frozenset[str]  # dotted paths with an error; "" for the whole document


@dataclass(frozen=True)
class ManifestSet:
    """Every valid manifest of a root, by kind and name (names sorted)."""

    root: str
    gateway: Manifest[GatewaySpec] | None
    providers: dict[str, Manifest[ProviderSpec]]
    models: dict[str, Manifest[ModelSpec]]
    routes: dict[str, Manifest[RouteSpec]]
    prompts: dict[str, Manifest[PromptSpec]]
    policies: dict[str, Manifest[PolicySpec]]
    consumers: dict[str, Manifest[ConsumerSpec]]
    rollouts: dict[str, Manifest[RolloutSpec]]
    # Request tests (`gatewayctl test`): checked like every kind, never compiled into the IR.
    request_tests: dict[str, Manifest[RequestTestSpec]] = field(default_factory=dict)
    documents: tuple[SourceDocument, ...] = field(default=(), compare=False, repr=False)
    # Names declared by every document, valid or not: a reference to an invalid object is not
    # reported again as dangling, and "did you mean" can suggest it.
    declared: dict[str, frozenset[str]] = field(default_factory=dict, compare=False, repr=False)
    rejected: tuple[RejectedDocument, ...] = field(default=(), compare=False, repr=False)
    # Every file's lines, for source snippets (also of files where no document could be read).
    sources: dict[str, list[str]] = field(default_factory=dict, compare=False, repr=False)

    def all(self) -> list[Manifest[Any]]:
        out: list[Manifest[Any]] = [self.gateway] if self.gateway else []
        for group in (
            self.providers,
            self.models,
            self.routes,
            self.prompts,
            self.policies,
            self.consumers,
            self.rollouts,
            self.request_tests,
        ):
            out.extend(group.values())
        return out


_GROUPS = {
    "Provider": "providers",
    "Model": "models",
    "Route": "routes",
    "Prompt": "prompts",
    "Policy": "policies",
    "Consumer": "consumers",
    "Rollout": "rollouts",
    "RequestTest": "request_tests",
}


def _resource(data: dict[str, Any]) -> str:
    meta = data.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return f"{data['kind']}/{name}" if isinstance(name, str) else ""


def read_documents(
    root: Path,
) -> tuple[list[SourceDocument], list[Diagnostic], dict[str, list[str]]]:
    """Every document under root, the problems of reading them, and each file's lines."""
    docs: list[SourceDocument] = []
    sources: dict[str, list[str]] = {}
    paths, diags = discover(root)
    base = root if root.is_dir() else root.parent
    for path in paths:
        file_docs, file_diags, lines = read_file(base, path)
        docs.extend(file_docs)
        diags.extend(file_diags)
        if lines:
            sources[path.relative_to(base).as_posix()] = lines
    return docs, diags, sources


def _gateway_folders(gateways: list[Manifest[Any]]) -> str:
    """When the Gateways lie in several folders, the root given is most likely a folder above
    several manifest roots (a repository's top, `examples/`): a hint naming them."""
    folders = sorted({posixpath.dirname(g.doc.path) or "." for g in gateways})
    if len(folders) < 2:
        return ""
    shown = ", ".join(folders[:3]) + (f" and {len(folders) - 3} more" if len(folders) > 3 else "")
    return (f"; the {len(gateways)} Gateways here lie in {len(folders)} folders: give the "
            f"folder of one as ROOT ({shown})")


def build_set(
    root: str,
    docs: list[SourceDocument],
    diags: DiagnosticSink,
    sources: dict[str, list[str]] | None = None,
) -> ManifestSet:
    groups: dict[str, dict[str, Manifest[Any]]] = {g: {} for g in _GROUPS.values()}
    rejected: list[RejectedDocument] = []
    gateways: list[Manifest[Any]] = []
    # One search over each file's text first: most files hold no credential at all.
    suspicious: dict[str, bool] = {}
    for doc in docs:
        if doc.path not in suspicious:
            suspicious[doc.path] = find_credential("\n".join(doc.text_lines)) is not None
        if suspicious[doc.path]:
            diags.extend(scan_document(doc))
        manifest, bad = load_manifest(doc, diags)
        if manifest is None:
            kind = doc.data.get("kind") if isinstance(doc.data, dict) else None
            if isinstance(kind, str) and kind in SPEC_MODELS:
                rejected.append(RejectedDocument(doc, kind, _resource(doc.data), bad))
            continue
        if manifest.kind == "Gateway":
            gateways.append(manifest)
            continue
        group = groups[_GROUPS[manifest.kind]]
        if manifest.name in group:
            first = group[manifest.name]
            diags.add(
                manifest.error(
                    "GW201",
                    f'duplicate {manifest.kind} name "{manifest.name}"',
                    "metadata", "name",
                    hint=f"first defined at {first.location('metadata', 'name')}; "
                    f"{manifest.kind} names must be unique",
                )
            )
            continue
        group[manifest.name] = manifest
    gateway = gateways[0] if gateways else None
    roots = _gateway_folders(gateways)
    for i, extra in enumerate(gateways[1:]):
        # Each extra Gateway is an error at its own `kind`; what to do is said once, on the
        # first of them (the others would repeat it word for word).
        diags.add(
            extra.error(
                "GW207",
                "more than one Gateway in this manifest root",
                "kind",
                hint=(f"a root describes exactly one gateway; the first is at "
                      f"{gateways[0].location('kind')}" + roots) if i == 0 else None,
            )
        )
    declared: dict[str, set[str]] = {}
    for doc in docs:
        if isinstance(doc.data, dict) and isinstance(doc.data.get("kind"), str):
            meta = doc.data.get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            declared.setdefault(doc.data["kind"], set()).add(str(name))
    # Without any document, GW008 or the files' own errors already say what is wrong.
    if docs and not gateways and "Gateway" not in declared:
        hint = "add one manifest with kind: Gateway (namespace, listener, replicas)"
        if Path(root).is_file():
            hint += ("; a root given as a file is read alone: to check a folder of manifests, "
                     f"give the folder ({posixpath.dirname(root) or '.'})")
        diags.add(error("GW207", f"no Gateway in {root}", hint=hint))
    mset = ManifestSet(
        root=root,
        gateway=gateway,
        documents=tuple(docs),
        declared={k: frozenset(v) for k, v in declared.items()},
        rejected=tuple(rejected),
        sources=sources or {},
        **{g: dict(sorted(items.items())) for g, items in groups.items()},
    )
    return mset


def load_manifest_set(root: Path) -> tuple[ManifestSet, Diagnostics]:
    """Load and check every manifest under root. Never raises for bad manifests."""
    with cycle_collection_paused():
        return _load(root)


def _load(root: Path) -> tuple[ManifestSet, Diagnostics]:
    from gatewayctl.manifests.checks import check_set  # checks imports this module

    docs, file_diags, sources = read_documents(root)
    diags = DiagnosticSink()
    diags.extend(file_diags)
    if not docs and not file_diags:
        diags.add(
            error(
                "GW008",
                f"no manifests (*.yaml, *.yml) under {root}",
                hint="point gatewayctl at the folder holding your manifests",
            )
        )
    mset = build_set(str(root), docs, diags, sources)
    diags.extend(check_set(mset))
    return mset, diags.result()
