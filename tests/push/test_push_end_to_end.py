"""End to end: Graph notifies the live app, which queues one sync, which a real worker runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from rq import Queue

from calsync import jobs
from calsync.crm.suitecrm import SuiteCrmAdapter
from calsync.models import Connection, Organization
from calsync.runtime import QUEUE_SYNC
from calsync.sandbox.suitecrm import SuiteCrmEmulator
from processes import calsync_process, stop_process

from .conftest import add_graph_user

CRM_USER, CRM_PASSWORD = "alice", "correct horse battery"
FINISHED = ("succeeded", "partial", "failed")


@pytest.fixture
def suitecrm() -> Iterator[SuiteCrmEmulator]:
    with SuiteCrmEmulator(seed=5) as emu:
        emu.add_user(CRM_USER, CRM_PASSWORD, "alice@contoso.com", first_name="Alice")
        yield emu


def test_three_notifications_give_exactly_one_sync_that_copies_the_meeting_to_the_crm(
    rt, env, graph, webhooks, suitecrm
) -> None:  # type: ignore[no-untyped-def]
    crm = SuiteCrmAdapter.connect(suitecrm.url, CRM_USER, CRM_PASSWORD)
    alice = add_graph_user(
        rt,
        graph,
        org=Organization(tenant_id="tenant-push", crm_type="suitecrm", crm_base_url=suitecrm.url),
        crm=Connection(kind="crm", provider="suitecrm", account=CRM_USER, secret=crm.credentials),
    )
    assert jobs.renew_push_channels()["created"] == 1
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    end = start + timedelta(hours=1)
    event_id = graph.put_event(
        alice.address,
        {
            "subject": "Kickoff with Contoso",
            "start": {"dateTime": f"{start:%Y-%m-%dT%H:%M:%S}", "timeZone": "UTC"},
            "end": {"dateTime": f"{end:%Y-%m-%dT%H:%M:%S}", "timeZone": "UTC"},
        },
    )

    for change in ("created", "updated", "updated"):
        graph.fire_change(alice.address, event_id, change)
    graph.wait_for_notifications()
    assert [n["status"] for n in graph.notification_log[-3:]] == [202, 202, 202]
    [queued] = alice.runs(rt)
    assert queued.trigger == "push"
    assert Queue(QUEUE_SYNC, connection=rt.redis).scheduled_job_registry.count == 1

    worker = calsync_process(env, "worker")
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and alice.runs(rt)[0].status not in FINISHED:
            time.sleep(0.25)
    finally:
        output = stop_process(worker)

    [run] = alice.runs(rt)
    assert run.status == "succeeded", (run.errors, output[-3000:])
    assert [m["name"] for m in suitecrm.live_meetings()] == ["Kickoff with Contoso"]
