"""Duplicate cleanup: scan, preview, confirmed removal, restore. Safe, previewed, reversible.

The flow the user sees ("Run duplicate cleanup", then "Yes"):
1. `preview_cleanup` lists both sides in full (within the sync window), groups duplicates
   (`calsync.sync.dedupe.find_duplicates`: O(n) hashing) and returns a `CleanupPreview`
   whose `to_dict()` is stored under a preview id (the preview run's id) and shown: each
   group, what is kept, what would be removed, what is only similar or protected, and why.
2. `remove_duplicates` removes exactly the previewed items. It first re-reads every kept
   and every to-be-removed item and stops, removing nothing, if any version or link
   changed since the preview (`PreviewStale`): the user then sees a fresh preview.
3. Each removed item is put in the trash (the whole neutral Event, its side, its original
   id, its link) *before* it is deleted, and kept for `KEEP_DAYS`. `restore_item`
   re-creates it on its side and links it again; restoring twice does nothing.

Like `run_sync`, these functions take both adapters and the store as parameters: the
same code runs on the engine's in-memory fakes and on real calendars and CRMs. The SQL
parts (the trash table, previews stored in sync runs) are at the bottom of this module.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import transaction
from calsync.models import RemovedItem, SyncRun
from calsync.sync.adapters import SideAdapter, Window
from calsync.sync.dedupe import DuplicateGroup, ScanItem, ScanOptions, find_duplicates
from calsync.sync.executor import MAX_PAGES
from calsync.sync.model import (
    SIDES,
    Event,
    Invitee,
    MovedOccurrence,
    Recurrence,
    Side,
    content_hash,
    other_side,
)
from calsync.sync.policies import sync_window
from calsync.sync.settings import SyncSettings
from calsync.sync.state import Link, SyncStore

log = logging.getLogger(__name__)

KEEP_DAYS = 30
STALE_MESSAGE = (
    "Something changed since the preview, so nothing was removed. Run the duplicate "
    "cleanup again to see what it would remove now."
)


class PreviewStale(Exception):
    """An item of the preview changed (or vanished) before the user's "Yes" was applied."""

    def __init__(self, changed: list[dict[str, Any]]) -> None:
        super().__init__(STALE_MESSAGE)
        self.message = STALE_MESSAGE
        self.changed = changed


# -- the neutral Event as JSON (for the trash) ----------------------------------------------


def _when(value: str | None) -> datetime | date | None:
    if value is None:
        return None
    return datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)


def event_from_dict(d: Mapping[str, Any]) -> Event:
    """The inverse of `Event.to_dict()`."""
    rec = d.get("recurrence")
    recurrence = None
    if rec is not None:
        recurrence = Recurrence(
            rec["rrule"],
            tuple(_when(c) for c in rec.get("cancelled", ())),  # type: ignore[misc]
            tuple(
                MovedOccurrence(_when(o), _when(s), _when(e))  # type: ignore[arg-type]
                for o, s, e in rec.get("moved", ())
            ),
        )
    return Event(
        title=d.get("title") or "",
        start=_when(d.get("start")),
        end=_when(d.get("end")),
        timezone=d.get("timezone"),
        location=d.get("location"),
        description=d.get("description"),
        organizer=d.get("organizer"),
        invitees=tuple(
            Invitee(i["email"], i.get("name"), i.get("response") or "needs_action")
            for i in d.get("invitees", ())
        ),
        recurrence=recurrence,
        status=d.get("status") or "confirmed",
        private=bool(d.get("private")),
        calendar_id=d.get("calendar_id"),
        calendar_version=d.get("calendar_version"),
        crm_id=d.get("crm_id"),
        crm_version=d.get("crm_version"),
        last_modified=_when(d.get("last_modified")),  # type: ignore[arg-type]
        ical_uid=d.get("ical_uid"),
        link_id=d.get("link_id"),
    )


# Link's times, kept as ISO strings in the JSON of a removed item.
_LINK_TIMES = {f.name for f in fields(Link) if "datetime" in str(f.type)}


def link_to_dict(link: Link) -> dict[str, Any]:
    # Every field but `pending` (a removed item's link is settled), whatever Link grows.
    out = {f.name: getattr(link, f.name) for f in fields(Link) if f.name != "pending"}
    for name in _LINK_TIMES:
        if out.get(name) is not None:
            out[name] = out[name].isoformat()
    return out


def link_from_dict(d: Mapping[str, Any]) -> Link:
    known = {f.name for f in fields(Link)}
    values = {k: v for k, v in d.items() if k in known}
    for name in _LINK_TIMES:
        if isinstance(values.get(name), str):
            values[name] = datetime.fromisoformat(values[name])
    return Link(**values)


# -- listing -----------------------------------------------------------------------------


def list_all(adapter: SideAdapter, side: Side, window: Window) -> tuple[list[Event], int]:
    """Every item of a side in the window (a full listing), and how many were unreadable."""
    events: dict[str, Event] = {}
    bad = 0
    token: str | None = None
    for _ in range(MAX_PAGES):
        page = adapter.list_changes(None, window, token)
        for ev in page.events:
            item_id = ev.id_on(side)
            if item_id:
                events[item_id] = ev
        bad += len(page.bad)
        token = page.next_page_token
        if token is None:
            return list(events.values()), bad
    raise RuntimeError(f"the {side} listing did not end after {MAX_PAGES} pages")


# -- preview -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CleanupPreview:
    created_at: datetime
    window: Window
    groups: list[DuplicateGroup]
    scanned: dict[str, int]
    unreadable: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        items = [i for g in self.groups for i in g.items]
        removed = [i for i in items if i.action == "remove"]
        return {
            "groups": len(self.groups),
            "remove": len(removed),
            "remove_calendar": sum(1 for i in removed if i.side == "calendar"),
            "remove_crm": sum(1 for i in removed if i.side == "crm"),
            "keep": sum(1 for i in items if i.action == "keep"),
            "similar": sum(1 for i in items if i.action == "similar"),
            "protected": sum(1 for i in items if i.action == "protected"),
            "merged_invitees": sum(len(i.merge_invitees) for i in items),
        }

    def to_dict(self) -> dict[str, Any]:
        """What the API returns and the page shows; also what the removal re-checks."""
        return {
            "phase": "preview",
            "created_at": self.created_at.isoformat(),
            "window": {"start": self.window.start.isoformat(), "end": self.window.end.isoformat()},
            "scanned": dict(self.scanned),
            "unreadable": dict(self.unreadable),
            "counts": self.counts(),
            "groups": [
                {"key": f"g{n}", "items": [_item_dict(i) for i in g.items]}
                for n, g in enumerate(self.groups, 1)
            ],
        }


def _item_dict(item: ScanItem) -> dict[str, Any]:
    ev = item.event
    return {
        "side": item.side,
        "id": item.item_id,
        "version": ev.version_on(item.side),
        "hash": content_hash(ev),
        "title": ev.title,
        "start": ev.start.isoformat() if ev.start is not None else None,
        "end": ev.end.isoformat() if ev.end is not None else None,
        "all_day": ev.all_day,
        "organizer": ev.organizer,
        "location": ev.location,
        "invitees": [i.email for i in ev.invitees],
        "link_id": item.link_id,
        "action": item.action,
        "reason": item.reason,
        "merge_invitees": [{"email": i.email, "name": i.name} for i in item.merge_invitees],
    }


def preview_cleanup(
    calendar: SideAdapter,
    crm: SideAdapter,
    store: SyncStore,
    settings: SyncSettings,
    now: datetime,
    *,
    user_email: str | None = None,
) -> CleanupPreview:
    """Scan both sides and decide, per duplicate group, what a confirmed run would do.

    Writes nothing. A listing that fails raises (the job records it).
    """
    window = sync_window(settings, now)
    listed: dict[Side, list[Event]] = {}
    unreadable: dict[str, int] = {}
    for side, adapter in (("calendar", calendar), ("crm", crm)):
        listed[side], unreadable[side] = list_all(adapter, side, window)  # type: ignore[index]
    caps = calendar.capabilities()
    groups = find_duplicates(
        listed["calendar"],
        listed["crm"],
        store.links(),
        ScanOptions(
            window_start=window.start,
            window_end=window.end,
            user_email=user_email,
            calendar_emails_attendees=caps.notify and not caps.suppress_invitations,
        ),
    )
    return CleanupPreview(
        created_at=now,
        window=window,
        groups=groups,
        scanned={side: len(listed[side]) for side in SIDES},
        unreadable=unreadable,
    )


# -- the trash -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrashEntry:
    entry_id: str
    side: Side
    original_id: str
    event: Event  # as it was just before removal
    link: Link | None
    restore_link_id: str
    removed_at: datetime
    run_id: int | None = None
    restored_at: datetime | None = None
    restored_id: str | None = None

    @property
    def expires_at(self) -> datetime:
        return self.removed_at + timedelta(days=KEEP_DAYS)

    def to_dict(self) -> dict[str, Any]:
        """One line of the run's page, with what its "Restore" button needs."""
        return {
            "entry_id": self.entry_id,
            "side": self.side,
            "original_id": self.original_id,
            "title": self.event.title,
            "start": self.event.start.isoformat() if self.event.start else None,
            "end": self.event.end.isoformat() if self.event.end else None,
            "linked": self.link is not None,
            "removed_at": self.removed_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "restored_at": self.restored_at.isoformat() if self.restored_at else None,
            "restored_id": self.restored_id,
        }


class Trash(Protocol):
    """Where removed items wait to be restored. Writes must be durable on return."""

    def add(self, entry: TrashEntry) -> None: ...

    def get(self, entry_id: str) -> TrashEntry | None: ...

    def discard(self, entry_id: str) -> None: ...

    def mark_restored(self, entry_id: str, restored_id: str, at: datetime) -> None: ...


class InMemoryTrash:
    def __init__(self) -> None:
        self.entries: dict[str, TrashEntry] = {}

    def add(self, entry: TrashEntry) -> None:
        self.entries[entry.entry_id] = entry

    def get(self, entry_id: str) -> TrashEntry | None:
        return self.entries.get(entry_id)

    def discard(self, entry_id: str) -> None:
        self.entries.pop(entry_id, None)

    def mark_restored(self, entry_id: str, restored_id: str, at: datetime) -> None:
        entry = self.entries[entry_id]
        self.entries[entry_id] = replace(entry, restored_at=at, restored_id=restored_id)


# -- removal -------------------------------------------------------------------------------


@dataclass
class RemovalResult:
    removed: dict[str, int] = field(default_factory=lambda: {"calendar": 0, "crm": 0})
    merged_invitees: int = 0
    entries: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": "removal",
            "removed": dict(self.removed),
            "merged_invitees": self.merged_invitees,
            "entries": list(self.entries),
            "errors": list(self.errors),
        }


def _new_id() -> str:
    return uuid.uuid4().hex


def _changed(item: Mapping[str, Any], current: Event | None, link_id: str | None) -> str | None:
    if current is None:
        return "it no longer exists"
    side: Side = item["side"]
    version = current.version_on(side)
    if item.get("version") is not None and version is not None:
        if version != item["version"]:
            return "it was edited"
    elif content_hash(current) != item.get("hash"):
        return "it was edited"
    if link_id != item.get("link_id"):
        return "a sync linked or unlinked it"
    return None


def remove_duplicates(
    calendar: SideAdapter,
    crm: SideAdapter,
    store: SyncStore,
    trash: Trash,
    preview: Mapping[str, Any],
    now: datetime,
    *,
    run_id: int | None = None,
    new_id: Callable[[], str] = _new_id,
) -> RemovalResult:
    """Remove exactly what `preview` (a `CleanupPreview.to_dict()`) said it would remove.

    Raises PreviewStale, having removed nothing, if any kept or to-be-removed item
    changed or vanished, or was linked/unlinked, since the preview. Deletes are silent
    (notify=False). An item that cannot be deleted is recorded and the rest go on.
    """
    adapters: dict[Side, SideAdapter] = {"calendar": calendar, "crm": crm}
    linked: dict[tuple[Side, str], Link] = {}
    for link in store.links():
        for side in SIDES:
            if link.id_on(side):
                linked[(side, link.id_on(side) or "")] = link

    # 1. Re-read every item the removal relies on; one change anywhere stops it all.
    current: dict[tuple[Side, str], Event] = {}
    changed: list[dict[str, Any]] = []
    for group in preview.get("groups", ()):
        for item in group["items"]:
            if item["action"] not in ("keep", "remove"):
                continue
            side: Side = item["side"]
            found = adapters[side].get(item["id"])
            link = linked.get((side, item["id"]))
            why = _changed(item, found, link.link_id if link else None)
            if why is not None:
                changed.append({"side": side, "id": item["id"], "title": item["title"], "why": why})
            elif found is not None:
                current[(side, item["id"])] = found
    if changed:
        raise PreviewStale(changed)

    # 2. Remove, each item trashed before its delete; then merge into the kept copy.
    result = RemovalResult()
    for group in preview.get("groups", ()):
        removed_events: dict[Side, list[Event]] = {"calendar": [], "crm": []}
        for item in group["items"]:
            if item["action"] != "remove":
                continue
            side = item["side"]
            event = current[(side, item["id"])]
            link = linked.get((side, item["id"]))
            entry = TrashEntry(
                entry_id=new_id(),
                side=side,
                original_id=item["id"],
                event=event,
                link=link,
                restore_link_id=new_id(),
                removed_at=now,
                run_id=run_id,
            )
            trash.add(entry)
            try:
                adapters[side].delete(item["id"], notify=False)
            except Exception as exc:
                log.warning("cleanup could not remove %s %s: %s", side, item["id"], exc)
                trash.discard(entry.entry_id)
                result.errors.append(_error("remove", item, exc))
                continue
            result.removed[side] += 1
            result.entries.append(entry.entry_id)
            removed_events[side].append(event)
            if link is not None:
                _drop_side(store, link.link_id, side)
        for item in group["items"]:
            if item["action"] != "keep" or not item.get("merge_invitees"):
                continue
            side = item["side"]
            merged = _merge(adapters[side], current[(side, item["id"])], item, removed_events[side])
            if isinstance(merged, Exception):
                result.errors.append(_error("merge", item, merged))
            else:
                result.merged_invitees += merged
    return result


def _drop_side(store: SyncStore, link_id: str, side: Side) -> None:
    """The removed item leaves its link; a link left with no item goes too."""
    link = store.get_link(link_id)
    if link is None:
        return
    after = link.with_side(side, None, None)
    if after.id_on(other_side(side)) is None:
        store.delete_link(link_id)
    else:
        store.save_link(after)


def _merge(
    adapter: SideAdapter, kept: Event, item: Mapping[str, Any], removed: list[Event]
) -> int | Exception:
    """Add to the kept copy the invitees the preview promised, from copies really removed."""
    promised = {m["email"].strip().lower() for m in item["merge_invitees"]}
    have = {i.email.strip().lower() for i in kept.invitees}
    extra: dict[str, Invitee] = {}
    for ev in removed:
        for person in ev.invitees:
            email = person.email.strip().lower()
            if email in promised and email not in have and email not in extra:
                extra[email] = Invitee(person.email, person.name)
    if not extra:
        return 0
    try:
        adapter.update(
            item["id"], replace(kept, invitees=kept.invitees + tuple(extra.values())), notify=False
        )
    except Exception as exc:
        return exc
    return len(extra)


def _error(action: str, item: Mapping[str, Any], exc: BaseException) -> dict[str, Any]:
    return {
        "action": action,
        "side": item["side"],
        "item": item["id"],
        "title": item.get("title"),
        "message": str(exc) or type(exc).__name__,
    }


# -- restore -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreResult:
    # "restored" | "already_restored" | "already_back"
    status: str
    item_id: str | None
    relinked: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "item_id": self.item_id, "relinked": self.relinked}


class NotFound(LookupError):
    """A preview or removed item the user named does not exist (or has expired)."""


class NotInTrash(NotFound):
    """The removed item does not exist (or has expired)."""


def restore_item(
    calendar: SideAdapter,
    crm: SideAdapter,
    store: SyncStore,
    trash: Trash,
    entry_id: str,
    now: datetime,
) -> RestoreResult:
    """Re-create a removed item on its side and link it again if it was linked.

    Never makes a duplicate of the item itself: an entry restored before does nothing;
    an item still (or again) at its old id, or already re-created by an earlier restore
    cut short (found by the restore's own link id), is taken as the restored one.
    """
    entry = trash.get(entry_id)
    if entry is None:
        raise NotInTrash(f"There is no removed item {entry_id} to restore (it may have expired).")
    if entry.restored_at is not None:
        return RestoreResult("already_restored", entry.restored_id)
    adapter = {"calendar": calendar, "crm": crm}[entry.side]
    back = adapter.get(entry.original_id) or adapter.find_by_link_id(entry.restore_link_id)
    status = "already_back" if back is not None else "restored"
    if back is None:
        # Ids and versions belong to the removed item; the side gives the copy its own.
        back = adapter.create(
            replace(entry.event.content(), link_id=entry.restore_link_id),
            link_id=entry.restore_link_id,
            notify=False,
        )
    new_id = back.id_on(entry.side) or ""
    relinked = _relink(store, entry, new_id, back.version_on(entry.side))
    trash.mark_restored(entry.entry_id, new_id, now)
    return RestoreResult(status, new_id, relinked)


def _relink(store: SyncStore, entry: TrashEntry, new_id: str, version: str | None) -> bool:
    if entry.link is None:
        return False
    side = entry.side
    current = store.get_link(entry.link.link_id)
    if current is None:
        # Both copies of the pair were removed (or its other copy is gone): the link
        # comes back with this side only; restoring the other copy fills the other side.
        restored = entry.link.with_side(other_side(side), None, None).with_side(
            side, new_id, version
        )
        store.save_link(replace(restored, pending=None))
        return True
    if current.id_on(side) in (None, entry.original_id, new_id):
        store.save_link(current.with_side(side, new_id, version))
        return True
    return False  # another item took this place in the link meanwhile: leave it


# -- SQL: the trash table and previews stored in sync runs ---------------------------------


def _row_to_entry(row: RemovedItem) -> TrashEntry:
    return TrashEntry(
        entry_id=row.entry_id,
        side=row.side,  # type: ignore[arg-type]
        original_id=row.original_id,
        event=event_from_dict(row.event),
        link=link_from_dict(row.link) if row.link else None,
        restore_link_id=row.restore_link_id,
        removed_at=row.removed_at,
        run_id=row.run_id,
        restored_at=row.restored_at,
        restored_id=row.restored_id,
    )


class SqlTrash:
    """One user's removed items in the `removed_items` table."""

    def __init__(self, sessions: sessionmaker[Session], user_id: int) -> None:
        self.sessions = sessions
        self.user_id = user_id

    def add(self, entry: TrashEntry) -> None:
        with transaction(self.sessions) as session:
            session.add(
                RemovedItem(
                    user_id=self.user_id,
                    run_id=entry.run_id,
                    entry_id=entry.entry_id,
                    side=entry.side,
                    original_id=entry.original_id,
                    link=link_to_dict(entry.link) if entry.link else None,
                    restore_link_id=entry.restore_link_id,
                    event=entry.event.to_dict(),
                    removed_at=entry.removed_at,
                    expires_at=entry.expires_at,
                )
            )

    def get(self, entry_id: str) -> TrashEntry | None:
        with transaction(self.sessions) as session:
            row = self._row(session, entry_id)
            return _row_to_entry(row) if row is not None else None

    def discard(self, entry_id: str) -> None:
        with transaction(self.sessions) as session:
            session.execute(
                delete(RemovedItem).where(
                    RemovedItem.user_id == self.user_id, RemovedItem.entry_id == entry_id
                )
            )

    def mark_restored(self, entry_id: str, restored_id: str, at: datetime) -> None:
        with transaction(self.sessions) as session:
            row = self._row(session, entry_id)
            if row is not None:
                row.restored_at = at
                row.restored_id = restored_id

    def entries(self, run_id: int | None = None) -> list[TrashEntry]:
        """What the run's page lists (every unexpired entry without a run id)."""
        with transaction(self.sessions) as session:
            query = select(RemovedItem).where(RemovedItem.user_id == self.user_id)
            if run_id is not None:
                query = query.where(RemovedItem.run_id == run_id)
            rows = session.scalars(query.order_by(RemovedItem.id))
            return [_row_to_entry(row) for row in rows]

    def _row(self, session: Session, entry_id: str) -> RemovedItem | None:
        # Expired entries are as good as gone even before the purge job removes them.
        row = session.scalar(
            select(RemovedItem).where(
                RemovedItem.user_id == self.user_id, RemovedItem.entry_id == entry_id
            )
        )
        if row is None or row.expires_at <= datetime.now(row.expires_at.tzinfo):
            return None
        return row


def purge_expired(sessions: sessionmaker[Session], now: datetime) -> int:
    """Forget removed items kept longer than `KEEP_DAYS`; returns how many went."""
    with transaction(sessions) as session:
        result = session.execute(delete(RemovedItem).where(RemovedItem.expires_at <= now))
        return result.rowcount or 0


def load_preview(sessions: sessionmaker[Session], user_id: int, preview_id: int) -> dict[str, Any]:
    """The stored preview of one of the user's cleanup runs; NotFound if there is none."""
    with transaction(sessions) as session:
        run = session.get(SyncRun, preview_id)
        if (
            run is None
            or run.user_id != user_id
            or run.kind != "cleanup"
            or (run.counts or {}).get("phase") != "preview"
            or run.status != "succeeded"
        ):
            raise NotFound(f"There is no duplicate cleanup preview {preview_id}.")
        return dict(run.counts)
