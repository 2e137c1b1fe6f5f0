"""Fixtures for the CRM connector tests: emulators over real HTTP and a `crm_provider`.

`crm_provider` runs the contract suite once per entry of `PROVIDERS`. To add a CRM, write
a factory returning a `CrmProvider` (the adapter plus the few things only a test does: act
as a CRM user, lose an answer, make deletions visible) and add it to `PROVIDERS`.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from calsync.crm.dynamics import DynamicsAdapter, DynamicsOAuth
from calsync.crm.suitecrm import SuiteCrmAdapter
from calsync.sandbox.dynamics import DynamicsEmulator
from calsync.sandbox.suitecrm import API_V4_1, API_V8, SuiteCrmEmulator

USER = "alice"
PASSWORD = "correct horse battery"
USER_EMAIL = "alice@acme.test"
CLIENT_ID = "calsync-client"
CLIENT_SECRET = "client-secret-123"
NOW = datetime.now(UTC).replace(microsecond=0)


class HookedSession(requests.Session):
    """A requests.Session whose requests tests can watch, alter or cut short.

    `before(method, url, kwargs)` runs before a request is sent; `lose(method, url, kwargs)`
    returning True sends the request and then raises ConnectionError, as when the answer is
    lost on the way back (the write happened, the caller cannot know).
    """

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.before: Callable[[str, str, dict[str, Any]], None] | None = None
        self.lose: Callable[[str, str, dict[str, Any]], bool] | None = None

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append((method, url, kwargs))
        if self.before is not None:
            self.before(method, url, kwargs)
        resp = super().request(method, url, *args, **kwargs)
        if self.lose is not None and self.lose(method, url, kwargs):
            self.lose = None
            raise requests.ConnectionError("connection reset after the request was sent")
        return resp


def v41_method(kwargs: dict[str, Any]) -> str:
    data = kwargs.get("data") or {}
    return str(data.get("method", "")) if isinstance(data, dict) else ""


@pytest.fixture
def suitecrm() -> Iterator[SuiteCrmEmulator]:
    """A SuiteCRM 7 offering both APIs, with Alice and an OAuth client for calsync."""
    with SuiteCrmEmulator(seed=7) as emu:
        emu.add_user(USER, PASSWORD, USER_EMAIL, first_name="Alice", last_name="Admin")
        emu.add_client(CLIENT_ID, CLIENT_SECRET)
        yield emu


def make_emulator(**kw: Any) -> SuiteCrmEmulator:
    emu = SuiteCrmEmulator(seed=7, **kw).start()
    emu.add_user(USER, PASSWORD, USER_EMAIL, first_name="Alice", last_name="Admin")
    emu.add_client(CLIENT_ID, CLIENT_SECRET)
    return emu


def connect_adapter(
    emu: SuiteCrmEmulator, api: str, session: requests.Session | None = None, **kw: Any
) -> SuiteCrmAdapter:
    client = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET} if api == API_V8 else {}
    conn = SuiteCrmAdapter.connect(emu.url, USER, PASSWORD, session=session, **client)
    assert conn.api == api
    return SuiteCrmAdapter(conn.credentials, session=session, **kw)


@dataclass
class CrmProvider:
    """One CRM under test, as the contract suite sees it."""

    name: str
    adapter: Any
    session: HookedSession
    # A CRM user's own actions, straight in the CRM (not through the adapter):
    user_create: Callable[[str, datetime], str]
    user_edit: Callable[[str, str], None]  # (id, new title)
    user_delete: Callable[[str], None]
    add_person: Callable[[str, str], str]  # (kind "contact"|"lead"|"user", email) -> id
    related_emails: Callable[[str], set[str]]  # what the CRM relates a meeting to
    # Makes the next listing see deletions when the CRM cannot list them (e.g. by letting
    # time pass until the adapter asks for a full listing).
    reveal_deletions: Callable[[], None]
    # Keeps the CRM's clock on one instant of its date_modified grain while active.
    same_instant: Callable[[], contextlib.AbstractContextManager[None]]
    # True for the request that writes a new meeting (to lose its answer).
    is_create_request: Callable[[str, str, dict[str, Any]], bool]
    extra: dict[str, Any] = field(default_factory=dict)


def _suitecrm_provider(api: str) -> Callable[[], Iterator[CrmProvider]]:
    def factory() -> Iterator[CrmProvider]:
        emu = make_emulator()
        session = HookedSession()
        adapter = connect_adapter(emu, api, session=session, page_size=50)
        user_id = adapter.credentials.get("user_id") or next(
            r["id"] for r in emu.records["Users"].values() if r["user_name"] == USER
        )

        def user_create(title: str, start: datetime) -> str:
            return emu.add_meeting(
                user_id,
                name=title,
                date_start=start.strftime("%Y-%m-%d %H:%M:%S"),
                date_end=(start + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"),
            )

        def add_person(kind: str, email: str) -> str:
            if kind == "contact":
                return emu.add_contact(email, "Carla", "Contact")
            if kind == "lead":
                return emu.add_lead(email, "Leo", "Lead")
            return emu.add_user(email.split("@")[0], "pw", email)

        def related_emails(meeting_id: str) -> set[str]:
            out = set()
            for rel in emu.related(meeting_id):
                out.add(emu.records[rel["module"]][rel["bean_id"]]["email1"].lower())
            return out

        def reveal_deletions() -> None:
            if not adapter.lists_deletions:
                emu.advance_clock(adapter.full_listing_every.total_seconds() + 60)

        @contextlib.contextmanager
        def same_instant() -> Iterator[None]:
            # Pinned to the start of a minute, which is one instant for both grains.
            now = emu.now()
            emu.freeze_clock(now - now % 60 + 60)
            try:
                yield
            finally:
                emu.unfreeze_clock()

        def is_create_request(method: str, url: str, kwargs: dict[str, Any]) -> bool:
            if api == API_V8:
                return method == "POST" and url.endswith("/Api/V8/module")
            data = kwargs.get("data") or {}
            return v41_method(kwargs) == "set_entry" and '"id"' not in data.get("rest_data", "")

        try:
            yield CrmProvider(
                name=f"suitecrm-{api}",
                adapter=adapter,
                session=session,
                user_create=user_create,
                user_edit=lambda item_id, title: emu.edit_meeting(item_id, name=title),
                user_delete=emu.delete_meeting,
                add_person=add_person,
                related_emails=related_emails,
                reveal_deletions=reveal_deletions,
                same_instant=same_instant,
                is_create_request=is_create_request,
                extra={"emulator": emu},
            )
        finally:
            emu.stop()

    return factory


# -- Dynamics 365 ---------------------------------------------------------------------------

MS_CLIENT_ID = "calsync-test-app"
MS_CLIENT_SECRET = "calsync-test-secret"
MS_REDIRECT = "http://localhost:3000/api/connect/dynamics/callback"


def dynamics_session(emu: DynamicsEmulator) -> HookedSession:
    session = HookedSession()
    session.verify = emu.ca_file  # the emulator's throwaway certificate (msal needs https)
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    return session


def dynamics_blob(
    emu: DynamicsEmulator, session: requests.Session, email: str = USER_EMAIL
) -> dict[str, Any]:
    """The Microsoft sign-in as the API layer runs it: start, browser redirect, finish."""
    oauth = DynamicsOAuth(
        MS_CLIENT_ID,
        MS_CLIENT_SECRET,
        emu.url,
        authority_host=emu.url,
        session=session,
        allow_local=True,
    )
    url, flow = oauth.start_auth(MS_REDIRECT, "state-123", login_hint=email)
    redirect = session.get(url, allow_redirects=False, timeout=10)
    location = urllib.parse.urlparse(redirect.headers["Location"])
    blob, signed_in = oauth.finish_auth(flow, dict(urllib.parse.parse_qsl(location.query)))
    assert signed_in == email
    return blob


def dynamics_adapter(
    emu: DynamicsEmulator,
    session: requests.Session,
    email: str = USER_EMAIL,
    **kw: Any,
) -> DynamicsAdapter:
    conn = DynamicsAdapter.connect(
        dynamics_blob(emu, session, email),
        client_id=MS_CLIENT_ID,
        client_secret=MS_CLIENT_SECRET,
        authority_host=emu.url,
        session=session,
        allow_local=True,
    )
    return DynamicsAdapter(
        conn.credentials,
        client_id=MS_CLIENT_ID,
        client_secret=MS_CLIENT_SECRET,
        authority_host=emu.url,
        session=session,
        allow_local=True,
        sleep=lambda _s: None,
        **kw,
    )


def make_dynamics(change_tracking: bool = True) -> DynamicsEmulator:
    emu = DynamicsEmulator(seed=7, change_tracking=change_tracking).start()
    emu.add_user(USER_EMAIL, "Alice Admin")
    return emu


def _dynamics_provider(change_tracking: bool) -> Callable[[], Iterator[CrmProvider]]:
    def factory() -> Iterator[CrmProvider]:
        emu = make_dynamics(change_tracking)
        session = dynamics_session(emu)
        adapter = dynamics_adapter(emu, session, page_size=50)
        user_id = adapter.user_id

        def user_create(title: str, start: datetime) -> str:
            return emu.add_appointment(user_id, title, start, start + timedelta(hours=1))

        def add_person(kind: str, email: str) -> str:
            if kind == "contact":
                return emu.add_contact(email, "Carla", "Contact")
            if kind == "lead":
                return emu.add_lead(email, "Leo", "Lead")
            return emu.add_user(email, email.split("@")[0].title())

        def related_emails(appointment_id: str) -> set[str]:
            # Attendees resolved to a contact, lead or user (unresolved addresses are not).
            return {
                str(p["addressused"]).lower()
                for p in emu.appointment_parties(appointment_id)
                if p["participationtypemask"] in (5, 6) and p["_partyid_value"]
            }

        def reveal_deletions() -> None:
            if not adapter.lists_deletions:
                emu.advance_clock(adapter.full_listing_every.total_seconds() + 60)

        @contextlib.contextmanager
        def same_instant() -> Iterator[None]:
            # modifiedon has one-second grain: pinned to the start of the next second.
            emu.freeze_clock(int(emu.now()) + 1)
            try:
                yield
            finally:
                emu.unfreeze_clock()

        def is_create_request(method: str, url: str, kwargs: dict[str, Any]) -> bool:
            return method == "POST" and url.endswith("/api/data/v9.2/appointments")

        try:
            yield CrmProvider(
                name="dynamics-" + ("tracking" if change_tracking else "modifiedon"),
                adapter=adapter,
                session=session,
                user_create=user_create,
                user_edit=lambda item_id, title: emu.edit_appointment(item_id, subject=title),
                user_delete=emu.delete_appointment,
                add_person=add_person,
                related_emails=related_emails,
                reveal_deletions=reveal_deletions,
                same_instant=same_instant,
                is_create_request=is_create_request,
                extra={"emulator": emu},
            )
        finally:
            session.close()
            emu.stop()

    return factory


PROVIDERS: dict[str, Callable[[], Iterator[CrmProvider]]] = {
    "suitecrm-v8": _suitecrm_provider(API_V8),
    "suitecrm-v4_1": _suitecrm_provider(API_V4_1),
    # Both ways Dynamics lists changes: change tracking on, and the modifiedon fallback.
    "dynamics-tracking": _dynamics_provider(change_tracking=True),
    "dynamics-modifiedon": _dynamics_provider(change_tracking=False),
}


@pytest.fixture(params=sorted(PROVIDERS))
def crm_provider(request: pytest.FixtureRequest) -> Iterator[CrmProvider]:
    yield from PROVIDERS[request.param]()
