"""End-to-end fixtures: a real worker process syncing a real Radicale with the SuiteCRM emulator."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import select

from calendars.conftest import RadicaleServer, new_calendar, radicale  # noqa: F401 - fixture
from calsync.crm.suitecrm import SuiteCrmAdapter
from calsync.db import transaction
from calsync.models import Connection, Organization, SyncProfile, SyncRun, User
from calsync.sandbox.suitecrm import SuiteCrmEmulator

CRM_USER, CRM_PASSWORD, EMAIL = "alice", "correct horse battery", "alice@acme.test"


@pytest.fixture
def suitecrm() -> Iterator[SuiteCrmEmulator]:
    with SuiteCrmEmulator(seed=11) as emu:
        emu.add_user(CRM_USER, CRM_PASSWORD, EMAIL, first_name="Alice", last_name="Admin")
        yield emu


@pytest.fixture
def worker_env(env: dict[str, str]) -> dict[str, str]:
    # Radicale and the emulator listen on 127.0.0.1, which the SSRF guard refuses unless
    # the operator names it.
    return {**env, "CALSYNC_URL_ALLOWED_HOSTS": "127.0.0.1"}


@dataclass
class Account:
    user_id: int
    calendar_url: str
    radicale: RadicaleServer
    crm: SuiteCrmEmulator

    def put_event(self, uid: str, title: str, start: datetime, *, minutes: int = 60) -> None:
        """Create or change an event as the user's calendar app would."""
        end = start + timedelta(minutes=minutes)
        body = "\r\n".join(
            [
                "BEGIN:VCALENDAR",
                "VERSION:2.0",
                "PRODID:-//tests//EN",
                "BEGIN:VEVENT",
                f"UID:{uid}",
                f"DTSTAMP:{datetime.now(UTC):%Y%m%dT%H%M%SZ}",
                f"DTSTART:{start:%Y%m%dT%H%M%SZ}",
                f"DTEND:{end:%Y%m%dT%H%M%SZ}",
                f"SUMMARY:{title}",
                "END:VEVENT",
                "END:VCALENDAR",
                "",
            ]
        )
        reply = requests.put(
            f"{self.calendar_url}{uid}.ics",
            data=body.encode(),
            headers={"Content-Type": "text/calendar"},
            auth=(self.radicale.username, self.radicale.password),
            timeout=10,
        )
        assert reply.status_code in (201, 204), reply.text

    def meeting_titles(self) -> list[str]:
        return sorted(m["name"] for m in self.crm.live_meetings())

    def runs(self, rt) -> list[SyncRun]:  # type: ignore[no-untyped-def]
        with transaction(rt.sessions) as session:
            query = select(SyncRun).where(SyncRun.user_id == self.user_id).order_by(SyncRun.id)
            return list(session.scalars(query))

    def connection(self, rt, kind: str) -> Connection:  # type: ignore[no-untyped-def]
        with transaction(rt.sessions) as session:
            return session.scalars(
                select(Connection).where(
                    Connection.user_id == self.user_id, Connection.kind == kind
                )
            ).one()


@pytest.fixture
def account(rt, radicale: RadicaleServer, suitecrm: SuiteCrmEmulator) -> Account:  # noqa: F811
    """Alice: a CalDAV calendar and SuiteCRM (v4_1), syncing calendar to CRM, all events."""
    calendar_url = new_calendar(radicale)
    crm = SuiteCrmAdapter.connect(suitecrm.url, CRM_USER, CRM_PASSWORD)
    with transaction(rt.sessions) as session:
        org = Organization(tenant_id="tenant-e2e", crm_type="suitecrm", crm_base_url=suitecrm.url)
        org.profiles = [
            SyncProfile(
                name="Global",
                is_global=True,
                settings={"direction": "calendar_to_crm", "record_option": "all"},
            )
        ]
        user = User(organization=org, external_id="alice", email=EMAIL, is_admin=True)
        user.connections = [
            Connection(
                kind="calendar",
                provider="caldav",
                account=radicale.username,
                details={
                    "server_url": radicale.url,
                    "username": radicale.username,
                    "calendar_url": calendar_url,
                },
                secret={"password": radicale.password},
            ),
            Connection(kind="crm", provider="suitecrm", account=CRM_USER, secret=crm.credentials),
        ]
        session.add(org)
        session.flush()
        user_id = user.id
    return Account(user_id, calendar_url, radicale, suitecrm)


def soon(days: int = 1, hour: int = 9) -> datetime:
    base = datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return base + timedelta(days=days)
