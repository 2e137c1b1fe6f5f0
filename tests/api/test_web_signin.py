"""Web sign-in through Microsoft, for a browser without the task pane.

A local authority (werkzeug over https on 127.0.0.1, with a certificate made here)
stands in for login.microsoftonline.com, the way the sandbox's emulator will: discovery
document, authorize and token endpoints. msal insists on https for an authority.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from api_helpers import Browser, error_of
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


class Authority:
    def __init__(self) -> None:
        self.nonce = ""
        self.url = ""
        self.token_requests: list[dict[str, list[str]]] = []

    def id_token(self) -> str:
        def part(data: dict) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

        now = int(time.time())
        claims = {
            "iss": f"{self.url}/{TENANT}/v2.0",
            "aud": "web-client-id",
            "tid": TENANT,
            "oid": "00000000-0000-0000-0000-0000000000c1",
            "sub": "carol-pairwise-subject",
            "preferred_username": "carol@contoso.example",
            "name": "Carol",
            "nonce": self.nonce,
            "iat": now,
            "exp": now + 3600,
        }
        return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2ln"

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        request = Request(environ)
        if request.path.endswith("/.well-known/openid-configuration"):
            body = {
                "issuer": f"{self.url}/{{tenantid}}/v2.0",
                "authorization_endpoint": f"{self.url}/organizations/oauth2/v2.0/authorize",
                "token_endpoint": f"{self.url}/organizations/oauth2/v2.0/token",
            }
        elif request.path.endswith("/token"):
            self.token_requests.append(parse_qs(request.get_data(as_text=True)))
            body = {
                "access_token": "graph-access-token",
                "token_type": "Bearer",
                "expires_in": 3600,
                "id_token": self.id_token(),
            }
        else:
            return Response("not found", status=404)(environ, start_response)
        return Response(json.dumps(body), mimetype="application/json")(environ, start_response)


def certificate(directory: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1: (certificate file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "authority.crt", directory / "authority.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file)


@pytest.fixture
def authority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Authority]:
    fake = Authority()
    cert_file, key_file = certificate(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert_file)  # msal's requests trusts it
    server = make_server("127.0.0.1", 0, fake, threaded=True, ssl_context=(cert_file, key_file))
    fake.url = f"https://127.0.0.1:{server.port}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield fake
    server.shutdown()
    thread.join(5)


@pytest.fixture
def env(env: dict[str, str], authority: Authority) -> dict[str, str]:
    return {
        **env,
        "MICROSOFT_CLIENT_ID": "web-client-id",
        "MICROSOFT_CLIENT_SECRET": "web-client-secret",
        "MICROSOFT_AUTHORITY_HOST": authority.url,
    }


def test_web_sign_in_goes_to_the_authority_with_state_and_pkce(app, authority) -> None:  # type: ignore[no-untyped-def]
    reply = Browser(app).get("/api/auth/microsoft/login")

    assert reply.status_code == 302
    location = urlsplit(reply.headers["Location"])
    query = parse_qs(location.query)
    assert reply.headers["Location"].startswith(f"{authority.url}/organizations/oauth2/v2.0/")
    assert query["state"][0] and query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == ["http://localhost:3000/api/auth/microsoft/callback"]


def test_web_sign_in_comes_back_signed_in(app, authority) -> None:  # type: ignore[no-untyped-def]
    b = Browser(app)
    query = parse_qs(urlsplit(b.get("/api/auth/microsoft/login").headers["Location"]).query)
    authority.nonce = query["nonce"][0]

    back = b.get(f"/api/auth/microsoft/callback?code=the-code&state={query['state'][0]}")

    assert back.status_code == 302, back.get_json()
    assert back.headers["Location"] == "/addin/autosync.html"
    me = b.get("/api/me").get_json()
    assert me["email"] == "carol@contoso.example"
    assert me["organization"]["tenant_id"] == TENANT
    assert authority.token_requests[0]["code_verifier"][0]  # PKCE


def test_a_reply_with_another_state_is_refused(app, authority) -> None:  # type: ignore[no-untyped-def]
    b = Browser(app)
    b.get("/api/auth/microsoft/login")

    reply = b.get("/api/auth/microsoft/callback?code=the-code&state=forged")

    assert reply.status_code == 400
    assert b.get("/api/me").status_code == 401
    assert authority.token_requests == []


def test_a_reply_without_a_started_sign_in_is_refused(app) -> None:  # type: ignore[no-untyped-def]
    reply = Browser(app).get("/api/auth/microsoft/callback?code=x&state=y")

    assert reply.status_code == 400
    assert "not started here" in error_of(reply)["message"]


def test_web_sign_in_says_what_is_missing_when_not_configured(browser, app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from calsync.api.services import EXTENSION

    web = app.extensions[EXTENSION].web
    monkeypatch.setattr(web, "config", dataclasses.replace(web.config, microsoft_client_id=None))

    reply = browser().get("/api/auth/microsoft/login")

    assert reply.status_code == 503
    assert "MICROSOFT_CLIENT_ID" in error_of(reply)["message"]
