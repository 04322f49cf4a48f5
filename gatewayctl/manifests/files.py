"""Which files of a manifest root are read, and reading one safely.

The loader reads what lies in the root and nothing else: hidden files and folders are skipped,
and so are folders of installed software (a virtualenv: any folder with `pyvenv.cfg`;
`node_modules`), so that the default root `.` of a checkout reads the manifests only;
folders reached through a link are never descended, and a file reached through a link is read
only when the link resolves to a visible file inside the root. A link that leads out of the
root, into a hidden folder (`.secrets/`), or to nothing is refused with GW009 and never opened,
so a `docker.yaml -> ~/.docker/config.json` in a checkout cannot put the runner's credentials
into a job log. Files are opened without following links and read only when they are regular
files of at most MAX_FILE_BYTES.

This module must not know about manifest kinds.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gatewayctl.diagnostics import Diagnostic, Location, error
from gatewayctl.manifests.yamlsource import SourceDocument, parse_text

MAX_FILE_BYTES = 8 * 1024 * 1024
SUFFIXES = (".yaml", ".yml")
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)

_OUTSIDE_HINT = (
    "gatewayctl reads only what lies in the manifest root: copy the file into it, "
    "or validate the folder that holds it"
)
_HIDDEN_HINT = "hidden files and folders (such as .secrets) are never read as manifests"
_DANGLING_HINT = "remove the link, or restore what it pointed to"


def _hidden(parts: tuple[str, ...]) -> bool:
    return any(part.startswith(".") for part in parts)


def _installed_software(folder: Path) -> bool:
    """A virtualenv (it holds pyvenv.cfg) or a node_modules folder: never manifests."""
    return folder.name == "node_modules" or (folder / "pyvenv.cfg").is_file()


def _not_read(relpath: str, why: str, hint: str) -> Diagnostic:
    return error(
        "GW009",
        f"{relpath} is {why}; it was not read",
        location=Location(relpath, 1, 1),
        hint=hint,
    )


def _link_problem(link: Path, relpath: str, real_root: Path) -> Diagnostic | None:
    """Why a link must not be followed, or None when it resolves to a visible part of the root."""
    try:
        target = link.resolve(strict=True)
    except (OSError, RuntimeError):  # missing target, or a loop of links
        return _not_read(relpath, "a link to nothing (its target does not exist)", _DANGLING_HINT)
    what = "folder" if target.is_dir() else "file"
    if not target.is_relative_to(real_root):
        return _not_read(relpath, f"a link to a {what} outside the manifest root", _OUTSIDE_HINT)
    if _hidden(target.relative_to(real_root).parts):
        return _not_read(relpath, f"a link to a hidden {what} of the manifest root", _HIDDEN_HINT)
    return None


def _may_follow(link: Path, root: Path, real_root: Path, refused: list[Diagnostic]) -> bool:
    """Whether a link may be followed; when not, the refusal is added to `refused`."""
    problem = _link_problem(link, link.relative_to(root).as_posix(), real_root)
    if problem is not None:
        refused.append(problem)
    return problem is None


def discover(root: Path) -> tuple[list[Path], list[Diagnostic]]:
    """Every *.yaml / *.yml to read under root, in a stable order, and the links refused."""
    if not root.is_dir():
        return [root], []  # one file, named by the user
    real_root = root.resolve()
    found: list[Path] = []
    refused: list[Diagnostic] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        keep: list[str] = []
        for name in sorted(dirnames):
            folder = here / name
            if name.startswith(".") or _installed_software(folder):
                continue
            if folder.is_symlink():
                # Never descended: what it points to inside the root is read where it lies.
                _may_follow(folder, root, real_root, refused)
                continue
            keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            path = here / name
            if name.startswith(".") or path.suffix not in SUFFIXES:
                continue
            if path.is_symlink() and not _may_follow(path, root, real_root, refused):
                continue
            found.append(path)
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    return found, refused


def read_file(
    root: Path, path: Path
) -> tuple[list[SourceDocument], list[Diagnostic], list[str]]:
    """The file's documents, its problems, and its lines (empty when it was not read)."""
    relpath = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    real = path.resolve() if path.is_symlink() else path  # discover checked where it leads
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except OSError as exc:
        why = f"a file that cannot be opened ({exc.strerror})"
        return [], [_not_read(relpath, why, "check the file's permissions")], []
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return [], [], []  # a named pipe, a device: not a manifest; reading could block
        if info.st_size > MAX_FILE_BYTES:
            return [], [_too_large(relpath, info.st_size)], []
        raw = handle.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:  # it grew while being read
        return [], [_too_large(relpath, len(raw))], []
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return (
            [],
            [
                error(
                    "GW007",
                    "file is not valid UTF-8",
                    location=Location(relpath, line, 1),
                    hint="save the file as UTF-8",
                )
            ],
            [],
        )
    lines = text.splitlines()
    docs, diags = parse_text(relpath, text, lines=lines)
    return docs, diags, lines


def _too_large(relpath: str, size: int) -> Diagnostic:
    return error(
        "GW004",
        f"file is {size / 1048576:.1f} MiB; manifests are limited to "
        f"{MAX_FILE_BYTES // 1048576} MiB per file",
        location=Location(relpath, 1, 1),
        hint="split the manifests over several files",
    )
