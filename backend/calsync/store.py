"""The engine's SyncStore in SQL: one user's links, cursors and first-sync time.

Every write commits before it returns, because the executor relies on it: a pending
link saved before a create must survive the worker being killed during that create.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import transaction
from calsync.models import EventLink, SyncState
from calsync.sync.model import Side
from calsync.sync.state import Link


def _to_link(row: EventLink) -> Link:
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


class SqlSyncStore:
    def __init__(self, sessions: sessionmaker[Session], user_id: int) -> None:
        self.sessions = sessions
        self.user_id = user_id

    def links(self) -> list[Link]:
        with transaction(self.sessions) as session:
            rows = session.scalars(select(EventLink).where(EventLink.user_id == self.user_id))
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
                state.calendar_cursor = cursor
            else:
                state.crm_cursor = cursor

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


def _cursor(state: SyncState, side: Side) -> str | None:
    return state.calendar_cursor if side == "calendar" else state.crm_cursor
