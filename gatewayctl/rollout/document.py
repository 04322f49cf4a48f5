"""The rollout in Git: find its manifest, read when its step started, write an edit safely.

`load_rollout` loads the manifest root and returns the Rollout with its file. `save_transition`
turns a `Transition` into in-place edits (`edit.py`), writes them, and loads the root again:
if the edit would add an error the root did not have, the file is put back and nothing changes.
The last analysis of each rollout is kept in `<root>/.gatewayctl/rollouts/<name>.json` (a
hidden folder, which the manifest loader skips, with a `.gitignore` of its own so that it is
never committed), for `rollout status` to show.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gatewayctl.atomic import write_atomic
from gatewayctl.diagnostics import Diagnostic, did_you_mean
from gatewayctl.errors import GatewayctlError
from gatewayctl.manifests.documents import Manifest
from gatewayctl.manifests.kinds import RolloutSpec
from gatewayctl.manifests.manifest_set import ManifestSet, load_manifest_set
from gatewayctl.rollout.analysis import AnalysisResult
from gatewayctl.rollout.edit import FieldEdit, FileEdit, prepare_file_edit, write_file_edit
from gatewayctl.rollout.steps import STARTED_ANNOTATION, Transition, format_time

STORE_DIR = Path(".gatewayctl") / "rollouts"
GIT_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class RolloutDocument:
    root: Path
    manifests: ManifestSet
    manifest: Manifest[RolloutSpec]
    path: Path  # the file holding it
    diagnostics: tuple[Diagnostic, ...]

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def spec(self) -> RolloutSpec:
        return self.manifest.spec

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.is_error)


def load_rollout(root: Path, name: str) -> RolloutDocument:
    if not root.is_dir():
        raise GatewayctlError(f"{root} is not a folder",
                              hint="give the manifest root with --root")
    mset, diags = load_manifest_set(root)
    found = mset.rollouts.get(name)
    if found is None:
        if name in mset.declared.get("Rollout", frozenset()):
            first = next((d for d in diags if d.is_error and d.resource == f"Rollout/{name}"),
                         None)
            where = f": {first.location} {first.summary}" if first and first.location else ""
            raise GatewayctlError(f"Rollout {name} has errors{where}",
                                  hint=f"run `gatewayctl validate {root}`")
        close = did_you_mean(name, list(mset.rollouts))
        known = ", ".join(mset.rollouts) or "none"
        raise GatewayctlError(f"no Rollout named {name} under {root}",
                              hint=f"did you mean {close}?" if close
                              else f"rollouts here: {known}")
    return RolloutDocument(root, mset, found, root / found.doc.path, tuple(diags))


# --- when the step started ---------------------------------------------------------------------


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def last_commit_time(path: Path) -> datetime | None:
    """When the file last changed in the checked-out history (None: no Git, not committed)."""
    out = _git(["log", "-1", "--first-parent", "--format=%ct", "--", path.name], path.parent)
    if not out:
        return None
    try:
        return datetime.fromtimestamp(int(out), tz=UTC)
    except ValueError:
        return None


def started_annotation(source: RolloutDocument) -> str | None:
    return source.manifest.metadata.annotations.get(STARTED_ANNOTATION)


# --- writing -----------------------------------------------------------------------------------


def transition_edits(transition: Transition, now: datetime) -> list[FieldEdit]:
    edits: list[FieldEdit] = []
    if transition.after.step != transition.before.step:
        edits.append(FieldEdit(("spec", "step"), transition.after.step, after=("steps",)))
    if transition.after.state != transition.before.state:
        edits.append(FieldEdit(("spec", "state"), transition.after.state, after=("step",)))
    if transition.restarts_clock:
        edits.append(FieldEdit(("metadata", "annotations", STARTED_ANNOTATION),
                               format_time(now), after=("labels", "name")))
    return edits


def plan_file_edit(source: RolloutDocument, transition: Transition, now: datetime) -> FileEdit:
    """The file's new text for a transition (nothing written yet)."""
    return prepare_file_edit(source.path, source.name, transition_edits(transition, now))


def write_checked(source: RolloutDocument, edit: FileEdit) -> RolloutDocument:
    """Write the edit, then load the root again; put the file back if it added an error."""
    if not edit.changed:
        return source
    before = {(d.code, d.summary) for d in source.errors}
    write_file_edit(edit)
    try:
        after = load_rollout(source.root, source.name)
    except GatewayctlError:
        write_file_edit(FileEdit(edit.path, edit.after, edit.before, edit.bom))
        raise
    new = [d for d in after.errors if (d.code, d.summary) not in before]
    if new:
        write_file_edit(FileEdit(edit.path, edit.after, edit.before, edit.bom))
        first = new[0]
        raise GatewayctlError(f"the change would make the manifests invalid: {first.summary}",
                              hint=first.hint or f"run `gatewayctl validate {source.root}`")
    return after


# --- the last analysis -------------------------------------------------------------------------


def store_path(root: Path, name: str) -> Path:
    return root / STORE_DIR / f"{name}.json"


def save_analysis(root: Path, result: AnalysisResult) -> Path:
    path = store_path(root, result.rollout)
    path.parent.mkdir(parents=True, exist_ok=True)
    ignore = root / STORE_DIR.parts[0] / ".gitignore"
    if not ignore.exists():  # local state: never show up in `git status` or a commit
        ignore.write_text("# written by gatewayctl: local rollout state\n*\n", encoding="utf-8")
    write_atomic(path, result.to_json())
    return path


def load_analysis(root: Path, name: str) -> AnalysisResult | None:
    """The last analysis saved for the rollout; None when there is none. A file that is there
    but cannot be read is an error that names it, never "no analysis yet"."""
    path = store_path(root, name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        problem = getattr(err, "strerror", None) or str(err)
    else:
        try:
            return AnalysisResult.from_json(text)
        except (ValueError, KeyError, TypeError) as err:
            problem = str(err) or type(err).__name__
    raise GatewayctlError(
        f"the last analysis of Rollout {name}, {path}, is corrupt ({problem})",
        hint=f"delete it, or run `gatewayctl rollout analyze {name}` to replace it")
