"""Sign-in routes share a per-address budget kept in Redis; going over is a JSON 429."""

from __future__ import annotations

import pytest
from api_helpers import Browser, error_of


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "CALSYNC_SIGNIN_RATE_LIMIT": "3 per minute"}


def test_too_many_sign_ins_from_one_address_are_refused(app) -> None:  # type: ignore[no-untyped-def]
    b = Browser(app)
    for n in range(3):
        b.sign_in(f"user{n}@example.com")

    reply = b.post("/api/auth/dev", json={"email": "one-more@example.com"})

    assert reply.status_code == 429
    assert "Too many attempts" in error_of(reply)["message"]
    assert int(reply.headers["Retry-After"]) > 0


def test_all_sign_in_routes_share_one_budget(app) -> None:  # type: ignore[no-untyped-def]
    b = Browser(app)
    b.post("/api/auth/microsoft/token", json={"token": "x"})
    b.get("/api/auth/link/not-a-link")
    b.sign_in("ada@example.com")

    assert b.post("/api/auth/microsoft/token", json={"token": "x"}).status_code == 429


def test_other_addresses_keep_their_budget(app) -> None:  # type: ignore[no-untyped-def]
    first, second = Browser(app), Browser(app)
    for n in range(3):
        first.sign_in(f"user{n}@example.com")

    reply = second.post(
        "/api/auth/dev",
        json={"email": "far@example.com"},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )

    assert reply.status_code == 200


def test_other_routes_are_not_limited(app) -> None:  # type: ignore[no-untyped-def]
    b = Browser(app)
    for n in range(3):
        b.sign_in(f"user{n}@example.com")

    assert all(b.get("/api/me").status_code == 200 for _ in range(10))


def test_the_counters_live_in_redis(app, redis_conn) -> None:  # type: ignore[no-untyped-def]
    Browser(app).sign_in("ada@example.com")

    assert any(b"calsync" in key for key in redis_conn.keys("*"))
