"""The admin page: CRM, global settings, sync profiles and their assignment to users."""

from __future__ import annotations

from typing import Any

from .conftest import dev_sign_in, screenshot


def test_admin_creates_a_profile_and_assigns_it_to_a_user(
    page: Any, browser: Any, base_url: str, context: Any
) -> None:
    # Alice is the first of acme.test, hence its administrator; Bob joins after her.
    dev_sign_in(page, "/addin/autosync.html", "alice@acme.test", "Alice Admin")
    bob_context = browser.new_context(base_url=base_url)
    bob_context.route("https://appsforoffice.microsoft.com/**", lambda route: route.abort())
    bob = bob_context.new_page()
    dev_sign_in(bob, "/addin/autosync.html", "bob@acme.test", "Bob Sales")
    assert not bob.get_by_role("link", name="Administration").is_visible()

    page.get_by_role("link", name="Administration").click()
    page.locator("body[data-ready='true']").wait_for()

    # Users: both listed; Bob uses the global settings.
    rows = page.locator("table.users tbody tr")
    assert rows.count() == 2
    assert page.get_by_label("Sync profile for Bob Sales").input_value() == ""

    # Global settings: "Two way" is offered here (it depends on each user's calendar).
    page.get_by_role("tab", name="Global settings").click()
    panel = page.locator("#panel-global")
    options = panel.get_by_label("Sync direction").locator("option").all_inner_texts()
    assert options == ["One way (calendar to CRM)", "One way (CRM to calendar)", "Two way"]
    panel.get_by_label("Sync invitees").uncheck()
    panel.get_by_role("button", name="Save settings").click()
    panel.get_by_text("Settings saved.").wait_for()

    # Sync profiles: create, edit, and (later) delete.
    page.get_by_role("tab", name="Sync profiles").click()
    page.get_by_label("New profile name").fill("Sales team")
    page.get_by_role("button", name="Create profile").click()
    page.get_by_text('Profile "Sales team" created.').wait_for()
    editor = page.locator("#profile-editor")
    editor.get_by_label("Sync direction").select_option(label="One way (CRM to calendar)")
    editor.get_by_label("Email invitations / updates").select_option(label="Always")
    editor.get_by_role("button", name="Save profile").click()
    editor.get_by_text("Settings saved.").wait_for()
    screenshot(page, "admin-profiles")

    # Users: assign the profile to Bob.
    page.get_by_role("tab", name="Users").click()
    page.get_by_label("Sync profile for Bob Sales").select_option(label="Sales team")
    page.get_by_text('Bob Sales now uses the sync profile "Sales team".').wait_for()
    screenshot(page, "admin-users")

    # Bob sees his profile's settings, read-only, and who manages them.
    bob.reload()
    bob.locator("body[data-ready='true']").wait_for()
    bob.get_by_role("tab", name="Sync settings").click()
    assert bob.locator("#settings-source").inner_text() == "Profile: Sales team"
    bob.get_by_text("Your administrator manages these settings.").wait_for()
    direction = bob.get_by_label("Sync direction")
    assert direction.is_disabled()
    assert direction.locator("option:checked").inner_text() == "One way (CRM to calendar)"
    assert bob.get_by_role("button", name="Save settings").is_disabled()
    screenshot(bob, "autosync-settings-readonly")

    # Bob cannot open the admin page.
    bob.goto("/addin/admin.html")
    bob.get_by_text("Only an administrator of your organization can open this page.").wait_for()
    bob_context.close()

    # Deleting the profile asks for "Yes"; Bob goes back to the global settings.
    page.get_by_role("tab", name="Sync profiles").click()
    page.get_by_role("button", name="Delete Sales team").click()
    dialog = page.get_by_role("dialog", name="Delete sync profile")
    dialog.get_by_role("button", name="Yes").click()
    page.get_by_text('Profile "Sales team" deleted.').wait_for()
    page.get_by_role("tab", name="Users").click()
    assert page.get_by_label("Sync profile for Bob Sales").input_value() == ""


def test_the_admin_page_works_at_taskpane_width_and_refuses_a_missing_url(page: Any) -> None:
    page.set_viewport_size({"width": 320, "height": 800})
    dev_sign_in(page, "/addin/admin.html", "erin@globex.test", "Erin")
    page.get_by_role("tab", name="CRM").click()
    page.get_by_role("combobox", name="CRM", exact=True).select_option(label="SuiteCRM")
    page.get_by_role("button", name="Save CRM").click()
    error = page.locator("#crm-message.error")
    error.wait_for()
    assert "Custom URL" in error.inner_text()
    assert page.get_by_label("Custom URL").get_attribute("aria-invalid") == "true"
