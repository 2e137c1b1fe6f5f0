"""Cleanup, restore and reset as jobs on a real RQ worker process, between a real Radicale
and the SuiteCRM emulator, with the SQL store on the test database."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta

import pytest
from rq import Queue, SimpleWorker
from rq.job import Job

from calsync import enqueue, runtime
from calsync.calendars.caldav import CaldavCalendar
from calsync.cleanup import NotFound, SqlTrash, list_all
from calsync.sync import Event, Window
from e2e.conftest import Account, soon
from processes import calsync_process

CREATES = "v4_1 set_entry"  # every SuiteCRM write (create, update, delete) of the v4_1 API


def run_worker_until_idle(env: dict[str, str]) -> str:
    worker = calsync_process(env, "worker", "--burst")
    output = worker.communicate(timeout=120)[0].decode(errors="replace")
    assert worker.returncode == 0, output
    return output


@pytest.fixture
def here(rt) -> Iterator[runtime.Runtime]:  # type: ignore[no-untyped-def]
    """Jobs run in this process too (faster than a worker process for the set-up steps);
    like the worker, this runtime lets the adapters reach Radicale and the emulator."""
    config = dataclasses.replace(rt.config, url_allowed_hosts=frozenset({"127.0.0.1"}))
    local = dataclasses.replace(rt, config=config)
    runtime.install(local)
    yield local
    runtime.install(rt)


def run_here(rt: runtime.Runtime) -> None:
    queues = [Queue(name, connection=rt.redis) for name in runtime.QUEUES]
    SimpleWorker(queues, connection=rt.redis).work(burst=True)


def calendar_items(account: Account) -> dict[str, Event]:
    """What Radicale holds, listed as another client would."""
    adapter = CaldavCalendar(
        account.radicale.url,
        account.radicale.username,
        account.radicale.password,
        account.calendar_url,
    )
    window = Window(soon(-30), soon(60))
    try:
        events, _ = list_all(adapter, "calendar", window)
    finally:
        adapter.close()
    return {ev.calendar_id or "": ev for ev in events}


def meetings(account: Account) -> dict[str, str]:
    return {m["id"]: m["name"] for m in account.crm.live_meetings()}


def crm_user(account: Account) -> str:
    return next(u["id"] for u in account.crm.records["Users"].values())


def add_meeting(account: Account, title: str, days: int) -> str:
    start = soon(days)
    return account.crm.add_meeting(
        crm_user(account),
        name=title,
        date_start=f"{start:%Y-%m-%d %H:%M:%S}",
        date_end=f"{start + timedelta(hours=1):%Y-%m-%d %H:%M:%S}",
    )


def test_cleanup_removes_exactly_the_previewed_duplicates_and_restore_brings_one_back(
    here: runtime.Runtime, account: Account, worker_env: dict[str, str]
) -> None:
    rt = here
    account.put_event("review-a", "Pipeline review", soon(1))
    account.put_event("review-b", "Pipeline review", soon(1))  # a duplicate made by hand
    account.put_event("solo", "Solo", soon(2))
    enqueue.enqueue_sync(rt, account.user_id, "manual")
    run_here(rt)  # the calendar duplicate is copied: one on each side
    add_meeting(account, "Budget", 3)
    add_meeting(account, "Budget", 3)  # a duplicate made by hand in the CRM
    cal_before, crm_before = calendar_items(account), meetings(account)

    preview = enqueue.enqueue_maintenance(rt, account.user_id, "cleanup")
    run_here(rt)
    removal = enqueue.enqueue_maintenance(rt, account.user_id, "cleanup", preview_id=preview.run_id)
    run_worker_until_idle(worker_env)

    shown = next(r for r in account.runs(rt) if r.id == preview.run_id)
    assert shown.status == "succeeded", shown.errors
    doomed = {
        (i["side"], i["id"])
        for g in shown.counts["groups"]
        for i in g["items"]
        if i["action"] == "remove"
    }
    assert shown.counts["counts"]["remove_calendar"] == 1
    assert shown.counts["counts"]["remove_crm"] == 2
    done = next(r for r in account.runs(rt) if r.id == removal.run_id)
    assert done.status == "succeeded", (done.errors, done.counts)
    cal_after, crm_after = calendar_items(account), meetings(account)
    gone = {("calendar", i) for i in set(cal_before) - set(cal_after)} | {
        ("crm", i) for i in set(crm_before) - set(crm_after)
    }
    assert gone == doomed
    assert sorted(crm_after.values()) == ["Budget", "Pipeline review", "Solo"]

    [entry] = [e for e in SqlTrash(rt.sessions, account.user_id).entries() if e.side == "calendar"]
    first = enqueue.enqueue_maintenance(rt, account.user_id, "restore", entry_id=entry.entry_id)
    second = enqueue.enqueue_maintenance(rt, account.user_id, "restore", entry_id=entry.entry_id)
    run_here(rt)

    runs = {r.id: r for r in account.runs(rt)}
    assert runs[first.run_id].counts["status"] == "restored"
    assert runs[second.run_id].counts["status"] == "already_restored"
    titles = sorted(ev.title for ev in calendar_items(account).values())
    assert titles == ["Pipeline review", "Pipeline review", "Solo"]


def test_a_reset_followed_by_a_sync_creates_no_new_event_on_radicale_or_suitecrm(
    here: runtime.Runtime, account: Account, worker_env: dict[str, str]
) -> None:
    rt = here
    account.put_event("kickoff", "Kickoff", soon(1))
    account.put_event("review", "Quarterly review", soon(2))
    account.put_event("twin", "Made twice", soon(3))
    add_meeting(account, "Made twice", 3)  # its twin, made by hand in the CRM
    enqueue.enqueue_sync(rt, account.user_id, "manual")
    run_here(rt)
    cal_before, crm_before = calendar_items(account), meetings(account)
    writes_before = account.crm.counter.get(CREATES)

    reset = enqueue.enqueue_maintenance(rt, account.user_id, "reset")
    sync = enqueue.enqueue_sync(rt, account.user_id, "manual")
    again = enqueue.enqueue_maintenance(rt, account.user_id, "reset")
    run_worker_until_idle(worker_env)

    runs = {r.id: r for r in account.runs(rt)}
    for run_id in (reset.run_id, sync.run_id, again.run_id):
        run = runs[run_id]
        assert run.status == "succeeded", run.errors
        assert run.counts["crm"]["created"] == 0 and run.counts["crm"]["deleted"] == 0
        assert run.counts["calendar"]["created"] == 0
    assert runs[reset.run_id].counts["links_cleared"] == 3
    assert runs[again.run_id].counts["crm"]["linked"] == 3
    assert set(calendar_items(account)) == set(cal_before)
    assert meetings(account) == crm_before
    assert account.crm.counter.get(CREATES) == writes_before


def test_a_cleanup_waits_for_the_users_running_sync(rt, account: Account) -> None:  # type: ignore[no-untyped-def]
    enqueue.enqueue_sync(rt, account.user_id, "manual")

    queued = enqueue.enqueue_maintenance(rt, account.user_id, "cleanup")

    job = Job.fetch(queued.job_id, connection=rt.redis)
    assert job.origin == "maintenance"
    assert job.get_status() == "rate_limited"
    [_, run] = account.runs(rt)
    assert (run.kind, run.status, run.job_id) == ("cleanup", "queued", queued.job_id)


def test_a_yes_for_a_preview_that_is_not_finished_is_refused(rt, account: Account) -> None:  # type: ignore[no-untyped-def]
    preview = enqueue.enqueue_maintenance(rt, account.user_id, "cleanup")

    with pytest.raises(NotFound):
        enqueue.enqueue_maintenance(rt, account.user_id, "cleanup", preview_id=preview.run_id)
    assert len(account.runs(rt)) == 1
