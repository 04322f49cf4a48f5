"""`gatewayctl validate` on hostile roots: wall time, peak memory and output size.

    python -m benchmarks.validate_bounds [N ...]

Per N (default 200000): one Gateway whose spec holds N unknown fields, validated by the CLI in
a child process, once per output form (text; JSON with Code Quality and JUnit reports). Prints
one JSON line per run: `n`, `form`, `exit`, `seconds`, `peak_rss_mib` (the child's maximum
resident set), `output_bytes` (stdout plus reports). Reference figures are in
docs/diagnostics.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GATEWAY = "apiVersion: gatewayctl.dev/v1alpha1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n"


def write_root(root: Path, n: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "gw.yaml").open("w") as f:
        f.write(GATEWAY + "  namespace: ns\n")
        for i in range(n):
            f.write(f"  field{i}: {i}\n")


# Runs the CLI as its own child and reports that child's peak RSS alone (RUSAGE_CHILDREN of
# this process would be the largest of all runs so far).
_WRAPPER = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[2:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
with open(sys.argv[1], "w") as f:
    f.write(f"{proc.returncode} {len(proc.stdout) + len(proc.stderr)} "
            f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
"""


def run(root: Path, args: list[str], reports: list[Path], stats: Path) -> dict[str, object]:
    cli = [sys.executable, "-m", "gatewayctl", "validate", str(root), *args]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", _WRAPPER, str(stats), *cli], check=True)
    seconds = time.perf_counter() - started
    code, out_bytes, peak_kib = (int(x) for x in stats.read_text().split())
    return {
        "exit": code,
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "output_bytes": out_bytes + sum(p.stat().st_size for p in reports),
    }


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv] or [200_000]
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "root"
            write_root(root, n)
            stats = Path(tmp) / "stats"
            text = run(root, [], [], stats)
            print(json.dumps({"n": n, "form": "text", **text}), flush=True)
            cq, ju = Path(tmp) / "cq.json", Path(tmp) / "junit.xml"
            args = ["-o", "json", "--report", f"codequality={cq}", "--report", f"junit={ju}"]
            both = run(root, args, [cq, ju], stats)
            print(json.dumps({"n": n, "form": "json+reports", **both}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
