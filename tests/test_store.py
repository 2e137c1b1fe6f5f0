"""The engine's SyncStore contract, kept by the in-memory store and the SQL store alike."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet

from calsync import crypto, migrate
from calsync.db import make_engine, make_sessionmaker, transaction
from calsync.models import Organization, User
from calsync.store import SqlSyncStore
from calsync.sync.state import InMemoryStore, Link


def new_user(sessions, oid: str) -> int:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        org = Organization(tenant_id=f"tenant-{oid}")
        user = User(organization=org, external_id=oid, email=f"{oid}@example.com")
        session.add(user)
        session.flush()
        return user.id


@pytest.fixture(params=["memory", "sql"])
def stores(request: pytest.FixtureRequest, database_url: str):  # type: ignore[no-untyped-def]
    """Two stores of two different users (the SQL one on every test database)."""
    if request.param == "memory":
        yield InMemoryStore(), InMemoryStore()
        return
    crypto.configure([Fernet.generate_key().decode()])
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    yield (
        SqlSyncStore(sessions, new_user(sessions, "a")),
        SqlSyncStore(sessions, new_user(sessions, "b")),
    )
    engine.dispose()


def test_a_saved_link_comes_back_whole(stores) -> None:  # type: ignore[no-untyped-def]
    store, _ = stores
    link = Link(
        link_id="L1",
        calendar_id="cal-1",
        crm_id="crm-1",
        calendar_version="v1",
        crm_version="v9",
        content_hash="h" * 64,
        origin="crm",
        series_link_id="S1",
        occurrence_key="20260301T090000Z",
        expanded=False,
        pending="calendar",
        withheld_on="calendar",
        abandoned_at=datetime(2026, 3, 1, 9, 30, tzinfo=UTC),
        unsure_since=datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
        unanswered_hash="u" * 64,
        unanswered_on="crm",
    )
    store.save_link(link)

    assert store.get_link("L1") == link
    assert store.links() == [link]


def test_saving_a_link_again_replaces_it(stores) -> None:  # type: ignore[no-untyped-def]
    store, _ = stores
    store.save_link(Link(link_id="L1", calendar_id="c", pending="crm"))
    store.save_link(Link(link_id="L1", calendar_id="c", crm_id="r", crm_version="2"))

    assert store.links() == [Link(link_id="L1", calendar_id="c", crm_id="r", crm_version="2")]


def test_a_deleted_link_is_gone(stores) -> None:  # type: ignore[no-untyped-def]
    store, _ = stores
    store.save_link(Link(link_id="L1"))
    store.delete_link("L1")
    store.delete_link("never-there")

    assert store.get_link("L1") is None
    assert store.links() == []


def test_cursors_are_kept_per_side(stores) -> None:  # type: ignore[no-untyped-def]
    store, _ = stores
    assert store.get_cursor("calendar") is None
    store.save_cursor("calendar", "delta-link")
    store.save_cursor("crm", "2026-11-26T10:00:00Z|a,b")
    store.save_cursor("calendar", None)

    assert store.get_cursor("calendar") is None
    assert store.get_cursor("crm") == "2026-11-26T10:00:00Z|a,b"


def test_items_to_recheck_accumulate_per_side_until_that_sides_cursor_is_saved(stores) -> None:  # type: ignore[no-untyped-def]
    store, other = stores
    store.add_recheck("calendar", ["e1", "e2"])
    store.add_recheck("calendar", ["e2", "e3"])
    store.add_recheck("crm", ["m1"])

    assert store.recheck("calendar") == {"e1", "e2", "e3"}
    assert other.recheck("calendar") == frozenset()
    store.save_cursor("calendar", "delta-link")
    assert store.recheck("calendar") == frozenset()
    assert store.recheck("crm") == {"m1"}


def test_first_sync_time_is_remembered(stores) -> None:  # type: ignore[no-untyped-def]
    store, _ = stores
    assert store.first_sync_completed_at() is None
    at = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    store.mark_first_sync_completed(at)

    assert store.first_sync_completed_at() == at


def test_one_users_links_and_cursors_are_invisible_to_another(stores) -> None:  # type: ignore[no-untyped-def]
    mine, theirs = stores
    mine.save_link(Link(link_id="L1", calendar_id="c"))
    mine.save_cursor("crm", "x")

    assert theirs.links() == []
    assert theirs.get_link("L1") is None
    assert theirs.get_cursor("crm") is None
    theirs.save_link(Link(link_id="L1", crm_id="other"))
    assert mine.get_link("L1") == Link(link_id="L1", calendar_id="c")
