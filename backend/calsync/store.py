"""The engine's SyncStore in SQL: one user's links, cursors and first-sync time.

Every write commits before it returns, because the executor relies on it: a pending
link saved before a create must survive the worker being killed during that create.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import transaction
from calsync.models import EventLink, SyncState
from calsync.sync.model import Side
from calsync.sync.state import Link

# Bound parameters per IN list: well under SQLite's 32,766 and PostgreSQL's 65,535.
_IN_CHUNK = 500

_LINK_COLUMNS = (
    EventLink.link_id,
    EventLink.calendar_item_id,
    EventLink.crm_record_id,
    EventLink.calendar_version,
    EventLink.crm_version,
    EventLink.content_hash,
    EventLink.origin_side,
    EventLink.series_link_id,
    EventLink.occurrence_key,
    EventLink.expanded,
    EventLink.pending_side,
    EventLink.withheld_on,
    EventLink.abandoned_at,
    EventLink.unsure_since,
    EventLink.unanswered_hash,
    EventLink.unanswered_on,
)


def _to_link(row: Any) -> Link:
    return Link(
        link_id=row.link_id,
        calendar_id=row.calendar_item_id,
        crm_id=row.crm_record_id,
        calendar_version=row.calendar_version,
        crm_version=row.crm_version,
        content_hash=row.content_hash,
        origin=row.origin_side,  # type: ignore[arg-type]
        series_link_id=row.series_link_id,
        occurrence_key=row.occurrence_key,
        expanded=row.expanded,
        pending=row.pending_side,  # type: ignore[arg-type]
        withheld_on=row.withheld_on,  # type: ignore[arg-type]
        abandoned_at=row.abandoned_at,
        unsure_since=row.unsure_since,
        unanswered_hash=row.unanswered_hash,
        unanswered_on=row.unanswered_on,  # type: ignore[arg-type]
    )


def _copy_into(row: EventLink, link: Link) -> None:
    row.calendar_item_id = link.calendar_id
    row.crm_record_id = link.crm_id
    row.calendar_version = link.calendar_version
    row.crm_version = link.crm_version
    row.content_hash = link.content_hash
    row.origin_side = link.origin
    row.series_link_id = link.series_link_id
    row.occurrence_key = link.occurrence_key
    row.expanded = link.expanded
    row.pending_side = link.pending
    row.withheld_on = link.withheld_on
    row.abandoned_at = link.abandoned_at
    row.unsure_since = link.unsure_since
    row.unanswered_hash = link.unanswered_hash
    row.unanswered_on = link.unanswered_on


class SqlSyncStore:
    def __init__(self, sessions: sessionmaker[Session], user_id: int) -> None:
        self.sessions = sessions
        self.user_id = user_id

    def links(self) -> list[Link]:
        # Plain column tuples, not ORM objects: a run reads every link twice, and tracking
        # thousands of instances in a session costs more than the query itself.
        with transaction(self.sessions) as session:
            rows = session.execute(select(*_LINK_COLUMNS).where(EventLink.user_id == self.user_id))
            return [_to_link(row) for row in rows]

    def get_link(self, link_id: str) -> Link | None:
        with transaction(self.sessions) as session:
            row = self._row(session, link_id)
            return _to_link(row) if row else None

    def save_link(self, link: Link) -> None:
        with transaction(self.sessions) as session:
            row = self._row(session, link.link_id)
            if row is None:
                row = EventLink(user_id=self.user_id, link_id=link.link_id)
                session.add(row)
            _copy_into(row, link)

    def save_links(self, links: Sequence[Link]) -> None:
        """Many links in one transaction (one commit): all are saved, or none."""
        if not links:
            return
        latest = {link.link_id: link for link in links}  # the last one of an id wins
        ids = list(latest)
        with transaction(self.sessions) as session:
            rows: dict[str, EventLink] = {}
            for i in range(0, len(ids), _IN_CHUNK):
                chunk = ids[i : i + _IN_CHUNK]
                found = session.scalars(
                    select(EventLink).where(
                        EventLink.user_id == self.user_id, EventLink.link_id.in_(chunk)
                    )
                )
                rows.update((row.link_id, row) for row in found)
            for link_id, link in latest.items():
                row = rows.get(link_id)
                if row is None:
                    row = EventLink(user_id=self.user_id, link_id=link_id)
                    session.add(row)
                _copy_into(row, link)

    def delete_link(self, link_id: str) -> None:
        with transaction(self.sessions) as session:
            session.execute(
                delete(EventLink).where(
                    EventLink.user_id == self.user_id, EventLink.link_id == link_id
                )
            )

    def get_cursor(self, side: Side) -> str | None:
        with transaction(self.sessions) as session:
            state = self._state(session)
            return None if state is None else _cursor(state, side)

    def save_cursor(self, side: Side, cursor: str | None) -> None:
        with transaction(self.sessions) as session:
            state = self._state(session, create=True)
            assert state is not None
            if side == "calendar":
                state.calendar_cursor, state.calendar_recheck = cursor, None
            else:
                state.crm_cursor, state.crm_recheck = cursor, None

    def recheck(self, side: Side) -> frozenset[str]:
        with transaction(self.sessions) as session:
            state = self._state(session)
            return frozenset() if state is None else _recheck(state, side)

    def add_recheck(self, side: Side, item_ids: Iterable[str]) -> None:
        with transaction(self.sessions) as session:
            state = self._state(session, create=True)
            assert state is not None
            ids = json.dumps(sorted(_recheck(state, side) | set(item_ids)))
            if side == "calendar":
                state.calendar_recheck = ids
            else:
                state.crm_recheck = ids

    def first_sync_completed_at(self) -> datetime | None:
        with transaction(self.sessions) as session:
            state = self._state(session)
            return None if state is None else state.first_sync_completed_at

    def mark_first_sync_completed(self, at: datetime) -> None:
        with transaction(self.sessions) as session:
            state = self._state(session, create=True)
            assert state is not None
            state.first_sync_completed_at = at

    def _row(self, session: Session, link_id: str) -> EventLink | None:
        return session.scalar(
            select(EventLink).where(EventLink.user_id == self.user_id, EventLink.link_id == link_id)
        )

    def _state(self, session: Session, *, create: bool = False) -> SyncState | None:
        state = session.scalar(select(SyncState).where(SyncState.user_id == self.user_id))
        if state is None and create:
            state = SyncState(user_id=self.user_id)
            session.add(state)
        return state


def _recheck(state: SyncState, side: Side) -> frozenset[str]:
    stored = state.calendar_recheck if side == "calendar" else state.crm_recheck
    return frozenset(json.loads(stored)) if stored else frozenset()


def _cursor(state: SyncState, side: Side) -> str | None:
    return state.calendar_cursor if side == "calendar" else state.crm_cursor
