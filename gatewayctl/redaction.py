"""What a credential looks like, and masking it out of anything gatewayctl prints.

Two tiers. `find_credential` recognises credentials by their documented shapes (an `sk-...` key,
a bearer token, an AWS access key, ...): a literal one in a manifest is an error (GW402), so it
must not match ordinary values. `redact` masks those and, besides, any long random-looking token
(mixed-case letters and digits, or a long hex string): masking a harmless value in a printed
snippet costs little, printing a secret costs a rotation.

This module is the bottom layer: it imports nothing of gatewayctl.
"""

from __future__ import annotations

import re

MASK = "****"

CREDENTIAL_SHAPES: tuple[tuple[str, str], ...] = (
    ("an API key (sk-...)", r"\bsk-(?:proj-|ant-|live-|svcacct-|admin-)?[A-Za-z0-9_-]{16,}"),
    ("a bearer token", r"\b(?i:bearer)\s+[A-Za-z0-9._~+/=-]{16,}"),
    ("an AWS access key", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b"),
    ("a GitLab token", r"\bglpat-[A-Za-z0-9_-]{20,}"),
    ("a GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})"),
    ("a Google API key", r"\bAIza[0-9A-Za-z_-]{35}"),
    ("a Hugging Face token", r"\bhf_[A-Za-z0-9]{30,}"),
    ("a Slack token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    ("a JSON Web Token", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    ("a private key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    ("a password in a URL", r"://[^/\s:@]+:[^/\s@]+@"),
)

# Long tokens that look random: 32+ characters of base64 with upper case, lower case and a
# digit (Docker `auth` values, most providers' keys), or 32+ hex digits (Azure OpenAI keys;
# digests and commit hashes are masked too). Model names and most URLs are broken up by `-`
# and `.` often enough not to match; a long CamelCase path segment may be masked.
_RUN = r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{32,}={0,2}"

_SHAPES = tuple((label, re.compile(pattern)) for label, pattern in CREDENTIAL_SHAPES)
_ANY_CREDENTIAL = re.compile("|".join(f"(?:{p})" for _, p in CREDENTIAL_SHAPES))
_CANDIDATE = re.compile("|".join(f"(?:{p})" for _, p in CREDENTIAL_SHAPES) + f"|(?P<run>{_RUN})")
_HEX = frozenset("0123456789abcdefABCDEF")


def _random_looking(run: str) -> bool:
    token = run.rstrip("=")
    if all(c in _HEX for c in token):
        return True
    return (
        any(c.isdigit() for c in token)
        and any(c.islower() for c in token)
        and any(c.isupper() for c in token)
    )


def _secret(match: re.Match[str]) -> bool:
    return match.group("run") is None or _random_looking(match.group("run"))


def find_credential(text: str) -> str | None:
    """What kind of credential the text holds (for GW402), or None."""
    if not _ANY_CREDENTIAL.search(text):
        return None
    for label, pattern in _SHAPES:
        if pattern.search(text):
            return label
    return None  # pragma: no cover - the union matched, so one of its parts does


def looks_secret(text: str) -> bool:
    """Whether printing the text could show a credential or another secret-looking token."""
    return any(_secret(m) for m in _CANDIDATE.finditer(text))


# Values that are secrets by where they stand, whatever they look like: a `password:` key's
# value (a Redis password written in a manifest by mistake) and a URL's password
# (rediss://user:secret@host, the user may be empty).
_KEYED = re.compile(r"""(?i)(\b(?:password|passwd)\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s,}\]]+)""")
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)([^/\s@]+)(@)")


def redact(text: str) -> str:
    """The text with every credential and secret-looking token replaced by ****."""
    text = _KEYED.sub(lambda m: m.group(1) + MASK, text)
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), text)
    return _CANDIDATE.sub(lambda m: MASK if _secret(m) else m.group(0), text)
