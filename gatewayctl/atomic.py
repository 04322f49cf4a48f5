"""The one way gatewayctl replaces a file: readers see the old content or the new, never a part.

Owns atomic whole-file writes: a temporary file with a unique name in the same folder, written,
flushed and fsynced, given its mode, renamed over the target, and the folder fsynced so that
the rename survives a crash. A failure removes the temporary file and leaves the target as it
was. Must not: decide what to write, or where (callers own their layouts).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from gatewayctl.errors import UsageError

DEFAULT_MODE = 0o644


def write_atomic(path: Path, content: str | bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `content` (text is written as UTF-8). `mode`: the file's permission
    bits; default: those of the file it replaces, else DEFAULT_MODE."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            mode = DEFAULT_MODE
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)



def write_output(path: Path, content: str | bytes, what: str) -> None:
    """`write_atomic` for a file the user named (a report, a saved plan, a schema): a path that
    cannot be written (a folder, no permission, a read-only file system) is the user's error,
    one message naming `what` and the path, not a crash."""
    try:
        write_atomic(path, content)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:  # mkdir's "File exists" would not say which
            reason = f"{blocking} is a file, not a folder"
        raise UsageError(f"cannot write {what} {path}: {reason}",
                         hint="give a file path in a folder that can be written to") from None


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
