"""Triggers: one sync per user at a time, never doubled, never lost."""

from __future__ import annotations

from rq import Queue
from rq.job import Job
from sqlalchemy import select

from calsync import enqueue
from calsync.db import transaction
from calsync.models import Organization, SyncRun, User
from calsync.runtime import QUEUE_SYNC


def make_user(rt, oid: str = "u1") -> int:  # type: ignore[no-untyped-def]
    with transaction(rt.sessions) as session:
        user = User(
            organization=Organization(tenant_id=f"t-{oid}"),
            external_id=oid,
            email=f"{oid}@example.com",
        )
        session.add(user)
        session.flush()
        return user.id


def runs(rt, user_id: int) -> list[SyncRun]:  # type: ignore[no-untyped-def]
    with transaction(rt.sessions) as session:
        return list(session.scalars(select(SyncRun).where(SyncRun.user_id == user_id)))


def test_a_trigger_queues_a_sync_and_records_a_queued_run(rt) -> None:  # type: ignore[no-untyped-def]
    user_id = make_user(rt)

    queued = enqueue.enqueue_sync(rt, user_id, "manual")

    assert not queued.absorbed
    assert Queue(QUEUE_SYNC, connection=rt.redis).job_ids == [queued.job_id]
    [run] = runs(rt, user_id)
    assert (run.status, run.trigger, run.job_id) == ("queued", "manual", queued.job_id)


def test_a_second_trigger_while_queued_is_absorbed(rt) -> None:  # type: ignore[no-untyped-def]
    user_id = make_user(rt)

    first = enqueue.enqueue_sync(rt, user_id, "manual")
    second = enqueue.enqueue_sync(rt, user_id, "automatic")

    assert second.absorbed and second.job_id == first.job_id
    assert len(Queue(QUEUE_SYNC, connection=rt.redis)) == 1
    assert len(runs(rt, user_id)) == 1


def test_triggers_of_different_users_are_independent(rt) -> None:  # type: ignore[no-untyped-def]
    first = enqueue.enqueue_sync(rt, make_user(rt, "a"), "manual")
    second = enqueue.enqueue_sync(rt, make_user(rt, "b"), "manual")

    assert not first.absorbed and not second.absorbed
    assert len(Queue(QUEUE_SYNC, connection=rt.redis)) == 2


def test_a_trigger_during_a_running_sync_owes_exactly_one_follow_up(rt) -> None:  # type: ignore[no-untyped-def]
    user_id = make_user(rt)
    running = enqueue.enqueue_sync(rt, user_id, "manual")
    job = Job.fetch(running.job_id, connection=rt.redis)
    job.set_status("started")

    assert enqueue.enqueue_sync(rt, user_id, "push").absorbed
    assert enqueue.enqueue_sync(rt, user_id, "push").absorbed

    assert enqueue.release_sync(rt, user_id, running.job_id) is True
    assert enqueue.release_sync(rt, user_id, running.job_id) is False


def test_a_finished_sync_no_longer_absorbs_triggers(rt) -> None:  # type: ignore[no-untyped-def]
    user_id = make_user(rt)
    first = enqueue.enqueue_sync(rt, user_id, "manual")
    Job.fetch(first.job_id, connection=rt.redis).set_status("finished")

    second = enqueue.enqueue_sync(rt, user_id, "manual")

    assert not second.absorbed
    assert second.job_id != first.job_id


def test_a_push_trigger_is_debounced_by_a_short_delay(rt) -> None:  # type: ignore[no-untyped-def]
    user_id = make_user(rt)

    pushed = enqueue.enqueue_sync(rt, user_id, "push")
    again = enqueue.enqueue_sync(rt, user_id, "push")

    job = Job.fetch(pushed.job_id, connection=rt.redis)
    assert job.get_status() == "scheduled"
    assert again.absorbed
    assert len(Queue(QUEUE_SYNC, connection=rt.redis)) == 0
