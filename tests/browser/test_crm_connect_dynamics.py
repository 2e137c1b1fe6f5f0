"""Connecting Dynamics 365 in Chromium: the administrator chooses Dynamics 365 at the
emulator's address, a user selects "Sign in with Microsoft", walks the emulator's
"Permissions requested" page, and comes back to a connected CRM.

The Dynamics 365 emulator is the organization and Microsoft's login host at once
(MICROSOFT_AUTHORITY_HOST, as a development deployment may set it). It serves a throwaway
certificate, so this browser context accepts it: the walk is the real one, redirects and
cookies included.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from calsync.sandbox.dynamics import DynamicsEmulator

from .conftest import dev_sign_in, screenshot

ADMIN, MEMBER = "ada@example.com", "bob@example.com"


@pytest.fixture
def dynamics() -> Iterator[DynamicsEmulator]:
    with DynamicsEmulator(seed=31, consent_prompt=True) as emu:
        yield emu


@pytest.fixture
def env(
    env: dict[str, str], dynamics: DynamicsEmulator, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    assert dynamics.ca_file
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", dynamics.ca_file)  # the server trusts the emulator
    return {
        **env,
        "MICROSOFT_CLIENT_ID": "calsync-test-app",
        "MICROSOFT_CLIENT_SECRET": "calsync-test-secret",
        "MICROSOFT_AUTHORITY_HOST": dynamics.url,
    }


def new_page(browser: Any, base_url: str, errors: list[str]) -> Any:
    """A page in a context of its own (one person), trusting the emulator's certificate."""
    ctx = browser.new_context(
        base_url=base_url, viewport={"width": 1100, "height": 900}, ignore_https_errors=True
    )
    ctx.route("https://appsforoffice.microsoft.com/**", lambda route: route.abort())
    ctx.set_default_timeout(10_000)
    page = ctx.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )
    return page


def test_a_user_signs_in_with_microsoft_and_sees_dynamics_connected(
    browser: Any, live_app: Any, base_url: str, dynamics: DynamicsEmulator
) -> None:
    dynamics.add_user(MEMBER, "Bob Member")
    errors: list[str] = []

    # The administrator chooses Dynamics 365 and its address.
    admin = new_page(browser, base_url, errors)
    dev_sign_in(admin, "/addin/admin.html", ADMIN, "Ada")
    admin.get_by_role("tab", name="CRM").click()
    admin.get_by_role("combobox", name="CRM", exact=True).select_option(
        label="Microsoft Dynamics 365"
    )
    admin.get_by_label("Custom URL").fill(dynamics.url)
    admin.get_by_role("button", name="Save CRM").click()
    admin.get_by_text("CRM saved.").wait_for()
    admin.context.close()

    # A user: no user name or password for Dynamics 365, a sign-in button instead.
    page = new_page(browser, base_url, errors)
    dev_sign_in(page, "/addin/autosync.html", MEMBER, "Bob")
    page.get_by_role("tab", name="CRM").click()
    assert not page.get_by_label("CRM password").is_visible()
    assert "Microsoft work account" in page.locator("#crm-about").inner_text()
    sign_in = page.get_by_role("button", name="Sign in with Microsoft")
    sign_in.focus()
    page.keyboard.press("Enter")  # keyboard usable

    # Microsoft's "Permissions requested" page (the emulator's).
    page.get_by_role("heading", name="Permissions requested").wait_for()
    assert "Access Dynamics 365 as you" in page.content()
    page.get_by_role("button", name="Accept").click()

    # Back on the CRM tab, connected, with the account and the outcome.
    page.locator("body[data-ready='true']").wait_for()
    page.locator("#crm-sign [data-status='connected']").wait_for()
    assert page.get_by_role("tab", name="CRM").get_attribute("aria-selected") == "true"
    assert page.locator("#crm-account").inner_text() == f"Signed in as {MEMBER}"
    message = page.locator("#crm-message.success").inner_text()
    assert message == f"Connected to Dynamics 365 at {dynamics.url} as {MEMBER}.", message
    assert "connected=" not in page.url  # the outcome is shown once, not on reload
    screenshot(page, "crm-dynamics-connected")
    page.context.close()

    assert not errors, f"errors in the page: {errors}"


def test_refusing_consent_shows_what_to_do_on_the_crm_tab(
    browser: Any, live_app: Any, base_url: str, dynamics: DynamicsEmulator
) -> None:
    dynamics.add_user(ADMIN, "Ada")
    errors: list[str] = []
    page = new_page(browser, base_url, errors)
    dev_sign_in(page, "/addin/admin.html", ADMIN, "Ada")
    page.get_by_role("tab", name="CRM").click()
    page.get_by_role("combobox", name="CRM", exact=True).select_option(
        label="Microsoft Dynamics 365"
    )
    page.get_by_label("Custom URL").fill(dynamics.url)
    page.get_by_role("button", name="Save CRM").click()
    page.get_by_text("CRM saved.").wait_for()
    page.goto("/addin/autosync.html")
    page.locator("body[data-ready='true']").wait_for()
    page.get_by_role("tab", name="CRM").click()

    page.get_by_role("button", name="Sign in with Microsoft").click()
    page.get_by_role("button", name="Cancel").click()

    page.locator("body[data-ready='true']").wait_for()
    error = page.locator("#crm-message.error")
    assert error.inner_text() == (
        "You did not allow calsync to use Dynamics 365 as you, so your CRM is not connected. "
        'Select "Sign in with Microsoft" to try again.'
    )
    assert page.locator("#crm-sign [data-status='none']").is_visible()
    screenshot(page, "crm-dynamics-consent-refused")
    page.context.close()

    assert not errors, f"errors in the page: {errors}"
