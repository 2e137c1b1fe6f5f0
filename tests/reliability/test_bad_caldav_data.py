"""Bad data from a CalDAV server (Radicale, written over raw HTTP or, where Radicale itself
refuses it, straight into its storage): custom VTIMEZONEs, invalid UTF-8, an RRULE the
library cannot expand. Each is synced as well as it can be or skipped with a reason; the
run completes and the good events around it sync."""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from calendars.conftest import RadicaleServer, new_calendar, radicale  # noqa: F401 - fixture
from calsync.calendars.caldav import CaldavCalendar
from calsync.store import SqlSyncStore
from calsync.sync import SyncSettings, run_sync

from .scenario import crm_adapter, crm_credentials, new_crm

DAY = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=3)


def _stamp(when: datetime) -> str:
    return f"{when:%Y%m%dT%H%M%SZ}"


def _event(uid: str, summary: bytes, extra: bytes = b"", when: datetime = DAY) -> bytes:
    return b"\r\n".join(
        [
            b"BEGIN:VCALENDAR",
            b"VERSION:2.0",
            b"PRODID:-//reliability//EN",
            b"BEGIN:VEVENT",
            b"UID:" + uid.encode(),
            b"DTSTAMP:" + _stamp(datetime.now(UTC)).encode(),
            b"DTSTART:" + _stamp(when).encode(),
            b"DTEND:" + _stamp(when + timedelta(hours=1)).encode(),
            b"SUMMARY:" + summary,
            *([extra] if extra else []),
            b"END:VEVENT",
            b"END:VCALENDAR",
            b"",
        ]
    )


CUSTOM_TZ = b"\r\n".join(
    [
        b"BEGIN:VCALENDAR",
        b"VERSION:2.0",
        b"PRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN",
        b"BEGIN:VTIMEZONE",
        b"TZID:Customized Time Zone",
        b"BEGIN:STANDARD",
        b"DTSTART:16010101T030000",
        b"TZOFFSETFROM:+0200",
        b"TZOFFSETTO:+0100",
        b"RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10",
        b"END:STANDARD",
        b"BEGIN:DAYLIGHT",
        b"DTSTART:16010101T020000",
        b"TZOFFSETFROM:+0100",
        b"TZOFFSETTO:+0200",
        b"RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3",
        b"END:DAYLIGHT",
        b"END:VTIMEZONE",
        b"BEGIN:VEVENT",
        b"UID:custom-tz",
        b"DTSTAMP:20260101T000000Z",
        f"DTSTART;TZID=Customized Time Zone:{DAY:%Y%m%dT%H%M%S}".encode(),
        f"DTEND;TZID=Customized Time Zone:{DAY + timedelta(hours=1):%Y%m%dT%H%M%S}".encode(),
        b"SUMMARY:Bad one",
        b"END:VEVENT",
        b"END:VCALENDAR",
        b"",
    ]
)

BAD = {
    "custom_vtimezone": ("custom-tz", CUSTOM_TZ),
    "invalid_utf8": ("bad-utf8", _event("bad-utf8", b"Bad one \xff\xfe caf\xe9")),
    # Radicale stores these but cannot expand them (no February 30th; zero occurrences), so
    # it leaves them out of every time-range query. A rule it cannot even parse (RSCALE,
    # RFC 7529) it refuses with 400 and, written into its storage anyway, hides from every
    # answer, GET included: no client sees that one, so there is nothing to sync or report.
    "unexpandable_rrule": (
        "bad-rrule",
        _event("bad-rrule", b"Bad one", b"RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"),
    ),
    "rrule_without_occurrences": (
        "bad-count",
        _event("bad-count", b"Bad one", b"RRULE:FREQ=WEEKLY;COUNT=0"),
    ),
    "unknown_tzid_without_vtimezone": (
        "bad-tzid",
        _event("bad-tzid", b"Bad one").replace(
            b"DTSTART:" + _stamp(DAY).encode(),
            f"DTSTART;TZID=Mars/Olympus_Mons:{DAY:%Y%m%dT%H%M%S}".encode(),
        ),
    ),
}


def _put(server: RadicaleServer, calendar_url: str, uid: str, body: bytes) -> None:
    reply = requests.put(
        f"{calendar_url}{uid}.ics",
        data=body,
        headers={"Content-Type": "text/calendar"},
        auth=(server.username, server.password),
        timeout=10,
    )
    if reply.status_code in (201, 204):
        return
    # Radicale refused it; another server may not: write it where Radicale keeps items.
    path = urllib.parse.urlparse(calendar_url).path.strip("/")
    folder = server.log_path.parent / "storage" / "collection-root" / path
    assert folder.is_dir(), f"Radicale refused the item ({reply.status_code}) and {folder}"
    (folder / f"{uid}.ics").write_bytes(body)


@pytest.fixture
def caldav_world(world, radicale: RadicaleServer) -> Iterator[tuple]:  # noqa: F811
    calendar_url = new_calendar(radicale, f"Bad data {uuid.uuid4().hex[:6]}")
    crm_emu, _user = new_crm(3)
    user_id = world.new_user("alice@acme.test")
    yield calendar_url, crm_emu, SqlSyncStore(world.sessions, user_id)
    crm_emu.stop()


# Known product bugs: the test stays, expected to fail until the fix lands (strict, so
# the fix turns it into a failure that says "remove the mark").
KNOWN_BUGS: dict[str, str] = {}


def _case(name: str) -> object:
    if name in KNOWN_BUGS:
        return pytest.param(
            name, id=name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name])
        )
    return pytest.param(name, id=name)


@pytest.mark.parametrize("damage", [_case(name) for name in BAD])
def test_a_bad_caldav_event_is_synced_or_skipped_with_a_reason_and_the_run_completes(
    radicale: RadicaleServer,  # noqa: F811
    caldav_world: tuple,
    damage: str,
) -> None:
    calendar_url, crm_emu, store = caldav_world
    _put(
        radicale, calendar_url, "good-1", _event("good-1", b"Good before", when=DAY - timedelta(1))
    )
    uid, body = BAD[damage]
    _put(radicale, calendar_url, uid, body)
    _put(radicale, calendar_url, "good-2", _event("good-2", b"Good after", when=DAY + timedelta(1)))
    calendar = CaldavCalendar(
        radicale.url, radicale.username, radicale.password, calendar_url, timeout=10
    )
    settings = SyncSettings(direction="calendar_to_crm", record_option="all")

    result = run_sync(
        calendar,
        crm_adapter(crm_credentials(crm_emu)),
        store,
        settings,
        datetime.now(UTC),
        user_email="alice@acme.test",
    )

    titles = sorted(m["name"] for m in crm_emu.live_meetings())
    assert "Good before" in titles and "Good after" in titles, result.to_dict()
    copied = any(t.startswith("Bad one") for t in titles)
    reasons = list(result.skipped) + [e.get("message", "") for e in result.errors]
    assert copied or any(r.strip() for r in reasons), (
        f"the bad event vanished without a reason: {result.to_dict()}"
    )
