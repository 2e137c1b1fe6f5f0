"""Sync profiles: named settings an administrator creates and assigns to users."""

from __future__ import annotations

from api_helpers import Browser, error_of


def test_the_global_settings_are_listed_first(admin: Browser) -> None:
    profiles = admin.get("/api/profiles").get_json()

    assert [p["is_global"] for p in profiles] == [True]
    assert profiles[0]["user_count"] == 1


def test_a_new_profile_takes_the_defaults_for_settings_left_out(admin: Browser) -> None:
    reply = admin.post("/api/profiles", json={"name": "Field sales"})

    assert reply.status_code == 201, reply.get_json()
    profile = reply.get_json()
    assert profile["name"] == "Field sales" and profile["is_global"] is False
    assert profile["settings"]["auto_sync_interval_minutes"] == 15


def test_two_profiles_cannot_share_a_name(admin: Browser) -> None:
    admin.post("/api/profiles", json={"name": "Sales"})

    reply = admin.post("/api/profiles", json={"name": "Sales"})

    assert reply.status_code == 409
    assert "name" in error_of(reply)["fields"]


def test_a_profile_needs_a_name(admin: Browser) -> None:
    reply = admin.post("/api/profiles", json={"settings": {}})

    assert reply.status_code == 422
    assert '"Name"' in error_of(reply)["message"]


def test_a_profile_setting_is_checked_like_the_global_ones(admin: Browser) -> None:
    reply = admin.post("/api/profiles", json={"name": "Bad", "settings": {"window_days_back": -1}})

    assert reply.status_code == 422
    assert '"Days back"' in error_of(reply)["message"]
    assert "settings.window_days_back" in error_of(reply)["fields"]


def test_editing_a_profile_keeps_settings_left_out(admin: Browser) -> None:
    created = admin.post(
        "/api/profiles", json={"name": "Sales", "settings": {"invitations": "always"}}
    ).get_json()

    reply = admin.patch(
        f"/api/profiles/{created['id']}", json={"settings": {"direction": "two_way"}}
    )

    assert reply.status_code == 200
    assert reply.get_json()["settings"]["invitations"] == "always"
    assert reply.get_json()["settings"]["direction"] == "two_way"


def test_the_global_settings_cannot_be_deleted(admin: Browser) -> None:
    global_id = admin.get("/api/profiles").get_json()[0]["id"]

    reply = admin.delete(f"/api/profiles/{global_id}")

    assert reply.status_code == 409
    assert "global settings cannot be deleted" in error_of(reply)["message"]


def test_deleting_a_profile_puts_its_users_back_on_the_global_settings(
    admin: Browser, member: Browser
) -> None:
    profile = admin.post("/api/profiles", json={"name": "Sales"}).get_json()
    admin.patch(f"/api/users/{member.user['id']}", json={"sync_profile_id": profile["id"]})

    assert admin.delete(f"/api/profiles/{profile['id']}").status_code == 204

    assert member.get("/api/me").get_json()["effective_profile"]["is_global"] is True
    assert admin.get(f"/api/profiles/{profile['id']}").status_code == 404


def test_members_cannot_see_profiles(member: Browser) -> None:
    assert member.get("/api/profiles").status_code == 403
