"""Checking a request's AWS Signature Version 4 with botocore's own signer.

The mock recomputes the signature of what it received (method, path, query, the headers the
request says it signed, the body) for the credentials it knows, at the time the request says
it was signed (x-amz-date), with botocore's SigV4Auth: canonical request, string to sign,
signing key and HMAC are botocore's, not a copy. Only `headers_to_sign` is narrowed to the
headers the signer listed, since a signer chooses which headers it signs. botocore is
imported on the first Bedrock request (the `envoy` and `dev` extras install it).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

SKEW = dt.timedelta(minutes=15)  # AWS refuses a request signed more than 15 minutes away
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[^,]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)


class SignatureError(Exception):
    """The request is not signed, or not validly: `kind` is AWS's exception name."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Signed:
    access_key: str
    region: str
    service: str


def verify(method: str, url: str, headers: Mapping[str, str], body: bytes,
           credentials: Mapping[str, str], service: str, now: dt.datetime | None = None) -> Signed:
    """Raise SignatureError unless the request is signed for `service` with one of
    `credentials` (access key id -> secret access key)."""
    auth = headers.get("authorization")
    amz_date = headers.get("x-amz-date")
    if auth is None or amz_date is None:
        raise SignatureError("MissingAuthenticationTokenException", "Missing Authentication Token")
    found = _AUTH.match(auth)
    if found is None:
        raise SignatureError("IncompleteSignatureException",
                             "Authorization header requires 'Credential', 'SignedHeaders' and "
                             "'Signature' parameters.")
    secret = credentials.get(found["key"])
    if secret is None:
        raise SignatureError("UnrecognizedClientException",
                             "The security token included in the request is invalid.")
    if found["service"] != service:
        raise SignatureError("InvalidSignatureException",
                             f"Credential should be scoped to correct service: '{service}'.")
    signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    if found["date"] != amz_date[:8]:
        raise SignatureError("InvalidSignatureException",
                             "Date in Credential scope does not match YYYYMMDD from ISO-8601.")
    if abs((now or dt.datetime.now(dt.UTC)) - signed_at) > SKEW:
        raise SignatureError("InvalidSignatureException", "Signature expired.")
    signed = found["signed"].split(";")
    if "host" not in signed or any(name not in headers for name in signed):
        raise SignatureError("InvalidSignatureException",
                             "The request signature we calculated does not match the signature "
                             "you provided: a signed header is missing.")
    expected = _botocore_signature(method, url, headers, body, signed, found["key"], secret,
                                   found["region"], service, amz_date)
    if expected != found["signature"]:
        raise SignatureError("InvalidSignatureException",
                             "The request signature we calculated does not match the signature "
                             "you provided. Check your AWS Secret Access Key and signing method.")
    return Signed(found["key"], found["region"], service)


def _botocore_signature(method: str, url: str, headers: Mapping[str, str], body: bytes,
                        signed: list[str], key: str, secret: str, region: str, service: str,
                        amz_date: str) -> str:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    class ListedHeaders(SigV4Auth):  # type: ignore[misc]
        def headers_to_sign(self, request: AWSRequest) -> object:
            out = super().headers_to_sign(request)
            for name in list(out.keys()):
                del out[name]
            for name in signed:
                out[name] = request.headers[name]
            return out

    token = headers.get("x-amz-security-token")
    request = AWSRequest(method=method, url=url, data=body,
                         headers={name: headers[name] for name in signed})
    request.context["timestamp"] = amz_date
    signer = ListedHeaders(Credentials(key, secret, token), service, region)
    canonical = signer.canonical_request(request)
    return str(signer.signature(signer.string_to_sign(request, canonical), request))
