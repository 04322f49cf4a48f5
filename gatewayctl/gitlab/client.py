"""The only code that talks to GitLab: python-gitlab, imported lazily, behind typed errors.

Owns the connection settings (`GitLabContext`), the bounded retry loop and the conversion of
every python-gitlab or transport failure into a `GitLabError`, once, keeping GitLab's message.
It must never put a token into a message, a log line or a `repr`.

python-gitlab's own retries are switched off on every call (`NO_CLIENT_RETRY`): it sleeps for
whatever Retry-After the server sends, without a cap, and retries a POST it cannot know was not
applied. Instead whole operations are retried here, and they are written to be idempotent (they
look before they write), so a retry never posts a second note or a second commit.
"""

from __future__ import annotations

import email.utils
import functools
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from gatewayctl.gitlab.ci_env import CiEnv
from gatewayctl.gitlab.errors import (
    TOKEN_HINT,
    GitLabAuthError,
    GitLabError,
    GitLabNotFound,
    GitLabRequestError,
    GitLabUnavailable,
)

if TYPE_CHECKING:
    import gitlab
    import requests

T = TypeVar("T")

NOTE_MAX_CHARS = 50_000  # a readable note; GitLab's own limit is 1,000,000 characters
NO_CLIENT_RETRY: dict[str, Any] = {"obey_rate_limit": False, "retry_transient_errors": False}
TokenKind = Literal["private", "job", "oauth"]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry when GitLab is rate limiting or unavailable."""

    attempts: int = 3  # tries in all, the first one included
    backoff: float = 1.0  # seconds before the second try; doubles for each further one
    max_delay: float = 10.0  # cap on any single wait, a server's Retry-After included

    def delay(self, failed_attempt: int, retry_after: float | None) -> float:
        wanted = (
            retry_after if retry_after is not None else self.backoff * 2 ** (failed_attempt - 1)
        )
        return max(0.0, min(wanted, self.max_delay))


@dataclass(frozen=True)
class GitLabContext:
    """Where and as whom to call the API, and the merge request a note goes on."""

    api_url: str  # the REST v4 base, e.g. https://gitlab.example.com/api/v4
    project: str  # numeric id or full path
    token: str = field(repr=False)
    token_kind: TokenKind = "private"
    merge_request_iid: int | None = None
    job_url: str | None = None
    timeout: float = 15.0
    retry: RetryPolicy = RetryPolicy()
    note_max_chars: int = NOTE_MAX_CHARS

    @classmethod
    def from_ci_env(cls, env: CiEnv, *, need_merge_request: bool = False) -> GitLabContext:
        """Build the context from CI variables; CiEnvError names whatever is missing."""
        needs = ["api", "project", "token"] + (["merge_request"] if need_merge_request else [])
        env.require(*needs)
        assert env.api_url is not None and env.project is not None
        token, kind = (env.gitlab_token, "private") if env.gitlab_token else (env.job_token, "job")
        assert token is not None
        return cls(
            api_url=env.api_url,
            project=env.project,
            token=token,
            token_kind=kind,  # type: ignore[arg-type]
            merge_request_iid=env.merge_request_iid,
            job_url=env.job_url,
        )

    @property
    def token_name(self) -> str:
        return "CI_JOB_TOKEN" if self.token_kind == "job" else "GITLAB_TOKEN"


class GitLabSession:
    """One python-gitlab client, plus the headers of the last response it received."""

    def __init__(self, ctx: GitLabContext) -> None:
        import gitlab
        import requests

        self.ctx = ctx
        self.last_headers: Mapping[str, str] = {}
        http = requests.Session()
        http.hooks["response"].append(self._remember)
        base_url = ctx.api_url.rstrip("/").removesuffix("/api/v4")
        self.gl: gitlab.Gitlab = gitlab.Gitlab(
            base_url,
            timeout=ctx.timeout,
            session=http,
            retry_transient_errors=False,
            keep_base_url=True,
            user_agent="gatewayctl",
            private_token=ctx.token if ctx.token_kind == "private" else None,
            job_token=ctx.token if ctx.token_kind == "job" else None,
            oauth_token=ctx.token if ctx.token_kind == "oauth" else None,
        )

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.last_headers = response.headers

    def call(self, what: str, func: Callable[[], T]) -> T:
        """Run one API call; any failure becomes a GitLabError saying `what` failed."""
        import gitlab.exceptions
        import requests

        self.last_headers = {}
        try:
            return func()
        except gitlab.exceptions.GitlabError as err:
            if err.response_code is None:
                raise GitLabUnavailable(f"{what} failed: {err.error_message}") from None
            raise _convert(
                self.ctx,
                what,
                err.response_code,
                err.error_message,
                err.response_body,
                self.last_headers,
            ) from None
        except requests.Timeout:
            raise GitLabUnavailable(
                f"{what} failed: GitLab did not answer within {self.ctx.timeout:g}s",
                _UNAVAILABLE_HINT,
            ) from None
        except requests.RequestException as err:
            raise GitLabUnavailable(
                f"{what} failed: could not reach GitLab ({type(err).__name__})",
                _UNAVAILABLE_HINT,
            ) from None

    def pages(self, what: str, fetch: Callable[[int], list[T]], *, per_page: int) -> Iterator[T]:
        """Every item of a paginated list, following GitLab's X-Next-Page header."""
        page = 1
        for _ in range(10_000):  # a bound, in case a server keeps announcing a next page
            items = self.call(f"{what} (page {page})", functools.partial(fetch, page))
            yield from items
            next_page = self.last_headers.get("X-Next-Page")
            if next_page is None:  # servers that omit the header: a short page is the last
                next_page = str(page + 1) if len(items) >= per_page else ""
            if not next_page.strip().isdigit():
                return
            page = int(next_page)


def run_with_retries(
    ctx: GitLabContext,
    operation: Callable[[GitLabSession], T],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run an idempotent operation, again while GitLab is rate limiting or unavailable."""
    session = GitLabSession(ctx)
    attempts = max(1, ctx.retry.attempts)
    for attempt in range(1, attempts + 1):
        try:
            return operation(session)
        except GitLabUnavailable as err:
            if attempt == attempts:
                if attempts > 1:
                    err.message = f"{err.message} (gave up after {attempts} attempts)"
                    err.args = (err.message,)
                raise
            sleep(ctx.retry.delay(attempt, err.retry_after))
    raise AssertionError("unreachable")


_UNAVAILABLE_HINT = "GitLab is unavailable or overloaded; run the job again later"


def _convert(
    ctx: GitLabContext,
    what: str,
    status: int,
    message: Any,
    body: bytes | None,
    headers: Mapping[str, str],
) -> GitLabError:
    detail = _server_message(message, body)
    answer = detail if detail.startswith(str(status)) else f"{status}: {detail}"
    text = f"{what} failed: GitLab answered {answer}"
    job = ctx.token_kind == "job"
    if status == 401:
        hint = (
            f"CI_JOB_TOKEN may not call this API; {TOKEN_HINT}"
            if job
            else f"{ctx.token_name} was rejected (wrong, expired or revoked); {TOKEN_HINT}"
        )
        return GitLabAuthError(text, hint, status=status)
    if status == 403:
        hint = (
            f"CI_JOB_TOKEN may not call this API; {TOKEN_HINT}"
            if job
            else f"{ctx.token_name} is valid but not allowed to do this: it needs the `api` "
            "scope (not only `read_api`) and a project role that allows it (Reporter to "
            "comment, Developer to push a branch and open a merge request)"
        )
        return GitLabAuthError(text, hint, status=status)
    if status == 404:
        hint = (
            f"check the project ({ctx.project}) and merge request number; GitLab also answers "
            f"404 when {ctx.token_name} cannot see a private project"
        )
        return GitLabNotFound(text, hint, status=status)
    if status == 429 or status >= 500:
        hint = (
            "GitLab is rate limiting this token; run the job again later"
            if status == 429
            else _UNAVAILABLE_HINT
        )
        return GitLabUnavailable(
            text, hint, status=status, retry_after=parse_retry_after(headers.get("Retry-After"))
        )
    return GitLabRequestError(text, None, status=status)


def _server_message(message: Any, body: bytes | None) -> str:
    """GitLab's message as one line: `note is too long (...)`, `403 Forbidden`."""
    try:
        parsed = json.loads(body or b"")
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("error_description"):
        return f"{parsed.get('error')}: {parsed['error_description']}"
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    if isinstance(message, dict):
        parts: list[str] = []
        for key, value in message.items():
            values = value if isinstance(value, list) else [value]
            parts.extend(f"{key} {v}" for v in values)
        return "; ".join(parts)
    if isinstance(message, list):
        return "; ".join(str(m) for m in message)
    text = str(message).strip()
    return " ".join(text.split())[:500] or "(no message)"


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either a number or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def with_retry(ctx: GitLabContext, retry: RetryPolicy | None) -> GitLabContext:
    return ctx if retry is None else replace(ctx, retry=retry)
