"""Every state-changing route needs the session's CSRF token; webhooks have their own."""

from __future__ import annotations

import re

from api_helpers import Browser, error_of
from flask import Flask

CHANGES = {"POST", "PUT", "PATCH", "DELETE"}


def changing_routes(app: Flask) -> list[tuple[str, str]]:
    return sorted(
        # Every path parameter becomes 1, wherever it sits in the path.
        (method, re.sub(r"<[^>]+>", "1", rule.rule))
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or set()) & CHANGES
        if not rule.rule.startswith("/webhooks/")
    )


def test_every_change_without_the_token_is_refused(app: Flask, admin: Browser) -> None:
    routes = changing_routes(app)
    assert len(routes) >= 8
    for method, path in routes:
        reply = admin.client.open(path, method=method, json={})
        assert reply.status_code == 400, f"{method} {path} answered {reply.status_code}"
        assert "security token" in error_of(reply)["message"]


def test_a_wrong_token_is_refused(admin: Browser) -> None:
    reply = admin.patch("/api/organization", json={"name": "X"}, headers={"X-CSRFToken": "forged"})

    assert reply.status_code == 400


def test_another_sessions_token_is_refused(admin: Browser, member: Browser) -> None:
    reply = admin.patch(
        "/api/organization", json={"name": "X"}, headers={"X-CSRFToken": member.csrf}
    )

    assert reply.status_code == 400


def test_the_token_in_the_header_lets_the_change_through(admin: Browser) -> None:
    assert admin.patch("/api/organization", json={"name": "Contoso"}).status_code == 200


def test_signing_in_rotates_the_token(browser) -> None:  # type: ignore[no-untyped-def]
    b = browser()
    before = b.fetch_csrf()
    b.sign_in("ada@example.com")

    assert b.csrf != before
    stale = b.patch("/api/organization", json={"name": "X"}, headers={"X-CSRFToken": before})
    assert stale.status_code == 400


def test_webhooks_are_exempt_and_authenticate_themselves(rt) -> None:  # type: ignore[no-untyped-def]
    from calsync.app import create_app

    app = create_app(rt=rt)

    @app.post("/webhooks/probe")
    def probe() -> dict[str, bool]:
        return {"received": True}

    reply = app.test_client().post("/webhooks/probe", json={})

    assert reply.status_code == 200
