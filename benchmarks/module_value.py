"""Instructions per request of the body filter's value work: the value library in C (the
compiled body filter's, gatewayctl/render/envoy/module/gw_value.h) against the shipped Lua.

The work is what gateway.lua does to the benchmark's chat request on route bench-full (every
policy): decode it (json.decode_members, under pcall), the guard text (guard_text, then
carried_text), redaction of email and credit-card (redact.table), `prompt_variables` dropped,
the upstream model set, and the body re-encoded with `model` first (json.encode). The C side is
benchmarks/dynamic_module/value_driver.c built with the module's flags; the Lua side runs the
shipped modules in LuaJIT 2.1 (lupa), the loop inside Lua. Each side runs twice under
`valgrind --tool=callgrind` (user-space instructions, repeatable to well under 1 % and barely
moved by the machine's load): a warm-up alone, then the warm-up and N more requests; the
difference over N is the work per request (LuaJIT's traces are compiled in the warm-up).
Envoy's side (reading the body, writing it back, the metadata) is not in either number.

    python -m benchmarks.module_value --requests 2000
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.dataplane_gateway import request_body
from gatewayctl.render.envoy.dynamic_module import CFLAGS, VALUE_SOURCES, source_files
from gatewayctl.render.envoy.lua import module_source, to_lua
from gatewayctl.render.envoy.names import LUA_NAMES

DRIVER = Path(__file__).resolve().parent / "dynamic_module" / "value_driver.c"
WARMUP = 3000

LUA_STEPS = r"""
local guard_text, carried_text, redact_table = texts.guard_text, texts.carried_text, redact.table
local KINDS = { email = true, ["credit-card"] = true }
return function(raw, n)
  local total = 0
  for _ = 1, n do
    local ok, req = pcall(json.decode_members, raw)
    if ok then
      local text = carried_text(guard_text(req, nil))
      redact_table(req, KINDS)
      req.prompt_variables = nil
      req.model = "bench-upstream"
      total = total + #json.encode(req, "model") + #text
    end
  end
  return total
end
"""

LUA_RUNNER = """
import sys
import lupa.luajit21 as luajit
rt = luajit.LuaRuntime(encoding=None)
run = rt.execute(open(sys.argv[1]).read())
body = open(sys.argv[2], "rb").read()
run(body, int(sys.argv[3]))
print(run(body, int(sys.argv[4])))
"""


def _callgrind(command: list[str], out: Path) -> int:
    """Instructions (Ir) of the whole command, user space."""
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command],
                   check=True, capture_output=True, timeout=1800)  # fmt: skip
    text = out.read_text(errors="replace")
    found = re.search(r"^totals:\s+(\d+)", text, re.MULTILINE) or re.search(
        r"^summary:\s+(\d+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no totals in {out}")
    return int(found.group(1))


def build_driver(folder: Path) -> Path:
    src = folder / "src"
    src.mkdir(parents=True, exist_ok=True)
    for name, content in source_files().items():
        (src / name).write_bytes(content)
    out = folder / "value_driver"
    flags = [f for f in CFLAGS if f not in ("-shared", "-fPIC")]
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("needs a C compiler (Debian: apt-get install gcc)")
    subprocess.run([cc, *flags, "-I", str(src), "-o", str(out), str(DRIVER),
                    *(str(src / n) for n in VALUE_SOURCES), "-lm"],
                   check=True, capture_output=True, text=True)  # fmt: skip
    return out


def measure(requests: int, folder: Path) -> dict[str, float]:
    body = request_body("bench-full", prompt_variables=False)
    body_file = folder / "body.json"
    body_file.write_bytes(body)
    driver = build_driver(folder)
    c_base = _callgrind([str(driver), str(body_file), str(WARMUP)], folder / "c0.out")
    c_more = _callgrind([str(driver), str(body_file), str(WARMUP + requests)], folder / "c1.out")
    lua_file = folder / "steps.lua"
    lua_file.write_text(
        "NAMES = " + to_lua(LUA_NAMES) + "\njsonstring = " + module_source("jsonstring.lua")
        + "\njson = " + module_source("json.lua") + "\ntexts = " + module_source("text.lua")
        + "\nredact = " + module_source("redact.lua") + "\n" + LUA_STEPS
    )  # fmt: skip
    runner = folder / "runner.py"
    runner.write_text(LUA_RUNNER)
    lua = [sys.executable, str(runner), str(lua_file), str(body_file), str(WARMUP)]
    l_base = _callgrind([*lua, "0"], folder / "l0.out")
    l_more = _callgrind([*lua, str(requests)], folder / "l1.out")
    return {
        "body_bytes": len(body),
        "requests": requests,
        "c_instructions_per_request": (c_more - c_base) / requests,
        "lua_instructions_per_request": (l_more - l_base) / requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="write the result here too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gw-value-bench-") as d:
        result = measure(args.requests, Path(d))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
