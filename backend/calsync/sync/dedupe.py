"""Recognising the same meeting on both sides, or twice on one side."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from calsync.sync.model import (
    SIDES,
    Event,
    Invitee,
    Side,
    When,
    occurrence_key,
    other_side,
    to_utc_instant,
)
from calsync.sync.state import Link


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
    """Pairs (calendar item, CRM item) that are the same meeting; each item used once.

    Matched in passes, strongest first over *all* items: our link id, then the iCalUID,
    then title/start/end. Strength is global, not per item: otherwise an item that merely
    shares a title and time could take the twin whose link id names another item, and
    that other item would be copied again (after a reset, say).
    """
    cal = sorted(calendar, key=lambda e: e.calendar_id or "")
    rec = sorted(crm, key=lambda e: e.crm_id or "")
    used_cal: set[int] = set()
    used_crm: set[int] = set()
    pairs: list[tuple[int, Event, Event]] = []
    for kind in ("link", "uid"):
        index: dict[str, list[int]] = defaultdict(list)
        for n, ev in enumerate(rec):
            value = _strong_value(ev, kind)
            if value:
                index[value].append(n)
        for m, ev in enumerate(cal):
            value = _strong_value(ev, kind)
            if m in used_cal or not value:
                continue
            twin = next((n for n in index.get(value, ()) if n not in used_crm), None)
            if twin is not None:
                used_cal.add(m)
                used_crm.add(twin)
                pairs.append((m, ev, rec[twin]))
    by_content: dict[tuple[str, datetime, datetime], list[int]] = defaultdict(list)
    for n, ev in enumerate(rec):
        if n not in used_crm and ev.start is not None and ev.end is not None:
            by_content[content_key(ev)].append(n)
    for m, ev in enumerate(cal):
        if m in used_cal or ev.start is None or ev.end is None:
            continue
        candidates = [n for n in by_content.get(content_key(ev), ()) if n not in used_crm]
        twin = _content_twin(ev, candidates, rec)
        if twin is not None:
            used_cal.add(m)
            used_crm.add(twin)
            pairs.append((m, ev, rec[twin]))
    return [(c, r) for _, c, r in sorted(pairs, key=lambda p: p[0])]


def _content_twin(event: Event, candidates: Iterable[int], items: Sequence[Event]) -> int | None:
    """Of the `items` numbered `candidates` (same `content_key` as `event`), the twin."""
    same = [n for n in candidates if _same_shape(event, items[n])]
    # An organizer known on both sides must agree; unknown on one side is no objection.
    exact = [n for n in same if _norm(items[n].organizer) == _norm(event.organizer)]
    loose = [n for n in same if not items[n].organizer or not event.organizer]
    return next(iter(exact or loose), None)


class TwinPool:
    """Unlinked items of one side, each to be taken at most once as the twin of something
    the engine is about to write there (an occurrence of a series expanded onto a side
    without native series): the item carrying the given link id, else the one with the
    same title/start/end by `pair_twins`' rule (organizer included). Cancelled items and
    series are never twins of a single write."""

    def __init__(self, events: Iterable[Event], side: Side) -> None:
        self._side = side
        self._items = sorted(
            (
                e
                for e in events
                if e.start is not None and e.end is not None and e.status != "cancelled"
            ),
            key=lambda e: e.id_on(side) or "",
        )
        self._index = {e.id_on(side) or "": n for n, e in enumerate(self._items)}
        self._by_link: dict[str, list[int]] = defaultdict(list)
        self._by_content: dict[tuple[str, datetime, datetime], list[int]] = defaultdict(list)
        for n, ev in enumerate(self._items):
            if ev.link_id:
                self._by_link[ev.link_id].append(n)
            self._by_content[content_key(ev)].append(n)
        self._taken: set[int] = set()
        self._taken_ids: set[str] = set()

    def take(self, event: Event, link_id: str | None = None) -> Event | None:
        """The twin of `event` (to be written under `link_id`), now taken; or None."""
        twin = None
        if link_id:
            twin = next(
                (
                    n
                    for n in self._by_link.get(link_id, ())
                    if n not in self._taken and _same_shape(event, self._items[n])
                ),
                None,
            )
        if twin is None and event.start is not None and event.end is not None:
            candidates = self._by_content.get(content_key(event), ())
            twin = _content_twin(
                event, [n for n in candidates if n not in self._taken], self._items
            )
        if twin is None:
            return None
        self._taken.add(twin)
        found = self._items[twin]
        self._taken_ids.add(found.id_on(self._side) or "")
        return found

    def claim(self, event: Event) -> None:
        """`event` is spoken for otherwise (linked as a twin): never taken."""
        item_id = event.id_on(self._side) or ""
        self._taken_ids.add(item_id)
        if item_id in self._index:
            self._taken.add(self._index[item_id])

    def taken(self, event: Event) -> bool:
        return (event.id_on(self._side) or "") in self._taken_ids


def _strong_value(event: Event, kind: str) -> str | None:
    return event.link_id if kind == "link" else event.ical_uid


def _same_shape(a: Event, b: Event) -> bool:
    # A series and a single event are never twins, even when the series' first
    # occurrence looks like it: pairing them would leave the other occurrences unmatched.
    return (a.recurrence is None) == (b.recurrence is None)


def _instant_key(value: When) -> str:
    # An all-day date and the UTC midnight a side without all-day events stores for it
    # are the same time.
    return to_utc_instant(value).isoformat()


def _instant(value: When) -> datetime:
    # Aware datetimes hash and compare by instant, whatever their zone: no conversion
    # needed (this runs for every item of a 100,000-item scan). A date is its UTC midnight.
    if isinstance(value, datetime):
        return value
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def content_key(event: Event) -> tuple[str, datetime, datetime]:
    """Normalized title, start and end: the weakest sign of the same meeting.

    The organizer is left out on purpose: it is compared only where both items know it.
    """
    assert event.start is not None and event.end is not None
    return (_norm(event.title), _instant(event.start), _instant(event.end))


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


# -- duplicate cleanup: finding groups and deciding what is safe to remove ------------------

Action = Literal["keep", "remove", "similar", "protected"]

KEEP_LINKED = "kept: linked to its twin on the other side"
KEEP_ORGANIZER = "kept: the organizer's copy"
KEEP_ORIGINAL = "kept: the original (the oldest copy)"
KEEP_ONLY = "kept: the only copy on this side"
PROTECT_ATTENDEE = (
    "you are an attendee of someone else's meeting; removing it would decline the meeting"
)
PROTECT_NOT_YOURS = "its owner in the CRM is not you (or is unknown), so it is not yours to remove"
PROTECT_WINDOW = "outside the sync window"
PROTECT_LINKED = "linked to a copy on the other side that stays"
PROTECT_EMAILS = "removing it would email a cancellation to its attendees"
SIMILAR = "similar, not the same: differs from the kept copy in {fields}"
_MATCH_SENTENCE = {
    "link": "same link id",
    "uid": "same iCalUID",
    "content": "same title, start and end",
}


@dataclass(frozen=True)
class ScanItem:
    """One item's verdict in a duplicate group."""

    side: Side
    item_id: str
    event: Event
    action: Action
    reason: str
    link_id: str | None = None  # the stored link holding this item, if any
    merge_invitees: tuple[Invitee, ...] = ()  # what removed copies add to a kept one


@dataclass(frozen=True)
class DuplicateGroup:
    """Items of both sides that are one meeting, with at least two copies on a side."""

    items: tuple[ScanItem, ...]

    def of(self, action: Action) -> list[ScanItem]:
        return [i for i in self.items if i.action == action]


@dataclass(frozen=True)
class ScanOptions:
    window_start: datetime
    window_end: datetime
    user_email: str | None = None
    # The calendar emails attendees on a delete or an attendee change and cannot be told
    # not to: removing or editing a copy with attendees is then not silent.
    calendar_emails_attendees: bool = False


class _Union:
    """Union-find over item numbers: grouping by shared keys stays O(n)."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def find_duplicates(
    calendar: Iterable[Event],
    crm: Iterable[Event],
    links: Iterable[Link],
    options: ScanOptions,
) -> list[DuplicateGroup]:
    """Duplicate groups within each side and across the sides, with a verdict per item.

    Items are grouped by hashing (O(n), no pairwise comparison): our link id, the iCalUID,
    the stored links, and normalized title/start/end (with the organizer where both know
    it). Per side, one copy is kept (the linked one, else the organizer's, else the
    oldest); another copy is removed only when it is safe: see `_verdict`.
    """
    items: list[tuple[Side, str, Event]] = []
    for side, events in (("calendar", calendar), ("crm", crm)):
        for ev in events:
            item_id = ev.id_on(side)  # type: ignore[arg-type]
            if item_id and ev.start is not None and ev.end is not None:
                items.append((side, item_id, ev))  # type: ignore[arg-type]
    position = {(side, item_id): n for n, (side, item_id, _) in enumerate(items)}
    stored: dict[tuple[Side, str], Link] = {}
    union = _Union(len(items))
    for link in links:
        ends = []
        for side in SIDES:
            item_id = link.id_on(side)
            if item_id:
                stored[(side, item_id)] = link
                if (side, item_id) in position:
                    ends.append(position[(side, item_id)])
        if len(ends) == 2:
            union.union(ends[0], ends[1])
    # One dict per kind of key, first item seen under each value: a plain loop, no
    # per-item tuples beyond the content key (this is the hot loop of a large scan).
    by_link: dict[str, int] = {}
    by_uid: dict[str, int] = {}
    buckets: dict[tuple[str, datetime, datetime], list[int]] = defaultdict(list)
    for n, (_, _, ev) in enumerate(items):
        if ev.link_id:
            seen = by_link.setdefault(ev.link_id, n)
            if seen != n:
                union.union(seen, n)
        if ev.ical_uid:
            seen = by_uid.setdefault(ev.ical_uid, n)
            if seen != n:
                union.union(seen, n)
        buckets[content_key(ev)].append(n)
    me = _norm(options.user_email)
    for members in buckets.values():
        if len(members) < 2:
            continue
        by_organizer: dict[str, list[int]] = defaultdict(list)
        for n in members:
            by_organizer[_norm(items[n][2].organizer)].append(n)
        known = [o for o in by_organizer if o]
        for organizer, same in by_organizer.items():
            for n in same[1:]:
                union.union(same[0], n)
            # An item without an organizer joins the one known organizer, or the user.
            if not organizer and same and (len(known) == 1 or me in known):
                target = known[0] if len(known) == 1 else me
                union.union(by_organizer[target][0], same[0])

    components: dict[int, list[int]] = defaultdict(list)
    for n in range(len(items)):
        components[union.find(n)].append(n)
    groups: list[DuplicateGroup] = []
    for members in components.values():
        if len(members) < 2:
            continue
        per_side: dict[Side, list[tuple[str, Event]]] = {"calendar": [], "crm": []}
        for n in members:
            side, item_id, ev = items[n]
            per_side[side].append((item_id, ev))
        if all(len(v) < 2 for v in per_side.values()):
            continue  # one copy on each side: twins, which the sync links
        groups.append(_decide(per_side, stored, options))
    groups.sort(key=lambda g: (_sort_start(g.items[0].event), g.items[0].item_id))
    return groups


def _sort_start(event: Event) -> str:
    return _instant_key(event.start) if event.start is not None else ""


def _decide(
    per_side: dict[Side, list[tuple[str, Event]]],
    stored: dict[tuple[Side, str], Link],
    options: ScanOptions,
) -> DuplicateGroup:
    in_group = {(side, item_id) for side in SIDES for item_id, _ in per_side[side]}
    verdicts: dict[tuple[Side, str], ScanItem] = {}
    partner: str | None = None  # the kept calendar copy's linked twin
    for side in SIDES:
        copies = per_side[side]
        if not copies:
            continue
        ranked = sorted(
            copies,
            key=lambda c: (
                c[0] != partner,
                _rank(side, c[0], c[1], stored, in_group, options),
            ),
        )
        kept_id, kept = ranked[0]
        if side == "calendar" and (side, kept_id) in stored:
            partner = stored[(side, kept_id)].id_on("crm")
        link = stored.get((side, kept_id))
        if len(copies) == 1:
            reason = KEEP_ONLY
        elif link is not None:
            reason = KEEP_LINKED
        elif side == "calendar" and _is_organizer(kept, options):
            reason = KEEP_ORGANIZER
        else:
            reason = KEEP_ORIGINAL
        verdicts[(side, kept_id)] = ScanItem(
            side, kept_id, kept, "keep", reason, link.link_id if link else None
        )
        for item_id, ev in ranked[1:]:
            action, why = _verdict(side, ev, kept, options)
            lk = stored.get((side, item_id))
            verdicts[(side, item_id)] = ScanItem(
                side, item_id, ev, action, why, lk.link_id if lk else None
            )
    # A removed linked copy takes its link with it; if its twin stays, that twin would be
    # left unlinked and copied again. Such copies stay (repeated: a demotion can cascade).
    changed = True
    while changed:
        changed = False
        for key, item in list(verdicts.items()):
            if item.action != "remove" or item.link_id is None:
                continue
            link = stored[key]
            other = other_side(item.side)
            twin_id = link.id_on(other)
            twin = verdicts.get((other, twin_id or ""))
            twin_stays = twin_id is not None and (twin is None or twin.action != "remove")
            if twin_stays:
                verdicts[key] = replace(item, action="protected", reason=PROTECT_LINKED)
                changed = True
    # What the removed copies add (invitees, hence CRM relations) goes into the kept one.
    final: list[ScanItem] = []
    for side in SIDES:
        side_items = [v for k, v in verdicts.items() if k[0] == side]
        kept_item = next((v for v in side_items if v.action == "keep"), None)
        if kept_item is not None:
            extra = merge_invitees(
                kept_item.event, [v.event for v in side_items if v.action == "remove"]
            )
            if extra and _can_edit_silently(side, kept_item.event, options):
                kept_item = replace(kept_item, merge_invitees=extra)
            final.append(kept_item)
        final.extend(v for v in side_items if v.action != "keep")
    return DuplicateGroup(tuple(final))


def _rank(
    side: Side,
    item_id: str,
    ev: Event,
    stored: dict[tuple[Side, str], Link],
    in_group: set[tuple[Side, str]],
    options: ScanOptions,
) -> tuple[int, int, int, str, str]:
    link = stored.get((side, item_id))
    if link is None:
        linked = 2
    else:
        twin = link.id_on(other_side(side))
        linked = 0 if twin and (other_side(side), twin) in in_group else 1
    organizer = 0 if side == "calendar" and _is_organizer(ev, options) else 1
    # An item that may not be removed anyway is the natural one to keep.
    protected = 0 if _protection(side, ev, options) else 1
    created = ev.extra.get("created") or ev.last_modified
    created_key = created.isoformat() if isinstance(created, datetime) else str(created or "~")
    return (linked, organizer, protected, created_key, item_id)


def _is_organizer(ev: Event, options: ScanOptions) -> bool:
    if ev.extra.get("is_organizer") is True:
        return True
    return bool(ev.organizer) and _norm(ev.organizer) == _norm(options.user_email)


def _protection(side: Side, ev: Event, options: ScanOptions) -> str | None:
    why = _not_yours(side, ev, options)
    if why:
        return why
    if not _inside_window(ev, options):
        return PROTECT_WINDOW
    if side == "calendar" and options.calendar_emails_attendees and ev.invitees:
        return PROTECT_EMAILS
    return None


def _not_yours(side: Side, ev: Event, options: ScanOptions) -> str | None:
    if side == "crm":
        # A CRM meeting names its owner as organizer (CRM connectors leave it unknown
        # when someone else owns it): deleting another user's record is never a cleanup.
        return None if _is_organizer(ev, options) else PROTECT_NOT_YOURS
    if (ev.organizer and not _is_organizer(ev, options)) or ev.extra.get("is_organizer") is False:
        return PROTECT_ATTENDEE
    return None


def _inside_window(ev: Event, options: ScanOptions) -> bool:
    assert ev.start is not None and ev.end is not None
    start, end = to_utc_instant(ev.start), to_utc_instant(ev.end)
    if start < options.window_start or start > options.window_end:
        return False
    # A series runs on past any window; its first occurrence inside is what counts.
    return ev.recurrence is not None or end <= options.window_end


def _verdict(side: Side, ev: Event, kept: Event, options: ScanOptions) -> tuple[Action, str]:
    why = _protection(side, ev, options)
    if why:
        return "protected", why
    differs = _differences(ev, kept)
    if differs:
        return "similar", SIMILAR.format(fields=", ".join(differs))
    return "remove", f"duplicate of the kept copy ({_MATCH_SENTENCE[_match_kind(ev, kept)]})"


def _match_kind(a: Event, b: Event) -> str:
    if a.link_id and a.link_id == b.link_id:
        return "link"
    if a.ical_uid and a.ical_uid == b.ical_uid:
        return "uid"
    return "content"


def _differences(a: Event, b: Event) -> list[str]:
    """What, beyond invitees (merged instead), keeps two copies from being the same."""
    out = []
    if _norm(a.title) != _norm(b.title):
        out.append("title")
    assert a.start is not None and a.end is not None and b.start is not None and b.end is not None
    if (_instant_key(a.start), _instant_key(a.end), a.all_day) != (
        _instant_key(b.start),
        _instant_key(b.end),
        b.all_day,
    ):
        out.append("time")
    if _norm(a.location) != _norm(b.location):
        out.append("location")
    if _norm(a.description) != _norm(b.description):
        out.append("description")
    if a.organizer and b.organizer and _norm(a.organizer) != _norm(b.organizer):
        out.append("organizer")
    if a.recurrence != b.recurrence:
        out.append("recurrence")
    if a.status != b.status:
        out.append("status")
    if a.private != b.private:
        out.append("privacy")
    return out


def merge_invitees(kept: Event, removed: Iterable[Event]) -> tuple[Invitee, ...]:
    have = {_norm(i.email) for i in kept.invitees} | {_norm(kept.organizer)}
    extra: list[Invitee] = []
    for ev in removed:
        for person in ev.invitees:
            email = _norm(person.email)
            if email and email not in have:
                have.add(email)
                # Added as not yet answered: their answer belonged to the other copy.
                extra.append(Invitee(person.email, person.name))
    return tuple(extra)


def _can_edit_silently(side: Side, kept: Event, options: ScanOptions) -> bool:
    if _not_yours(side, kept, options):
        return False  # someone else's meeting: not ours to change
    return not (side == "calendar" and options.calendar_emails_attendees)
