"""An administrator chooses the organization's CRM and edits the global sync settings."""

from __future__ import annotations

from api_helpers import Browser, error_of


def test_the_organization_offers_the_crms_of_this_deployment(admin: Browser) -> None:
    organization = admin.get("/api/organization").get_json()

    choices = {c["type"]: c for c in organization["crm_choices"]}
    assert set(choices) == {"suitecrm", "dynamics", "sandbox"}  # sandbox: development
    assert choices["suitecrm"]["needs_url"] is True
    assert organization["crm_type"] is None


def test_an_admin_chooses_a_crm_with_its_custom_url(admin: Browser) -> None:
    reply = admin.patch(
        "/api/organization", json={"crm_type": "suitecrm", "crm_url": "https://crm.example.com/"}
    )

    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json()["crm_type"] == "suitecrm"
    assert reply.get_json()["crm_url"] == "https://crm.example.com/"
    assert admin.get("/api/me").get_json()["organization"]["crm_type"] == "suitecrm"


def test_a_crm_that_needs_a_custom_url_is_refused_without_one(admin: Browser) -> None:
    reply = admin.patch("/api/organization", json={"crm_type": "dynamics"})

    assert reply.status_code == 422
    error = error_of(reply)
    assert "Custom URL" in error["message"]
    assert set(error["fields"]) == {"crm_url"}


def test_an_unknown_crm_is_refused_naming_the_choices(admin: Browser) -> None:
    reply = admin.patch("/api/organization", json={"crm_type": "salesforce"})

    assert reply.status_code == 422
    assert '"suitecrm"' in error_of(reply)["message"]


def test_a_custom_url_on_the_internal_network_is_refused(admin: Browser) -> None:
    reply = admin.patch(
        "/api/organization",
        json={"crm_type": "suitecrm", "crm_url": "https://intranet.example.com"},
    )

    assert reply.status_code == 422
    assert "private network" in error_of(reply)["fields"]["crm_url"]


def test_members_cannot_change_the_organization(member: Browser) -> None:
    reply = member.patch("/api/organization", json={"name": "Mine now"})

    assert reply.status_code == 403
    assert "administrator" in error_of(reply)["message"]


def test_an_admin_reads_the_global_settings(admin: Browser) -> None:
    settings = admin.get("/api/organization/settings").get_json()

    assert settings["direction"] == "calendar_to_crm"
    assert settings["invitations"] == "never"


def test_saving_global_settings_keeps_those_left_out(admin: Browser, member: Browser) -> None:
    reply = admin.patch(
        "/api/organization/settings",
        json={"direction": "two_way", "auto_sync_interval_minutes": 30},
    )

    assert reply.status_code == 200, reply.get_json()
    saved = reply.get_json()
    assert saved["direction"] == "two_way" and saved["auto_sync_interval_minutes"] == 30
    assert saved["invitations"] == "never"
    assert member.get("/api/me").get_json()["settings"] == saved


def test_a_wrong_setting_is_refused_with_its_label(admin: Browser) -> None:
    reply = admin.patch("/api/organization/settings", json={"direction": "sideways"})

    assert reply.status_code == 422
    error = error_of(reply)
    assert '"Sync direction" must be one of' in error["message"]
    assert "direction" in error["fields"]


def test_automatic_sync_runs_at_most_every_five_minutes(admin: Browser) -> None:
    reply = admin.patch("/api/organization/settings", json={"auto_sync_interval_minutes": 1})

    assert reply.status_code == 422
    assert "Automatic sync interval (minutes)" in error_of(reply)["message"]


def test_an_unknown_setting_is_refused(admin: Browser) -> None:
    reply = admin.patch("/api/organization/settings", json={"colour": "blue"})

    assert reply.status_code == 422
    assert error_of(reply)["fields"] == {"colour": "Unknown field."}
