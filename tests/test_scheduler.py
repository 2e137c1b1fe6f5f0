"""Automatic sync: the scheduler queues users whose interval has elapsed, and only them."""

from __future__ import annotations

from datetime import timedelta

from rq import Queue
from sqlalchemy import select

from calsync import jobs
from calsync.db import transaction
from calsync.models import Connection, Organization, SyncProfile, SyncRun, User, utcnow
from calsync.runtime import QUEUE_SYNC


def add_user(
    session,
    org,
    oid: str,
    *,
    auto: bool = True,
    status: str = "connected",  # type: ignore[no-untyped-def]
    last_sync_minutes_ago: int | None = None,
    profile=None,
) -> User:
    user = User(organization=org, external_id=oid, email=f"{oid}@example.com", sync_profile=profile)
    session.add(user)
    session.flush()
    session.add(
        Connection(
            user=user, kind="calendar", provider="caldav", auto_sync_enabled=auto, status=status
        )
    )
    if last_sync_minutes_ago is not None:
        session.add(
            SyncRun(
                user_id=user.id,
                kind="sync",
                trigger="automatic",
                status="succeeded",
                created_at=utcnow() - timedelta(minutes=last_sync_minutes_ago),
            )
        )
    return user


def queued_users(rt) -> set[int]:  # type: ignore[no-untyped-def]
    queue = Queue(QUEUE_SYNC, connection=rt.redis)
    return {job.args[0] for job in queue.jobs}


def test_the_scheduler_queues_due_users_and_not_others(rt) -> None:  # type: ignore[no-untyped-def]
    with transaction(rt.sessions) as session:
        org = Organization(tenant_id="t")
        hourly = SyncProfile(name="Hourly", settings={"auto_sync_interval_minutes": 60})
        org.profiles = [
            SyncProfile(name="Global", is_global=True, settings={"auto_sync_interval_minutes": 15}),
            hourly,
        ]
        session.add(org)
        never_synced = add_user(session, org, "never")
        due = add_user(session, org, "due", last_sync_minutes_ago=16)
        recent = add_user(session, org, "recent", last_sync_minutes_ago=5)
        add_user(session, org, "hourly", last_sync_minutes_ago=30, profile=hourly)
        add_user(session, org, "off", auto=False)
        add_user(session, org, "revoked", status="needs_reconnect", last_sync_minutes_ago=99)
        expected = {never_synced.id, due.id}
        assert recent.id not in expected

    assert jobs.enqueue_due_syncs() == 2
    assert queued_users(rt) == expected


def test_a_due_user_is_queued_once_even_if_the_scheduler_runs_twice(rt) -> None:  # type: ignore[no-untyped-def]
    with transaction(rt.sessions) as session:
        org = Organization(tenant_id="t")
        user_id = add_user(session, org, "due").id

    jobs.enqueue_due_syncs()
    jobs.enqueue_due_syncs()

    assert queued_users(rt) == {user_id}
    with transaction(rt.sessions) as session:
        triggers = session.scalars(select(SyncRun.trigger).where(SyncRun.user_id == user_id))
        assert list(triggers) == ["automatic"]


def test_the_interval_never_goes_below_five_minutes(rt) -> None:  # type: ignore[no-untyped-def]
    with transaction(rt.sessions) as session:
        org = Organization(tenant_id="t")
        session.add(
            SyncProfile(
                organization=org,
                name="Global",
                is_global=True,
                settings={"auto_sync_interval_minutes": 1},
            )
        )
        add_user(session, org, "recent", last_sync_minutes_ago=3)

    assert jobs.enqueue_due_syncs() == 0
