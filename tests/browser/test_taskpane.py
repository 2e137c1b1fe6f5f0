"""The connector sidebar (task pane) in a plain browser at Outlook's narrow width."""

from __future__ import annotations

from typing import Any

from .conftest import TASKPANE_WIDTH, dev_sign_in, screenshot


def test_taskpane_signs_in_and_links_to_automatic_sync(page: Any, context: Any) -> None:
    page.set_viewport_size({"width": TASKPANE_WIDTH, "height": 720})
    dev_sign_in(page, "/addin/taskpane.html", "alice@acme.test", "Alice Admin")

    assert page.locator("#user-name").inner_text() == "Alice Admin"
    assert "alice@acme.test" in page.locator("#user-detail").inner_text()
    # Nothing overflows the 320 px pane.
    assert page.evaluate("document.documentElement.scrollWidth") <= TASKPANE_WIDTH

    # The menu icon offers "Auto Sync".
    page.get_by_role("button", name="Menu").click()
    auto_sync = page.get_by_role("menuitem", name="Auto Sync")
    assert auto_sync.is_visible()
    screenshot(page, "taskpane-menu", full_page=False)
    page.keyboard.press("Escape")
    assert not auto_sync.is_visible()

    # "Other tools" > "Automatic sync" opens the Automatic sync page in a new tab.
    page.get_by_role("button", name="Other tools").click()
    link = page.get_by_role("link", name="Automatic sync")
    with context.expect_page() as opened:
        link.click()
    autosync = opened.value
    autosync.locator("body[data-ready='true']").wait_for()
    assert autosync.get_by_role("heading", name="Automatic sync", level=1).is_visible()
    autosync.close()

    # The menu's "Auto Sync" does the same.
    page.get_by_role("button", name="Menu").click()
    with context.expect_page() as opened:
        page.get_by_role("menuitem", name="Auto Sync").click()
    opened.value.locator("h1").wait_for()
    assert opened.value.url.endswith("/addin/autosync.html")
    screenshot(page, "taskpane")
