"""The plan note on a merge request: one per gateway and environment, updated in place.

Each note starts with a hidden marker (`<!-- gatewayctl:plan gateway=ai-gateway env=production
-->`); later pipelines search every page of the merge request's notes for it and edit that note
instead of adding another. A plan longer than GitLab's note limit is cut at a line boundary and
ends with a link to the full plan artifact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from gatewayctl.gitlab.client import NO_CLIENT_RETRY, GitLabContext, GitLabSession, run_with_retries
from gatewayctl.gitlab.errors import CiEnvError

MARKER_PREFIX = "<!-- gatewayctl:plan "
NOTES_PER_PAGE = 100
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")


@dataclass(frozen=True)
class NoteResult:
    """What happened to the plan note."""

    action: Literal["created", "updated", "unchanged"]
    note_id: int
    url: str
    merge_request_iid: int
    truncated: bool


def plan_marker_key(gateway: str, environment: str | None = None) -> str:
    """`gateway=ai-gateway env=production`: which plan a note holds."""
    key = f"gateway={_marker_value(gateway)}"
    return f"{key} env={_marker_value(environment)}" if environment else key


def marker_line(marker_key: str) -> str:
    return f"{MARKER_PREFIX}{marker_key} -->"


def _marker_value(value: str) -> str:
    # no spaces (they separate fields) and no "--" (it would end the HTML comment)
    return quote(value, safe="/:._").replace("--", "-%2D")


def compose_note_body(
    markdown: str,
    marker_key: str,
    *,
    max_chars: int,
    artifact_url: str | None = None,
    job_url: str | None = None,
) -> tuple[str, bool]:
    """The note body (marker first) and whether the plan had to be shortened to fit."""
    head = marker_line(marker_key) + "\n"
    text = markdown.rstrip("\n") + "\n"
    if len(head) + len(text) <= max_chars:
        return head + text, False
    lines = text.splitlines(keepends=True)
    total = len(lines)
    # reserve room for the widest footer (kept has at most as many digits as total)
    budget = max_chars - len(head) - len(_footer(total, total, artifact_url, job_url)) - 4
    kept: list[str] = []
    used = 0
    for line in lines:
        if used + len(line) > budget:
            break
        kept.append(line)
        used += len(line)
    shown = len(kept)
    if sum(1 for line in kept if _FENCE.match(line)) % 2:
        kept.append("```\n")  # the cut fell inside a code block: close it
    body = head + "".join(kept) + _footer(shown, total, artifact_url, job_url)
    return body[:max_chars], True


def _footer(kept: int, total: int, artifact_url: str | None, job_url: str | None) -> str:
    if artifact_url:
        where = f"[the full plan]({artifact_url})"
    elif job_url:
        where = f"the full plan in the [job artifacts]({job_url})"
    else:
        where = "the full plan in the job artifacts"
    return (
        f"\n---\n**This plan is too long for a GitLab comment** ({kept} of {total} lines "
        f"shown). See {where}.\n"
    )


def upsert_plan_note(
    ctx: GitLabContext, markdown: str, marker_key: str, artifact_url: str | None = None
) -> NoteResult:
    """Create the plan note on the merge request, or update the one carrying the marker."""
    iid = ctx.merge_request_iid
    if iid is None:
        raise CiEnvError(
            "no merge request to comment on: CI_MERGE_REQUEST_IID is not set",
            "run the job in a merge request pipeline",
        )
    body, truncated = compose_note_body(
        markdown,
        marker_key,
        max_chars=ctx.note_max_chars,
        artifact_url=artifact_url,
        job_url=ctx.job_url,
    )
    marker = marker_line(marker_key)

    def once(session: GitLabSession) -> NoteResult:
        project = session.gl.projects.get(ctx.project, lazy=True)
        mr: Any = session.call(
            f"reading merge request !{iid}",
            lambda: project.mergerequests.get(iid, **NO_CLIENT_RETRY),
        )
        existing = find_marked_note(session, mr, marker)
        action: Literal["created", "updated", "unchanged"]
        if existing is None:
            note: Any = session.call(
                f"creating the plan note on merge request !{iid}",
                lambda: mr.notes.create({"body": body}, **NO_CLIENT_RETRY),
            )
            note_id, action = int(note.id), "created"
        elif existing["body"] == body:
            note_id, action = int(existing["id"]), "unchanged"
        else:
            note_id, action = int(existing["id"]), "updated"
            session.call(
                f"updating plan note {note_id} on merge request !{iid}",
                lambda: mr.notes.update(note_id, {"body": body}, **NO_CLIENT_RETRY),
            )
        return NoteResult(action, note_id, f"{mr.web_url}#note_{note_id}", iid, truncated)

    return run_with_retries(ctx, once)


def find_marked_note(session: GitLabSession, mr: Any, marker: str) -> dict[str, Any] | None:
    """The oldest non-system note whose body carries `marker`, searching every page."""

    def fetch(page: int) -> list[dict[str, Any]]:
        notes = mr.notes.list(
            page=page,
            per_page=NOTES_PER_PAGE,
            sort="asc",
            order_by="created_at",
            **NO_CLIENT_RETRY,
        )
        return [note.asdict() for note in notes]

    what = f"listing the notes of merge request !{mr.iid}"
    for note in session.pages(what, fetch, per_page=NOTES_PER_PAGE):
        if not note.get("system") and marker in str(note.get("body") or "").splitlines():
            return note
    return None
