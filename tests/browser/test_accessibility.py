"""Issue #8: the add-in pages are accessible, audited in Chromium in every main state.

Each state is audited at the task pane's 320 px and at a desktop width, in the light
theme, with prefers-color-scheme: dark and with forced colours (Windows high contrast):
text contrast AA, input boundaries and indicators 3:1, names for every control, unique
ids, headings in order, lang, title, one main landmark, nothing wider than the window.
Keyboard: Tab reaches only visible elements, each visibly focused; Escape closes menus
and dialogs and gives focus back. The rules and their sources are in a11y_audit.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from calsync.sandbox.demo import Sandbox
from processes import calsync_process, stop_process
from sandbox_mode.conftest import sandbox  # noqa: F401 - fixture

from .a11y_audit import (
    Finding,
    audit,
    contrast_ratio,
    focus_findings,
    parse_color,
    tab_through,
)
from .conftest import TASKPANE_WIDTH, dev_sign_in, screenshot

DESKTOP_WIDTH = 1100
MODES: dict[str, dict[str, str]] = {
    "light": {"color_scheme": "light", "forced_colors": "none"},
    "dark": {"color_scheme": "dark", "forced_colors": "none"},
    "forced-colors": {"color_scheme": "light", "forced_colors": "active"},
}


def audit_everywhere(
    page: Any, name: str, *, widths: tuple[int, ...] = (TASKPANE_WIDTH, DESKTOP_WIDTH)
) -> list[str]:
    """The audit's findings for the page as it is now, at each width in each mode."""
    found: list[str] = []
    for mode, media in MODES.items():
        page.emulate_media(**media)
        for width in widths:
            page.set_viewport_size({"width": width, "height": 800})
            found += [f"{mode} {width}px {finding}" for finding in audit(page)]
        if mode != "light":
            screenshot(page, f"a11y-{name}-{mode}")
    page.emulate_media(color_scheme="light", forced_colors="none")
    page.set_viewport_size({"width": widths[0], "height": 800})
    screenshot(page, f"a11y-{name}")
    return found


def assert_clean(findings: list[str]) -> None:
    assert not findings, "accessibility findings:\n" + "\n".join(findings)


def signed_out(page: Any, path: str) -> None:
    page.goto(path)
    page.locator("#dev-email").wait_for()


# ---------------------------------------------------------------------------------------
# The audit itself: it measures as WCAG does and reports each kind of fault.


def test_the_contrast_formula_gives_the_wcag_figures() -> None:
    black, white = parse_color("rgb(0, 0, 0)"), parse_color("rgb(255, 255, 255)")
    assert contrast_ratio(black, white) == pytest.approx(21.0)
    assert contrast_ratio(white, white) == pytest.approx(1.0)
    # #767676 is the lightest grey that reaches 4.5:1 on white.
    assert contrast_ratio(parse_color("rgb(118, 118, 118)"), white) == pytest.approx(4.54, 0.01)
    assert contrast_ratio(parse_color("rgb(119, 119, 119)"), white) < 4.5


FAULTY_PAGE = """<!doctype html><html><head><style>
  body { margin: 0; background: #fff; color: #242424; font: 14px sans-serif; }
  .pale { color: #aaaaaa; }
  .faded { opacity: 0.3; }
  .ghost { border: 1px solid #e0e0e0; }
  .wide { width: 600px; }
  button.bare:focus { outline: none; }
</style></head><body>
  <h2>Starts at h2</h2><h4>Skips h3</h4>
  <p class="pale">Pale grey text</p>
  <p class="faded">Faded by opacity</p>
  <input type="text" class="ghost" value="x">
  <button type="button" class="bare">Bare</button>
  <button type="button"><svg width="16" height="16"><path d="M0 0h16v16H0z"/></svg></button>
  <img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" width="10" height="10">
  <span id="twice">a</span><span id="twice">b</span>
  <div class="wide">Too wide for the task pane</div>
</body></html>"""


def test_the_audit_reports_each_kind_of_fault(page: Any) -> None:
    page.set_viewport_size({"width": TASKPANE_WIDTH, "height": 600})
    page.set_content(FAULTY_PAGE)
    found = [str(finding) for finding in audit(page)]
    expected = [
        "[3.1.1 language] html",
        "[2.4.2 page titled] title",
        "[1.3.1 landmarks] main",
        "first heading is h2",
        "h2 is followed by h4",
        "[4.1.1 unique ids] #twice",
        "[1.1.1 text alternative] img",
        "Pale grey text",
        "Faded by opacity",
        "[1.4.11 non-text contrast] input.ghost",
        "[4.1.2 name] button",
        "[1.4.10 reflow]",
    ]
    missing = [rule for rule in expected if not any(rule in line for line in found)]
    assert not missing, f"not reported: {missing}\nreported:\n" + "\n".join(found)

    stops = tab_through(page)
    focus = [str(finding) for finding in focus_findings(stops)]
    assert any("Bare" in line and "same focused and unfocused" in line for line in focus), focus


def test_the_audit_finds_focus_on_a_hidden_element(page: Any) -> None:
    page.set_content(
        '<main><a href="#x" style="position:absolute;left:-999px">Off screen</a>'
        '<button style="opacity:0">Invisible</button></main>'
    )
    found = [str(f) for f in focus_findings(tab_through(page))]
    assert len([line for line in found if "focus on a hidden element" in line]) == 2, found


# ---------------------------------------------------------------------------------------
# Every page, every main state.


@pytest.mark.parametrize("path", ["taskpane.html", "autosync.html", "admin.html"])
def test_each_page_signed_out_passes_the_audit(page: Any, path: str) -> None:
    signed_out(page, f"/addin/{path}")
    assert_clean(audit_everywhere(page, f"{path[:-5]}-signed-out"))


def test_the_sign_in_error_passes_the_audit(page: Any) -> None:
    signed_out(page, "/addin/autosync.html")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Enter your email address to sign in.").wait_for()
    assert_clean(audit_everywhere(page, "signin-error"))


def test_the_task_pane_signed_in_with_its_menu_and_tools_open_passes_the_audit(
    page: Any,
) -> None:
    page.set_viewport_size({"width": TASKPANE_WIDTH, "height": 720})
    dev_sign_in(page, "/addin/taskpane.html", "alice@acme.test", "Alice Admin")
    found = audit_everywhere(page, "taskpane", widths=(TASKPANE_WIDTH,))
    page.get_by_role("button", name="Other tools").click()
    page.get_by_role("button", name="Menu").click()
    page.get_by_role("menuitem", name="Auto Sync").wait_for()
    found += audit_everywhere(page, "taskpane-menu", widths=(TASKPANE_WIDTH,))
    assert_clean(found)


def test_each_tab_of_the_automatic_sync_page_passes_the_audit(page: Any) -> None:
    dev_sign_in(page, "/addin/autosync.html", "alice@acme.test", "Alice Admin")
    found = audit_everywhere(page, "autosync-calendar")
    # The form a CalDAV server needs.
    page.get_by_label("Provider").select_option(label="CalDAV server")
    page.locator("#connect-button").click()
    page.get_by_label("Server URL").wait_for()
    found += audit_everywhere(page, "autosync-caldav-form")
    page.get_by_role("tab", name="CRM").click()
    found += audit_everywhere(page, "autosync-crm")
    page.get_by_role("tab", name="Sync settings").click()
    page.get_by_role("button", name="Save settings").wait_for()
    found += audit_everywhere(page, "autosync-settings")
    assert_clean(found)


def test_an_error_from_the_calendar_provider_passes_the_audit(page: Any) -> None:
    dev_sign_in(page, "/addin/autosync.html", "alice@acme.test")
    page.goto("/addin/autosync.html?error=Google+did+not+grant+access.+Connect+again.")
    page.locator("#calendar-message.error").wait_for()
    assert_clean(audit_everywhere(page, "autosync-error"))


def test_the_confirmation_dialog_passes_the_audit(page: Any) -> None:
    dev_sign_in(page, "/addin/autosync.html", "carol@acme.test")
    page.evaluate("document.querySelector('#sync-block').hidden = false")
    page.get_by_role("button", name="More sync actions").click()
    page.get_by_role("menuitem", name="Reset calendar sync").click()
    page.get_by_role("dialog").wait_for()
    assert_clean(audit_everywhere(page, "autosync-dialog"))


def test_each_tab_of_the_admin_page_passes_the_audit(page: Any) -> None:
    dev_sign_in(page, "/addin/admin.html", "alice@acme.test", "Alice Admin")
    page.locator("table.users").wait_for()
    found = audit_everywhere(page, "admin-users")
    page.get_by_role("tab", name="Global settings").click()
    page.locator("#panel-global").get_by_role("button", name="Save settings").wait_for()
    found += audit_everywhere(page, "admin-global")
    page.get_by_role("tab", name="Sync profiles").click()
    page.get_by_label("New profile name").fill("Sales team")
    page.get_by_role("button", name="Create profile").click()
    page.locator("#profile-editor").get_by_role("button", name="Save profile").wait_for()
    found += audit_everywhere(page, "admin-profiles")
    page.get_by_role("tab", name="CRM").click()
    page.get_by_role("combobox", name="CRM", exact=True).select_option(label="SuiteCRM")
    page.get_by_role("button", name="Save CRM").click()
    page.locator("#crm-message.error").wait_for()  # "Custom URL" is missing
    found += audit_everywhere(page, "admin-crm-error")
    assert_clean(found)


def test_the_help_page_passes_the_audit(page: Any) -> None:
    page.goto("/addin/support.html")
    assert_clean(audit_everywhere(page, "support"))


def test_a_finished_sync_passes_the_audit_on_the_page_and_in_the_task_pane(
    page: Any,
    context: Any,
    env: dict[str, str],
    sandbox: Sandbox,  # noqa: F811
) -> None:
    """The sandbox's CRM and Outlook, a real worker: the result, history and success note."""
    dev_sign_in(page, "/addin/admin.html", "ada@example.com", "Ada")
    page.get_by_role("tab", name="CRM").click()
    page.get_by_role("combobox", name="CRM", exact=True).select_option(
        label="Sandbox CRM (development)"
    )
    page.get_by_role("button", name="Save CRM").click()
    page.get_by_text("CRM saved.").wait_for()
    page.get_by_role("link", name="Automatic sync").click()
    page.locator("body[data-ready='true']").wait_for()
    page.get_by_role("tab", name="CRM").click()
    page.get_by_label("CRM password").fill("demo")
    page.get_by_role("button", name="Test and save").click()
    page.locator("#crm-sign [data-status='connected']").wait_for()
    page.get_by_role("tab", name="Calendar").click()
    page.get_by_label("Provider").select_option(label="Sandbox Outlook")
    page.locator("#connect-button").click()
    page.locator("#calendar-sign [data-status='connected']").wait_for()
    page.get_by_role("button", name="Sync calendar now").click()
    page.locator("#sync-progress .progress").wait_for()
    found = audit_everywhere(page, "autosync-progress")
    worker = calsync_process(env, "worker", "--burst")
    try:
        page.locator("#result .run-result").wait_for(timeout=30_000)
    finally:
        output = stop_process(worker)
    assert page.locator("#result .run-result").get_attribute("data-status") == "succeeded", output[
        -3000:
    ]
    page.locator("#history table").wait_for()
    found += audit_everywhere(page, "autosync-result")

    pane = context.new_page()
    pane.set_viewport_size({"width": TASKPANE_WIDTH, "height": 720})
    pane.goto("/addin/taskpane.html")
    pane.locator("body[data-ready='true']").wait_for()
    found += audit_everywhere(pane, "taskpane-after-sync", widths=(TASKPANE_WIDTH,))
    pane.close()
    assert_clean(found)


# ---------------------------------------------------------------------------------------
# Keyboard only.


def _open_task_pane(page: Any) -> None:
    page.set_viewport_size({"width": TASKPANE_WIDTH, "height": 720})
    dev_sign_in(page, "/addin/taskpane.html", "alice@acme.test")
    page.get_by_role("button", name="Other tools").click()


def _open_autosync(page: Any) -> None:
    dev_sign_in(page, "/addin/autosync.html", "alice@acme.test")
    page.evaluate("document.querySelector('#sync-block').hidden = false")


def _open_autosync_settings(page: Any) -> None:
    dev_sign_in(page, "/addin/autosync.html", "alice@acme.test")
    page.get_by_role("tab", name="Sync settings").click()
    page.get_by_role("button", name="Save settings").wait_for()


def _open_admin_crm(page: Any) -> None:
    dev_sign_in(page, "/addin/admin.html", "alice@acme.test")
    page.get_by_role("tab", name="CRM").click()


def _open_signed_out(page: Any) -> None:
    signed_out(page, "/addin/autosync.html")


STATES: dict[str, Callable[[Any], None]] = {
    "taskpane": _open_task_pane,
    "autosync-connections": _open_autosync,
    "autosync-settings": _open_autosync_settings,
    "admin-crm": _open_admin_crm,
    "signed-out": _open_signed_out,
}


@pytest.mark.parametrize("state", list(STATES))
def test_tabbing_through_a_page_shows_where_focus_is(page: Any, state: str) -> None:
    STATES[state](page)
    findings: list[Finding | str] = []
    for mode in ("light", "forced-colors"):
        page.emulate_media(**MODES[mode])
        stops = tab_through(page)
        assert len(stops) >= 2, f"{mode}: Tab reached {[s.what for s in stops]}"
        findings += [f"{mode} {finding}" for finding in focus_findings(stops)]
    assert_clean([str(f) for f in findings])


def _focused(page: Any) -> str:
    return page.evaluate("document.activeElement.id || document.activeElement.tagName")


def test_escape_closes_the_task_pane_menu_and_gives_focus_back(page: Any) -> None:
    _open_task_pane(page)
    page.get_by_role("button", name="Menu").focus()
    page.keyboard.press("Enter")
    assert _focused(page) == "menu-autosync"
    page.keyboard.press("Escape")
    assert page.locator("#main-menu").is_hidden()
    assert _focused(page) == "menu-button"
    # Tab leaves an open menu too: it closes and focus moves on, never trapped.
    page.keyboard.press("ArrowDown")
    assert page.locator("#main-menu").is_visible()
    page.keyboard.press("Tab")
    assert page.locator("#main-menu").is_hidden()
    assert _focused(page) != "menu-autosync"


def test_escape_closes_a_confirmation_dialog_and_gives_focus_back(page: Any) -> None:
    _open_autosync(page)
    page.get_by_role("button", name="More sync actions").focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert _focused(page) == "reset-sync"
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Reset calendar sync")
    dialog.wait_for()
    page.keyboard.press("Escape")
    page.get_by_text("Reset cancelled").wait_for()
    assert dialog.count() == 0
    # Its opener's menu is closed: focus goes back to the button that opened the menu.
    assert _focused(page) == "sync-more"


def test_escape_closes_the_admin_delete_dialog_and_gives_focus_back(page: Any) -> None:
    dev_sign_in(page, "/addin/admin.html", "alice@acme.test")
    page.get_by_role("tab", name="Sync profiles").click()
    page.get_by_label("New profile name").fill("Sales team")
    page.get_by_role("button", name="Create profile").click()
    page.get_by_text('Profile "Sales team" created.').wait_for()
    delete = page.get_by_role("button", name="Delete Sales team")
    delete.focus()
    page.keyboard.press("Enter")
    page.get_by_role("dialog", name="Delete sync profile").wait_for()
    page.keyboard.press("Escape")
    assert page.get_by_role("dialog").count() == 0
    assert delete.evaluate("node => node === document.activeElement")
