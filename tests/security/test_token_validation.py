"""Signing in with an Office SSO token: only a current token Microsoft signed for us counts.

The keys are our own, served by a real HTTP endpoint on 127.0.0.1 the way Microsoft
serves its JWKS; the validator under test is the real one, with no part mocked.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time

import pytest
from api_helpers import Browser, error_of
from joserfc.jwk import OctKey
from microsoft_tokens import CLIENT_ID, OTHER_TENANT, TENANT, KeyServer, claims, sign
from werkzeug.wrappers import Response

from calsync.auth.errors import SignInError
from calsync.auth.keys import KeyCache
from calsync.auth.microsoft import PERSONAL_ACCOUNTS_TENANT, MicrosoftTokenValidator

TOKEN_ROUTE = "/api/auth/microsoft/token"


@pytest.fixture
def keys(serve) -> KeyServer:  # type: ignore[no-untyped-def]
    server = KeyServer()
    server.new_key()
    local = serve(lambda _request: Response(json.dumps(server.jwks()), mimetype="application/json"))
    server.url = f"{local.url}/common/discovery/v2.0/keys"
    return server


@pytest.fixture
def env(env: dict[str, str], keys: KeyServer) -> dict[str, str]:
    return {**env, "MICROSOFT_CLIENT_ID": CLIENT_ID, "MICROSOFT_JWKS_URL": keys.url}


def validator(keys: KeyServer, **kwargs: object) -> MicrosoftTokenValidator:
    return MicrosoftTokenValidator(
        KeyCache(keys.url),
        client_id=CLIENT_ID,
        base_url="https://calsync.example.com",
        **kwargs,  # type: ignore[arg-type]
    )


def sign_in_with(app, token: str):  # type: ignore[no-untyped-def]
    return Browser(app).post(TOKEN_ROUTE, json={"token": token})


def test_a_valid_token_signs_the_user_in_to_their_tenants_organization(app, keys) -> None:  # type: ignore[no-untyped-def]
    browser = Browser(app)
    reply = browser.post(TOKEN_ROUTE, json={"token": sign(keys.published[0], claims())})

    assert reply.status_code == 200, reply.get_json()
    user = reply.get_json()["user"]
    assert user["email"] == "alice@contoso.example"
    assert user["organization"]["tenant_id"] == TENANT
    assert user["is_admin"] is True
    assert browser.get("/api/me").status_code == 200


def test_an_expired_token_is_refused(app, keys) -> None:  # type: ignore[no-untyped-def]
    token = sign(keys.published[0], claims(exp=int(time.time()) - 300))

    reply = sign_in_with(app, token)

    assert reply.status_code == 401
    assert "expired" in error_of(reply)["message"]


def test_a_token_expired_within_the_clock_skew_leeway_is_accepted(keys) -> None:  # type: ignore[no-untyped-def]
    token = sign(keys.published[0], claims(exp=int(time.time()) - 20))

    assert validator(keys).validate(token).tenant_id == TENANT


def test_a_token_not_yet_valid_is_refused(keys) -> None:  # type: ignore[no-untyped-def]
    token = sign(keys.published[0], claims(nbf=int(time.time()) + 600))

    with pytest.raises(SignInError, match="not valid yet"):
        validator(keys).validate(token)


def test_a_token_for_another_application_is_refused(app, keys) -> None:  # type: ignore[no-untyped-def]
    token = sign(keys.published[0], claims(aud="https://graph.microsoft.com"))

    reply = sign_in_with(app, token)

    assert reply.status_code == 401
    assert "another application" in error_of(reply)["message"]


def test_the_application_id_uri_is_an_accepted_audience(keys) -> None:  # type: ignore[no-untyped-def]
    token = sign(keys.published[0], claims(aud=f"api://calsync.example.com/{CLIENT_ID}"))

    assert validator(keys).validate(token).email == "alice@contoso.example"


def test_a_token_issued_by_another_tenant_than_it_names_is_refused(keys) -> None:  # type: ignore[no-untyped-def]
    token = sign(
        keys.published[0], claims(iss=f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0")
    )

    with pytest.raises(SignInError, match="not issued by your organization"):
        validator(keys).validate(token)


def test_a_v1_token_from_sts_windows_net_is_accepted(keys) -> None:  # type: ignore[no-untyped-def]
    token = sign(
        keys.published[0],
        claims(
            iss=f"https://sts.windows.net/{TENANT}/",
            ver="1.0",
            preferred_username=None,
            upn="alice@contoso.example",
        ),
    )

    assert validator(keys).validate(token).email == "alice@contoso.example"


def test_a_token_signed_with_someone_elses_key_is_refused(app, keys) -> None:  # type: ignore[no-untyped-def]
    forged = keys.new_key(publish=False)
    forged_with_known_kid = type(forged).import_key(
        forged.as_dict(private=True) | {"kid": keys.published[0].kid}
    )

    reply = sign_in_with(app, sign(forged_with_known_kid, claims()))

    assert reply.status_code == 401
    assert "signature" in error_of(reply)["message"]


def test_an_unsigned_token_is_refused(keys) -> None:  # type: ignore[no-untyped-def]
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    header = {"alg": "none", "kid": keys.published[0].kid}
    token = f"{part(header)}.{part(claims())}."

    with pytest.raises(SignInError, match="not signed the way Microsoft signs"):
        validator(keys).validate(token)


def test_a_token_signed_with_a_shared_secret_is_refused(keys) -> None:  # type: ignore[no-untyped-def]
    # The classic confusion attack: HMAC keyed with the public key's bytes.
    secret = OctKey.import_key(
        json.dumps(keys.published[0].as_dict(private=False)),
        parameters={"kid": keys.published[0].kid},
    )
    token = sign(secret, claims(), alg="HS256")

    with pytest.raises(SignInError, match="not signed the way Microsoft signs"):
        validator(keys).validate(token)


def test_garbage_is_refused_with_a_sentence(app) -> None:  # type: ignore[no-untyped-def]
    reply = sign_in_with(app, "not-a-token")

    assert reply.status_code == 401
    assert "not a Microsoft sign-in token" in error_of(reply)["message"]


def test_personal_microsoft_accounts_are_refused(keys) -> None:  # type: ignore[no-untyped-def]
    token = sign(
        keys.published[0],
        claims(
            tid=PERSONAL_ACCOUNTS_TENANT,
            iss=f"https://login.microsoftonline.com/{PERSONAL_ACCOUNTS_TENANT}/v2.0",
        ),
    )

    with pytest.raises(SignInError, match="work or school"):
        validator(keys).validate(token)


def test_a_tenant_outside_the_allow_list_is_refused(keys) -> None:  # type: ignore[no-untyped-def]
    only_other = validator(keys, allowed_tenants=frozenset({OTHER_TENANT}))

    with pytest.raises(SignInError, match="not allowed"):
        only_other.validate(sign(keys.published[0], claims()))


def test_a_token_without_a_user_id_is_refused(keys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SignInError, match="'oid'"):
        validator(keys).validate(sign(keys.published[0], claims(oid=None)))


def test_keys_are_fetched_once_and_cached(keys) -> None:  # type: ignore[no-untyped-def]
    check = validator(keys)
    for _ in range(3):
        check.validate(sign(keys.published[0], claims()))

    assert keys.fetches == 1


def test_a_rotated_in_key_is_fetched_when_a_token_uses_it(keys) -> None:  # type: ignore[no-untyped-def]
    cache = KeyCache(keys.url, min_refresh_interval=0)
    check = MicrosoftTokenValidator(cache, client_id=CLIENT_ID, base_url="https://x.example")
    check.validate(sign(keys.published[0], claims()))
    new = keys.new_key()

    assert check.validate(sign(new, claims())).tenant_id == TENANT
    assert keys.fetches == 2


def test_unknown_key_ids_do_not_refetch_the_keys_more_than_once_per_interval(keys) -> None:  # type: ignore[no-untyped-def]
    check = validator(keys)  # default interval: five minutes
    check.validate(sign(keys.published[0], claims()))
    stranger = keys.new_key(publish=False)

    for _ in range(5):
        with pytest.raises(SignInError, match="does not publish"):
            check.validate(sign(stranger, claims()))

    assert keys.fetches == 1


def test_token_sign_in_answers_503_when_no_client_id_is_configured(app, keys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from calsync.api.services import EXTENSION

    services = app.extensions[EXTENSION]
    monkeypatch.setattr(
        services, "config", dataclasses.replace(services.config, microsoft_client_id=None)
    )
    reply = sign_in_with(app, sign(keys.published[0], claims()))

    assert reply.status_code == 503
    assert "MICROSOFT_CLIENT_ID" in error_of(reply)["message"]


def test_the_token_never_appears_in_the_logs(app, keys, caplog) -> None:  # type: ignore[no-untyped-def]
    token = sign(keys.published[0], claims(exp=int(time.time()) - 300))

    sign_in_with(app, token)
    sign_in_with(app, token[:-5] + "AAAAA")

    assert token.split(".")[2][:20] not in caplog.text
