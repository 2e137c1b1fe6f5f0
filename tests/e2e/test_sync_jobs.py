"""Sync jobs on a real RQ worker process, between Radicale and the SuiteCRM emulator."""

from __future__ import annotations

from rq import Queue

from calsync import enqueue
from calsync.runtime import QUEUE_SYNC
from processes import calsync_process

from .conftest import soon


def run_worker_until_idle(env: dict[str, str]) -> str:
    worker = calsync_process(env, "worker", "--burst")
    output = worker.communicate(timeout=120)[0].decode(errors="replace")
    assert worker.returncode == 0, output
    return output


def test_sync_calendar_now_copies_calendar_events_to_the_crm(rt, account, worker_env) -> None:  # type: ignore[no-untyped-def]
    account.put_event("kickoff", "Kickoff with Contoso", soon(1))
    account.put_event("review", "Quarterly review", soon(2))

    queued = enqueue.enqueue_sync(rt, account.user_id, "manual")
    output = run_worker_until_idle(worker_env)

    [run] = account.runs(rt)
    assert run.job_id == queued.job_id
    assert run.status == "succeeded", (run.errors, output[-3000:])
    assert run.counts["crm"]["created"] == 2
    assert account.meeting_titles() == ["Kickoff with Contoso", "Quarterly review"]


def test_a_second_sync_changes_nothing_and_a_renamed_event_updates_the_meeting(
    rt, account, worker_env
) -> None:  # type: ignore[no-untyped-def]
    account.put_event("kickoff", "Kickoff", soon(1))
    enqueue.enqueue_sync(rt, account.user_id, "manual")
    run_worker_until_idle(worker_env)

    enqueue.enqueue_sync(rt, account.user_id, "manual")
    run_worker_until_idle(worker_env)
    account.put_event("kickoff", "Kickoff (moved room)", soon(1))
    enqueue.enqueue_sync(rt, account.user_id, "automatic")
    run_worker_until_idle(worker_env)

    _first, idle, renamed = account.runs(rt)
    assert idle.counts["crm"] == {"created": 0, "updated": 0, "deleted": 0, "linked": 0}
    assert renamed.counts["crm"]["updated"] == 1
    assert account.meeting_titles() == ["Kickoff (moved room)"]


def test_two_triggers_give_one_sync(rt, account, worker_env) -> None:  # type: ignore[no-untyped-def]
    account.put_event("kickoff", "Kickoff", soon(1))

    first = enqueue.enqueue_sync(rt, account.user_id, "manual")
    second = enqueue.enqueue_sync(rt, account.user_id, "automatic")
    assert len(Queue(QUEUE_SYNC, connection=rt.redis)) == 1
    run_worker_until_idle(worker_env)

    assert second.absorbed and second.job_id == first.job_id
    assert [r.status for r in account.runs(rt)] == ["succeeded"]
    assert account.meeting_titles() == ["Kickoff"]


def test_a_revoked_crm_password_stops_at_once_and_marks_the_connection(
    rt, account, worker_env
) -> None:  # type: ignore[no-untyped-def]
    account.put_event("kickoff", "Kickoff", soon(1))
    alice = next(iter(account.crm.passwords))
    account.crm.passwords[alice] = "changed by the CRM admin"
    account.crm.expire_sessions()

    enqueue.enqueue_sync(rt, account.user_id, "manual")
    run_worker_until_idle(worker_env)

    [run] = account.runs(rt)
    assert run.status == "failed"
    assert "SuiteCRM" in run.errors[0]["message"]
    crm = account.connection(rt, "crm")
    assert crm.status == "needs_reconnect"
    assert account.connection(rt, "calendar").status == "connected"
    assert account.meeting_titles() == []
    # Not retried: nothing is scheduled for this user.
    assert Queue(QUEUE_SYNC, connection=rt.redis).scheduled_job_registry.count == 0


def test_a_user_without_a_crm_connection_is_told_what_to_do(rt, account, worker_env) -> None:  # type: ignore[no-untyped-def]
    from calsync.db import transaction
    from calsync.models import Connection

    with transaction(rt.sessions) as session:
        session.delete(session.get(Connection, account.connection(rt, "crm").id))

    enqueue.enqueue_sync(rt, account.user_id, "manual")
    run_worker_until_idle(worker_env)

    [run] = account.runs(rt)
    assert run.status == "failed"
    assert "Enter your CRM credentials first" in run.errors[0]["message"]
