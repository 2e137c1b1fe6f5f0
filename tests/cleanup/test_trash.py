"""The trash in SQL: removed items kept whole for 30 days, on every test database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy.orm import Session, sessionmaker

from calsync import crypto, migrate
from calsync.cleanup import SqlTrash, TrashEntry, purge_expired
from calsync.db import make_engine, make_sessionmaker, transaction
from calsync.models import Organization, User
from calsync.sync import Event, Invitee, Link

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    crypto.configure([Fernet.generate_key().decode()])
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def new_user(sessions: sessionmaker[Session], oid: str) -> int:
    with transaction(sessions) as session:
        user = User(organization=Organization(tenant_id=f"t-{oid}"), external_id=oid, email="u@x")
        session.add(user)
        session.flush()
        return user.id


def entry(entry_id: str = "e1", removed_at: datetime = NOW) -> TrashEntry:
    start = NOW + timedelta(days=1)
    event = Event(
        title="Demo",
        start=start,
        end=start + timedelta(hours=1),
        timezone="Europe/Berlin",
        invitees=(Invitee("a@client.org", "Ann"),),
        calendar_id="/cal/x.ics",
        calendar_version='"etag"',
        ical_uid="uid-1",
        link_id="uid-1",
    )
    link = Link(
        "L1",
        calendar_id="/cal/x.ics",
        crm_id="m1",
        content_hash="h",
        origin="crm",
        unsure_since=NOW - timedelta(hours=1),  # the link's times come back too
    )
    return TrashEntry(entry_id, "calendar", "/cal/x.ics", event, link, "R1", removed_at)


def test_a_trashed_item_comes_back_whole_with_its_link(sessions) -> None:  # type: ignore[no-untyped-def]
    trash = SqlTrash(sessions, new_user(sessions, "a"))
    trash.add(entry())

    assert trash.get("e1") == entry()


def test_one_users_trash_is_invisible_to_another(sessions) -> None:  # type: ignore[no-untyped-def]
    SqlTrash(sessions, new_user(sessions, "a")).add(entry())

    assert SqlTrash(sessions, new_user(sessions, "b")).get("e1") is None


def test_a_restored_item_is_marked_with_its_new_id(sessions) -> None:  # type: ignore[no-untyped-def]
    trash = SqlTrash(sessions, new_user(sessions, "a"))
    trash.add(entry())

    trash.mark_restored("e1", "/cal/new.ics", NOW)

    got = trash.get("e1")
    assert got is not None and (got.restored_at, got.restored_id) == (NOW, "/cal/new.ics")


def test_items_are_kept_for_30_days_then_purged(sessions) -> None:  # type: ignore[no-untyped-def]
    trash = SqlTrash(sessions, new_user(sessions, "a"))
    trash.add(entry("old", removed_at=NOW - timedelta(days=31)))
    trash.add(entry("new", removed_at=NOW - timedelta(days=29)))

    assert trash.get("old") is None  # expired: as good as gone before the purge
    assert purge_expired(sessions, NOW) == 1
    assert [e.entry_id for e in trash.entries()] == ["new"]
