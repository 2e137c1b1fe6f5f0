"""The newcomer's Dynamics 365 walk in Chromium: choose "Sandbox Dynamics 365", connect
"Sandbox Outlook", "Sign in with Microsoft" through the emulator's "Permissions requested"
page, "Sync calendar now" with a real worker, and see meetings move both ways; no cloud
account, no Entra ID app, nobody e-mailed."""

from __future__ import annotations

from typing import Any

from calsync.sandbox.demo import Sandbox
from processes import calsync_process, stop_process
from sandbox_mode.conftest import sandbox  # noqa: F401 - fixture

from .conftest import dev_sign_in, screenshot

EMAIL = "ada@example.com"


def test_a_newcomer_signs_in_to_sandbox_dynamics_and_syncs_both_ways(
    page: Any,
    env: dict[str, str],
    sandbox: Sandbox,  # noqa: F811
) -> None:
    dev_sign_in(page, "/addin/autosync.html", EMAIL, "Ada")
    # The administrator (the first user) chooses Sandbox Dynamics 365: no address needed.
    page.get_by_role("link", name="Administration").click()
    page.locator("body[data-ready='true']").wait_for()
    page.get_by_role("tab", name="CRM").click()
    page.get_by_role("combobox", name="CRM", exact=True).select_option(
        label="Sandbox Dynamics 365 (development)"
    )
    assert not page.get_by_label("Custom URL").is_visible()
    page.get_by_role("button", name="Save CRM").click()
    page.get_by_text("CRM saved.").wait_for()
    page.get_by_role("link", name="Automatic sync").click()
    page.locator("body[data-ready='true']").wait_for()

    # "Sandbox Outlook": the consent page consents at once and comes back "Connected".
    page.get_by_role("tab", name="Calendar").click()
    page.get_by_label("Provider").select_option(label="Sandbox Outlook")
    page.get_by_role("button", name="Connect", exact=True).first.click()
    page.locator("#calendar-sign [data-status='connected']").wait_for()

    # The CRM tab offers a Microsoft sign-in, not a password.
    page.get_by_role("tab", name="CRM").click()
    assert not page.get_by_label("CRM password").is_visible()
    assert "Microsoft work account" in page.locator("#crm-about").inner_text()
    page.get_by_role("button", name="Sign in with Microsoft").click()
    page.get_by_role("heading", name="Permissions requested").wait_for()
    assert "Access Dynamics 365 as you" in page.content()
    screenshot(page, "sandbox-dynamics-consent")
    page.get_by_role("button", name="Accept").click()
    page.locator("body[data-ready='true']").wait_for()
    page.locator("#crm-sign [data-status='connected']").wait_for()
    assert page.locator("#crm-account").inner_text() == f"Signed in as {EMAIL}"

    page.get_by_role("tab", name="Sync settings").click()
    page.get_by_label("Sync direction").select_option(label="Two way")
    page.get_by_label("Sync record option").select_option(label="Sync all")
    page.get_by_role("button", name="Save settings").click()
    page.get_by_text("Settings saved.").wait_for()

    page.get_by_role("tab", name="Connections").click()
    page.get_by_role("tab", name="Calendar").click()  # "Sync calendar now" is there
    page.get_by_role("button", name="Sync calendar now").click()
    page.locator("#sync-progress .progress").wait_for()
    worker = calsync_process(env, "worker", "--burst")
    try:
        page.locator("#result .run-result").wait_for(timeout=30_000)
    finally:
        output = stop_process(worker)
    result = page.locator("#result .run-result")
    assert result.get_attribute("data-status") == "succeeded", output[-3000:]
    screenshot(page, "sandbox-dynamics-synced")

    owner = sandbox.dynamics.user_id_for(EMAIL)
    subjects = {
        row["subject"]
        for row in sandbox.dynamics.tables["appointments"].values()
        if row["_ownerid_value"] == owner
    }
    assert "Demo \u2013 Fabrikam" in subjects  # calendar -> Dynamics 365
    calendar_titles = {e["subject"] for e in sandbox.graph.events(EMAIL)}
    assert "Quarterly review \u2013 Northwind" in calendar_titles  # Dynamics 365 -> calendar
    assert sandbox.graph.invitations.all() == sandbox.dynamics.invitations.all() == []
