"""The config unpacker: how Envoy's watched directory is fed from the `<gateway>-config` ConfigMaps.

Envoy never reads the ConfigMap volume itself. That volume projects `<gateway>-config` and,
when the config is packed, `<gateway>-config-clusters` into one directory. An init container
publishes its `lds.json` and `cds.json` (plain, or gzipped as `lds.json.gz` / `cds.json.gz`
when plain would not fit in one ConfigMap) into an emptyDir before Envoy starts, and a sidecar
republishes them whenever kubelet swaps the volume's `..data` link. A plain file wins over a
gzipped one (a packed ConfigMap left over after the config went back to plain is stale), and a
version whose `cds.json` does not hash to `cds.json.sha256` (two ConfigMaps of different
renders, seen between the two updates of an apply) is not published. Both run the same
small POSIX sh script (`UNPACK_SCRIPT`, rendered into the container command, so a new script
rolls the pods like any pod-template change) in the gateway's own Envoy image, which has `sh`,
`gzip` and GNU coreutils (`mv -T` makes the `..data` swap a single rename).

The pods are the same whatever the size of the configuration, so a change of routes or weights
never touches the Deployment, even when it makes the ConfigMap switch between plain and packed.

The Helm chart ships the same script (`charts/gatewayctl-gateway/files/config-unpack.sh`); a
test holds the two pod specs equal.
"""

from __future__ import annotations

from typing import Any

# Where the unpack containers mount the ConfigMap (read-only); Envoy does not mount it.
CONFIGMAP_DIR = "/etc/gatewayctl/configmap"
# The emptyDir Envoy watches: at least two unpacked versions fit during a swap.
CONFIG_DIR_SIZE = "256Mi"
# Seconds between two looks at the ConfigMap volume's `..data` link (kubelet itself takes up
# to about a minute to update the volume after the ConfigMap changed).
POLL_SECONDS = 2
UNPACK_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "10m", "memory": "16Mi"},
    "limits": {"cpu": "200m", "memory": "64Mi"},
}
INIT_CONTAINER = "config-unpack"
SIDECAR_CONTAINER = "config-sync"

# sh -c SCRIPT config-unpack MODE SRC DST [SECONDS]
#   MODE once: publish SRC's current version into DST and exit (non-zero if it cannot).
#   MODE watch: publish whenever SRC's `..data` points elsewhere, every SECONDS (1-60).
# SRC is a ConfigMap or projected volume (kubelet's layout: `..data -> ..<timestamp>/`); each
# file F is taken plain, or else gunzipped from F.gz; when SRC has cds.json.sha256, cds.json
# must hash to it. DST gets the same layout: each version unpacked into a temporary directory,
# renamed to `..<timestamp>`, then `..data` replaced by one rename, so Envoy never sees half a
# version; older versions and leftovers of an interrupted run are removed.
UNPACK_SCRIPT = """\
set -eu
mode=$1 src=$2 dst=$3 every=${4:-2}
case $every in '' | *[!0-9]*) every=2 ;; esac
if [ "$every" -lt 1 ] || [ "$every" -gt 60 ]; then every=2; fi

unpack() {
  for f in lds.json rds.json cds.json; do
    if [ -f "$1/$f" ]; then
      cp "$1/$f" "$2/$f" || return 1
    elif [ -f "$1/$f.gz" ]; then
      gzip -dc "$1/$f.gz" >"$2/$f" || return 1
    else
      echo "config-unpack: $1 has neither $f nor $f.gz" >&2
      return 1
    fi
  done
  [ -f "$1/cds.json.sha256" ] || return 0
  want=$(cat "$1/cds.json.sha256") && got=$(sha256sum <"$2/cds.json") || return 1
  if [ "${got%% *}" != "$want" ]; then
    echo "config-unpack: $1 has lds.json and cds.json of different renders" >&2
    return 1
  fi
}

publish() {
  ver=$(readlink "$src/..data") || return 1
  case $ver in ..?*/* | ..data*) return 1 ;; ..?*) ;; *) return 1 ;; esac
  [ "$(readlink "$dst/..data" 2>/dev/null || :)" != "$ver" ] || return 0
  tmp=$(mktemp -d "$dst/.tmp.XXXXXX") || return 1
  if ! unpack "$src/$ver" "$tmp"; then rm -rf "$tmp"; return 1; fi
  chmod 0755 "$tmp" && rm -rf "${dst:?}/$ver" && mv "$tmp" "$dst/$ver" || return 1
  rm -f "$dst/..data_tmp"
  ln -s "$ver" "$dst/..data_tmp" && mv -Tf "$dst/..data_tmp" "$dst/..data" || return 1
  for f in lds.json rds.json cds.json; do
    [ -L "$dst/$f" ] || ln -s "..data/$f" "$dst/$f" || return 1
  done
  for old in "$dst"/..?*; do
    case ${old##*/} in ..data | "$ver") ;; *) rm -rf "$old" ;; esac
  done
  echo "config-unpack: published $ver"
}

rm -rf "${dst:?}"/.tmp.*
case $mode in
  once) publish ;;
  watch)
    trap 'exit 0' TERM INT
    while :; do
      publish || echo "config-unpack: cannot publish $src; next try in ${every}s" >&2
      sleep "$every" &
      wait $!
    done
    ;;
  *) echo "usage: config-unpack once|watch SRC DST [SECONDS]" >&2; exit 2 ;;
esac
"""


def unpack_command(mode: str, config_dir: str) -> list[str]:
    args = [mode, CONFIGMAP_DIR, config_dir] + ([str(POLL_SECONDS)] if mode == "watch" else [])
    return ["sh", "-c", UNPACK_SCRIPT, "config-unpack", *args]


def unpack_container(
    name: str, mode: str, image: str, config_dir: str, security: dict[str, Any]
) -> dict[str, Any]:
    """The init container (mode `once`) or the sidecar (mode `watch`)."""
    return {
        "command": unpack_command(mode, config_dir),
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "name": name,
        "resources": {k: dict(v) for k, v in UNPACK_RESOURCES.items()},
        "securityContext": dict(security),
        "volumeMounts": [
            {"mountPath": CONFIGMAP_DIR, "name": "config", "readOnly": True},
            {"mountPath": config_dir, "name": "envoy-config"},
        ],
    }
