"""Recognising the same meeting on both sides, or twice on one side."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from calsync.sync.model import Event, Side, occurrence_key


def _norm(text: str | None) -> str:
    return " ".join((text or "").split()).casefold()


def match_keys(event: Event) -> list[tuple[str, ...]]:
    """Keys under which two items count as the same meeting, strongest first."""
    keys: list[tuple[str, ...]] = []
    if event.link_id:
        keys.append(("link", event.link_id))
    if event.ical_uid:
        keys.append(("uid", event.ical_uid))
    if event.start is not None and event.end is not None:
        keys.append(
            (
                "content",
                _norm(event.title),
                occurrence_key(event.start),
                occurrence_key(event.end),
                _norm(event.organizer),
            )
        )
    return keys


def pair_twins(calendar: Sequence[Event], crm: Sequence[Event]) -> list[tuple[Event, Event]]:
    """Pairs (calendar item, CRM item) that are the same meeting; each item used once."""
    index: dict[tuple[str, ...], list[Event]] = defaultdict(list)
    for ev in sorted(crm, key=lambda e: e.crm_id or ""):
        for key in match_keys(ev):
            index[key].append(ev)
    used: set[str] = set()
    pairs: list[tuple[Event, Event]] = []
    for ev in sorted(calendar, key=lambda e: e.calendar_id or ""):
        for key in match_keys(ev):
            twin = next((c for c in index.get(key, ()) if c.crm_id not in used), None)
            if twin is not None:
                used.add(twin.crm_id or "")
                pairs.append((ev, twin))
                break
    return pairs


def duplicate_groups(events: Iterable[Event], side: Side) -> list[list[Event]]:
    """Items of one side that are the same meeting more than once (for duplicate cleanup).

    Each group is ordered oldest id first; a cleanup keeps the first and removes the rest.
    """
    groups: dict[tuple[str, ...], list[Event]] = defaultdict(list)
    for ev in events:
        if ev.start is None or ev.end is None:
            continue
        key = match_keys(ev)[-1]
        groups[key].append(ev)
    return [sorted(g, key=lambda e: e.id_on(side) or "") for g in groups.values() if len(g) > 1]
