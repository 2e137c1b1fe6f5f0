"""GET /api/me: who I am, my organization, my admin flag and my effective settings."""

from __future__ import annotations

from api_helpers import Browser, error_of

from calsync.profiles import default_profile_settings


def test_me_needs_a_signed_in_user(browser) -> None:  # type: ignore[no-untyped-def]
    reply = browser().get("/api/me")

    assert reply.status_code == 401
    assert "sign in" in error_of(reply)["message"]


def test_the_first_user_of_a_tenant_becomes_its_administrator(admin: Browser) -> None:
    me = admin.get("/api/me").get_json()

    assert me["email"] == "ada@example.com"
    assert me["name"] == "Ada"
    assert me["is_admin"] is True


def test_the_next_users_of_the_tenant_are_members(admin: Browser, member: Browser) -> None:
    ada = admin.get("/api/me").get_json()
    bob = member.get("/api/me").get_json()

    assert bob["is_admin"] is False
    assert bob["organization"]["id"] == ada["organization"]["id"]


def test_a_new_organization_has_global_settings_with_the_defaults(member: Browser) -> None:
    me = member.get("/api/me").get_json()

    assert me["effective_profile"]["is_global"] is True
    assert me["profile"] is None
    assert me["settings"] == default_profile_settings()
    assert me["settings"]["auto_sync_interval_minutes"] == 15


def test_my_settings_are_my_profiles_when_one_is_assigned(admin: Browser, member: Browser) -> None:
    profile = admin.post(
        "/api/profiles", json={"name": "Sales", "settings": {"direction": "two_way"}}
    ).get_json()
    admin.patch(f"/api/users/{member.user['id']}", json={"sync_profile_id": profile["id"]})

    me = member.get("/api/me").get_json()

    assert me["effective_profile"] == {"id": profile["id"], "name": "Sales", "is_global": False}
    assert me["settings"]["direction"] == "two_way"


def test_signing_out_ends_the_session(member: Browser) -> None:
    assert member.post("/api/auth/signout").status_code == 204

    assert member.get("/api/me").status_code == 401


def test_signing_in_again_is_the_same_user(admin: Browser, browser) -> None:  # type: ignore[no-untyped-def]
    again = browser().sign_in("ada@example.com")

    assert again["id"] == admin.user["id"]  # type: ignore[index]
    assert again["is_admin"] is True
