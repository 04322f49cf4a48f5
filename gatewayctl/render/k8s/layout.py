"""What the pod must provide for the rendered Envoy config: paths, ports and files.

The Envoy bundle is the truth about where Envoy looks: the bootstrap names the admin address and
the watched directory holding the LDS/CDS files, and the dynamic config names the secret files
it reads. This module reads those facts back out of the bundle, so the Deployment mounts exactly
what Envoy opens, whatever options the bundle was rendered with. It parses; it renders nothing.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gatewayctl.ir import GatewayIR, SecretRefIR
from gatewayctl.render.envoy.probes import STATS_LISTENER
from gatewayctl.render.k8s.meta import KubernetesRenderError
from gatewayctl.render.k8s.unpack import CONFIGMAP_DIR

BOOTSTRAP_FILE = "bootstrap.yaml"
LDS_FILE = "lds.json"
CDS_FILE = "cds.json"
RDS_FILE = "rds.json"  # the route table; Envoy watches it in the same folder (RDS)
# Where the bootstrap ConfigMap is mounted; the container's `-c` points here.
BOOTSTRAP_DIR = "/etc/envoy/bootstrap"
BOOTSTRAP_PATH = f"{BOOTSTRAP_DIR}/{BOOTSTRAP_FILE}"
DEFAULT_SECRETS_DIR = "/etc/gatewayctl/secrets"


class EnvoyFiles(Protocol):
    """What the Kubernetes renderer needs of an Envoy bundle: its files by name."""

    def files(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class SecretMount:
    """One Kubernetes Secret mounted at <secrets_dir>/<name>, projecting only `keys`."""

    name: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class EnvoyLayout:
    bootstrap: str
    lds: str
    cds: str
    rds: str
    config_dir: str
    admin_address: str
    admin_port: int
    listener_port: int  # the port Envoy binds; the Service's target
    stats_port: int | None  # the stats listener (metrics, liveness), if the bootstrap has one
    secrets_dir: str
    secrets: tuple[SecretMount, ...]


def referenced_secrets(ir: GatewayIR) -> tuple[SecretMount, ...]:
    """Every Secret the gateway reads (provider credentials, consumer keys), deduplicated by
    name with only the referenced keys, sorted."""
    refs: list[SecretRefIR] = [p.credential for p in ir.providers if p.credential]
    refs += ir.consumer_and_jwks_secrets()
    keys: dict[str, set[str]] = {}
    for ref in refs:
        keys.setdefault(ref.name, set()).add(ref.key)
    return tuple(SecretMount(name, tuple(sorted(keys[name]))) for name in sorted(keys))


def read_layout(ir: GatewayIR, bundle: EnvoyFiles) -> EnvoyLayout:
    files = bundle.files()
    missing = [f for f in (BOOTSTRAP_FILE, LDS_FILE, CDS_FILE, RDS_FILE) if f not in files]
    if missing:
        raise KubernetesRenderError(
            f"the Envoy bundle lacks {', '.join(missing)}",
            hint="render the Envoy configuration with gatewayctl.render.envoy.render_envoy",
        )
    import yaml

    bootstrap = yaml.safe_load(files[BOOTSTRAP_FILE])
    if not isinstance(bootstrap, dict):
        raise KubernetesRenderError("the Envoy bootstrap is not a YAML mapping")
    config_dir = _config_dir(bootstrap)
    admin = _dig(bootstrap, "admin", "address", "socket_address") or {}
    secrets = referenced_secrets(ir)
    lds = _load_json(files[LDS_FILE], LDS_FILE)
    return EnvoyLayout(
        bootstrap=files[BOOTSTRAP_FILE],
        lds=files[LDS_FILE],
        cds=files[CDS_FILE],
        rds=files[RDS_FILE],
        config_dir=config_dir,
        admin_address=str(admin.get("address", "0.0.0.0")),
        admin_port=int(admin.get("port_value", 9901)),
        listener_port=_listener_port(lds, ir.listener_port),
        stats_port=_stats_port(bootstrap),
        secrets_dir=_secrets_dir(
            secrets, [files[n] for n in (BOOTSTRAP_FILE, LDS_FILE, CDS_FILE, RDS_FILE)]
        ),
        secrets=secrets,
    )


def _dig(tree: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def _stats_port(bootstrap: dict[str, Any]) -> int | None:
    """The port of the bootstrap's static `stats` listener (render/envoy/probes.py)."""
    for listener in _dig(bootstrap, "static_resources", "listeners") or []:
        if isinstance(listener, dict) and listener.get("name") == STATS_LISTENER:
            port = _dig(listener, "address", "socket_address", "port_value")
            return int(port) if port is not None else None
    return None


def _load_json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as err:
        raise KubernetesRenderError(f"the Envoy bundle's {name} is not JSON: {err}") from err


def _config_dir(bootstrap: dict[str, Any]) -> str:
    """The one watched directory holding lds.json and cds.json: the hot-reloaded mount."""
    dirs: set[str] = set()
    for kind, filename in (("lds_config", LDS_FILE), ("cds_config", CDS_FILE)):
        source = _dig(bootstrap, "dynamic_resources", kind, "path_config_source") or {}
        path = source.get("path")
        watched = _dig(source, "watched_directory", "path")
        if not isinstance(path, str) or not isinstance(watched, str):
            raise KubernetesRenderError(
                f"the Envoy bootstrap does not read {kind} from a watched file",
                hint="the Kubernetes layout hot-reloads LDS/CDS from a ConfigMap directory",
            )
        watched = watched.rstrip("/") or "/"
        if posixpath.dirname(path) != watched or posixpath.basename(path) != filename:
            raise KubernetesRenderError(
                f"the Envoy bootstrap reads {kind} from {path}, "
                f"not {posixpath.join(watched, filename)}"
            )
        dirs.add(watched)
    if len(dirs) != 1:
        raise KubernetesRenderError(
            f"the Envoy bootstrap watches {len(dirs)} directories for LDS and CDS; "
            "one ConfigMap directory needs one"
        )
    config_dir = dirs.pop()
    if config_dir in (BOOTSTRAP_DIR, CONFIGMAP_DIR):
        raise KubernetesRenderError(f"the Envoy config directory may not be {config_dir}")
    return config_dir


def _listener_port(lds: Any, default: int) -> int:
    ports = sorted(
        {
            int(port)
            for resource in (lds.get("resources") or [] if isinstance(lds, dict) else [])
            if (port := _dig(resource, "address", "socket_address", "port_value")) is not None
        }
    )
    if len(ports) > 1:
        raise KubernetesRenderError(
            f"the Envoy config listens on ports {ports}; the Service exposes one listener"
        )
    return ports[0] if ports else default


_PATH_CHAR = re.compile(r"[-\w./]")


def _secrets_dir(secrets: tuple[SecretMount, ...], texts: list[str]) -> str:
    r"""The directory under which Envoy opens <name>/<key> for every referenced secret.

    The paths may sit inside generated code (a Lua table), so they are searched for in the
    files' text rather than matched as whole values: each `/<key>` that ends a run of path
    characters (`[-\w./]`; a JSON escape such as `\n` ends a run, as the character it stands
    for would) and follows `/<name>` of a secret with that key names, in the run's part from its
    first `/`, a directory. One pass over the text per distinct key, however many secrets.
    """
    names_by_key: dict[str, set[str]] = {}
    for mount in secrets:
        for key in mount.keys:
            names_by_key.setdefault(key, set()).add(mount.name)
    found: set[str] = set()
    for key, names in names_by_key.items():
        for text in texts:
            for run in _runs_ending_in(text, "/" + key):
                for name in names:
                    if run.endswith("/" + name):
                        head = run[: -len(name) - 1]
                        found.add(head[head.find("/") :] if "/" in head else "")
    found.discard("")
    if len(found) > 1:
        raise KubernetesRenderError(
            f"the Envoy config reads secrets from several directories: {sorted(found)}"
        )
    return found.pop() if found else DEFAULT_SECRETS_DIR


def _runs_ending_in(text: str, tail: str) -> Iterator[str]:
    """For each `tail` in `text` not followed by a path character: the run of path characters
    before it."""
    at = text.find(tail)
    while at >= 0:
        end = at + len(tail)
        if not _PATH_CHAR.match(text, end):
            start = at
            while start > 0 and _PATH_CHAR.match(text, start - 1):
                start -= 1
            yield text[start:at]
        at = text.find(tail, at + 1)
