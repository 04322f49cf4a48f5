"""The output-folder policy: where a rendered bundle may be written, and what writing it does.

`render --out DIR` and `apply --live dir:DIR` write only into a missing or empty folder, or
into a folder that holds an earlier gatewayctl bundle. A bundle records the files gatewayctl
wrote, and the version that wrote them, in `DIR/gatewayctl-bundle.json`; only those files are
ever replaced or removed. Every other file in DIR is someone else's: it is left alone, and a
bundle file that would land on it is a refusal. A DIR that is, contains or lies inside the
manifest root or a Git work tree is refused too. A refusal changes nothing.

`plan_folder` says what a write would create, change and delete without touching anything (the
dir: plan lists it); `write_folder` does it. Writing is all or nothing: every file is staged
first (a failure there leaves DIR as it was), then renamed into place; a new folder appears
whole, with one rename. The record lists every file that may be there at each step, so a write
cut short is finished by the next one.

This module owns file-system policy only; it renders nothing and knows no live target.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gatewayctl import __version__
from gatewayctl.atomic import write_atomic
from gatewayctl.errors import GatewayctlError

RECORD_NAME = "gatewayctl-bundle.json"
RECORD_KIND = "gatewayctl-bundle"
RECORD_FORMAT = 1
STAGING_NAME = ".gatewayctl-staging"
# gatewayctl's own names in a bundle folder: the record, its next version while it is being
# replaced, and the folder where files are staged; a write cut short leaves only these.
_INTERNAL = (RECORD_NAME, f".{RECORD_NAME}.tmp", STAGING_NAME)


class FolderRefused(GatewayctlError):
    """The output folder is not one gatewayctl may write into; nothing was changed."""


@dataclass(frozen=True)
class FolderChanges:
    """What writing a bundle into `folder` does, as relative POSIX paths, each sorted."""

    folder: Path  # resolved
    create: tuple[str, ...]
    update: tuple[str, ...]
    delete: tuple[str, ...]
    unchanged: tuple[str, ...]
    foreign: tuple[str, ...]  # files gatewayctl did not write: left alone

    @property
    def has_changes(self) -> bool:
        return bool(self.create or self.update or self.delete)


# -- checks -----------------------------------------------------------------------------------

def _git_work_tree_around(path: Path) -> Path | None:
    """The top of the Git work tree `path` is or lies inside, as `git rev-parse` finds it."""
    for candidate in (path, *path.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_folder(out: Path, *, root: Path | None = None) -> Path:
    """The resolved folder, or FolderRefused when its place rules it out (contents aside)."""
    folder = out.expanduser().resolve()
    hint_elsewhere = "write the bundle to a folder of its own outside the manifests and " \
                     "outside any Git checkout, e.g. --out ../rendered or a folder in /tmp"
    if folder.exists() and not folder.is_dir():
        raise FolderRefused(f"{out} exists and is not a folder; nothing was written",
                            hint=hint_elsewhere)
    if root is not None:
        manifests = root.expanduser().resolve()
        if _within(folder, manifests) or _within(manifests, folder):
            relation = ("is the manifest root" if folder == manifests else
                        "lies inside the manifest root" if _within(folder, manifests) else
                        "contains the manifest root")
            raise FolderRefused(f"{out} {relation} {root}; nothing was written",
                                hint=hint_elsewhere)
    top = _git_work_tree_around(folder)
    if top is not None:
        relation = "is" if top == folder else f"lies inside {top}, which is"
        raise FolderRefused(f"{out} {relation} a Git work tree; nothing was written",
                            hint=hint_elsewhere)
    return folder


# -- the record -------------------------------------------------------------------------------

def _safe_relative(name: object) -> str | None:
    """`name` when it is a plain relative path inside the folder, else None."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        return None
    pure = PurePosixPath(name)
    if pure.is_absolute() or any(part in ("", ".", "..") for part in name.split("/")):
        return None
    return pure.as_posix()


def _read_record(folder: Path, shown: Path) -> frozenset[str]:
    """The files an earlier write recorded; FolderRefused when the record is unreadable."""
    path = folder / RECORD_NAME
    damaged = FolderRefused(
        f"{shown}/{RECORD_NAME} is not a gatewayctl bundle record; nothing was written",
        hint=f"if {shown} holds only an old bundle, remove it (rm -r {shown}) and write again")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        raise damaged from None
    if not isinstance(data, dict) or data.get("kind") != RECORD_KIND \
            or not isinstance(data.get("files"), list):
        raise damaged
    files = [_safe_relative(f) for f in data["files"]]
    if any(f is None or f.split("/")[0] in _INTERNAL for f in files):
        raise damaged
    return frozenset(f for f in files if f)


def _record_text(files: Iterable[str]) -> str:
    data = {"kind": RECORD_KIND, "format": RECORD_FORMAT, "gatewayctl": __version__,
            "files": sorted(files)}
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _existing_entries(folder: Path) -> list[str]:
    """Every file, link and empty folder under `folder`, relative, without following links."""
    found: list[str] = []
    for top, dirs, files in os.walk(folder, followlinks=False):
        rel_top = Path(top).relative_to(folder)
        for name in files:
            found.append((rel_top / name).as_posix())
        for name in list(dirs):
            sub = Path(top) / name
            if sub.is_symlink() or not any(sub.iterdir()):
                found.append((rel_top / name).as_posix())
                dirs.remove(name)
    return sorted(found)


def _is_own_file(folder: Path, rel: str) -> bool:
    """A file gatewayctl recorded is still its own only if it is a plain file, reached
    through real folders (a link put in its place is someone else's)."""
    path = folder
    for part in rel.split("/"):
        path = path / part
        if path.is_symlink():
            return False
    return path.is_file()


def _blocked(folder: Path, rel: str, own: frozenset[str]) -> bool:
    """Whether writing `rel` would replace or pass through something that is not ours."""
    path = folder
    parts = rel.split("/")
    for part in parts[:-1]:
        path = path / part
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            return True
    target = path / parts[-1]
    if not (target.exists() or target.is_symlink()):
        return False
    return rel not in own or not _is_own_file(folder, rel)


# -- planning ---------------------------------------------------------------------------------

def _survey(folder: Path, shown: Path) -> tuple[frozenset[str], list[str]]:
    """The recorded files (none for a new or empty folder) and the entries nobody recorded."""
    if not folder.exists():
        return frozenset(), []
    if not (folder / RECORD_NAME).is_file():
        top = sorted(p.name for p in folder.iterdir() if p.name not in _INTERNAL)
        if not top:
            return frozenset(), []
        listed = ", ".join(top[:3]) + (f" and {len(top) - 3} more" if len(top) > 3 else "")
        raise FolderRefused(
            f"{shown} is not empty and holds no gatewayctl bundle ({listed}); nothing was "
            "written", hint=f"gatewayctl writes only into a new or empty folder, or one it "
            f"wrote before (with {RECORD_NAME}); choose another folder")
    own = _read_record(folder, shown)
    foreign = [e for e in _existing_entries(folder)
               if e not in own and e.split("/")[0] not in _INTERNAL]
    nested = [e for e in foreign if ".git" in e.split("/")]
    if nested:
        raise FolderRefused(f"{shown} contains a Git repository ({nested[0]}); nothing was "
                            "written", hint="move the repository out of the bundle folder")
    return own, foreign


def plan_folder(out: Path, files: Mapping[str, str | None], *,
                root: Path | None = None) -> FolderChanges:
    """What writing `files` (relative path -> text) into `out` would do; FolderRefused when
    it may not be written. A text of None is not known yet: an existing file counts as
    updated. Reads only."""
    folder = check_folder(out, root=root)
    bad = sorted(p for p in files if _safe_relative(p) != p or p.split("/")[0] in _INTERNAL)
    if bad:
        raise ValueError(f"not a bundle path: {bad[0]}")  # a bug in the caller
    own, foreign = _survey(folder, out)
    blocked = sorted(p for p in files if _blocked(folder, p, own))
    if blocked:
        raise FolderRefused(
            f"{out}/{blocked[0]} is not a file gatewayctl wrote, and the bundle would replace "
            f"it{f' (and {len(blocked) - 1} more)' if len(blocked) > 1 else ''}; nothing was "
            "written", hint="move it out of the bundle folder, or write the bundle elsewhere")
    create, update, unchanged = [], [], []
    for rel, text in sorted(files.items()):
        target = folder / rel
        if not target.exists():
            create.append(rel)
        elif text is not None and target.read_bytes() == text.encode("utf-8"):
            unchanged.append(rel)
        else:
            update.append(rel)
    delete = sorted(f for f in own if f not in files and _is_own_file(folder, f))
    return FolderChanges(folder, tuple(create), tuple(update), tuple(delete),
                         tuple(unchanged), tuple(foreign))


# -- writing ----------------------------------------------------------------------------------

def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def _replace_record(folder: Path, files: Iterable[str]) -> None:
    write_atomic(folder / RECORD_NAME, _record_text(files), mode=0o644)


def _write_new_folder(folder: Path, files: Mapping[str, str]) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for rel, text in files.items():
            _write_text(tmp / rel, text)
        _write_text(tmp / RECORD_NAME, _record_text(files))
        os.chmod(tmp, 0o755)
        os.rename(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _remove_empty_parents(folder: Path, rel: str) -> None:
    parent = (folder / rel).parent
    while parent != folder and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def write_folder(out: Path, files: Mapping[str, str], *,
                 root: Path | None = None) -> FolderChanges:
    """Write `files` into `out` under the policy above, all or nothing; what it did."""
    changes = plan_folder(out, files, root=root)
    try:
        if changes.folder.exists():
            _write_into(changes, files, out)
        else:
            _write_new_folder(changes.folder, files)
    except OSError as err:
        raise GatewayctlError(f"cannot write the bundle to {out}: {err.strerror or err}; "
                              "nothing was changed", hint="check the folder's permissions "
                              "and free space") from None
    return changes


def _write_into(changes: FolderChanges, files: Mapping[str, str], shown: Path) -> None:
    folder = changes.folder
    before = _read_record(folder, shown) if (folder / RECORD_NAME).is_file() else frozenset()
    staging = folder / STAGING_NAME
    shutil.rmtree(staging, ignore_errors=True)  # left by a write cut short
    staging.mkdir()
    committing = False
    made: list[Path] = []
    try:
        staged = {rel: staging / str(i)
                  for i, rel in enumerate((*changes.create, *changes.update))}
        for rel, path in staged.items():
            _write_text(path, files[rel])
            os.chmod(path, 0o644)
        made += [p for rel in staged for p in _missing_parents(folder, rel)]
        for rel in staged:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        # From here on only renames and removals. The record first claims every file that
        # may be present at any point, so that the next write finishes one cut short.
        committing = True
        _replace_record(folder, before | set(files))
        for rel, path in staged.items():
            os.replace(path, folder / rel)
        for rel in changes.delete:
            (folder / rel).unlink(missing_ok=True)
            _remove_empty_parents(folder, rel)
        _replace_record(folder, files)
    except BaseException:
        if not committing:
            for path in sorted(set(made), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    path.rmdir()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _missing_parents(folder: Path, rel: str) -> list[Path]:
    return [p for p in (folder / rel).parents if _within(p, folder) and p != folder
            and not p.exists()]
