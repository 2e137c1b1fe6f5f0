"""The two interfaces the engine talks to. Vendor modules implement them elsewhere."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from calsync.sync.model import Capabilities, Event


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class BadItem:
    """An item the adapter could not even convert; the engine records it as skipped."""

    item_id: str
    reason: str


@dataclass(frozen=True)
class ChangePage:
    """One page of a listing.

    With cursor None the listing is full: `events` holds every item (in the window, at
    least) and `deleted_ids` is empty. Otherwise it holds what changed since the cursor.
    `next_page_token` is set while more pages follow; the last page carries `next_cursor`.
    """

    events: Sequence[Event] = ()
    deleted_ids: Sequence[str] = ()
    bad: Sequence[BadItem] = ()
    next_page_token: str | None = None
    next_cursor: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


class SideAdapter(Protocol):
    """Common interface of both sides. Every returned Event carries this side's id and version.

    Errors: raise `CursorExpired` when the cursor is refused; any other exception from
    `list_changes` stops the run, and from a write is recorded against that item.

    Deletions: a side whose incremental listings cannot report deletions declares
    `Capabilities(lists_deletions=False)`. The engine then reads back (`get`) any id such a
    listing reports as deleted before believing it, treats a linked item it leaves out as
    unknown, and confirms absences only on a full listing (each missing linked item read
    by `get`; only None counts as deleted). The adapter decides how often a full listing
    happens by raising `CursorExpired` when its cursor is old enough.

    Withheld invitees: with `suppress_invitations=False` and `notify=False` the engine
    never passes invitees; it puts them in `event.extra[WITHHELD_INVITEES]` (a tuple of
    Invitee) so the adapter may list them in the body. Never write them as attendees, and
    strip such a listing from the description when reading the item back.
    """

    def capabilities(self) -> Capabilities: ...

    def list_changes(
        self, cursor: str | None, window: Window, page_token: str | None = None
    ) -> ChangePage: ...

    def get(self, item_id: str) -> Event | None: ...

    def find_by_link_id(self, link_id: str) -> Event | None: ...

    def create(self, event: Event, *, link_id: str, notify: bool) -> Event: ...

    def update(self, item_id: str, event: Event, *, notify: bool) -> Event: ...

    def delete(self, item_id: str, *, notify: bool) -> None: ...


@dataclass(frozen=True)
class Write:
    """One write of a batch: `create` carries `event` and `link_id`; `update` carries
    `item_id` and `event`; `delete` carries `item_id`."""

    kind: Literal["create", "update", "delete"]
    event: Event | None = None
    item_id: str | None = None
    link_id: str | None = None
    notify: bool = False


@runtime_checkable
class BatchWriter(Protocol):
    """Optional: an adapter that can send several writes in one request (a JSON batch
    endpoint, a bulk save call). The executor then hands it up to `max_batch` writes at
    once; with `max_batch` of 1 or less (an API version without bulk writes) it calls
    `create`/`update`/`delete` one by one instead.

    `write_many` returns one entry per write, in order: the written Event for a create or
    update, None for a delete, or the exception that write met (recorded against that item
    alone; the others stand). An exception raised by `write_many` itself fails every write
    of the batch. Creates keep the `create` rule: `link_id` is stored where
    `find_by_link_id` finds it, so a batch cut short is found, not doubled, on retry. The
    executor saves every create's pending link before the batch is sent, and never puts
    two writes that depend on each other (same item, same link) in one batch."""

    max_batch: int

    def write_many(self, writes: Sequence[Write]) -> list[Event | BaseException | None]: ...


class CalendarAdapter(SideAdapter, Protocol):
    """The user's calendar. `create` must store `link_id` where `find_by_link_id` finds it."""


class CrmAdapter(SideAdapter, Protocol):
    """The CRM's meetings. `create`/`update` relate the meeting to every CRM contact, lead
    or user whose email matches an invitee; the engine passes invitees through untouched."""
