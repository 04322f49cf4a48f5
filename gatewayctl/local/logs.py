"""`gatewayctl logs`: the local gateway's log files, their last lines, and following them.

The logs are files in the state directory (`state.py`): Envoy's, the mock provider's and the
access log. A tail reads backwards from the end in blocks, so it costs the same on a log of
any size. Following polls the files (a few times a second), copes with a file that is
truncated or replaced by a new `up`, and ends when the gateway stops, as `docker compose logs
-f` does, or on Ctrl-C.

Owns reading logs only; it starts and stops nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gatewayctl.errors import GatewayctlError, UsageError
from gatewayctl.local.state import StateDir

SOURCES = ("envoy", "mock", "access")
DEFAULT_SOURCES = ("envoy", "mock")
DEFAULT_TAIL = 100
_BLOCK = 64 * 1024
Write = Callable[[str], None]


@dataclass
class _Followed:
    name: str
    path: Path
    offset: int = 0
    inode: int | None = None
    partial: bytes = b""


def log_files(state: StateDir, sources: Sequence[str]) -> dict[str, Path]:
    """Source name -> log file, in the order asked; UsageError for an unknown source."""
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise UsageError(f'unknown log "{unknown[0]}"', hint=f"use {', '.join(SOURCES)}")
    paths = {"envoy": state.envoy_log, "mock": state.mock_log, "access": state.access_log}
    return {s: paths[s] for s in dict.fromkeys(sources or DEFAULT_SOURCES)}


def parse_tail(text: str) -> int | None:
    """Lines to show: a count, or None for "all"."""
    if text == "all":
        return None
    if text.isdigit():
        return int(text)
    raise UsageError(f'--tail "{text}" is not a number of lines', hint="use e.g. --tail 200, or "
                     "--tail all")


def tail_lines(path: Path, count: int | None) -> list[str]:
    """The last `count` lines of a file (all of them for None), reading from the end."""
    try:
        with open(path, "rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            if count is None:
                handle.seek(0)
                data = handle.read()
            else:
                data, pos = b"", end
                while pos > 0 and data.count(b"\n") <= count:
                    step = min(_BLOCK, pos)
                    pos -= step
                    handle.seek(pos)
                    data = handle.read(step) + data
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines if count is None else lines[-count:] if count else []


def show_logs(state: StateDir, sources: Sequence[str], *, tail: int | None, follow: bool,
              running: Callable[[], bool], write: Write, poll_s: float = 0.2) -> int:
    """Print the tails, then (with `follow`) new lines until the gateway stops; exit code."""
    files = log_files(state, sources)
    if not any(p.exists() for p in files.values()):
        raise GatewayctlError(f"no local gateway logs in {state.logs_dir}",
                              hint="start the local gateway with `gatewayctl up ROOT`")
    width = max(len(name) for name in files) if len(files) > 1 else 0

    def emit(name: str, line: str) -> None:
        write(f"{name.ljust(width)} | {line}\n" if width else f"{line}\n")

    followed = [_Followed(name, path) for name, path in files.items()]
    for f in followed:
        for line in tail_lines(f.path, tail):
            emit(f.name, line)
        _skip_to_end(f)
    if not follow:
        return 0
    try:
        while True:
            alive = running()
            for f in followed:
                for line in _new_lines(f):
                    emit(f.name, line)
            if not alive:
                return 0
            time.sleep(poll_s)
    except KeyboardInterrupt:
        return 0


def _skip_to_end(f: _Followed) -> None:
    try:
        info = f.path.stat()
    except FileNotFoundError:
        f.offset, f.inode = 0, None
        return
    f.offset, f.inode = info.st_size, info.st_ino


def _new_lines(f: _Followed) -> list[str]:
    try:
        info = f.path.stat()
    except FileNotFoundError:
        return []
    if info.st_ino != f.inode or info.st_size < f.offset:  # replaced or truncated: start over
        f.offset, f.inode, f.partial = 0, info.st_ino, b""
    if info.st_size == f.offset:
        return []
    with open(f.path, "rb") as handle:
        handle.seek(f.offset)
        data = handle.read(info.st_size - f.offset)
    f.offset += len(data)
    data = f.partial + data
    complete, _, f.partial = data.rpartition(b"\n")
    if not complete and not data.endswith(b"\n"):
        return []
    return complete.decode("utf-8", errors="replace").split("\n")
