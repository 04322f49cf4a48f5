"""The typed errors every GitLab failure becomes, once, at the API boundary.

Each keeps GitLab's own message and the HTTP status, and says what to do in its hint. None of
them ever carries the token.
"""

from __future__ import annotations

from gatewayctl.errors import GatewayctlError

TOKEN_HINT = (
    "set GITLAB_TOKEN (a masked CI/CD variable) to a project or personal access token with the "
    "`api` scope"
)


class GitLabError(GatewayctlError):
    """A GitLab API call failed; `status` is the HTTP status (None: no answer at all)."""

    def __init__(self, message: str, hint: str | None = None, *, status: int | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


class GitLabAuthError(GitLabError):
    """401: the token was rejected; 403: the token may not do this."""


class GitLabNotFound(GitLabError):
    """404: the project, merge request, branch or note does not exist (or is hidden)."""


class GitLabRequestError(GitLabError):
    """Any other 4xx: GitLab refused the request as sent (validation, conflict)."""


class GitLabUnavailable(GitLabError):
    """429, 5xx, a timeout or a refused connection, still failing after the retries.

    `retry_after` is the server's Retry-After in seconds, when it sent one.
    """

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, hint, status=status)
        self.retry_after = retry_after


class CiEnvError(GatewayctlError):
    """GitLab CI variables the command needs are not set."""
