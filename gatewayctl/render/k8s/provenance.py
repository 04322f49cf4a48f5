"""Where a rendered bundle came from: the commit, ref, merge request and pipeline.

The values end up as annotations on the live configuration objects, so that a later plan (or a
person with kubectl) can tell which commit is running. Reading GitLab CI's variables is the only
I/O here, and it is opt-in through `from_environment`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

SOURCE_COMMIT = "gatewayctl.dev/source-commit"
SOURCE_REF = "gatewayctl.dev/source-ref"
SOURCE_MERGE_REQUEST = "gatewayctl.dev/source-merge-request"
SOURCE_PIPELINE = "gatewayctl.dev/source-pipeline"


SOURCE_MERGE_REQUEST_VARIABLE = "GATEWAYCTL_SOURCE_MERGE_REQUEST"


@dataclass(frozen=True)
class Provenance:
    """The origin of a render; every field is optional (a laptop render has none)."""

    commit: str | None = None
    ref: str | None = None
    merge_request_url: str | None = None
    pipeline_url: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Provenance:
        """Read GitLab CI's predefined variables; unset or empty ones become None."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        project_url = get("CI_MERGE_REQUEST_PROJECT_URL")
        iid = get("CI_MERGE_REQUEST_IID")
        merge_request = (
            f"{project_url.rstrip('/')}/-/merge_requests/{iid}" if project_url and iid else None
        )
        # on the default branch, the merge request the commit came from (looked up by
        # `gatewayctl gitlab source-merge-request` in the pipeline's plan job)
        merge_request = merge_request or get(SOURCE_MERGE_REQUEST_VARIABLE)
        return cls(
            commit=get("CI_COMMIT_SHA"),
            ref=get("CI_COMMIT_REF_NAME"),
            merge_request_url=merge_request,
            pipeline_url=get("CI_PIPELINE_URL"),
        )

    def annotations(self) -> dict[str, str]:
        """The set fields as annotations, keyed by SOURCE_* names."""
        pairs = (
            (SOURCE_COMMIT, self.commit),
            (SOURCE_REF, self.ref),
            (SOURCE_MERGE_REQUEST, self.merge_request_url),
            (SOURCE_PIPELINE, self.pipeline_url),
        )
        return {key: value for key, value in pairs if value}
