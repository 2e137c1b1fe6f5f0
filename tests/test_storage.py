"""What the models promise: secrets encrypted at rest, one global profile, clean deletes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from calsync import crypto, migrate
from calsync.crypto import SecretsUnavailable
from calsync.db import make_engine, make_sessionmaker, transaction
from calsync.models import (
    Connection,
    EventLink,
    Organization,
    SyncProfile,
    SyncRun,
    SyncState,
    User,
)


@pytest.fixture
def sessions(database_url: str):  # type: ignore[no-untyped-def]
    crypto.configure([Fernet.generate_key().decode()])
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def make_user(session, tenant: str = "tenant-1", oid: str = "user-1") -> User:  # type: ignore[no-untyped-def]
    org = session.scalar(select(Organization).where(Organization.tenant_id == tenant))
    if org is None:
        org = Organization(tenant_id=tenant, name=tenant)
        session.add(org)
    user = User(organization=org, external_id=oid, email=f"{oid}@example.com")
    session.add(user)
    session.flush()
    return user


def test_a_connection_secret_is_encrypted_in_the_database(sessions) -> None:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        user = make_user(session)
        session.add(
            Connection(user=user, kind="crm", provider="suitecrm", secret={"password": "hunter2"})
        )

    with transaction(sessions) as session:
        raw = session.execute(text("SELECT secret FROM connections")).scalar_one()
        loaded = session.scalars(select(Connection)).one()

    assert "hunter2" not in raw
    assert loaded.secret == {"password": "hunter2"}


def test_secrets_survive_a_key_rotation(sessions) -> None:  # type: ignore[no-untyped-def]
    old_key = Fernet.generate_key().decode()
    crypto.configure([old_key])
    with transaction(sessions) as session:
        session.add(
            Connection(user=make_user(session), kind="crm", provider="x", secret={"t": "s3"})
        )

    crypto.configure([Fernet.generate_key().decode(), old_key])
    with transaction(sessions) as session:
        assert session.scalars(select(Connection)).one().secret == {"t": "s3"}


def test_a_secret_without_its_key_is_a_clear_error(sessions) -> None:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        session.add(Connection(user=make_user(session), kind="crm", provider="x", secret={"a": 1}))

    crypto.configure([Fernet.generate_key().decode()])
    with (
        pytest.raises(SecretsUnavailable, match="CALSYNC_ENCRYPTION_KEY"),
        transaction(sessions) as session,
    ):
        session.scalars(select(Connection)).one()


def test_an_organization_has_at_most_one_global_profile(sessions) -> None:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        org = Organization(tenant_id="t", name="t")
        session.add_all(
            [
                SyncProfile(organization=org, name="Global", is_global=True),
                SyncProfile(organization=org, name="Sales", is_global=False),
                SyncProfile(organization=org, name="Support", is_global=False),
            ]
        )

    with pytest.raises(IntegrityError), transaction(sessions) as session:
        org = session.scalars(select(Organization)).one()
        session.add(SyncProfile(organization=org, name="Second global", is_global=True))


def test_deleting_a_user_removes_their_links_runs_and_state(sessions) -> None:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        user = make_user(session)
        session.add_all(
            [
                EventLink(user_id=user.id, link_id="l1", origin_side="calendar"),
                SyncRun(user_id=user.id, kind="sync", trigger="manual"),
                SyncState(user_id=user.id, calendar_cursor="c"),
                Connection(user=user, kind="calendar", provider="google"),
            ]
        )
    other_user_id = None
    with transaction(sessions) as session:
        other = make_user(session, oid="user-2")
        session.add(EventLink(user_id=other.id, link_id="l1", origin_side="crm"))
        other_user_id = other.id

    with transaction(sessions) as session:
        session.delete(session.scalars(select(User).where(User.external_id == "user-1")).one())

    with transaction(sessions) as session:
        assert session.scalars(select(EventLink.user_id)).all() == [other_user_id]
        assert session.scalars(select(SyncRun)).all() == []
        assert session.scalars(select(SyncState)).all() == []
        assert session.scalars(select(Connection)).all() == []


def test_a_link_id_is_unique_per_user_not_globally(sessions) -> None:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        first, second = make_user(session, oid="a"), make_user(session, oid="b")
        session.add_all(
            [
                EventLink(user_id=first.id, link_id="same", origin_side="crm"),
                EventLink(user_id=second.id, link_id="same", origin_side="crm"),
            ]
        )

    with pytest.raises(IntegrityError), transaction(sessions) as session:
        session.add(EventLink(user_id=first.id, link_id="same", origin_side="calendar"))


def test_times_come_back_as_utc(sessions) -> None:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        user = make_user(session)
        session.add(
            SyncRun(
                user_id=user.id,
                kind="sync",
                trigger="manual",
                started_at=datetime(2026, 3, 29, 9, 0, tzinfo=UTC),
            )
        )

    with transaction(sessions) as session:
        run = session.scalars(select(SyncRun)).one()
    assert run.started_at == datetime(2026, 3, 29, 9, 0, tzinfo=UTC)
    assert run.started_at.tzinfo is not None
    assert run.created_at.tzinfo is not None


def test_a_naive_time_is_refused_rather_than_guessed(sessions) -> None:  # type: ignore[no-untyped-def]
    with (
        pytest.raises(Exception, match="naive datetimes are ambiguous"),
        transaction(sessions) as session,
    ):
        user = make_user(session)
        session.add(
            SyncRun(
                user_id=user.id,
                kind="sync",
                trigger="manual",
                started_at=datetime(2026, 3, 29, 9, 0),
            )
        )
