"""Building gatewayctl's compiled filters (the Envoy dynamic module) for the local gateway.

The build is cached and content-addressed: the library lives in
<state dir>/modules/<sha256>/libgatewayctl.so, where the hash covers the module's sources,
the compiler's identity (`cc --version`) and the flags; the same inputs give the same path
and, as the build is deterministic (no debug info, no paths or dates in the output), the same
bytes. A build goes to a temporary file first and is renamed into place.

`prepare_module` is what `up` and every `--live local` path use: for a gateway with
`dataPlaneFilters: module` or `auto` (the default) it builds the module and checks it against
the Envoy that will run it (the ABI version, render/envoy/dynamic_module.py). Under `module` a
failed build or a mismatch is refused with one clear message; under `auto` it is the Lua
filters, said in a one-line notice. With no C compiler both serve the gateway with the Lua
filters (exactly the `dataPlaneFilters: lua` path) and say so.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import GatewayIR, resolve_data_plane_filters
from gatewayctl.render.envoy.dynamic_module import (
    CFLAGS,
    LIBRARY,
    SEARCH_PATH_ENV,
    SOURCES,
    abi_problem,
    source_files,
)

COMPILER_ENV = "CC"  # the compiler to use, as make and setuptools read it


class ModuleError(GatewayctlError):
    """The module cannot be built, or a built one does not fit the Envoy that would run it."""


def find_compiler() -> str | None:
    """$CC, else cc, else gcc; None when there is none."""
    explicit = os.environ.get(COMPILER_ENV)
    if explicit:
        return shutil.which(explicit)
    return shutil.which("cc") or shutil.which("gcc")


@cache
def _compiler_identity(compiler: str) -> str:
    done = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False,
                          timeout=30)
    return done.stdout.strip()


def build_key(compiler: str, flags: Sequence[str]) -> str:
    """The content address of a build: the sources, the compiler and the flags."""
    digest = hashlib.sha256()
    for part in (_compiler_identity(compiler), *flags):
        digest.update(part.encode("utf-8") + b"\0")
    for name, content in source_files().items():
        digest.update(name.encode("utf-8") + b"\0" + content + b"\0")
    return digest.hexdigest()


def build_module(cache_dir: Path, *, compiler: str | None = None,
                 extra_flags: Sequence[str] = ()) -> Path:
    """The library built from the shipped sources, in cache_dir/<key>/ (built if missing).
    extra_flags are appended to the hardened flags (a test's sanitiser or ABI override)."""
    compiler = compiler or find_compiler()
    if compiler is None:
        raise ModuleError("no C compiler found (cc, gcc or $CC)",
                          hint="install one (Debian: apt-get install gcc), or use "
                          "dataPlaneFilters: lua")
    flags = (*CFLAGS, *extra_flags)
    folder = cache_dir / build_key(compiler, flags)
    library = folder / LIBRARY
    if library.is_file():
        return library
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as work:
        src = Path(work) / "src"
        src.mkdir()
        for name, content in source_files().items():
            (src / name).write_bytes(content)
        out = Path(work) / LIBRARY
        # relative paths in a fixed folder: nothing of where it was built goes into the output
        done = subprocess.run([compiler, *flags, "-o", str(out), *SOURCES], cwd=src,
                              capture_output=True, text=True, check=False, timeout=300)
        if done.returncode != 0:
            raise ModuleError(f"the C compiler failed to build gatewayctl's module:\n"
                              f"{(done.stdout + done.stderr).strip()}",
                              hint="use dataPlaneFilters: lua meanwhile")
        os.replace(out, library)
    return library


@cache
def envoy_version(envoy: str) -> str:
    """The release of an Envoy binary ("1.40.0"), from `envoy --version`."""
    done = subprocess.run([envoy, "--version"], capture_output=True, text=True, check=False,
                          timeout=60)
    for word in (done.stdout + done.stderr).split():
        parts = word.split("/")
        if len(parts) >= 2 and parts[1][:1].isdigit():
            return parts[1]
    raise ModuleError(f"cannot tell the version of {envoy} from `envoy --version`")


def check_module(library: Path, envoy: str) -> None:
    """Refuse a library that does not fit this Envoy (its ABI version)."""
    problem = abi_problem(library.read_bytes(), envoy_version(envoy))
    if problem is not None:
        raise ModuleError(f"cannot use the module {library}: {problem}",
                          hint="rebuild it from this gatewayctl's sources against this Envoy, "
                          "or use dataPlaneFilters: lua")


def envoy_env(search_path: Path) -> dict[str, str]:
    """The environment the local Envoy runs with: this process's, and the module's folder.
    Always set, so a later apply can switch a running gateway to the module."""
    return {**os.environ, SEARCH_PATH_ENV: str(search_path)}


def validation_env(ir: GatewayIR, work: Path, envoy: str) -> dict[str, str] | None:
    """The environment `envoy --mode validate` needs for a config rendered elsewhere (a
    Kubernetes or folder target): with dataPlaneFilters module, Envoy loads the module to check
    the filters' config, so the module is built into `work` and checked against `envoy`
    first; None (this process's environment) for the Lua filters."""
    if ir.data_plane_filters != "module":
        return None
    if find_compiler() is None:
        raise ModuleError(
            "cannot check the configuration before applying it: it uses gatewayctl's "
            "compiled filters (dataPlaneFilters: module), which Envoy must load to validate, "
            f"and {NO_COMPILER}",
            hint="install one where gatewayctl runs (Debian: apt-get install gcc); the module is "
            "built only for the check, the gateway's image brings its own")
    library = build_module(work)
    check_module(library, envoy)
    return envoy_env(library.parent)


def install(library: Path, search_path: Path) -> None:
    """Put a built library where Envoy loads it from (replaced atomically when it differs)."""
    target = search_path / LIBRARY
    content = library.read_bytes()
    if target.is_file() and target.read_bytes() == content:
        return
    search_path.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=search_path, delete=False) as tmp:
        tmp.write(content)
    os.replace(tmp.name, target)


@dataclass(frozen=True)
class PreparedModule:
    ir: GatewayIR  # what to render: dataPlaneFilters lua or module, never auto
    notice: str | None = None


NO_COMPILER = "no C compiler (cc, gcc or $CC) was found"


def prepare_module(ir: GatewayIR, cache_dir: Path, search_path: Path,
                   envoy: str) -> PreparedModule:
    """The gateway to render for `envoy`, run by gatewayctl itself: with dataPlaneFilters
    module or auto, the module built (cached), checked against `envoy` and installed into
    search_path. Without a compiler both serve the Lua filters and say so in a notice; a
    module that cannot be built or does not fit `envoy` is an error under `module`, and the
    Lua filters with a one-line notice under `auto`."""
    requested = ir.data_plane_filters
    if requested == "lua":
        return PreparedModule(ir)
    compiler = find_compiler()
    if compiler is None:
        notice = (f"dataPlaneFilters: module, but {NO_COMPILER}: the gateway's filters run in "
                  "Lua (install gcc to use the compiled module)" if requested == "module" else
                  f"dataPlaneFilters: auto: {NO_COMPILER}, so the gateway's filters run in Lua "
                  "(install gcc for the compiled ones)")
        return PreparedModule(replace(ir, data_plane_filters="lua"), notice)
    try:
        library = build_module(cache_dir, compiler=compiler)
        check_module(library, envoy)
    except ModuleError as err:
        if requested == "module":
            raise
        reason = str(err).splitlines()[0].rstrip(":")
        return PreparedModule(
            _resolved(ir, module_ready=False),
            notice=f"dataPlaneFilters: auto: {reason}; the gateway's filters run in Lua")
    install(library, search_path)
    return PreparedModule(_resolved(ir, module_ready=True))


def _resolved(ir: GatewayIR, *, module_ready: bool) -> GatewayIR:
    filters = resolve_data_plane_filters(ir.data_plane_filters, local=True,
                                         module_ready=module_ready)
    return replace(ir, data_plane_filters=filters)
