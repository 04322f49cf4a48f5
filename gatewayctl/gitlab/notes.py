"""The plan note on a merge request: one per gateway and environment, updated in place.

Each note starts with a hidden marker (`<!-- gatewayctl:plan gateway=ai-gateway env=production
-->`); later pipelines search every page of the merge request's notes for it and edit that note
instead of adding another. A plan too long to read in a note is summarised (long lines cut, then
the folded diffs left out, then cut at a line) and ends with a link to the full plan artifact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from gatewayctl.gitlab.client import NO_CLIENT_RETRY, GitLabContext, GitLabSession, run_with_retries
from gatewayctl.gitlab.errors import CiEnvError

MARKER_PREFIX = "<!-- gatewayctl:plan "
MAX_LINE_CHARS = 1_000
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
    """The note body (marker first) and whether the plan had to be shortened.

    A note is for reading: no line longer than MAX_LINE_CHARS (a minified config on one line
    says nothing in a review) and at most `max_chars` in all (`client.NOTE_MAX_CHARS` from the
    CLI, well under GitLab's own limit). Over that, the diffs folded in `<details>` go first,
    keeping the summary and the change tables; then the text is cut at a line boundary. The
    footer links the full plan (the job's `plan.md` artifact) whenever anything was left out.
    """
    head = marker_line(marker_key) + "\n"
    text, long_lines = _cap_lines(markdown.rstrip("\n") + "\n")
    if len(head) + len(text) <= max_chars and not long_lines:
        return head + text, False
    omitted = 0
    if len(head) + len(text) > max_chars:
        text, omitted = _drop_details(text)
    footer_room = len(_footer(0, 0, omitted, long_lines, artifact_url, job_url)) + 40
    if len(head) + len(text) + footer_room <= max_chars:
        body = head + text + _footer(None, None, omitted, long_lines, artifact_url, job_url)
        return body, True
    lines = text.splitlines(keepends=True)
    total = len(lines)
    budget = max_chars - len(head) - footer_room - len(str(total)) * 2 - 4
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
    footer = _footer(shown, total, omitted, long_lines, artifact_url, job_url)
    return (head + "".join(kept) + footer)[:max_chars], True


def _cap_lines(text: str) -> tuple[str, int]:
    """Lines longer than MAX_LINE_CHARS cut, saying by how much; and how many were cut."""
    out: list[str] = []
    cut = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\n")
        if len(body) > MAX_LINE_CHARS:
            cut += 1
            line = (f"{body[:MAX_LINE_CHARS]} … ({len(body) - MAX_LINE_CHARS:,} more "
                    "characters on this line)\n")
        out.append(line)
    return "".join(out), cut


def _drop_details(text: str) -> tuple[str, int]:
    """The text without its `<details>` blocks, and how many there were."""
    out: list[str] = []
    dropped = 0
    inside = False
    for line in text.splitlines(keepends=True):
        if not inside and line.startswith("<details"):
            inside, dropped = True, dropped + 1
            continue
        if inside:
            inside = not line.startswith("</details>")
            continue
        out.append(line)
    return "".join(out), dropped


def _footer(kept: int | None, total: int | None, omitted: int, long_lines: int,
            artifact_url: str | None, job_url: str | None) -> str:
    if artifact_url:
        where = f"[the full plan]({artifact_url})"
    elif job_url:
        where = f"the full plan in the [job artifacts]({job_url})"
    else:
        where = "the full plan in the job artifacts"
    left_out: list[str] = []
    if kept is not None and total is not None:
        left_out.append(f"{kept} of {total} lines shown")
    if omitted:
        left_out.append(f"{omitted} diff{'s' if omitted > 1 else ''} left out")
    if long_lines:
        left_out.append(f"{long_lines} long line{'s' if long_lines > 1 else ''} cut")
    return (
        f"\n---\n**This plan is too long for a GitLab comment** ({', '.join(left_out)}). "
        f"See {where}.\n"
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
