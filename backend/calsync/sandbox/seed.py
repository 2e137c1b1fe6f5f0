"""Seeding helpers: put N realistic events into an emulated mailbox, fast.

Benchmarks need 10,000-event mailboxes; going over HTTP would take minutes, so these
helpers write straight into the emulators' in-memory stores, through the same validation
the HTTP endpoints use (so seeded data is data the real service could hold). Seeding sends
no invitations: it models mail sent long ago.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .google import GoogleEmulator
    from .graph import GraphEmulator

__all__ = ["seed_google_calendar", "seed_graph_mailbox", "seed_mailbox"]

_TOPICS = [
    "Quarterly review",
    "Pipeline sync",
    "Demo",
    "Contract negotiation",
    "Onboarding",
    "Renewal call",
    "Kick-off",
    "Pricing discussion",
    "Support escalation",
    "Lunch",
    "Roadmap walkthrough",
    "Security questionnaire",
    "1:1",
    "Workshop",
    "Site visit",
]
_COMPANIES = [
    "Contoso",
    "Fabrikam",
    "Northwind",
    "Tailspin",
    "Litware",
    "Adatum",
    "Proseware",
    "Wingtip",
    "Woodgrove",
    "Alpine Ski House",
]
_FIRST = [
    "Anna",
    "Ben",
    "Chloé",
    "Dmitri",
    "Eva",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kai",
    "Lena",
    "Mateo",
    "Nora",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Zoë",
]
_LAST = [
    "Müller",
    "Smith",
    "García",
    "Nakamura",
    "Okafor",
    "Rossi",
    "Novak",
    "Larsen",
    "Dubois",
    "Kowalski",
    "Silva",
    "O'Brien",
]
_ZONES = ["Europe/Berlin", "America/New_York", "Europe/London", "Asia/Tokyo", "UTC"]
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday"]


def _people(rng: random.Random, count: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(count):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        company = rng.choice(_COMPANIES)
        domain = company.lower().replace(" ", "") + ".example"
        local = f"{first}.{last}".lower().replace("'", "").replace("é", "e").replace("ë", "e")
        local = local.replace("ü", "ue")
        out.append((f"{first} {last}", f"{local}@{domain}"))
    return out


def _plan(
    n: int,
    seed: int,
    start: dt.date,
    days: int,
    series_ratio: float,
    all_day_ratio: float,
    max_attendees: int,
) -> list[dict[str, Any]]:
    """Vendor-neutral event plans, reproducible from ``seed``."""
    rng = random.Random(seed)
    plans = []
    for i in range(n):
        day = start + dt.timedelta(days=rng.randrange(days))
        kind = rng.random()
        tz = rng.choice(_ZONES)
        plan: dict[str, Any] = {
            "n": i,
            "tz": tz,
            "subject": f"{rng.choice(_TOPICS)} \u2013 {rng.choice(_COMPANIES)}",
            "attendees": _people(rng, rng.randint(0, max_attendees)),
            "location": rng.choice(["", "Room 4.01", "Teams", "Client office", "Café"]),
            "description": f"Agenda item {i}: <b>status</b> & next steps.",
            "categories": rng.sample(
                ["CRM", "Customer", "Internal", "Follow-up"], k=rng.randint(0, 2)
            ),
        }
        if kind < all_day_ratio:
            plan.update(all_day=True, start=day, end=day + dt.timedelta(days=rng.choice([1, 1, 2])))
        else:
            hour = rng.randrange(7, 18)
            begin = dt.datetime.combine(day, dt.time(hour, rng.choice([0, 15, 30, 45])))
            plan.update(
                all_day=False,
                start=begin,
                end=begin + dt.timedelta(minutes=rng.choice([15, 30, 45, 60, 90])),
            )
            if kind < all_day_ratio + series_ratio:
                plan["series"] = {
                    "days": sorted(rng.sample(range(5), k=rng.randint(1, 2))),
                    "count": rng.randint(4, 20),
                }
                # A weekly series starts on one of its own weekdays.
                first_wd = plan["series"]["days"][0]
                shift = (first_wd - begin.weekday()) % 7
                plan["start"] += dt.timedelta(days=shift)
                plan["end"] += dt.timedelta(days=shift)
        plans.append(plan)
    return plans


def seed_graph_mailbox(emulator: GraphEmulator, address: str, n: int, **kwargs: Any) -> list[str]:
    """Seed ``n`` Graph events (singles, all-day, weekly series) for ``address``."""
    plans = _plan(n, **_defaults(kwargs))
    events = []
    for p in plans:
        fmt = "%Y-%m-%dT%H:%M:%S"
        start = dt.datetime.combine(p["start"], dt.time()) if p["all_day"] else p["start"]
        end = dt.datetime.combine(p["end"], dt.time()) if p["all_day"] else p["end"]
        ev: dict[str, Any] = {
            "subject": p["subject"],
            "body": {"contentType": "html", "content": p["description"]},
            "start": {"dateTime": start.strftime(fmt), "timeZone": p["tz"]},
            "end": {"dateTime": end.strftime(fmt), "timeZone": p["tz"]},
            "isAllDay": p["all_day"],
            "location": {"displayName": p["location"]},
            "categories": p["categories"],
            "attendees": [
                {"emailAddress": {"address": a, "name": name}, "type": "required"}
                for name, a in p["attendees"]
            ],
        }
        if "series" in p:
            ev["recurrence"] = {
                "pattern": {
                    "type": "weekly",
                    "interval": 1,
                    "firstDayOfWeek": "sunday",
                    "daysOfWeek": [_WEEKDAYS[d] for d in p["series"]["days"]],
                },
                "range": {
                    "type": "numbered",
                    "startDate": p["start"].date().isoformat(),
                    "numberOfOccurrences": p["series"]["count"],
                },
            }
        events.append(ev)
    return emulator.bulk_insert(address, events)


def seed_google_calendar(
    emulator: GoogleEmulator, address: str, n: int, **kwargs: Any
) -> list[str]:
    """Seed ``n`` Google events (singles, all-day, weekly series) into ``address``'s
    primary calendar."""
    plans = _plan(n, **_defaults(kwargs))
    rr_days = ["MO", "TU", "WE", "TH", "FR"]
    events = []
    for p in plans:
        if p["all_day"]:
            start = {"date": p["start"].isoformat()}
            end = {"date": p["end"].isoformat()}
        else:
            start = {"dateTime": p["start"].isoformat(), "timeZone": p["tz"]}
            end = {"dateTime": p["end"].isoformat(), "timeZone": p["tz"]}
        ev: dict[str, Any] = {
            "summary": p["subject"],
            "description": p["description"],
            "start": start,
            "end": end,
            "location": p["location"] or None,
            "attendees": [{"email": a, "displayName": name} for name, a in p["attendees"]],
        }
        if ev["location"] is None:
            del ev["location"]
        if "series" in p:
            days = ",".join(rr_days[d] for d in p["series"]["days"])
            ev["recurrence"] = [f"RRULE:FREQ=WEEKLY;BYDAY={days};COUNT={p['series']['count']}"]
        events.append(ev)
    return emulator.bulk_insert(address, events)


def seed_mailbox(
    emulator: GraphEmulator | GoogleEmulator, address: str, n: int, **kwargs: Any
) -> list[str]:
    """Seed either emulator. Keyword args: ``seed`` (0), ``start`` (today - 30 days),
    ``days`` (spread, 180), ``series_ratio`` (0.05), ``all_day_ratio`` (0.08),
    ``max_attendees`` (5). Returns the ids created."""
    from .graph import GraphEmulator

    if isinstance(emulator, GraphEmulator):
        return seed_graph_mailbox(emulator, address, n, **kwargs)
    return seed_google_calendar(emulator, address, n, **kwargs)


def _defaults(kwargs: dict[str, Any]) -> dict[str, Any]:
    allowed = {"seed", "start", "days", "series_ratio", "all_day_ratio", "max_attendees"}
    unknown = set(kwargs) - allowed
    if unknown:
        raise TypeError(f"unknown seeding options {sorted(unknown)}")
    return {
        "seed": kwargs.get("seed", 0),
        "start": kwargs.get("start") or (dt.date.today() - dt.timedelta(days=30)),
        "days": kwargs.get("days", 180),
        "series_ratio": kwargs.get("series_ratio", 0.05),
        "all_day_ratio": kwargs.get("all_day_ratio", 0.08),
        "max_attendees": kwargs.get("max_attendees", 5),
    }
