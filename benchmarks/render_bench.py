"""Render time, file sizes and Envoy validation time for a generated manifest root.

    python -m benchmarks.render_bench 1000
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.corpus import generate
from gatewayctl.compile import compile_gateway
from gatewayctl.manifests.bundle import load_manifest_set
from gatewayctl.render.envoy import EnvoyOptions, render_envoy


def measure(n: int, validate: bool = True) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = generate(n, Path(tmp) / "root")
        manifests, _ = load_manifest_set(root)
        ir = compile_gateway(manifests)
        started = time.perf_counter()
        files = render_envoy(ir, EnvoyOptions(config_dir=tmp)).files()
        render_s = time.perf_counter() - started
        out: dict[str, float] = {"routes": len(ir.routes), "render_s": round(render_s, 3)}
        for name, text in files.items():
            (Path(tmp) / name).write_text(text)
            out[f"{name}_kib"] = round(len(text.encode()) / 1024, 1)
        if validate:
            started = time.perf_counter()
            subprocess.run(["envoy", "--mode", "validate", "-c", str(Path(tmp) / "validate.yaml"),
                            "-l", "error"], check=True, capture_output=True, timeout=300)
            out["validate_s"] = round(time.perf_counter() - started, 3)
        return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for n in [int(a) for a in args] or [100, 1000]:
        print(measure(n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
