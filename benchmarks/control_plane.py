"""Control-plane benchmark: validate, render and plan for N routes, and CLI start-up.

Each measurement runs the real CLI in a fresh process (so start-up is included, as users see
it) and records wall time and the peak resident memory of that process. Reports the median of
several runs and the growth factor between sizes (10x more routes should cost close to 10x).

    python -m benchmarks.control_plane [--sizes 100,1000,10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.corpus import generate

CLI = [sys.executable, "-m", "gatewayctl"]


def measure(args: list[str]) -> tuple[float, float, int]:
    """(seconds, peak RSS MiB, exit code) of one CLI run."""
    start = time.perf_counter()
    proc = subprocess.Popen(CLI + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 2):
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"gatewayctl {' '.join(args)} failed ({code}):\n{err}")
    return elapsed, usage.ru_maxrss / 1024, code


def median_of(args: list[str], runs: int) -> tuple[float, float]:
    results = [measure(args) for _ in range(runs)]
    return statistics.median(r[0] for r in results), max(r[1] for r in results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-plan", action="store_true")
    opts = parser.parse_args(argv)
    sizes = [int(s) for s in opts.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="gatewayctl-bench-"))

    tiny = Path(__file__).resolve().parent.parent / "examples" / "quickstart"
    help_s, help_mb = median_of(["--help"], 7)
    val_s, val_mb = median_of(["validate", str(tiny)], 7)
    print(
        f"start-up: --help {help_s * 1000:.0f} ms ({help_mb:.0f} MiB), "
        f"validate quickstart {val_s * 1000:.0f} ms ({val_mb:.0f} MiB)"
    )

    print(
        f"{'routes':>7} {'manifests':>9} {'step':>9} {'median s':>9} {'peak MiB':>9} {'growth':>7}"
    )
    previous: dict[str, float] = {}
    for n in sizes:
        root = generate(n, work / f"root-{n}")
        out = work / f"out-{n}"
        manifests = sum(p.read_text().count("\nkind: ") + 1 for p in root.glob("*.yaml"))
        runs = max(1, opts.runs if n < 10000 else min(opts.runs, 2))
        steps = [
            ("validate", ["validate", str(root)]),
            ("render", ["render", str(root), "--out", str(out)]),
        ]
        if not opts.no_plan:
            steps.append(("plan", ["plan", str(root), "--live", f"dir:{out}"]))
        for step, args in steps:
            if step == "plan" and not out.exists():
                measure(["render", str(root), "--out", str(out)])
            secs, mib = median_of(args, runs)
            growth = ""
            if step in previous:
                growth = f"{secs / previous[step]:.1f}x"
            previous[step] = secs
            print(f"{n:>7} {manifests:>9} {step:>9} {secs:>9.2f} {mib:>9.0f} {growth:>7}")
    print(f"(growth: time relative to the previous size; {work} holds the generated roots)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
