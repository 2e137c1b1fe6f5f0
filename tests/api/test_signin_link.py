"""The task pane opens Automatic sync in a new tab with a one-time sign-in link."""

from __future__ import annotations

import itsdangerous.timed
from api_helpers import Browser, error_of

from calsync.auth.links import KEY, LINK_LIFETIME


def link_path(reply) -> str:  # type: ignore[no-untyped-def]
    url = reply.get_json()["url"]
    assert url.startswith("http://localhost:3000/api/auth/link/")
    return url.removeprefix("http://localhost:3000")


def test_a_link_signs_the_user_in_and_opens_automatic_sync(member: Browser, browser) -> None:  # type: ignore[no-untyped-def]
    reply = member.post("/api/auth/signin-link")
    new_tab = browser()

    opened = new_tab.get(link_path(reply))

    assert reply.status_code == 201 and reply.get_json()["expires_in"] == LINK_LIFETIME
    assert opened.status_code == 302
    assert opened.headers["Location"] == "/addin/autosync.html"
    assert new_tab.get("/api/me").get_json()["email"] == "bob@example.com"


def test_a_link_works_only_once(member: Browser, browser) -> None:  # type: ignore[no-untyped-def]
    path = link_path(member.post("/api/auth/signin-link"))
    browser().get(path)

    reply = browser().get(path)

    assert reply.status_code == 400
    assert "already used" in error_of(reply)["message"]


def test_a_link_signs_in_its_own_user_whoever_opens_it(  # type: ignore[no-untyped-def]
    admin: Browser, member: Browser
) -> None:
    path = link_path(member.post("/api/auth/signin-link"))

    admin.get(path)

    assert admin.get("/api/me").get_json()["email"] == "bob@example.com"


def test_an_expired_link_is_refused(member: Browser, browser, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = link_path(member.post("/api/auth/signin-link"))
    later = itsdangerous.timed.time.time() + LINK_LIFETIME + 5

    class Clock:
        @staticmethod
        def time() -> float:
            return later

    monkeypatch.setattr(itsdangerous.timed, "time", Clock)
    reply = browser().get(path)

    assert reply.status_code == 400
    assert "expired" in error_of(reply)["message"]


def test_a_tampered_link_is_refused(member: Browser, browser) -> None:  # type: ignore[no-untyped-def]
    path = link_path(member.post("/api/auth/signin-link"))

    reply = browser().get(path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB"))

    assert reply.status_code == 400
    assert "not valid" in error_of(reply)["message"]


def test_an_unopened_link_is_forgotten_after_its_lifetime(member: Browser, redis_conn) -> None:  # type: ignore[no-untyped-def]
    member.post("/api/auth/signin-link")

    (key,) = redis_conn.keys(KEY.format(nonce="*"))
    assert 0 < redis_conn.ttl(key) <= LINK_LIFETIME
