"""What the engine remembers between runs: links and cursors. Persisted by a SyncStore."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from calsync.sync.model import Side


@dataclass(frozen=True)
class Link:
    """Which calendar item is which CRM record, and what was last synced between them.

    An expanded series (one side has no native series) is a master link with
    `expanded=True` holding only the series side's id, plus one occurrence link per
    copied occurrence with `series_link_id` pointing at the master and `occurrence_key`
    naming the occurrence; occurrence links hold only the copy's id.
    """

    link_id: str
    calendar_id: str | None = None
    crm_id: str | None = None
    calendar_version: str | None = None
    crm_version: str | None = None
    content_hash: str | None = None  # of the content last written/agreed
    origin: Side = "calendar"
    series_link_id: str | None = None
    occurrence_key: str | None = None
    expanded: bool = False
    pending: Side | None = None  # a create on this side was started but not confirmed
    # The copy on this side was written without its invitees (the side would have e-mailed
    # them). Its empty invitee list is not the meeting's: copying from it keeps the other
    # side's invitees, and `content_hash` is of the content *with* those invitees.
    withheld_on: Side | None = None
    # Set on a link whose create on `pending` was given up (its source is gone) although
    # the create may still land: the link then holds no ids and only waits for that late
    # copy, which the planner deletes as a stray. Dropped after a day.
    abandoned_at: datetime | None = None
    # When a create of this link was last sent, answered or not (a lost answer, or an
    # attempt the adapter retried, may still land): dropping the link within a day of it
    # leaves a watch (`abandoned_at`).
    unsure_since: datetime | None = None
    # The `write_fingerprint`s (space-separated, the last few) of creates and updates sent
    # to `unanswered_on` that got no answer: they may still land, even after a newer
    # version was written. The item there holding one of them is our own write, not a
    # user's edit (within a day of `unsure_since`).
    unanswered_hash: str | None = None
    unanswered_on: Side | None = None

    def id_on(self, side: Side) -> str | None:
        return self.calendar_id if side == "calendar" else self.crm_id

    def version_on(self, side: Side) -> str | None:
        return self.calendar_version if side == "calendar" else self.crm_version

    def with_side(self, side: Side, item_id: str | None, version: str | None) -> Link:
        if side == "calendar":
            return replace(self, calendar_id=item_id, calendar_version=version)
        return replace(self, crm_id=item_id, crm_version=version)


class SyncStore(Protocol):
    """Per-user persistence of links and sync state. Writes must be durable on return."""

    def links(self) -> list[Link]: ...

    def get_link(self, link_id: str) -> Link | None: ...

    def save_link(self, link: Link) -> None: ...

    def save_links(self, links: Sequence[Link]) -> None:
        """Save many links at once, durable together on return (one transaction)."""
        ...

    def delete_link(self, link_id: str) -> None: ...

    def get_cursor(self, side: Side) -> str | None: ...

    def save_cursor(self, side: Side, cursor: str | None) -> None:
        """Also empties the side's recheck set: every change up to the cursor is applied."""
        ...

    def recheck(self, side: Side) -> frozenset[str]:
        """Items a run saw on `side` without saving the cursor past them (see executor)."""
        ...

    def add_recheck(self, side: Side, item_ids: Iterable[str]) -> None: ...

    def first_sync_completed_at(self) -> datetime | None: ...

    def mark_first_sync_completed(self, at: datetime) -> None: ...


class InMemoryStore:
    def __init__(self) -> None:
        self._links: dict[str, Link] = {}
        self._cursors: dict[Side, str | None] = {"calendar": None, "crm": None}
        self._recheck: dict[Side, frozenset[str]] = {"calendar": frozenset(), "crm": frozenset()}
        self._first_sync: datetime | None = None

    def links(self) -> list[Link]:
        return list(self._links.values())

    def get_link(self, link_id: str) -> Link | None:
        return self._links.get(link_id)

    def save_link(self, link: Link) -> None:
        self._links[link.link_id] = link

    def save_links(self, links: Sequence[Link]) -> None:
        for link in links:
            self._links[link.link_id] = link

    def delete_link(self, link_id: str) -> None:
        self._links.pop(link_id, None)

    def get_cursor(self, side: Side) -> str | None:
        return self._cursors[side]

    def save_cursor(self, side: Side, cursor: str | None) -> None:
        self._cursors[side] = cursor
        self._recheck[side] = frozenset()

    def recheck(self, side: Side) -> frozenset[str]:
        return self._recheck[side]

    def add_recheck(self, side: Side, item_ids: Iterable[str]) -> None:
        self._recheck[side] = self._recheck[side] | frozenset(item_ids)

    def first_sync_completed_at(self) -> datetime | None:
        return self._first_sync

    def mark_first_sync_completed(self, at: datetime) -> None:
        self._first_sync = at
