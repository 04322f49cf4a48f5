"""Render time, file sizes and Envoy validation time for a generated manifest root.

    python -m benchmarks.render_bench 1000

Per N: `render_s` (render_envoy), `files_s` (serialising the bundle), the size of each file,
`per_route_bytes` (LDS + CDS divided by the number of routes), the average size of a composite
cluster `r_<route>_<model>` and of a member cluster `m_<model>`, and `validate_s`
(`envoy --mode validate` of validate.yaml). Reference figures are in docs/data-plane.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.corpus import generate
from gatewayctl.compile import compile_gateway
from gatewayctl.manifests.manifest_set import load_manifest_set
from gatewayctl.render.envoy import EnvoyOptions, render_envoy


def _average_size(clusters: list[dict[str, Any]], prefix: str) -> float:
    sizes = [
        len(json.dumps(c, sort_keys=True, separators=(",", ":")).encode())
        for c in clusters
        if str(c["name"]).startswith(prefix)
    ]
    return round(sum(sizes) / len(sizes), 1) if sizes else 0.0


def measure(n: int, validate: bool = True) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = generate(n, Path(tmp) / "root")
        manifests, _ = load_manifest_set(root)
        ir = compile_gateway(manifests)
        started = time.perf_counter()
        bundle = render_envoy(ir, EnvoyOptions(config_dir=tmp))
        render_s = time.perf_counter() - started
        started = time.perf_counter()
        files = bundle.files()
        files_s = time.perf_counter() - started
        out: dict[str, float] = {
            "routes": len(ir.routes),
            "render_s": round(render_s, 3),
            "files_s": round(files_s, 3),
        }
        for name, text in files.items():
            (Path(tmp) / name).write_text(text)
            out[f"{name}_kib"] = round(len(text.encode()) / 1024, 1)
        watched = sum(len(files[n].encode()) for n in ("lds.json", "rds.json", "cds.json"))
        out["per_route_bytes"] = round(watched / max(1, len(ir.routes)))
        out["composite_cluster_bytes"] = _average_size(bundle.cds["resources"], "r_")
        out["member_cluster_bytes"] = _average_size(bundle.cds["resources"], "m_")
        if validate:
            started = time.perf_counter()
            subprocess.run(
                ["envoy", "--mode", "validate", "-c", str(Path(tmp) / "validate.yaml")]
                + ["-l", "error"],
                check=True,
                capture_output=True,
                timeout=300,
            )
            out["validate_s"] = round(time.perf_counter() - started, 3)
        return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for n in [int(a) for a in args] or [100, 1000]:
        print(measure(n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
