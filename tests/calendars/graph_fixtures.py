"""Microsoft Graph test plumbing: the emulator, the real connect flow, a contract harness.

To run the calendar contract (test_contract.py) against Graph too, conftest.py needs:

    from .graph_fixtures import GraphHarness, graph_emulator  # noqa: F401

    @pytest.fixture(params=["caldav", "graph"])
    def calendar_provider(request):
        ...
        elif request.param == "graph":
            harness = GraphHarness(request.getfixturevalue("graph_emulator"))
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from calsync.calendars.graph import GraphCalendar, GraphOAuth
from calsync.sandbox.graph import GraphEmulator

CLIENT_ID = "calsync-test-app"
CLIENT_SECRET = "calsync-test-secret"
REDIRECT = "http://localhost:3000/api/connect/microsoft/callback"


@pytest.fixture(scope="session")
def graph_emulator() -> Iterator[GraphEmulator]:
    # TLS because msal refuses a plain-http authority; every test uses a mailbox of its own.
    with GraphEmulator(seed=11, tls=True) as emu:
        yield emu


def graph_session(emu: GraphEmulator) -> requests.Session:
    http = requests.Session()
    http.verify = emu.ca_file
    # REQUESTS_CA_BUNDLE in the environment would override session.verify.
    http.trust_env = False
    return http


def new_mailbox(emu: GraphEmulator) -> str:
    address = f"user-{uuid.uuid4().hex[:10]}@contoso.com"
    emu.add_mailbox(address, "Test User")
    return address


def connect(
    emu: GraphEmulator, session: requests.Session, address: str, account_type: str = "office365"
) -> dict[str, Any]:
    """The whole connect flow as the API layer runs it: start, browser redirect, finish."""
    oauth = GraphOAuth(
        CLIENT_ID,
        CLIENT_SECRET,
        account_type,
        authority_host=emu.url,
        session=session,  # type: ignore[arg-type]
    )
    url, flow = oauth.start_auth(REDIRECT, "state-123", login_hint=address)
    redirect = session.get(url, allow_redirects=False, timeout=10)
    location = urllib.parse.urlparse(redirect.headers["Location"])
    blob, email = oauth.finish_auth(flow, dict(urllib.parse.parse_qsl(location.query)))
    assert email == address
    return blob


def graph_adapter(
    emu: GraphEmulator, session: requests.Session, blob: dict[str, Any], **kw: Any
) -> GraphCalendar:
    return GraphCalendar(
        blob,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        authority_host=emu.url,
        graph_base=f"{emu.url}/v1.0",
        session=session,
        **kw,
    )


def revoked(blob: dict[str, Any]) -> dict[str, Any]:
    """The blob with its refresh token replaced and no access token: a revoked grant."""
    cache = json.loads(blob["msal_cache"])
    cache["AccessToken"] = {}
    for entry in cache.get("RefreshToken", {}).values():
        entry["secret"] = "0.A-revoked-" + uuid.uuid4().hex
    return {**blob, "msal_cache": json.dumps(cache)}


class GraphHarness:
    """The Graph provider under contract test, with the emulator as the "other client"."""

    name = "graph"
    # Outlook makes the mailbox owner the organizer of every event it creates.
    organizer_is_the_owner = True
    # Graph emails every attendee it is given, so a silent write carries none (the
    # adapter lists them in the body instead).
    keeps_silent_attendees = False

    @property
    def owner(self) -> str:
        return self.address

    def __init__(self, emu: GraphEmulator) -> None:
        self.emu = emu
        self.address = new_mailbox(emu)
        self.session = graph_session(emu)
        self.blob = connect(emu, self.session, self.address)
        self.adapter = graph_adapter(emu, self.session, self.blob)
        self.calendar_url = f"{emu.url}/v1.0/me/calendars/{emu.mailbox(self.address).calendar_id}"

    def close(self) -> None:
        self.session.close()

    def with_wrong_password(self) -> GraphCalendar:
        return graph_adapter(self.emu, self.session, revoked(self.blob))

    def stale_cursor(self) -> str:
        """A cursor the emulator no longer accepts: an unknown delta token (410)."""
        return (
            "graph1 2000-01-01T00:00:00Z 2100-01-01T00:00:00Z "
            f"{self.emu.url}/v1.0/me/calendarView/delta?$deltatoken=stale"
        )

    def retitle_behind(self, item_id: str, title: str) -> None:
        self.emu.change_event(self.address, item_id, {"subject": title})

    def delete_behind(self, item_id: str) -> None:
        self.emu.remove_event(self.address, item_id)

    def invitations_suppressed(self, item_id: str) -> bool:
        """Graph cannot write attendees silently: suppressed means none written, none sent."""
        raw = next(e for e in self.emu.events(self.address) if e["id"] == item_id)
        return not raw["attendees"] and not self.emu.invitations.for_event(item_id)
