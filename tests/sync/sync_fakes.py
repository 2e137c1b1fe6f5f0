"""In-memory implementations of both adapter interfaces, for the engine's own tests."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from calsync.sync import Capabilities, ChangePage, CursorExpired, Event, Window
from calsync.sync.model import Side


class Clock:
    """Shared fake wall clock, so "most recent" means something across both sides."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

    def tick(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


class SimulatedCrash(BaseException):
    """Not an Exception: the executor must not catch it, like a worker killed mid-run."""


class InjectedFault(Exception):
    pass


@dataclass
class Sent:
    op: str
    item_id: str
    notify: bool
    invitees: tuple[str, ...] = ()
    event: Event | None = None  # what was written, or what was deleted
    previous: tuple[str, ...] = ()  # an update: the invitees the item had before


@dataclass
class MemorySide:
    """A calendar or CRM held in a dict, with a change log for delta cursors."""

    side: Side
    caps: Capabilities = field(default_factory=Capabilities)
    clock: Clock = field(default_factory=Clock)
    page_size: int = 3
    window_filter: bool = False
    items: dict[str, Event] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    expire_cursor: bool = False
    fail_listing: bool = False
    sent: list[Sent] = field(default_factory=list)
    emailed: list[tuple[str, str]] = field(default_factory=list)
    # Reported as deleted by the next incremental listing although they may exist (a side
    # that cannot list deletions guessing, e.g. an item that left its query).
    phantom_deleted: list[str] = field(default_factory=list)
    _n: int = 0
    _v: int = 0

    # -- adapter interface -------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        return self.caps

    def list_changes(
        self, cursor: str | None, window: Window, page_token: str | None = None
    ) -> ChangePage:
        if self.fail_listing:
            raise ConnectionError(f"{self.side} is unreachable")
        if cursor is not None and self.expire_cursor:
            self.expire_cursor = False
            raise CursorExpired("cursor expired")
        if cursor is None:
            ids = sorted(self.items)
            if self.window_filter:
                ids = [i for i in ids if self._in_window(self.items[i], window)]
        else:
            ids = sorted(set(self.log[int(cursor) :]))
        offset = int(page_token or 0)
        chunk = ids[offset : offset + self.page_size]
        more = offset + self.page_size < len(ids)
        deleted = [i for i in chunk if i not in self.items]
        if cursor is not None and not self.caps.lists_deletions:
            deleted = []  # deletion-blind: an incremental listing never shows them
            if not more:
                deleted, self.phantom_deleted = list(self.phantom_deleted), []
        return ChangePage(
            events=[self.items[i] for i in chunk if i in self.items],
            deleted_ids=deleted,
            next_page_token=str(offset + self.page_size) if more else None,
            next_cursor=None if more else str(len(self.log)),
        )

    def get(self, item_id: str) -> Event | None:
        return self.items.get(item_id)

    def find_by_link_id(self, link_id: str) -> Event | None:
        return next((e for e in self.items.values() if e.link_id == link_id), None)

    def create(self, event: Event, *, link_id: str, notify: bool) -> Event:
        self._check(event)
        self._n += 1
        item_id = f"{self.side[:3]}-{self._n}"
        stored = self._stamp(replace(event, link_id=link_id), item_id)
        self.sent.append(Sent("create", item_id, notify, _emails(event), event))
        self._email(event, notify)
        return stored

    def update(self, item_id: str, event: Event, *, notify: bool) -> Event:
        self._check(event)
        if item_id not in self.items:
            raise KeyError(f"{item_id} not found")
        link_id = self.items[item_id].link_id
        before = _emails(self.items[item_id])
        stored = self._stamp(replace(event, link_id=link_id), item_id)
        self.sent.append(Sent("update", item_id, notify, _emails(event), event, before))
        self._email(event, notify)
        return stored

    def delete(self, item_id: str, *, notify: bool) -> None:
        if item_id not in self.items:
            raise KeyError(f"{item_id} not found")
        gone = self.items.pop(item_id)
        self.log.append(item_id)
        self.sent.append(Sent("delete", item_id, notify, _emails(gone), gone))
        self._email(gone, notify)

    # -- what a user does directly on this side ----------------------------------------

    def user_create(self, event: Event) -> str:
        self._n += 1
        item_id = f"{self.side[:3]}-{self._n}"
        self._stamp(event, item_id)
        return item_id

    def user_update(self, item_id: str, **changes: Any) -> None:
        self._stamp(replace(self.items[item_id], **changes), item_id)

    def user_delete(self, item_id: str) -> None:
        del self.items[item_id]
        self.log.append(item_id)

    # -- internals ---------------------------------------------------------------------

    def _stamp(self, event: Event, item_id: str) -> Event:
        self._v += 1
        stored = replace(event, last_modified=self.clock.tick()).with_identity(
            self.side, item_id, f"v{self._v}"
        )
        self.items[item_id] = stored
        self.log.append(item_id)
        return stored

    def _check(self, event: Event) -> None:
        if event.recurrence is not None and not self.caps.recurrence:
            raise AssertionError(f"the engine sent a series to {self.side}, which has none")

    def _email(self, event: Event, notify: bool) -> None:
        if not self.caps.notify:
            return
        if notify or not self.caps.suppress_invitations:
            self.emailed.extend((self.side, e) for e in _emails(event))

    @staticmethod
    def _in_window(event: Event, window: Window) -> bool:
        from calsync.sync.model import to_utc_instant

        assert event.start is not None and event.end is not None
        if event.recurrence is not None:
            return True
        return to_utc_instant(event.end) > window.start and to_utc_instant(event.start) < window.end


def _emails(event: Event) -> tuple[str, ...]:
    return tuple(i.email for i in event.invitees)


@dataclass
class FlakySide(MemorySide):
    """Fails writes at random: before doing them, after doing them (the answer is lost),
    or by "crashing" the whole run."""

    rng: random.Random = field(default_factory=random.Random)
    fault_rate: float = 0.0
    crash_rate: float = 0.0
    # A create whose answer is lost and that the side applies only later, at `land_late`
    # (after the retries have looked for it by link id and written it again).
    late_rate: float = 0.0
    late: list[tuple[Event, str]] = field(default_factory=list)
    # Updates whose answer was lost and that land later, over whatever is there then.
    late_updates: list[tuple[str, Event]] = field(default_factory=list)
    # Which late creates may still land (default: all).
    landable: Any = None

    def land_late(self) -> None:
        pending, self.late = self.late, []
        for event, link_id in pending:
            if self.landable is None or self.landable(link_id):
                MemorySide.create(self, event, link_id=link_id, notify=False)
        updates, self.late_updates = self.late_updates, []
        for item_id, event in updates:
            if item_id in self.items:
                MemorySide.update(self, item_id, event, notify=False)

    def _maybe_fail(self, stage: str) -> None:
        roll = self.rng.random()
        if roll < self.crash_rate:
            raise SimulatedCrash(f"crash {stage}")
        if roll < self.crash_rate + self.fault_rate:
            raise InjectedFault(f"fault {stage}")

    def create(self, event: Event, *, link_id: str, notify: bool) -> Event:
        if self.late_rate and self.rng.random() < self.late_rate:
            self.late.append((event, link_id))
            raise InjectedFault("answer lost; the create lands later")
        self._maybe_fail("before create")
        out = super().create(event, link_id=link_id, notify=notify)
        self._maybe_fail("after create")
        return out

    def update(self, item_id: str, event: Event, *, notify: bool) -> Event:
        if self.late_rate and self.rng.random() < self.late_rate:
            self.late_updates.append((item_id, event))
            raise InjectedFault("answer lost; the update lands later")
        self._maybe_fail("before update")
        out = super().update(item_id, event, notify=notify)
        self._maybe_fail("after update")
        return out

    def delete(self, item_id: str, *, notify: bool) -> None:
        self._maybe_fail("before delete")
        super().delete(item_id, notify=notify)
        self._maybe_fail("after delete")


NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
USER = "me@example.com"


def meeting(
    title: str = "Demo",
    start: datetime | None = None,
    hours: float = 1,
    invitees: tuple[str, ...] = ("client@example.org",),
    **kw: Any,
) -> Event:
    """A timed meeting organised by the user, tomorrow by default."""
    from calsync.sync import Invitee

    start = start or NOW + timedelta(days=1)
    kw.setdefault("organizer", USER)
    kw.setdefault("timezone", "UTC")
    return Event(
        title=title,
        start=start,
        end=start + timedelta(hours=hours),
        invitees=tuple(Invitee(e) for e in invitees),
        **kw,
    )


class BatchWrites:
    """`BatchWriter` for the in-memory sides: each write of a batch applied in order, as
    SuiteCRM's `set_entries` does; an Exception met by one write is answered for it
    alone, anything else (a `SimulatedCrash`) ends the batch where it stands."""

    max_batch: int
    batches: list[list[Any]]
    refuse_titles: set[str]

    def write_many(self, writes: Any) -> list[Any]:
        from calsync.sync.adapters import Write

        self.batches.append([(w.kind, w.link_id or w.item_id) for w in writes])
        out: list[Any] = []
        side: Any = self
        for w in writes:
            assert isinstance(w, Write)
            try:
                if w.event is not None and w.event.title in self.refuse_titles:
                    raise InjectedFault(f"{w.event.title} refused")
                if w.kind == "create":
                    assert w.event is not None and w.link_id is not None
                    out.append(side.create(w.event, link_id=w.link_id, notify=w.notify))
                elif w.kind == "update":
                    assert w.event is not None and w.item_id is not None
                    out.append(side.update(w.item_id, w.event, notify=w.notify))
                else:
                    assert w.item_id is not None
                    out.append(side.delete(w.item_id, notify=w.notify))
            except Exception as exc:
                out.append(exc)
        return out


@dataclass
class BatchingSide(BatchWrites, MemorySide):
    max_batch: int = 4
    batches: list[list[Any]] = field(default_factory=list)  # (kind, link or item id) each
    refuse_titles: set[str] = field(default_factory=set)  # writes of these titles fail


@dataclass
class FlakyBatchingSide(BatchWrites, FlakySide):
    max_batch: int = 4
    batches: list[list[Any]] = field(default_factory=list)
    refuse_titles: set[str] = field(default_factory=set)


def batching(side: MemorySide, max_batch: int = 4) -> MemorySide:
    """The same side (items, log, settings) taking writes in batches of `max_batch`."""
    import dataclasses

    kind = FlakyBatchingSide if isinstance(side, FlakySide) else BatchingSide
    values = {f.name: getattr(side, f.name) for f in dataclasses.fields(side)}
    return kind(**values, max_batch=max_batch)


def live_links(store: Any) -> list:
    """The store's links, without the watches kept for late copies (`Link.abandoned_at`)."""
    return [lk for lk in store.links() if lk.abandoned_at is None]
