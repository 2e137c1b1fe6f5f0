"""The newcomer's walk in Chromium: choose the "Sandbox CRM", connect "Sandbox Outlook"
through its consent page, "Sync calendar now" with a real worker, and see meetings move
both ways; nobody is e-mailed."""

from __future__ import annotations

from typing import Any

from calsync.sandbox.demo import Sandbox
from processes import calsync_process, stop_process
from sandbox_mode.conftest import sandbox  # noqa: F401 - fixture

from .conftest import dev_sign_in, screenshot

EMAIL = "ada@example.com"


def test_a_newcomer_connects_the_sandbox_and_syncs_both_ways(
    page: Any,
    env: dict[str, str],
    sandbox: Sandbox,  # noqa: F811
) -> None:
    dev_sign_in(page, "/addin/autosync.html", EMAIL, "Ada")
    # The administrator (the first user) chooses the Sandbox CRM: no address needed.
    page.get_by_role("link", name="Administration").click()
    page.locator("body[data-ready='true']").wait_for()
    page.get_by_role("tab", name="CRM").click()
    page.get_by_role("combobox", name="CRM", exact=True).select_option(
        label="Sandbox CRM (development)"
    )
    assert not page.get_by_label("Custom URL").is_visible()
    page.get_by_role("button", name="Save CRM").click()
    page.get_by_text("CRM saved.").wait_for()
    page.get_by_role("link", name="Automatic sync").click()
    page.locator("body[data-ready='true']").wait_for()

    # The CRM tab says which demo account to use and prefills its user name.
    page.get_by_role("tab", name="CRM").click()
    assert 'user name "demo", password "demo"' in page.locator("#crm-about").inner_text()
    assert page.get_by_label("CRM user name").input_value() == "demo"
    page.get_by_label("CRM password").fill("demo")
    page.get_by_role("button", name="Test and save").click()
    page.locator("#crm-sign [data-status='connected']").wait_for()

    # "Sandbox Outlook": the consent page consents at once and comes back "Connected".
    page.get_by_role("tab", name="Calendar").click()
    page.get_by_label("Provider").select_option(label="Sandbox Outlook")
    page.get_by_role("button", name="Connect", exact=True).first.click()
    page.locator("#calendar-sign [data-status='connected']").wait_for()
    screenshot(page, "sandbox-connected")

    # "Two way" is offered for Sandbox Outlook.
    page.get_by_role("tab", name="Sync settings").click()
    page.get_by_label("Sync direction").select_option(label="Two way")
    page.get_by_label("Sync record option").select_option(label="Sync all")
    page.get_by_role("button", name="Save settings").click()
    page.get_by_text("Settings saved.").wait_for()

    page.get_by_role("tab", name="Connections").click()
    page.get_by_role("button", name="Sync calendar now").click()
    page.locator("#sync-progress .progress").wait_for()
    worker = calsync_process(env, "worker", "--burst")
    try:
        page.locator("#result .run-result").wait_for(timeout=30_000)
    finally:
        output = stop_process(worker)
    result = page.locator("#result .run-result")
    assert result.get_attribute("data-status") == "succeeded", output[-3000:]
    screenshot(page, "sandbox-synced")

    crm_titles = {m["name"] for m in sandbox.crm.live_meetings()}
    assert "Demo \u2013 Fabrikam" in crm_titles  # calendar -> CRM
    calendar_titles = {e["subject"] for e in sandbox.graph.events(EMAIL)}
    assert "Quarterly review \u2013 Northwind" in calendar_titles  # CRM -> calendar
    assert sandbox.graph.invitations.all() == []
