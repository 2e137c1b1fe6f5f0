"""Session cookies are HttpOnly and SameSite (and Secure in production); sign-in starts afresh."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet
from flask import Flask

from calsync import migrate, runtime
from calsync.app import create_app
from calsync.config import Config


@pytest.fixture
def production_app(env: dict[str, str], redis_conn) -> Iterator[Flask]:  # type: ignore[no-untyped-def]
    config = Config.from_env(
        {
            **env,
            "CALSYNC_ENV": "production",
            "SECRET_KEY": "s" * 48,
            "CALSYNC_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "BASE_URL": "https://calsync.example.com",
        }
    )
    migrate.upgrade(config.database_url)
    rt = runtime.Runtime.from_config(config)
    yield create_app(rt=rt)
    runtime.install(None)
    rt.close()


def session_cookie(reply) -> str:  # type: ignore[no-untyped-def]
    cookies = [c for c in reply.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert cookies, reply.headers
    return cookies[0]


def test_the_session_cookie_is_httponly_and_samesite_in_development(client) -> None:  # type: ignore[no-untyped-def]
    cookie = session_cookie(client.get("/api/auth/csrf"))

    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_the_session_cookie_is_secure_in_production(production_app: Flask) -> None:
    reply = production_app.test_client().get(
        "/api/auth/csrf", base_url="https://calsync.example.com"
    )
    cookie = session_cookie(reply)

    # SameSite=None because Outlook frames the task pane from another site; so Secure.
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=None" in cookie


def test_production_answers_with_hsts(production_app: Flask) -> None:
    reply = production_app.test_client().get("/api/auth/csrf")

    assert reply.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_development_sign_in_does_not_exist_in_production(production_app: Flask) -> None:
    assert not [r for r in production_app.url_map.iter_rules() if "/auth/dev" in r.rule]
    reply = production_app.test_client().post("/api/auth/dev", json={"email": "a@b.example"})
    assert reply.status_code == 404
    spec = production_app.test_client().get("/api/openapi.json").get_json()
    assert "/api/auth/dev" not in spec["paths"]


def test_the_sandbox_crm_is_not_offered_in_production(production_app: Flask) -> None:
    from calsync.api.organization import CRM_TYPES

    assert "sandbox" not in CRM_TYPES


def test_signing_in_discards_what_was_in_the_session_before(browser) -> None:  # type: ignore[no-untyped-def]
    # The attacker's own session (and its CSRF secret), planted in the victim's browser.
    b = browser()
    b.fetch_csrf()
    with b.client.session_transaction() as planted:
        planted["planted_by_attacker"] = "yes"
        attackers_secret = planted["csrf_token"]

    b.sign_in("ada@example.com")

    with b.client.session_transaction() as session:
        assert "planted_by_attacker" not in session
        assert session["csrf_token"] != attackers_secret


def test_signing_in_as_someone_else_replaces_the_first_user(browser) -> None:  # type: ignore[no-untyped-def]
    b = browser()
    b.sign_in("ada@example.com")
    b.sign_in("bob@example.com")

    assert b.get("/api/me").get_json()["email"] == "bob@example.com"


def test_a_deleted_users_session_stops_working(app, member) -> None:  # type: ignore[no-untyped-def]
    from calsync.db import transaction
    from calsync.models import User

    with transaction(app.extensions["calsync"].sessions) as db:
        db.delete(db.get(User, member.user["id"]))

    assert member.get("/api/me").status_code == 401
