"""`save_links`: many links saved together, by the SQL store (every test database) and the
in-memory one alike, for the executor's batch path."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import event

from calsync import crypto, migrate
from calsync.db import make_engine, make_sessionmaker, transaction
from calsync.models import Organization, User
from calsync.store import SqlSyncStore
from calsync.sync.state import InMemoryStore, Link


def _user(sessions: Any, oid: str) -> int:
    with transaction(sessions) as session:
        user = User(
            organization=Organization(tenant_id=f"tenant-{oid}"),
            external_id=oid,
            email=f"{oid}@example.com",
        )
        session.add(user)
        session.flush()
        return user.id


@pytest.fixture
def sql(database_url: str) -> Iterator[tuple[SqlSyncStore, SqlSyncStore, Any]]:
    crypto.configure([Fernet.generate_key().decode()])
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    yield (
        SqlSyncStore(sessions, _user(sessions, "a")),
        SqlSyncStore(sessions, _user(sessions, "b")),
        engine,
    )
    engine.dispose()


def links(n: int, **kw: Any) -> list[Link]:
    return [Link(f"L{i:04d}", calendar_id=f"cal-{i}", **kw) for i in range(n)]


def test_links_saved_together_come_back_whole_and_replace_older_ones(sql) -> None:  # type: ignore[no-untyped-def]
    store, other, _ = sql
    store.save_link(Link("L0001", calendar_id="old", pending="crm"))
    batch = links(700, crm_id=None, pending="crm", content_hash="h")
    store.save_links(batch)
    by_id = {lk.link_id: lk for lk in store.links()}
    assert len(by_id) == 700
    assert by_id["L0001"] == batch[1]
    assert by_id["L0699"] == batch[699]
    assert other.links() == []  # another user's links are not touched


def test_the_last_of_two_links_with_one_id_wins(sql) -> None:  # type: ignore[no-untyped-def]
    store, _, _ = sql
    store.save_links([Link("L1", pending="crm"), Link("L1", crm_id="m-1")])
    assert store.links() == [Link("L1", crm_id="m-1")]


def test_many_links_take_one_commit(sql) -> None:  # type: ignore[no-untyped-def]
    store, _, engine = sql
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    store.save_links(links(250))
    assert len(commits) == 1
    assert len(store.links()) == 250


def test_an_empty_list_saves_nothing(sql) -> None:  # type: ignore[no-untyped-def]
    store, _, engine = sql
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    store.save_links([])
    assert commits == [] and store.links() == []


def test_the_in_memory_store_keeps_the_same_contract() -> None:
    store = InMemoryStore()
    store.save_links([Link("L1", pending="crm"), *links(3), Link("L1", crm_id="m-1")])
    assert sorted(lk.link_id for lk in store.links()) == ["L0000", "L0001", "L0002", "L1"]
    assert store.get_link("L1") == Link("L1", crm_id="m-1")
