"""Reset calendar sync: forget every link and cursor, then run the first sync again.

Nothing is deleted on either side. The first sync links twins that exist on both sides
instead of copying them (`pair_twins`: our link id, then the iCalUID, then title, start
and end), so a reset rebuilds the links and copies only what had never been copied.

All links go, not some: the planner deletes the copies of an occurrence whose series
link is missing (the orphaned-occurrence rule), so keeping occurrence links while
dropping their series link would delete those copies.

Our link id is written only into the *copy* (the item calsync created); the original
keeps its own identity. So that the first sync's strongest match (same link id on both
sides) can still recognise a copy edited since (retitled, moved), the old links serve as
a hint: an item an old link named is listed as carrying that link id, and pairs with the
copy that really carries it. A hint pairs nothing by itself: without a copy carrying the
same id on the other side, matching falls back to the iCalUID and to title/start/end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select

from calsync.db import transaction
from calsync.models import SyncState
from calsync.store import SqlSyncStore
from calsync.sync.adapters import ChangePage, SideAdapter, Window
from calsync.sync.executor import Progress, run_sync
from calsync.sync.model import SIDES, Event, Side
from calsync.sync.result import RunResult
from calsync.sync.settings import SyncSettings
from calsync.sync.state import InMemoryStore, Link, SyncStore


@dataclass(frozen=True)
class ResetPreview:
    links: int

    @property
    def message(self) -> str:
        noun = "link" if self.links == 1 else "links"
        return f"{self.links} {noun} will be rebuilt; nothing is deleted."

    def to_dict(self) -> dict[str, Any]:
        return {"links": self.links, "message": self.message}


def _pairs(links: list[Link]) -> int:
    # What the user thinks of as a link: an item here tied to its twin there. Expanded
    # series masters and halves of unfinished creates are bookkeeping, not pairs.
    return sum(1 for lk in links if lk.calendar_id and lk.crm_id)


def reset_preview(store: SyncStore) -> ResetPreview:
    """What "Yes" would do, for the confirmation ("N links will be rebuilt...")."""
    return ResetPreview(_pairs(store.links()))


@dataclass
class ResetResult:
    cleared: int
    sync: RunResult

    def to_dict(self) -> dict[str, Any]:
        return {"phase": "reset", "links_cleared": self.cleared, **self.sync.to_dict()}


def clear_sync_state(store: SyncStore) -> int:
    """Forget every link, both cursors and the first sync; returns how many links went."""
    links = store.links()
    for link in links:
        store.delete_link(link.link_id)
    for side in SIDES:
        store.save_cursor(side, None)
    _forget_first_sync(store)
    return len(links)


def _forget_first_sync(store: SyncStore) -> None:
    # SyncStore has no "unmark" (the engine never needs one); the known stores are
    # cleared directly. The re-run must count as a first sync: with "After first sync"
    # it must not email anyone, exactly as the very first sync did not.
    clear = getattr(store, "clear_first_sync", None)
    if callable(clear):
        clear()
    elif isinstance(store, SqlSyncStore):
        with transaction(store.sessions) as session:
            state = session.scalar(select(SyncState).where(SyncState.user_id == store.user_id))
            if state is not None:
                state.first_sync_completed_at = None
    elif isinstance(store, InMemoryStore):
        store._first_sync = None
    else:
        raise TypeError(f"{type(store).__name__} cannot forget its first sync")


class _Hinted:
    """An adapter whose events also carry the link id an old link gave them (see above)."""

    def __init__(self, adapter: SideAdapter, side: Side, hints: dict[str, str]) -> None:
        self._adapter = adapter
        self._side = side
        self._hints = hints

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)

    def _hint(self, event: Event | None) -> Event | None:
        if event is None:
            return None
        link_id = self._hints.get(event.id_on(self._side) or "")
        return replace(event, link_id=link_id) if link_id else event

    def list_changes(
        self, cursor: str | None, window: Window, page_token: str | None = None
    ) -> ChangePage:
        page = self._adapter.list_changes(cursor, window, page_token)
        events = [self._hint(ev) for ev in page.events]
        return replace(page, events=[ev for ev in events if ev is not None])

    def get(self, item_id: str) -> Event | None:
        return self._hint(self._adapter.get(item_id))


def _hints(links: list[Link]) -> dict[Side, dict[str, str]]:
    out: dict[Side, dict[str, str]] = {"calendar": {}, "crm": {}}
    for link in links:
        if link.series_link_id or link.expanded:
            continue  # occurrence copies are matched by their series, not one by one
        for side in SIDES:
            item_id = link.id_on(side)
            if item_id:
                out[side][item_id] = link.link_id
    return out


def reset_sync(
    calendar: SideAdapter,
    crm: SideAdapter,
    store: SyncStore,
    settings: SyncSettings,
    now: datetime,
    progress: Progress | None = None,
    *,
    user_email: str | None = None,
    new_link_id: Callable[[], str] | None = None,
) -> ResetResult:
    """Clear the user's sync state, then run the first sync again (which relinks twins).

    Raises what `run_sync` raises (SyncAborted with `.result`); the state stays cleared,
    and the next sync is then the first sync, with the same twin matching.
    """
    hints = _hints(store.links())
    cleared = clear_sync_state(store)
    result = run_sync(
        _Hinted(calendar, "calendar", hints["calendar"]),
        _Hinted(crm, "crm", hints["crm"]),
        store,
        settings,
        now,
        progress,
        user_email=user_email,
        new_link_id=new_link_id,
    )
    return ResetResult(cleared, result)
