"""Google Calendar test plumbing: the emulator, the real connect flow, a contract harness.

The calendar contract (test_contract.py) runs against Google through the "google" param of
`calendar_provider` in conftest.py, which builds a `GoogleHarness` on `google_emulator`.
"""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from calsync.calendars.google import GoogleCalendar, GoogleOAuth
from calsync.sandbox.google import GoogleEmulator

CLIENT_ID = "calsync-test-app.apps.googleusercontent.com"
CLIENT_SECRET = "calsync-test-secret"
REDIRECT = "http://localhost:3000/api/connect/google/callback"


@pytest.fixture(scope="session")
def google_emulator() -> Iterator[GoogleEmulator]:
    # TLS like Google itself, so the adapter's https handling is on the path; every test
    # uses an account (and so a primary calendar) of its own.
    with GoogleEmulator(seed=7, tls=True) as emu:
        yield emu


def google_session(emu: GoogleEmulator) -> requests.Session:
    http = requests.Session()
    http.verify = emu.ca_file
    # REQUESTS_CA_BUNDLE in the environment would override session.verify.
    http.trust_env = False
    return http


def new_account(emu: GoogleEmulator) -> str:
    address = f"user-{uuid.uuid4().hex[:10]}@example.com"
    emu.add_account(address, time_zone="Europe/Berlin")
    return address


def google_oauth(emu: GoogleEmulator, session: requests.Session) -> GoogleOAuth:
    return GoogleOAuth(
        CLIENT_ID,
        CLIENT_SECRET,
        authorization_endpoint=f"{emu.url}/o/oauth2/v2/auth",
        token_endpoint=f"{emu.url}/token",
        session=session,
    )


def connect(emu: GoogleEmulator, session: requests.Session, address: str) -> dict[str, Any]:
    """The whole connect flow as the API layer runs it: start, browser redirect, finish."""
    oauth = google_oauth(emu, session)
    url, flow = oauth.start_auth(REDIRECT, "state-123", login_hint=address)
    redirect = session.get(url, allow_redirects=False, timeout=10)
    location = urllib.parse.urlparse(redirect.headers["Location"])
    blob, email = oauth.finish_auth(flow, dict(urllib.parse.parse_qsl(location.query)))
    assert email == address
    return blob


def google_adapter(
    emu: GoogleEmulator, session: requests.Session, blob: dict[str, Any], **kw: Any
) -> GoogleCalendar:
    return GoogleCalendar(
        blob,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        token_endpoint=f"{emu.url}/token",
        api_base=f"{emu.url}/calendar/v3",
        session=session,
        **kw,
    )


def revoked(blob: dict[str, Any]) -> dict[str, Any]:
    """The blob with an expired access token and a refresh token Google no longer knows:
    what a user's revoking calsync's access looks like from our side."""
    token = {
        **blob["token"],
        "access_token": "ya29.revoked-" + uuid.uuid4().hex,
        "refresh_token": "1//0g-revoked-" + uuid.uuid4().hex,
        "expires_at": 1,
    }
    return {**blob, "token": token}


class GoogleHarness:
    """The Google provider under contract test, with the emulator as the "other client"."""

    name = "google"
    # Google makes the calendar's owner the organizer of every event written to it
    # (https://developers.google.com/calendar/api/v3/reference/events#organizer).
    organizer_is_the_owner = True
    keeps_silent_attendees = True

    @property
    def owner(self) -> str:
        return self.address

    def __init__(self, emu: GoogleEmulator) -> None:
        self.emu = emu
        self.address = new_account(emu)
        self.session = google_session(emu)
        self.blob = connect(emu, self.session, self.address)
        self.adapter = google_adapter(emu, self.session, self.blob)
        self.calendar_url = f"{emu.url}/calendar/v3/calendars/{urllib.parse.quote(self.address)}"

    def close(self) -> None:
        self.session.close()

    def with_wrong_password(self) -> GoogleCalendar:
        return google_adapter(self.emu, self.session, revoked(self.blob))

    def stale_cursor(self) -> str:
        """A cursor whose sync token the emulator does not know (410 fullSyncRequired)."""
        return "google1 2000-01-01T00:00:00Z 2100-01-01T00:00:00Z stale-sync-token"

    def retitle_behind(self, item_id: str, title: str) -> None:
        self.emu.change_event(self.address, item_id, {"summary": title})

    def delete_behind(self, item_id: str) -> None:
        self.emu.remove_event(self.address, item_id)

    def invitations_suppressed(self, item_id: str) -> bool:
        """Google writes attendees either way; suppressed means written and nobody mailed."""
        raw = next(e for e in self.emu.events(self.address) if e["id"] == item_id)
        mailed = [
            i
            for i in self.emu.invitations.for_event(item_id)
            if i.mailbox.lower() == self.address.lower()  # ids repeat across accounts
        ]
        return bool(raw.get("attendees")) and not mailed
