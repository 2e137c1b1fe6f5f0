"""The Automatic sync page, walked as the manual tells a user to, against real servers:
Radicale for CalDAV, the SuiteCRM emulator, and a real `calsync worker --burst` process.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import select

from calendars.conftest import RadicaleServer, new_calendar, radicale  # noqa: F401 - fixture
from calsync.db import transaction
from calsync.models import EventLink
from calsync.sandbox.suitecrm import SuiteCrmEmulator
from processes import calsync_process, stop_process

from .conftest import TASKPANE_WIDTH, dev_sign_in, screenshot

CRM_USER, CRM_PASSWORD = "alice", "correct horse battery"
EMAIL = "alice@acme.test"


@pytest.fixture
def suitecrm() -> Iterator[SuiteCrmEmulator]:
    with SuiteCrmEmulator(seed=5) as emu:
        emu.add_user(CRM_USER, CRM_PASSWORD, EMAIL, first_name="Alice", last_name="Admin")
        yield emu


def put_event(server: RadicaleServer, calendar_url: str, uid: str, title: str) -> None:
    start = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=1)
    body = "\r\n".join(
        [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "PRODID:-//tests//EN",
            "BEGIN:VEVENT",
            f"UID:{uid}",
            f"DTSTAMP:{datetime.now(UTC):%Y%m%dT%H%M%SZ}",
            f"DTSTART:{start:%Y%m%dT%H%M%SZ}",
            f"DTEND:{start + timedelta(hours=1):%Y%m%dT%H%M%SZ}",
            f"SUMMARY:{title}",
            "END:VEVENT",
            "END:VCALENDAR",
            "",
        ]
    )
    reply = requests.put(
        f"{calendar_url}{uid}.ics",
        data=body.encode(),
        headers={"Content-Type": "text/calendar"},
        auth=(server.username, server.password),
        timeout=10,
    )
    assert reply.status_code in (201, 204), reply.text


def need(routes: set[str], *paths: str) -> None:
    missing = [p for p in paths if p not in routes]
    if missing:
        pytest.skip(f"the server has no {', '.join(missing)} yet")


def choose_crm_on_admin_page(page: Any, url: str) -> None:
    page.get_by_role("link", name="Administration").click()
    page.locator("body[data-ready='true']").wait_for()
    page.get_by_role("tab", name="CRM").click()
    page.get_by_role("combobox", name="CRM", exact=True).select_option(label="SuiteCRM")
    page.get_by_label("Custom URL").fill(url)
    page.get_by_role("button", name="Save CRM").click()
    page.get_by_text("CRM saved.").wait_for()


def test_connect_sync_and_see_the_result(
    page: Any,
    context: Any,
    rt: Any,
    env: dict[str, str],
    routes: set[str],
    radicale: RadicaleServer,  # noqa: F811
    suitecrm: SuiteCrmEmulator,
) -> None:
    need(routes, "/api/connections", "/api/connections/calendar/caldav", "/api/sync")
    calendar_url = new_calendar(radicale, "Browser test")
    put_event(radicale, calendar_url, "browser-1", "Quarterly review with Contoso")

    dev_sign_in(page, "/addin/autosync.html", EMAIL, "Alice Admin")
    # The administrator chooses the CRM and its URL first.
    choose_crm_on_admin_page(page, suitecrm.url)
    page.get_by_role("link", name="Automatic sync").click()
    page.locator("body[data-ready='true']").wait_for()

    # Connections > Calendar: "Custom URL" shown (SuiteCRM needs one), holding the URL.
    assert page.get_by_role("tab", name="Connections").get_attribute("aria-selected") == "true"
    assert page.get_by_role("tab", name="Calendar").get_attribute("aria-selected") == "true"
    custom = page.get_by_role("checkbox", name="Custom URL", exact=True)
    assert custom.is_visible() and custom.is_checked()
    assert page.get_by_label("Your CRM's custom URL").input_value() == suitecrm.url

    # CRM credentials, tested live.
    page.get_by_role("tab", name="CRM").click()
    page.get_by_label("CRM user name").fill(CRM_USER)
    page.get_by_label("CRM password").fill(CRM_PASSWORD)
    page.get_by_role("button", name="Test and save").click()
    page.locator("#crm-sign [data-status='connected']").wait_for()
    assert page.locator("#crm-sign").inner_text() == "Connected"
    screenshot(page, "autosync-crm")

    # Calendar server details: a manual provider, first with a wrong password.
    page.get_by_role("tab", name="Calendar").click()
    page.get_by_label("Provider").select_option(label="CalDAV server")
    page.get_by_role("button", name="Connect", exact=True).first.click()
    page.get_by_label("Server URL").fill(radicale.url)
    page.get_by_label("User name", exact=True).fill(radicale.username)
    page.get_by_label("Password", exact=True).fill("not the password")
    page.locator("#manual-connect").click()
    error = page.locator("#calendar-message.error")
    error.wait_for()
    sentence = error.inner_text()
    assert re.search(r"password|user name", sentence, re.I), sentence
    assert sentence.rstrip().endswith((".", "!")), sentence
    screenshot(page, "autosync-caldav-error")

    page.get_by_label("Password", exact=True).fill(radicale.password)
    page.locator("#manual-connect").click()
    choice = page.get_by_role("combobox", name="Calendar", exact=True)
    page.wait_for_function(
        "() => !document.querySelector('#caldav-calendar-field').hidden"
        " || document.querySelector('#calendar-sign [data-status=connected]')"
    )
    if choice.is_visible():  # several calendars on the account: choose ours
        choice.select_option(value=calendar_url)
        page.locator("#manual-connect").click()
    page.locator("#calendar-sign [data-status='connected']").wait_for()
    assert page.locator("#calendar-sign").inner_text() == "Connected"
    assert page.get_by_role("button", name="Sync calendar now").is_visible()

    # Sync settings > Calendar: "Two way" is not offered for a CalDAV calendar.
    page.get_by_role("tab", name="Sync settings").click()
    direction = page.get_by_label("Sync direction")
    options = direction.locator("option").all_inner_texts()
    assert options == ["One way (calendar to CRM)", "One way (CRM to calendar)"]
    page.get_by_label("Sync record option").select_option(label="Sync all")
    page.get_by_label("Email invitations / updates").select_option(label="After first sync")
    assert page.get_by_label("Sync invitees").is_checked()
    page.get_by_role("button", name="Save settings").click()
    page.get_by_text("Settings saved.").wait_for()
    screenshot(page, "autosync-settings")

    # "Sync calendar now" with a real worker.
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
    crm_row = result.locator("tr", has_text="CRM").locator("td")
    assert crm_row.first.inner_text() == "1"  # one meeting created in the CRM
    assert page.locator("#sync-message").inner_text() == "Sync finished."
    assert [m["name"] for m in suitecrm.live_meetings()] == ["Quarterly review with Contoso"]
    history = page.locator("#history table.history tbody tr")
    assert history.count() == 1
    assert "Succeeded" in history.first.inner_text()

    # "Enable automatic calendar sync" sticks.
    page.get_by_label("Enable automatic calendar sync").check()
    page.get_by_text("Automatic calendar sync is on").wait_for()
    screenshot(page, "autosync-result")
    page.reload()
    page.locator("body[data-ready='true']").wait_for()
    assert page.get_by_label("Enable automatic calendar sync").is_checked()

    # The sidebar shows the event as synced, with a link to its CRM record.
    with transaction(rt.sessions) as session:
        item_id = session.scalars(select(EventLink.calendar_item_id)).one()
    pane = context.new_page()
    pane.set_viewport_size({"width": TASKPANE_WIDTH, "height": 720})
    pane.goto(f"/addin/taskpane.html?item_id={item_id}")
    pane.locator("body[data-ready='true']").wait_for()
    assert pane.locator("#calendar-state").inner_text() == "Connected"
    assert "Synced" in pane.locator("#item-state").inner_text()
    assert pane.locator("#crm-record-link").count() == 1
    assert "Succeeded" in pane.locator("#last-sync").inner_text()
    screenshot(pane, "taskpane-synced")
    pane.close()


def test_cleanup_and_reset_ask_for_yes_or_say_they_are_not_available(
    page: Any, routes: set[str]
) -> None:
    need(routes, "/api/connections")
    dev_sign_in(page, "/addin/autosync.html", "carol@acme.test")
    # Without a calendar the sync block is hidden; show the menu the keyboard way once
    # a calendar exists. Here: check the menu exists and behaves with the keyboard.
    page.evaluate("document.querySelector('#sync-block').hidden = false")
    more = page.get_by_role("button", name="More sync actions")
    more.focus()
    page.keyboard.press("ArrowDown")
    cleanup = page.get_by_role("menuitem", name="Run duplicate cleanup")
    assert cleanup.evaluate("node => node === document.activeElement")
    page.keyboard.press("ArrowDown")
    reset = page.get_by_role("menuitem", name="Reset calendar sync")
    assert reset.evaluate("node => node === document.activeElement")
    page.keyboard.press("Escape")
    assert more.evaluate("node => node === document.activeElement")

    more.click()
    page.get_by_role("menuitem", name="Run duplicate cleanup").click()
    if "/api/cleanup/preview" in routes:
        # Carol has connected nothing: the server says what to do first, in a sentence.
        page.get_by_text("Connect your calendar first").first.wait_for()
    else:
        page.get_by_text("Duplicate cleanup is not available yet").wait_for()

    more.click()
    page.get_by_role("menuitem", name="Reset calendar sync").click()
    if "/api/reset/preview" in routes:
        dialog = page.get_by_role("dialog")
        dialog.wait_for()
        assert dialog.get_by_role("button", name="Yes").is_visible()
        dialog.get_by_role("button", name="No").click()
        page.get_by_text("Reset cancelled").wait_for()
    else:
        page.get_by_text("Resetting calendar sync is not available yet").wait_for()


def test_oauth_providers_redirect_or_say_why_not(page: Any, routes: set[str]) -> None:
    need(routes, "/api/connections/calendar/oauth")
    dev_sign_in(page, "/addin/autosync.html", "frank@acme.test")
    provider = page.get_by_label("Provider")
    labels = provider.locator("option").all_inner_texts()
    assert {"Google", "Outlook", "Office 365"} <= set(labels)
    provider.select_option(label="Google")
    assert "You will go to Google" in page.locator("#provider-hint").inner_text()
    page.locator("#connect-button").click()
    # This server has no Google OAuth client: the user is told, in a sentence.
    error = page.locator("#calendar-message.error")
    error.wait_for()
    assert error.inner_text().rstrip().endswith("."), error.inner_text()

    # Coming back from the provider's consent page, with the outcome in the address.
    page.goto("/addin/autosync.html?error=Google+did+not+grant+access.+Connect+again.")
    page.locator("body[data-ready='true']").wait_for()
    assert (
        page.locator("#calendar-message").inner_text()
        == "Google did not grant access. Connect again."
    )
    assert "error=" not in page.url  # a reload does not show it again


def test_keyboard_tabs_labels_and_320_px(page: Any) -> None:
    page.set_viewport_size({"width": 320, "height": 800})
    dev_sign_in(page, "/addin/autosync.html", "gina@acme.test")
    unlabeled = """() => [...document.querySelectorAll('input, select, button')]
        .filter((n) => !n.closest('[hidden]'))
        .filter((n) => !(n.labels && n.labels.length) && !n.getAttribute('aria-label')
                       && !n.textContent.trim())
        .map((n) => n.id || n.outerHTML.slice(0, 80))"""
    # The tabs work with the keyboard (arrow keys move between them).
    page.get_by_role("tab", name="Connections").focus()
    page.keyboard.press("ArrowRight")
    assert page.get_by_role("tab", name="Sync settings").get_attribute("aria-selected") == "true"
    assert page.get_by_role("button", name="Save settings").is_visible()
    page.keyboard.press("ArrowLeft")
    assert page.get_by_role("tab", name="Connections").get_attribute("aria-selected") == "true"
    for tab in ("Connections", "Sync settings"):
        page.get_by_role("tab", name=tab).click()
        assert page.evaluate(unlabeled) == []
        assert page.evaluate("document.documentElement.scrollWidth") <= 320
    screenshot(page, "autosync-narrow")


def test_duplicate_cleanup_shows_what_it_found_before_removing(page: Any, routes: set[str]) -> None:
    """The preview dialog, against the server's answers stubbed in the browser (so the
    groups are known without building duplicates on both sides first)."""
    import json

    preview = {
        "phase": "preview",
        "counts": {"groups": 1, "remove": 1},
        "groups": [
            {
                "key": "g1",
                "items": [
                    {"side": "crm", "title": "Demo", "start": None, "action": "keep"},
                    {"side": "crm", "title": "Demo", "start": None, "action": "remove"},
                ],
            }
        ],
    }
    run = {
        "id": 99,
        "kind": "cleanup",
        "trigger": "manual",
        "status": "awaiting_confirmation",
        "created_at": "2026-01-01T09:00:00+00:00",
        "started_at": None,
        "finished_at": None,
        "counts": preview,
        "errors": [],
    }
    confirmed: list[str] = []

    def reply(body: Any, status: int = 200) -> Any:
        return lambda route: route.fulfill(
            status=status, content_type="application/json", body=json.dumps(body)
        )

    def confirm(route: Any) -> None:
        confirmed.append(route.request.url)
        run.update(status="succeeded", counts={"crm": {"deleted": 1}})
        route.fulfill(status=202, content_type="application/json", body='{"run_id": 99}')

    page.route("**/api/cleanup/preview", reply({"run_id": 99}, 202))
    page.route("**/api/runs/99", lambda route: reply(run)(route))
    page.route("**/api/cleanup/99/confirm", confirm)
    dev_sign_in(page, "/addin/autosync.html", "hank@acme.test")
    page.evaluate("document.querySelector('#sync-block').hidden = false")
    page.get_by_role("button", name="More sync actions").click()
    page.get_by_role("menuitem", name="Run duplicate cleanup").click()
    dialog = page.get_by_role("dialog", name="Run duplicate cleanup")
    dialog.wait_for()
    assert "found 1 duplicate" in dialog.inner_text()
    assert dialog.locator("[data-action='remove']").inner_text().startswith("Demo in the CRM")
    assert confirmed == []  # nothing removed before "Yes"
    screenshot(page, "autosync-cleanup-preview", full_page=False)
    dialog.get_by_role("button", name="Yes").click()
    page.get_by_text("Duplicate cleanup finished.").wait_for()
    assert len(confirmed) == 1
