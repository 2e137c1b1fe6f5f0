"""Bad data from a calendar never crashes a run: each event is synced as well as it can
be, or skipped with a recorded reason, and the good events around it still sync."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=4)


def _no_title(raw: dict[str, Any], kind: str) -> None:
    raw.pop("subject" if kind == "graph" else "summary", None)


def _no_end(raw: dict[str, Any], kind: str) -> None:
    raw.pop("end", None)


def _end_before_start(raw: dict[str, Any], kind: str) -> None:
    end = START - timedelta(hours=2)
    if kind == "graph":
        raw["end"] = {"dateTime": f"{end:%Y-%m-%dT%H:%M:%S.0000000}", "timeZone": "UTC"}
    else:
        raw["end"] = {"dateTime": f"{end:%Y-%m-%dT%H:%M:%SZ}"}


def _thousand_attendees(raw: dict[str, Any], kind: str) -> None:
    emails = [f"person{n}@crowd.test" for n in range(1000)]
    if kind == "graph":
        raw["attendees"] = [
            {
                "emailAddress": {"address": e, "name": e},
                "type": "required",
                "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
            }
            for e in emails
        ]
    else:
        raw["attendees"] = [{"email": e, "responseStatus": "needsAction"} for e in emails]


def _megabyte_description(raw: dict[str, Any], kind: str) -> None:
    text = "Agenda. " * (1024 * 1024 // 8)
    if kind == "graph":
        raw["body"] = {"contentType": "text", "content": text}
    else:
        raw["description"] = text


def _unknown_time_zone(raw: dict[str, Any], kind: str) -> None:
    # Graph names Windows zones; a custom or unknown one is what Exchange sends for
    # zones it made up ("Customized Time Zone").
    for key in ("start", "end"):
        raw[key] = {**raw[key], "timeZone": "Customized Time Zone"}
    if kind == "graph":
        raw["originalStartTimeZone"] = "Customized Time Zone"


def _windows_time_zone(raw: dict[str, Any], kind: str) -> None:
    if kind != "graph":
        pytest.skip("Windows zone names come from Graph only")
    for key in ("start", "end"):
        raw[key] = {**raw[key], "timeZone": "W. Europe Standard Time"}


def _unexpandable_rrule(raw: dict[str, Any], kind: str) -> None:
    if kind == "graph":
        # Graph validates patterns on write and expands series itself: an unexpandable
        # one cannot reach a listing (the emulator answers 400, as Graph would on write).
        pytest.skip("Graph expands series server side")
    # A rule Google stored (imported) but cannot expand: its instances answer 400.
    raw["recurrence"] = ["RRULE:FREQ=SOMETIMES;BYWHATEVER=99"]


BAD: dict[str, Callable[[dict[str, Any], str], None]] = {
    "no_title": _no_title,
    "no_end": _no_end,
    "end_before_start": _end_before_start,
    "1000_attendees": _thousand_attendees,
    "1MB_description": _megabyte_description,
    "unknown_time_zone": _unknown_time_zone,
    "windows_time_zone": _windows_time_zone,
    "unexpandable_rrule": _unexpandable_rrule,
}


@pytest.mark.parametrize("damage", list(BAD), ids=list(BAD))
def test_a_bad_calendar_event_is_synced_or_skipped_with_a_reason_and_the_run_completes(
    pair, damage: str
) -> None:  # type: ignore[no-untyped-def]
    pair.calendar.create("Good before", START - timedelta(days=1), 30, "g@c.test")
    bad_id = pair.calendar.create("Bad one", START, 60, "g@c.test")
    pair.calendar.create("Good after", START + timedelta(days=1), 30, "g@c.test")
    emu = pair.calendar.emu
    with emu._lock:
        BAD[damage](pair.raw_calendar_event(bad_id), pair.calendar.kind)

    result = pair.sync()

    titles = sorted(title for title, _ in pair.crm.contents())
    assert "Good before" in titles and "Good after" in titles, result.to_dict()
    copied = len(titles) == 3
    skipped = sum(result.skipped.values()) + len(result.errors)
    assert copied or skipped, f"the bad event vanished without a reason: {result.to_dict()}"
    if not copied:
        reasons = list(result.skipped) + [e.get("message", "") for e in result.errors]
        assert all(reason.strip() for reason in reasons)
