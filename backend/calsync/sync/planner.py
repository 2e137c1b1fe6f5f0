"""The planner: stored links + each side's changes + settings -> a plan of actions.

Pure: no I/O, no clock, no randomness (new link ids come from `new_link_id`). Every
action carries a reason, so a run can explain itself.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from calsync.sync import policies as pol
from calsync.sync.adapters import BadItem
from calsync.sync.dedupe import TwinPool, pair_twins
from calsync.sync.errors import StorageEmpty
from calsync.sync.model import (
    SIDES,
    Capabilities,
    Event,
    Invitee,
    MovedOccurrence,
    Recurrence,
    Side,
    content_hash,
    other_side,
    problem,
    write_fingerprint,
)
from calsync.sync.recurrence import expand, original_occurrence, overlaps_window
from calsync.sync.settings import SyncSettings
from calsync.sync.state import Link


class _Deleted:
    def __repr__(self) -> str:
        return "DELETED"


DELETED = _Deleted()

# How long a create may still land after it was sent (a lost answer, or a request the
# adapter retried while the first attempt was still on its way): a dropped link whose
# create is this recent is watched that long (see `Link.abandoned_at`). Late writes land
# within minutes and syncs run every few; a day is generous.
LATE_WINDOW = timedelta(days=1)
Change = Event | _Deleted


@dataclass(frozen=True)
class SideChanges:
    """What one side reported. `context` holds unchanged items read for reference only."""

    events: Mapping[str, Event] = field(default_factory=dict)
    deleted: frozenset[str] = frozenset()
    bad: tuple[BadItem, ...] = ()
    full: bool = False
    context: Mapping[str, Event] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanContext:
    now: datetime
    calendar_caps: Capabilities = field(default_factory=Capabilities)
    crm_caps: Capabilities = field(default_factory=Capabilities)
    first_sync: bool = False
    user_email: str | None = None
    allow_empty: bool = False  # the user confirmed an emptied side really is empty

    def caps(self, side: Side) -> Capabilities:
        return self.calendar_caps if side == "calendar" else self.crm_caps


@dataclass(frozen=True)
class Conflict:
    link_id: str
    winner: Side
    loser: Side
    winner_event: Event | None  # None: the winner deleted it
    loser_event: Event | None  # what was overwritten; None: the loser had deleted it

    def to_dict(self) -> dict[str, Any]:
        return {
            "link_id": self.link_id,
            "winner": self.winner,
            "loser": self.loser,
            "winner_version": self.winner_event.to_dict() if self.winner_event else None,
            "loser_version": self.loser_event.to_dict() if self.loser_event else None,
        }


ActionKind = Literal["create", "update", "delete", "link", "refresh", "unlink", "skip"]


@dataclass(frozen=True)
class Action:
    """One step of a plan.

    create/update/delete write `event` on `side` (item `target_id`); after success the
    executor saves `link` (with `side`'s id and version taken from the write) and
    `also_save`, and deletes `drop_link_ids`. link/refresh only save links; unlink only
    drops; skip only records `reason`.
    """

    kind: ActionKind
    reason: str
    side: Side | None = None
    target_id: str | None = None
    event: Event | None = None
    link: Link | None = None
    also_save: tuple[Link, ...] = ()
    drop_link_ids: tuple[str, ...] = ()
    notify: bool = False
    caused_by: frozenset[Side] = frozenset()
    conflict: Conflict | None = None
    notes: tuple[str, ...] = ()
    item: str | None = None  # "side:id" of the item this concerns, for the run's report


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()

    @property
    def writes(self) -> list[Action]:
        return [a for a in self.actions if a.kind in ("create", "update", "delete")]

    def of_kind(self, kind: ActionKind) -> list[Action]:
        return [a for a in self.actions if a.kind == kind]


def _new_id() -> str:
    return uuid.uuid4().hex


def _item(side: Side, item_id: str | None) -> str:
    return f"{side}:{item_id}"


def plan_sync(
    links: Iterable[Link],
    calendar: SideChanges,
    crm: SideChanges,
    settings: SyncSettings,
    context: PlanContext,
    new_link_id: Callable[[], str] = _new_id,
) -> Plan:
    return _Planner(list(links), calendar, crm, settings, context, new_link_id).run()


def reads_needed(
    links: Iterable[Link], calendar: SideChanges, crm: SideChanges, settings: SyncSettings
) -> set[tuple[Side, str]]:
    """Unchanged items the planner will want to look at; the executor reads them first.

    Generous on purpose: a read too many costs a request, a read too few costs a skip.
    """
    changes = {"calendar": calendar, "crm": crm}
    all_links = list(links)
    by_id = {lk.link_id: lk for lk in all_links}
    touched: dict[str, set[Side]] = defaultdict(set)
    for side in SIDES:
        index = {lk.id_on(side): lk for lk in all_links if lk.id_on(side)}
        for item_id in list(changes[side].events) + list(changes[side].deleted):
            lk = index.get(item_id)
            if lk is not None:
                touched[lk.link_id].add(side)
    wanted: set[tuple[Side, str]] = set()

    def want(side: Side, item_id: str | None) -> None:
        if item_id and item_id not in changes[side].events:
            wanted.add((side, item_id))

    for side in SIDES:
        for item_id, ev in changes[side].events.items():
            # A stray copy is removed only once its link's item is known to exist.
            lk = by_id.get(ev.link_id or "")
            real = lk.id_on(side) if lk is not None else None
            if real not in (None, item_id) and real not in changes[side].deleted:
                want(side, real)
    for lk in all_links:
        if lk.pending and lk.id_on(lk.pending) is None:
            source = by_id.get(lk.series_link_id or "") or lk  # an occurrence: its series
            want(other_side(lk.pending), source.id_on(other_side(lk.pending)))
    for link_id, sides in touched.items():
        lk = by_id[link_id]
        if lk.series_link_id:
            master = by_id.get(lk.series_link_id)
            if master is not None:
                want(master.origin, master.id_on(master.origin))
            continue
        for side in sides:
            dest = other_side(side)
            if dest in sides:
                continue
            change = changes[side].events.get(lk.id_on(side) or "")
            if (
                not settings.allows(side)
                # maybe our own late write: the agreed version is written again from there
                or (
                    change is not None
                    and side == lk.unanswered_on
                    and write_fingerprint(change) in (lk.unanswered_hash or "").split()
                )
                or lk.withheld_on == side  # its invitees are kept from the other side
                or (change is None and settings.invitations != "never")
                or (
                    side == "calendar"
                    and lk.origin == "crm"
                    and (not settings.sync_invitees or settings.invitations != "always")
                )
            ):
                want(dest, lk.id_on(dest))
    return wanted


def keep_invitees(own: Iterable[Invitee], kept: Iterable[Invitee]) -> tuple[Invitee, ...]:
    """The invitees `kept` on the other side, each with this side's entry for the same
    address if it has one (it may carry a response), then those only this side has."""
    mine = {i.email.strip().lower(): i for i in own}
    out: list[Invitee] = []
    for inv in kept:
        out.append(mine.pop(inv.email.strip().lower(), inv))
    return (*out, *mine.values())


def _covers(own: Iterable[Invitee], wanted: Iterable[Invitee]) -> bool:
    have = {i.email.strip().lower() for i in own}
    return all(i.email.strip().lower() in have for i in wanted)


class _Planner:
    def __init__(
        self,
        links: list[Link],
        calendar: SideChanges,
        crm: SideChanges,
        settings: SyncSettings,
        ctx: PlanContext,
        new_link_id: Callable[[], str],
    ) -> None:
        self.changes: dict[Side, SideChanges] = {"calendar": calendar, "crm": crm}
        self.settings = settings
        self.ctx = ctx
        self.new_link_id = new_link_id
        self.window = pol.sync_window(settings, ctx.now)
        self.links = {lk.link_id: lk for lk in links}
        self.by_side: dict[Side, dict[str, Link]] = {
            side: {lk.id_on(side): lk for lk in links if lk.id_on(side)}  # type: ignore[misc]
            for side in SIDES
        }
        self.children: dict[str, list[Link]] = defaultdict(list)
        for lk in links:
            if lk.series_link_id:
                self.children[lk.series_link_id].append(lk)
        self.actions: list[Action] = []
        # Unlinked items an expanded series may adopt as occurrence copies (see `adopt`),
        # and the copies the new series of this run reserved: (side, series id, key).
        self.pool: dict[Side, TwinPool] = {side: TwinPool((), side) for side in SIDES}
        self.reserved: dict[tuple[Side, str, str], Event] = {}

    # -- helpers -------------------------------------------------------------------

    def emit(self, action: Action) -> None:
        # A link whose create may still land is never simply dropped: without it, the late
        # copy would be an orphan nobody owns. It is kept, without ids, to catch that copy.
        watched = [self.links[i] for i in action.drop_link_ids if self.may_still_land(i)]
        if watched:
            gone = {lk.link_id for lk in watched}
            keep = tuple(i for i in action.drop_link_ids if i not in gone)
            watches = tuple(
                Link(
                    lk.link_id,
                    origin=lk.origin,
                    # Creates write copies of the origin's item on the other side.
                    pending=lk.pending or other_side(lk.origin),
                    abandoned_at=self.ctx.now,
                )
                for lk in watched
            )
            if action.kind == "unlink":
                reason = "an unfinished create whose source is gone, watched in case it lands"
                for watch in watches:
                    self.actions.append(Action("refresh", reason, link=watch))
                if not keep:
                    return
                action = replace(action, drop_link_ids=keep)
            else:
                # Saved with the write, only once it succeeded: a failed delete is retried.
                action = replace(action, drop_link_ids=keep, also_save=action.also_save + watches)
        self.actions.append(action)

    def may_still_land(self, link_id: str) -> bool:
        lk = self.links.get(link_id)
        if lk is None or lk.abandoned_at is not None:
            return False
        if lk.pending is not None and lk.id_on(lk.pending) is None:
            return True
        return lk.unsure_since is not None and self.ctx.now - lk.unsure_since < LATE_WINDOW

    def skip(self, reason: str, item: str, caused_by: Iterable[Side] = ()) -> None:
        self.emit(Action("skip", reason, item=item, caused_by=frozenset(caused_by)))

    def known(self, side: Side, item_id: str | None) -> Event | None:
        if not item_id:
            return None
        ch = self.changes[side]
        return ch.events.get(item_id) or ch.context.get(item_id)

    def changed(self, side: Side, link: Link, change: Change | None) -> bool:
        if change is None:
            return False
        if isinstance(change, _Deleted):
            return link.id_on(side) is not None
        version = change.version_on(side)
        if version is not None and version == link.version_on(side):
            return False
        if not link.content_hash:
            return True
        # A copy whose invitees were withheld is compared with them put back: invitees
        # missing by our own doing are no change (no update ping-pong).
        held = content_hash(self.as_agreed(side, link, change))
        return held != link.content_hash and not self.landed_late(side, link, change)

    def landed_late(self, side: Side, link: Link, ev: Event) -> bool:
        """Whether `ev` on `side` holds our own write that got no answer (it may land after
        a newer one): never a user's edit, whatever its time."""
        return (
            side == link.unanswered_on
            and write_fingerprint(ev) in (link.unanswered_hash or "").split()
            and link.unsure_since is not None
            and self.ctx.now - link.unsure_since < LATE_WINDOW
        )

    def as_agreed(self, side: Side, link: Link, ev: Event) -> Event:
        """`ev` with the invitees withheld from it taken from the other side, if known."""
        if link.withheld_on != side or link.series_link_id or link.expanded:
            return ev
        other = other_side(side)
        kept = self.known(other, link.id_on(other))
        if kept is None:
            return ev
        return replace(ev, invitees=keep_invitees(ev.invitees, kept.invitees))

    def outgoing(self, event: Event, source: Side) -> pol.Outgoing:
        return pol.for_destination(
            event,
            source,
            self.ctx.caps(other_side(source)),
            self.settings,
            self.ctx.first_sync,
            self.ctx.now,
        )

    def key_in_window(self, key: str | None) -> bool:
        if key is None:
            return True
        when = (
            datetime.fromisoformat(key)
            if "T" in key
            else datetime.fromisoformat(key).replace(tzinfo=UTC)
        )
        # A day of slack: an all-day key is a date, the window is instants.
        return self.window.start - timedelta(days=1) <= when <= self.window.end

    def delete_notify(self, dest: Side, dest_event: Event | None) -> bool:
        # Without the item we cannot tell whether the meeting is over: stay silent.
        if dest_event is None or not self.ctx.caps(dest).notify:
            return False
        return pol.wants_notify(self.settings, dest_event, self.ctx.first_sync, self.ctx.now)

    # -- the run ---------------------------------------------------------------------

    def guard_empty(self) -> None:
        """Same rule as the executor's, for callers that plan without it."""
        for side in SIDES:
            ch = self.changes[side]
            if not ch.full or ch.events or ch.bad or self.ctx.allow_empty:
                continue
            if any(lk.id_on(side) and lk.pending != side for lk in self.links.values()):
                raise StorageEmpty(
                    f"The {side} returned no items at all although items are linked to "
                    f"it. Nothing was changed.",
                    side,
                )

    def run(self) -> Plan:
        self.guard_empty()
        self.adopt_strays_of_deleted_copies()
        per_link: dict[str, dict[Side, Change]] = defaultdict(dict)
        unlinked: dict[Side, list[Event]] = {"calendar": [], "crm": []}
        for side in SIDES:
            ch = self.changes[side]
            for bad in ch.bad:
                self.skip(f"unreadable item: {bad.reason}", _item(side, bad.item_id), (side,))
            for item_id in sorted(ch.events):
                ev = ch.events[item_id]
                if ev.id_on(side) != item_id:
                    ev = ev.with_identity(side, item_id, ev.version_on(side))
                why = problem(ev)
                if why:
                    self.skip(f"unreadable item: {why}", _item(side, item_id), (side,))
                    continue
                link = self.link_for(side, ev)
                if link is None:
                    if not self.remove_stray(side, ev):
                        unlinked[side].append(ev)
                elif isinstance(per_link[link.link_id].get(side), Event):
                    # Two unlinked items carry the same link id (a create whose answer was
                    # lost landed twice): the first is read back as ours, this one is a stray.
                    self.remove_stray(side, ev, link)
                else:
                    per_link[link.link_id][side] = ev
            for item_id in sorted(ch.deleted):
                link = self.by_side[side].get(item_id)
                if link is not None:
                    per_link[link.link_id][side] = DELETED
        self.pool = {side: TwinPool(unlinked[side], side) for side in SIDES}

        series: dict[str, dict[str, dict[Side, Change]]] = defaultdict(dict)
        for link_id in sorted(per_link):
            link = self.links[link_id]
            if link.series_link_id:
                series[link.series_link_id][link_id] = per_link[link_id]
            elif link.expanded:
                series.setdefault(link_id, {})
            else:
                self.regular(link, per_link[link_id])
        for lk in self.links.values():
            # An occurrence create cut short is redone by re-expanding its series.
            if lk.series_link_id and lk.pending and lk.id_on(lk.pending) is None:
                series.setdefault(lk.series_link_id, {})
        for master_id in sorted(series):
            master = self.links.get(master_id)
            if master is not None:
                self.expanded_series(master, per_link.get(master_id, {}), series[master_id])
        self.orphaned_occurrences()
        self.pending_without_changes(set(per_link))
        self.new_items(unlinked)
        return Plan(tuple(self.actions))

    def link_for(self, side: Side, ev: Event) -> Link | None:
        link = self.by_side[side].get(ev.id_on(side) or "")
        if link is not None:
            return link
        if ev.link_id and ev.link_id in self.links:
            candidate = self.links[ev.link_id]
            # Our own create, read back before its link learnt the new id.
            if (
                candidate.id_on(side) is None
                and not candidate.expanded
                and candidate.abandoned_at is None
            ):
                return candidate
        return None

    def adopt_strays_of_deleted_copies(self) -> None:
        """A linked item deleted while an unlinked item carrying its link id is listed on the
        same side (a late create's second copy, the user removing one of the two; or an
        item the side gave a new id): the remaining item is the link's copy now, read back
        like our own create, instead of the meeting being deleted or written again."""
        for side in SIDES:
            ch = self.changes[side]
            for item_id in sorted(ch.events):
                link = self.links.get(ch.events[item_id].link_id or "")
                if (
                    link is None
                    or item_id in self.by_side[side]
                    or link.expanded
                    or link.series_link_id
                    or link.id_on(side) not in ch.deleted
                ):
                    continue
                self.by_side[side].pop(link.id_on(side) or "", None)
                link = link.with_side(side, None, None)
                self.links[link.link_id] = link
                other = other_side(side)
                if link.id_on(other):
                    self.by_side[other][link.id_on(other) or ""] = link

    def unsure(self, link: Link) -> Link:
        """`link`, remembering that its create had no answer (see `unsure_since`)."""
        if link.pending and link.id_on(link.pending) is None:
            return replace(link, unsure_since=self.ctx.now)
        return link

    def stray_of(self, side: Side, ev: Event) -> Link | None:
        """The link `ev` is a stray copy of: `ev` carries the link id of a link that holds
        another item on this side, and that item is confirmed to exist (listed or read, not
        deleted). A create whose answer was lost and that landed after its retry had looked
        for it and written it again leaves exactly this. An item whose own link id has no
        link (a reset, a dropped link) is never a stray: the first sync adopts it."""
        link = self.links.get(ev.link_id or "")
        item_id = ev.id_on(side)
        if link is None or item_id is None:
            return None
        if link.abandoned_at is not None:
            return link if link.pending == side else None
        real = link.id_on(side)
        if real is None or real == item_id or real in self.changes[side].deleted:
            return None
        return link if self.known(side, real) is not None else None

    def remove_stray(self, side: Side, ev: Event, link: Link | None = None) -> bool:
        """Delete `ev` silently if it is calsync's own stray copy (of `link`, when the caller
        knows it already); whether it was one."""
        link = link or self.stray_of(side, ev)
        if link is None:
            return False
        item = _item(side, ev.id_on(side))
        if not self.settings.allows(other_side(side)):
            # The source of a one way sync is not ours to change; copying it would double
            # the meeting on the destination.
            self.skip(pol.SKIP_STRAY_ON_SOURCE, item, (side,))
            return True
        caps = self.ctx.caps(side)
        notify = False
        if ev.invitees and caps.notify and not caps.suppress_invitations:
            # Deleting it e-mails its invitees a cancellation: only where the policy lets
            # calsync e-mail them (it did, then, when it wrote this copy with them).
            notify = self.delete_notify(side, ev)
            if not notify:
                self.skip(pol.SKIP_STRAY_KEPT, item, (side,))
                return True
        self.emit(
            Action(
                "delete",
                f"a late copy of {link.link_id} on the {side}, landed after its source went"
                if link.abandoned_at
                else f"a second copy of {link.link_id} on the {side}, left by an interrupted write",
                side=side,
                target_id=ev.id_on(side),
                notify=notify,
                caused_by=frozenset({side}),
                notes=(pol.NOTE_STRAY_REMOVED,),
                item=item,
            )
        )
        return True

    # -- linked single events and native series ------------------------------------

    def regular(self, link: Link, ch: dict[Side, Change]) -> None:
        ch = dict(ch)
        current = self.unsure(link)
        for side in SIDES:
            ev = ch.get(side)
            if isinstance(ev, Event) and current.id_on(side) is None:
                # Our create, read back. Its version is not known to be ours (it may have
                # been edited since), so the content hash decides whether it changed.
                current = current.with_side(side, ev.id_on(side), None)
                if current.pending == side:
                    current = replace(current, pending=None)
        for side in SIDES:
            ev = ch.get(side)
            if (
                isinstance(ev, Event)
                and side != current.origin
                and ev.private
                and self.settings.private_events == "busy"
                and self.changed(side, current, ev)
            ):
                self.skip(pol.SKIP_BUSY_COPY_EDITED, _item(side, ev.id_on(side)), (side,))
                current = current.with_side(side, ev.id_on(side), ev.version_on(side))
                del ch[side]
        flags = {side: self.changed(side, current, ch.get(side)) for side in SIDES}
        caused = frozenset(s for s in SIDES if s in ch)

        if not any(flags.values()):
            for side in SIDES:
                ev = ch.get(side)
                if (
                    isinstance(ev, Event)
                    and content_hash(self.as_agreed(side, current, ev)) != current.content_hash
                    and self.landed_late(side, current, ev)
                ):
                    # Our older write landed after the agreed one: write the agreed one again.
                    other = other_side(side)
                    src = self.known(other, current.id_on(other))
                    if src is not None and not problem(src):
                        self.propagate(current, other, src, "our earlier write landed late", caused)
                        return
            for side in SIDES:
                ev = ch.get(side)
                if isinstance(ev, Event):
                    current = current.with_side(side, ev.id_on(side), ev.version_on(side))
            if current.pending and current.id_on(current.pending) is None:
                source = other_side(current.pending)
                src = self.known(source, current.id_on(source))
                if src is not None:
                    self.propagate(current, source, src, "retrying an unfinished create", caused)
                    return
            if current != link:
                self.emit(Action("refresh", "our own write read back", link=current))
            return

        # A side that deleted its item no longer has one to update.
        for side in SIDES:
            if isinstance(ch.get(side), _Deleted):
                current = current.with_side(side, None, None)

        if flags["calendar"] and flags["crm"]:
            cal, crm = ch["calendar"], ch["crm"]
            if isinstance(cal, _Deleted) and isinstance(crm, _Deleted):
                self.emit(Action("unlink", "deleted on both sides", drop_link_ids=(link.link_id,)))
                return
            if isinstance(cal, Event) and isinstance(crm, Event) and link.withheld_on:
                if link.withheld_on == "calendar":
                    cal = replace(cal, invitees=keep_invitees(cal.invitees, crm.invitees))
                else:
                    crm = replace(crm, invitees=keep_invitees(crm.invitees, cal.invitees))
            if (
                isinstance(cal, Event)
                and isinstance(crm, Event)
                and content_hash(cal) == content_hash(crm)
            ):
                current = current.with_side("calendar", cal.calendar_id, cal.calendar_version)
                current = current.with_side("crm", crm.crm_id, crm.crm_version)
                self.emit(
                    Action(
                        "refresh",
                        "both sides made the same change",
                        link=replace(current, content_hash=content_hash(cal)),
                    )
                )
                return
            if self.settings.direction == "two_way":
                winner = pol.conflict_winner(
                    self.settings,
                    cal if isinstance(cal, Event) else None,
                    crm if isinstance(crm, Event) else None,
                )
            else:
                winner = "calendar" if self.settings.allows("calendar") else "crm"
            loser = other_side(winner)
            conflict = None
            if self.settings.direction == "two_way":
                w, lo = ch[winner], ch[loser]
                conflict = Conflict(
                    link.link_id,
                    winner,
                    loser,
                    w if isinstance(w, Event) else None,
                    lo if isinstance(lo, Event) else None,
                )
            reason = f"changed on both sides; {self.settings.conflict_policy} kept the {winner}"
            self.propagate(current, winner, ch[winner], reason, caused, conflict)
            return

        source: Side = "calendar" if flags["calendar"] else "crm"
        dest = other_side(source)
        if self.settings.allows(source):
            self.propagate(current, source, ch[source], f"changed on the {source}", caused)
            return
        # One way, and the destination's copy was edited or deleted: put the source back.
        src = ch.get(dest)
        if not isinstance(src, Event):
            src = self.known(dest, current.id_on(dest))
        if src is None:
            self.skip(pol.SKIP_SOURCE_GONE, _item(source, link.id_on(source)), caused)
            return
        if isinstance(ch[source], _Deleted) and not overlaps_window(
            src, self.window.start, self.window.end
        ):
            # Clearing out old copies at the destination is housekeeping, not a mistake.
            self.emit(Action("unlink", pol.SKIP_OUTSIDE_WINDOW, drop_link_ids=(link.link_id,)))
            return
        self.propagate(current, dest, src, f"one way sync: the {source} copy is restored", caused)

    def propagate(
        self,
        link: Link,
        source: Side,
        change: Change,
        reason: str,
        caused: frozenset[Side],
        conflict: Conflict | None = None,
    ) -> None:
        dest = other_side(source)
        dest_id = link.id_on(dest)
        if isinstance(change, _Deleted):
            if dest_id is None:
                self.emit(Action("unlink", reason, drop_link_ids=(link.link_id,)))
                return
            self.emit(
                Action(
                    "delete",
                    f"{reason}: deleted on the {source}",
                    side=dest,
                    target_id=dest_id,
                    drop_link_ids=(link.link_id,),
                    notify=self.delete_notify(dest, self.known(dest, dest_id)),
                    caused_by=caused,
                    conflict=conflict,
                    item=_item(dest, dest_id),
                )
            )
            return
        if change.private and self.settings.private_events == "skip":
            self.skip(pol.SKIP_PRIVATE, _item(source, change.id_on(source)), caused)
            return
        if change.recurrence is not None and not self.ctx.caps(dest).recurrence:
            self.single_became_series(link, source, change, caused)
            return
        dest_now = self.known(dest, dest_id)
        withheld_on = None
        if link.withheld_on == source and dest_id is not None:
            # The source's copy was written without its invitees: its empty (or partial)
            # list is no removal. Keep the destination's, plus any the user added here.
            if dest_now is None:
                self.skip(pol.SKIP_INVITEES_UNKNOWN, _item(source, change.id_on(source)), caused)
                return
            kept = keep_invitees(change.invitees, dest_now.invitees)
            if not _covers(change.invitees, kept):
                withheld_on = source
            change = replace(change, invitees=kept)
        elif (
            source == "calendar"
            and link.origin == "crm"
            and link.withheld_on is None
            and not change.invitees
            and dest_now is not None
            and not self.settings.sync_invitees
        ):
            # A link from before `withheld_on` existed, with Sync invitees off: the calendar
            # copy carries no attendees by policy, not a removal; keep the CRM's.
            change = replace(change, invitees=dest_now.invitees)
            withheld_on = source
        out = self.outgoing(change, source)
        event = out.event
        # What both sides agree on: the content with every invitee, withheld ones too.
        agreed = replace(event, invitees=out.withheld) if out.withheld else event
        new_hash = content_hash(agreed)
        if out.withheld:
            withheld_on = dest
        after = replace(
            link.with_side(source, change.id_on(source), change.version_on(source)),
            content_hash=new_hash,
            withheld_on=withheld_on,
        )
        if dest_id is None:
            self.emit(
                Action(
                    "create",
                    reason,
                    side=dest,
                    event=event,
                    link=after,
                    notify=out.notify,
                    caused_by=caused,
                    conflict=conflict,
                    notes=out.notes,
                    item=_item(source, change.id_on(source)),
                )
            )
            return
        if (
            dest_now is not None
            and content_hash(dest_now) == content_hash(event)
            and (not out.withheld or link.content_hash == new_hash)
        ):
            # (A copy without its invitees is rewritten when they changed, so an adapter
            # that lists them in the body keeps that list current.)
            after = after.with_side(dest, dest_id, dest_now.version_on(dest))
            self.emit(Action("refresh", "already the same on both sides", link=after))
            return
        self.emit(
            Action(
                "update",
                reason,
                side=dest,
                target_id=dest_id,
                event=event,
                link=after,
                notify=out.notify,
                caused_by=caused,
                conflict=conflict,
                notes=out.notes,
                item=_item(dest, dest_id),
            )
        )

    def orphaned_occurrences(self) -> None:
        """Copies whose series link is gone (a removal cut short by a failed delete)."""
        for lk in sorted(self.links.values(), key=lambda lk: lk.link_id):
            if not lk.series_link_id or lk.series_link_id in self.links:
                continue
            cs = other_side(lk.origin)
            copy_id = lk.id_on(cs)
            if copy_id is None:
                self.emit(Action("unlink", "series deleted", drop_link_ids=(lk.link_id,)))
                continue
            self.emit(
                Action(
                    "delete",
                    "series deleted",
                    side=cs,
                    target_id=copy_id,
                    drop_link_ids=(lk.link_id,),
                    caused_by=frozenset({lk.origin}),
                    item=_item(cs, copy_id),
                )
            )

    def single_became_series(
        self, link: Link, source: Side, series_ev: Event, caused: frozenset[Side]
    ) -> None:
        """The destination cannot hold a series: its single copy gives way to occurrences."""
        dest = other_side(source)
        master = replace(
            link.with_side(source, series_ev.id_on(source), None).with_side(dest, None, None),
            expanded=True,
            pending=None,
            origin=source,
            withheld_on=None,
        )
        dest_id = link.id_on(dest)
        if dest_id is not None:
            self.emit(
                Action(
                    "delete",
                    f"became a series on the {source}; the {dest} gets its occurrences",
                    side=dest,
                    target_id=dest_id,
                    link=master,
                    caused_by=caused,
                    item=_item(dest, dest_id),
                )
            )
        else:
            self.emit(Action("refresh", "series to expand", link=master))
        self.expand_into(master, series_ev, {}, f"new series on the {source}", caused)

    def pending_without_changes(self, seen: set[str]) -> None:
        for link in sorted(self.links.values(), key=lambda lk: lk.link_id):
            if link.link_id in seen or not link.pending or link.id_on(link.pending):
                continue
            if link.abandoned_at is not None:
                if self.ctx.now - link.abandoned_at >= LATE_WINDOW:
                    self.actions.append(
                        Action(
                            "unlink",
                            "a given-up create never landed",
                            drop_link_ids=(link.link_id,),
                        )
                    )
                continue
            if link.series_link_id:
                continue  # occurrence creates are redone by their series
            source = other_side(link.pending)
            src = self.known(source, link.id_on(source))
            if src is None:
                self.emit(
                    Action(
                        "unlink",
                        "an unfinished create whose source is gone",
                        drop_link_ids=(link.link_id,),
                    )
                )
            elif not problem(src):
                self.propagate(
                    self.unsure(link),
                    source,
                    src,
                    "retrying an unfinished create",
                    frozenset({source}),
                )

    # -- series expanded into occurrences on a side without native series -----------

    def expanded_series(
        self,
        master: Link,
        master_ch: dict[Side, Change],
        child_ch: dict[str, dict[Side, Change]],
    ) -> None:
        ms: Side = master.origin
        cs = other_side(ms)
        change = master_ch.get(ms)
        caused = frozenset(
            ([ms] if change is not None else [])
            + ([cs] if any(cs in c for c in child_ch.values()) else [])
        )
        copy_changes: dict[str, Change] = {}
        for lid in sorted(child_ch):
            if cs not in child_ch[lid]:
                continue
            copy_change = child_ch[lid][cs]
            child = self.links[lid]
            if isinstance(copy_change, Event) and child.id_on(cs) is None:
                # Our create read back; whether it was edited since, the hash tells.
                child = replace(child.with_side(cs, copy_change.id_on(cs), None), pending=None)
                self.replace_child(child)
            if self.changed(cs, child, copy_change):
                copy_changes[lid] = copy_change
            elif isinstance(copy_change, Event) and (
                copy_change.version_on(cs) != child.version_on(cs)
            ):
                child = child.with_side(cs, copy_change.id_on(cs), copy_change.version_on(cs))
                self.replace_child(child)
                self.emit(Action("refresh", "our own write read back", link=child))
        if self.changed(ms, master, change):
            if not self.settings.allows(ms):
                self.skip(pol.SKIP_SERIES_ON_DESTINATION, _item(ms, master.id_on(ms)), caused)
                return
            if isinstance(change, _Deleted) or (
                isinstance(change, Event) and change.status == "cancelled"
            ):
                self.remove_copies(master, cs, f"series ended on the {ms}", caused)
                if isinstance(change, Event):
                    self.emit(
                        Action(
                            "refresh",
                            "series cancelled",
                            link=master.with_side(ms, change.id_on(ms), change.version_on(ms)),
                        )
                    )
                else:
                    self.emit(Action("unlink", "series deleted", drop_link_ids=(master.link_id,)))
                return
            assert isinstance(change, Event)
            self.expand_into(master, change, copy_changes, f"series changed on the {ms}", caused)
            return
        series_ev = change if isinstance(change, Event) else self.known(ms, master.id_on(ms))
        if series_ev is None or series_ev.recurrence is None:
            if copy_changes:
                self.skip(pol.SKIP_SOURCE_GONE, _item(ms, master.id_on(ms)), caused)
            return
        if copy_changes:
            # A copy that already shows what the series says is a write of ours read
            # back (perhaps after a lost answer), not a user's edit.
            wanted = {
                occ.key: self.outgoing(occ.event, ms).event
                for occ in expand(series_ev, self.window.start, self.window.end)
            }
            for lid in sorted(copy_changes):
                copy_change, child = copy_changes[lid], self.links[lid]
                want = wanted.get(child.occurrence_key or "")
                if (
                    isinstance(copy_change, Event)
                    and want is not None
                    and content_hash(copy_change)
                    in (
                        content_hash(want),
                        content_hash(replace(want, invitees=()))
                        if child.withheld_on == cs
                        else None,
                    )
                ):
                    child = replace(
                        child.with_side(cs, copy_change.id_on(cs), copy_change.version_on(cs)),
                        content_hash=content_hash(copy_change),
                    )
                    self.replace_child(child)
                    self.emit(Action("refresh", "our own write read back", link=child))
                    del copy_changes[lid]
        if copy_changes:
            if not self.settings.allows(cs):
                self.expand_into(
                    master, series_ev, copy_changes, "one way sync: occurrence restored", caused
                )
                return
            if self.occurrence_edits_to_series(master, series_ev, copy_changes, caused):
                return
        # Re-expand an unchanged series whenever it is at hand: occurrences the window
        # has reached since, and copies a failed write left behind, are brought up to date.
        outer, self.actions = self.actions, []
        self.expand_into(master, series_ev, {}, "occurrences brought up to date", caused)
        fresh, self.actions = self.actions, outer
        if any(a.kind in ("create", "update", "delete", "link") for a in fresh):
            self.actions.extend(fresh)
        elif isinstance(change, Event) and change.version_on(ms) != master.version_on(ms):
            self.emit(
                Action(
                    "refresh",
                    "our own write read back",
                    link=master.with_side(ms, change.id_on(ms), change.version_on(ms)),
                )
            )

    def silently_imported(self, child: Link, cs: Side, wanted: Event) -> bool:
        """An occurrence copy written without its invitees that differs from `wanted` only
        in them: invitations became possible since (after the first sync), nothing else
        changed, so it is left alone instead of inviting everyone to an old copy."""
        return (
            child.withheld_on == cs
            and bool(wanted.invitees)
            and child.content_hash == content_hash(replace(wanted, invitees=()))
        )

    def replace_child(self, child: Link) -> None:
        self.links[child.link_id] = child
        siblings = self.children[child.series_link_id or ""]
        self.children[child.series_link_id or ""] = [
            child if lk.link_id == child.link_id else lk for lk in siblings
        ]

    def remove_copies(self, master: Link, cs: Side, reason: str, caused: frozenset[Side]) -> None:
        for child in sorted(self.children[master.link_id], key=lambda lk: lk.link_id):
            copy_id = child.id_on(cs)
            if copy_id is None:
                self.emit(Action("unlink", reason, drop_link_ids=(child.link_id,)))
                continue
            self.emit(
                Action(
                    "delete",
                    reason,
                    side=cs,
                    target_id=copy_id,
                    drop_link_ids=(child.link_id,),
                    notify=self.delete_notify(cs, self.known(cs, copy_id)),
                    caused_by=caused,
                    item=_item(cs, copy_id),
                )
            )

    def expand_into(
        self,
        master: Link,
        series_ev: Event,
        copy_changes: Mapping[str, Change],
        reason: str,
        caused: frozenset[Side],
        save_master: bool = True,
    ) -> None:
        ms: Side = master.origin
        cs = other_side(ms)
        existing = {c.occurrence_key: c for c in self.children[master.link_id]}
        # The master's version is saved last: a run cut short re-expands next time.
        for occ in expand(series_ev, self.window.start, self.window.end):
            out = self.outgoing(occ.event, ms)
            new_hash = content_hash(out.event)
            child = existing.pop(occ.key, None)
            copy_change = copy_changes.get(child.link_id) if child else None
            if child is None:
                child = Link(
                    link_id=self.new_link_id(),
                    origin=ms,
                    series_link_id=master.link_id,
                    occurrence_key=occ.key,
                )
            elif isinstance(copy_change, _Deleted):
                child = child.with_side(cs, None, None)
            copy_id = child.id_on(cs)
            if copy_id is None:
                found = self.reserved.pop((ms, series_ev.id_on(ms) or "", occ.key), None)
                found = found or self.pool[cs].take(out.event, child.link_id)
                if found is not None:
                    self.adopt(child, cs, out, found)
                    continue
                self.emit(
                    Action(
                        "create",
                        reason,
                        side=cs,
                        event=out.event,
                        link=replace(
                            child, content_hash=new_hash, withheld_on=cs if out.withheld else None
                        ),
                        notify=out.notify,
                        caused_by=caused,
                        notes=out.notes,
                        item=_item(ms, master.id_on(ms)) + f"@{occ.key}",
                    )
                )
            elif (
                child.content_hash != new_hash and not self.silently_imported(child, cs, out.event)
            ) or copy_change is not None:
                self.emit(
                    Action(
                        "update",
                        reason,
                        side=cs,
                        target_id=copy_id,
                        event=out.event,
                        link=replace(
                            child, content_hash=new_hash, withheld_on=cs if out.withheld else None
                        ),
                        notify=out.notify,
                        caused_by=caused,
                        notes=out.notes,
                        item=_item(cs, copy_id),
                    )
                )
        for child in sorted(existing.values(), key=lambda lk: lk.link_id):
            if not self.key_in_window(child.occurrence_key):
                continue  # past (or far future) copies are history, not a removal
            copy_id = child.id_on(cs)
            if copy_id is None or isinstance(copy_changes.get(child.link_id), _Deleted):
                self.emit(Action("unlink", reason, drop_link_ids=(child.link_id,)))
                continue
            self.emit(
                Action(
                    "delete",
                    f"{reason}: occurrence no longer in the series",
                    side=cs,
                    target_id=copy_id,
                    drop_link_ids=(child.link_id,),
                    notify=self.delete_notify(cs, self.known(cs, copy_id)),
                    caused_by=caused,
                    item=_item(cs, copy_id),
                )
            )
        if not save_master:
            return
        self.emit(
            Action(
                "refresh",
                reason,
                link=replace(
                    master.with_side(ms, series_ev.id_on(ms), series_ev.version_on(ms)),
                    content_hash=content_hash(series_ev),
                ),
            )
        )

    def adopt(self, child: Link, cs: Side, out: pol.Outgoing, found: Event) -> None:
        """An unlinked item already on the side without series is the occurrence's copy
        (a reset, or a first sync after copies were made): linked, not copied again."""
        h = content_hash(found)
        variants = [(content_hash(out.event), cs if out.withheld else None)]
        if out.withheld:
            # The copy has the invitees this write would withhold (they were e-mailable).
            variants.append((content_hash(replace(out.event, invitees=out.withheld)), None))
        if out.event.invitees:
            # Written without them: left alone later, like a silently imported copy.
            variants.append((content_hash(replace(out.event, invitees=())), cs))
        # Unequal copies have no agreed content yet: the series' next expansion rewrites it.
        agreed, withheld_on = next(((v, w) for v, w in variants if v == h), (None, None))
        link = replace(
            child.with_side(cs, found.id_on(cs), found.version_on(cs)),
            content_hash=agreed,
            withheld_on=withheld_on,
            pending=None,
        )
        self.replace_child(link)
        self.emit(
            Action(
                "link",
                "the occurrence's copy already exists on the other side",
                link=link,
                item=_item(cs, found.id_on(cs)),
            )
        )

    def occurrence_edits_to_series(
        self,
        master: Link,
        series_ev: Event,
        copy_changes: Mapping[str, Change],
        caused: frozenset[Side],
    ) -> bool:
        """Two way: a copy moved or deleted becomes a moved or cancelled occurrence.

        Returns whether the series itself is rewritten."""
        ms: Side = master.origin
        cs = other_side(ms)
        assert series_ev.recurrence is not None
        by_key = {occ.key: occ for occ in expand(series_ev, self.window.start, self.window.end)}
        cancelled = list(series_ev.recurrence.cancelled)
        moved = {m.original_start: m for m in series_ev.recurrence.moved}
        save: list[Link] = []
        drop: list[str] = []
        for child_id in sorted(copy_changes):
            child = self.links[child_id]
            change = copy_changes[child_id]
            if not self.changed(cs, child, change) or child.occurrence_key is None:
                if isinstance(change, Event) and child.id_on(cs) is None:
                    save.append(child.with_side(cs, change.id_on(cs), change.version_on(cs)))
                continue
            original_start, _ = original_occurrence(series_ev, child.occurrence_key)
            if isinstance(change, _Deleted):
                if child.occurrence_key in by_key:
                    cancelled.append(original_start)
                moved.pop(original_start, None)
                drop.append(child.link_id)
                continue
            shown = by_key.get(child.occurrence_key)
            refreshed = replace(
                child.with_side(cs, change.id_on(cs), change.version_on(cs)),
                content_hash=content_hash(change),
            )
            if shown and (change.start, change.end) != (shown.event.start, shown.event.end):
                moved[original_start] = MovedOccurrence(
                    original_start,
                    change.start,  # type: ignore[arg-type]
                    change.end,  # type: ignore[arg-type]
                )
                save.append(refreshed)
            else:
                self.skip(pol.SKIP_OCCURRENCE_DETAILS, _item(cs, change.id_on(cs)), caused)
                save.append(child.with_side(cs, change.id_on(cs), change.version_on(cs)))
        new_rec = Recurrence(
            series_ev.recurrence.rrule,
            tuple(cancelled),
            tuple(sorted(moved.values(), key=lambda m: str(m.original_start))),
        )
        if new_rec == series_ev.recurrence:
            for lk in save:
                self.emit(Action("refresh", "occurrence copy read back", link=lk))
            if drop:
                self.emit(Action("unlink", "occurrence removed", drop_link_ids=tuple(drop)))
            return False
        new_series = replace(series_ev.content(), recurrence=new_rec)
        self.emit(
            Action(
                "update",
                f"an occurrence was moved or deleted on the {cs}",
                side=ms,
                target_id=master.id_on(ms),
                event=new_series,
                link=replace(master, content_hash=content_hash(new_series)),
                also_save=tuple(save),
                drop_link_ids=tuple(drop),
                notify=pol.wants_notify(
                    self.settings, new_series, self.ctx.first_sync, self.ctx.now
                )
                and self.ctx.caps(ms).notify,
                caused_by=caused,
                item=_item(ms, master.id_on(ms)),
            )
        )
        # The other copies follow the rewritten series in the same run.
        for lk in save:
            self.replace_child(lk)
        self.children[master.link_id] = [
            lk for lk in self.children[master.link_id] if lk.link_id not in drop
        ]
        self.expand_into(
            master,
            replace(series_ev, recurrence=new_rec),
            {},
            "occurrences brought up to date",
            caused,
            save_master=False,
        )
        return True

    # -- items not linked yet --------------------------------------------------------

    def new_item_skip(self, side: Side, ev: Event) -> str | None:
        reason = None if self.settings.allows(side) else pol.SKIP_ONE_WAY
        return reason or pol.scope_skip_reason(ev, self.settings, self.window, self.ctx.user_email)

    def reserve_copies(self, side: Side, series_ev: Event) -> None:
        """The occurrence copies a new series will adopt instead of creating (`expand_into`
        takes them), reserved before the other side's new items are copied."""
        cs = other_side(side)
        for occ in expand(series_ev, self.window.start, self.window.end):
            found = self.pool[cs].take(self.outgoing(occ.event, side).event)
            if found is not None:
                self.reserved[(side, series_ev.id_on(side) or "", occ.key)] = found

    def new_items(self, unlinked: dict[Side, list[Event]]) -> None:
        # Adopted as occurrence copies by a series linked before: not new.
        unlinked = {
            side: [e for e in unlinked[side] if not self.pool[side].taken(e)] for side in SIDES
        }
        live = {side: [e for e in unlinked[side] if e.status != "cancelled"] for side in SIDES}
        paired: set[tuple[Side, str]] = set()
        for cal, crm in pair_twins(live["calendar"], live["crm"]):
            if (cal.recurrence is None) != (crm.recurrence is None):
                continue
            self.pool["calendar"].claim(cal)
            self.pool["crm"].claim(crm)
            same = content_hash(cal) == content_hash(crm)
            link_id = cal.link_id if cal.link_id and cal.link_id == crm.link_id else None
            link = Link(
                link_id=link_id or self.new_link_id(),
                calendar_id=cal.calendar_id,
                crm_id=crm.crm_id,
                calendar_version=cal.calendar_version,
                crm_version=crm.crm_version,
                # Unequal twins: no agreed content yet, the next edit on either side wins.
                content_hash=content_hash(cal) if same else None,
                origin="calendar",
            )
            paired.add(("calendar", cal.calendar_id or ""))
            paired.add(("crm", crm.crm_id or ""))
            self.emit(
                Action(
                    "link",
                    "the same meeting already exists on both sides",
                    link=link,
                    item=_item("calendar", cal.calendar_id),
                )
            )
        # A new series to expand adopts the copies of its occurrences already on the other
        # side first, so that side's loop below does not copy them back as new items.
        for side in SIDES:
            for ev in unlinked[side]:
                if (
                    ev.recurrence is not None
                    and not self.ctx.caps(other_side(side)).recurrence
                    and (side, ev.id_on(side)) not in paired
                    and self.new_item_skip(side, ev) is None
                ):
                    self.reserve_copies(side, ev)
        for side in SIDES:
            dest = other_side(side)
            for ev in unlinked[side]:
                item_id = ev.id_on(side)
                if (side, item_id) in paired or self.pool[side].taken(ev):
                    continue
                reason = self.new_item_skip(side, ev)
                if reason:
                    self.skip(reason, _item(side, item_id), (side,))
                    continue
                if ev.recurrence is not None and not self.ctx.caps(dest).recurrence:
                    master = Link(link_id=self.new_link_id(), origin=side, expanded=True).with_side(
                        side, item_id, None
                    )
                    self.emit(Action("refresh", "series to expand", link=master))
                    self.children.setdefault(master.link_id, [])
                    self.expand_into(master, ev, {}, f"new series on the {side}", frozenset({side}))
                    continue
                link = Link(link_id=self.new_link_id(), origin=side)
                self.propagate(link, side, ev, f"new on the {side}", frozenset({side}))
