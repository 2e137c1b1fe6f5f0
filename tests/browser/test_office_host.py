"""The task pane inside Outlook: office.js stood in for by a fake with the same surface.

The real office.js comes from Microsoft's CDN, which tests cannot reach; the fake is
served at its address, so the page's Office code paths (single sign-on, opening the
Automatic sync page with Office.context.ui.openBrowserWindow, the open event's id) run.
"""

from __future__ import annotations

from typing import Any

from .conftest import TASKPANE_WIDTH, dev_sign_in

FAKE_OFFICE_JS = """
window.__opened = [];
window.Office = {
  MailboxEnums: { RestVersion: { v2_0: "v2.0" } },
  onReady: () => Promise.resolve({ host: "Outlook", platform: "OfficeOnline" }),
  auth: { getAccessToken: () => Promise.resolve(window.__ssoToken || "not-a-real-token") },
  context: {
    ui: { openBrowserWindow: (url) => window.__opened.push(url) },
    mailbox: {
      item: { itemType: "appointment", itemId: "EWS-ID-1", subject: "Quarterly review" },
      convertToRestId: (id, version) => "REST-" + id,
    },
  },
};
"""


def fake_office(context: Any) -> None:
    context.unroute("https://appsforoffice.microsoft.com/**")
    context.route(
        "https://appsforoffice.microsoft.com/**",
        lambda route: route.fulfill(
            status=200, content_type="application/javascript", body=FAKE_OFFICE_JS
        ),
    )


def test_single_sign_on_failure_is_a_sentence(page: Any, context: Any) -> None:
    fake_office(context)
    page.set_viewport_size({"width": TASKPANE_WIDTH, "height": 720})
    page.goto("/addin/taskpane.html")
    # This server has no Microsoft app registration: the token is refused with a reason.
    error = page.locator("#signin .message.error")
    error.wait_for()
    assert "Sign-in with Microsoft is not set up on this server" in error.inner_text()
    assert page.get_by_role("button", name="Sign in").is_visible()
    # No development form inside Outlook.
    assert page.get_by_label("Email").count() == 0


def test_auto_sync_opens_a_signed_in_tab_through_office(page: Any, context: Any) -> None:
    dev_sign_in(page, "/addin/autosync.html", "alice@acme.test", "Alice Admin")
    fake_office(context)
    page.set_viewport_size({"width": TASKPANE_WIDTH, "height": 720})
    page.goto("/addin/taskpane.html")
    page.locator("body[data-ready='true']").wait_for()
    # The open event (its REST id) is not synced yet: the sidebar says why.
    assert "Not synced" in page.locator("#item-state").inner_text()
    assert "Connect your calendar first" in page.locator("#item-state").inner_text()

    page.get_by_role("button", name="Menu").click()
    page.get_by_role("menuitem", name="Auto Sync").click()
    page.wait_for_function("() => window.__opened.length === 1")
    url = page.evaluate("window.__opened[0]")
    assert "/api/auth/link/" in url

    # The one-time link signs a fresh browser (no cookies) in and lands on Automatic sync.
    fresh = context.browser.new_context()
    fresh.route("https://appsforoffice.microsoft.com/**", lambda route: route.abort())
    tab = fresh.new_page()
    tab.goto(url)
    tab.locator("body[data-ready='true']").wait_for()
    assert tab.url.endswith("/addin/autosync.html")
    assert "alice@acme.test" in tab.locator("#who").inner_text()
    fresh.close()

    page.get_by_role("button", name="Other tools").click()
    page.get_by_role("link", name="Automatic sync").click()
    page.wait_for_function("() => window.__opened.length === 2")
    # Office opened the tabs; the links' own default (a new tab) did not also happen.
    assert len(context.pages) == 1
