"""The output guardrails' walks in LuaJIT (Envoy's Lua), per byte: content, and tool-call
arguments with their JSON escapes decoded (outguard_walk.lua), for a literal pattern and for
patterns with `\\b` and `(?m)^`; with each automaton's size.

Timings on a shared machine move with its load: compare the rows of one run with each other
(they run side by side, interleaved), not with other runs. LuaJIT through lupa, as the tests
run it; Envoy runs the same LuaJIT.

    python -m benchmarks.outguard_walk [--bytes 1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from gatewayctl.manifests.output_dfa import compile_patterns
from gatewayctl.render.envoy.lua import module_source, to_lua
from gatewayctl.render.envoy.names import LUA_NAMES

PATTERN_SETS = {
    "literal": ["(?i)internal use only"],
    "assertions": ["(?i)internal use only", "\\bsecret\\b", "(?m)^rm -rf"],
}
SAMPLE = ("The quarterly report is ready; please review the figures before Friday. "
          "Secretaries and secrets differ.\nrm is a command, -rf its flags. ")


def _escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" if c.isascii() and c.isalpha() else c for c in text)


def _runtime(dfas: dict[str, Any]) -> Any:
    import lupa.luajit21 as luajit

    rt = luajit.LuaRuntime(encoding=None)
    rt.execute("NAMES = " + to_lua(LUA_NAMES) + "\n"
               "jsonstring = " + module_source("jsonstring.lua") + "\n"
               "json = " + module_source("json.lua") + "\n"
               "DFAS = " + to_lua(dfas) + "\n"
               "W = " + module_source("outguard_walk.lua") + "\n")
    return rt.eval("""function(name, kind, text, rounds)
      local dfa = DFAS[name]
      local clock = os.clock
      local t0 = clock()
      for _ = 1, rounds do
        if kind == "content" then W.walk(dfa, dfa.start, text)
        else W.walk_json(dfa, dfa.start, "", text) end
      end
      return clock() - t0
    end""")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bytes", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default="")
    args = p.parse_args(argv)
    dfas, sizes = {}, {}
    for name, patterns in PATTERN_SETS.items():
        started = time.perf_counter()
        dfa = compile_patterns(patterns)
        sizes[name] = {"states": dfa.states, "classes": dfa.width,
                       "compile_ms": round((time.perf_counter() - started) * 1000, 1)}
        dfas[name] = dfa.to_data()
    walk = _runtime(dfas)
    text = (SAMPLE * (args.bytes // len(SAMPLE) + 1))[: args.bytes]
    cases = {
        "content": text.encode(),
        "arguments": json.dumps({"query": text}).encode(),
        "arguments-escaped": ('{"query":"' + _escaped(text.replace("\n", " ")) + '"}').encode(),
    }
    times: dict[str, list[float]] = {}
    for _ in range(args.repeats):  # interleaved, so that load moves every row alike
        for name in PATTERN_SETS:
            for kind, data in cases.items():
                seconds = walk(name.encode(), b"content" if kind == "content" else b"json", data, 1)
                times.setdefault(f"{name} {kind}", []).append(seconds * 1e9 / len(data))
    rows = {key: round(statistics.median(v), 2) for key, v in times.items()}
    print("| automaton | states | classes | compile ms |\n|---|---:|---:|---:|")
    for name, size in sizes.items():
        print(f"| {name} | {size['states']} | {size['classes']} | {size['compile_ms']} |")
    print("\n| walk | ns / byte (median) |\n|---|---:|")
    for key, value in rows.items():
        print(f"| {key} | {value} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"sizes": sizes, "ns_per_byte": rows}, fh, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
