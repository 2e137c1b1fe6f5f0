""" "Sync calendar now" and a job's progress.

No worker runs here (tests/e2e/test_api_sync.py runs one): these are about what the API
queues, refuses and reports.
"""

from __future__ import annotations

import pytest
from api_helpers import Browser, error_of
from connect_helpers import store_connection, store_run
from flask import Flask
from rq import Queue
from rq.job import Job, JobStatus

from calsync.api.actions import job_status
from calsync.runtime import QUEUE_SYNC


@pytest.fixture
def connected(app: Flask, member: Browser) -> Browser:
    store_connection(app, member.user["id"], "calendar")  # type: ignore[index]
    store_connection(app, member.user["id"], "crm")  # type: ignore[index]
    return member


def queue(app: Flask) -> Queue:
    return Queue(QUEUE_SYNC, connection=app.extensions["calsync"].redis)


def test_sync_calendar_now_queues_a_sync(app: Flask, connected: Browser) -> None:
    reply = connected.post("/api/sync")

    body = reply.get_json()
    assert reply.status_code == 202
    assert body["absorbed"] is False and body["run_id"]
    assert queue(app).job_ids == [body["job_id"]]


def test_sync_calendar_now_twice_gives_one_sync(app: Flask, connected: Browser) -> None:
    first = connected.post("/api/sync").get_json()

    second = connected.post("/api/sync").get_json()

    assert second == {"job_id": first["job_id"], "run_id": None, "absorbed": True}
    assert len(queue(app)) == 1


def test_sync_calendar_now_needs_a_connected_calendar(app: Flask, member: Browser) -> None:
    store_connection(app, member.user["id"], "crm")  # type: ignore[index]

    reply = member.post("/api/sync")

    assert reply.status_code == 409
    assert error_of(reply)["message"].startswith("Connect your calendar first")


def test_sync_calendar_now_needs_the_crm_credentials(app: Flask, member: Browser) -> None:
    store_connection(app, member.user["id"], "calendar")  # type: ignore[index]

    reply = member.post("/api/sync")

    assert reply.status_code == 409
    assert "CRM credentials" in error_of(reply)["message"]


def test_sync_calendar_now_asks_to_reconnect_a_revoked_calendar(
    app: Flask, member: Browser
) -> None:
    store_connection(
        app,
        member.user["id"],  # type: ignore[index]
        "calendar",
        status="needs_reconnect",
        status_message="Your Microsoft access was revoked or expired. Connect again.",
    )
    store_connection(app, member.user["id"], "crm")  # type: ignore[index]

    reply = member.post("/api/sync")

    assert reply.status_code == 409
    assert error_of(reply)["message"] == (
        "Your Microsoft access was revoked or expired. Connect again."
    )
    assert len(queue(app)) == 0


def test_a_queued_job_shows_its_run(connected: Browser) -> None:
    queued = connected.post("/api/sync").get_json()

    job = connected.get(f"/api/jobs/{queued['job_id']}").get_json()

    assert job["job_id"] == queued["job_id"]
    assert job["status"] == "queued"
    assert (job["phase"], job["done"], job["total"]) == (None, 0, 0)
    assert job["run"]["id"] == queued["run_id"]
    assert job["run"]["trigger"] == "manual" and job["run"]["kind"] == "sync"


def test_a_running_job_shows_the_workers_progress(app: Flask, connected: Browser) -> None:
    queued = connected.post("/api/sync").get_json()
    rq_job = Job.fetch(queued["job_id"], connection=app.extensions["calsync"].redis)
    rq_job.meta.update(phase="applying", done=3, total=8)
    rq_job.save_meta()

    job = connected.get(f"/api/jobs/{queued['job_id']}").get_json()

    assert (job["phase"], job["done"], job["total"]) == ("applying", 3, 8)


def test_a_finished_job_gone_from_redis_still_shows_its_run(app: Flask, member: Browser) -> None:
    store_run(app, member.user["id"], job_id="sync-expired", status="partial")  # type: ignore[index]

    job = member.get("/api/jobs/sync-expired").get_json()

    assert job["status"] == "partial"
    assert job["run"]["status"] == "partial"


def test_another_users_job_is_not_found(app: Flask, admin: Browser, member: Browser) -> None:
    store_run(app, admin.user["id"], job_id="sync-of-ada")  # type: ignore[index]

    reply = member.get("/api/jobs/sync-of-ada")

    assert reply.status_code == 404
    assert error_of(reply)["message"] == "There is no such job among your syncs."


@pytest.mark.parametrize(
    ("run_status", "rq_status", "shown"),
    [
        ("queued", JobStatus.QUEUED, "queued"),
        ("queued", JobStatus.SCHEDULED, "scheduled"),
        ("queued", JobStatus.STARTED, "running"),
        ("running", JobStatus.STARTED, "running"),
        ("retrying", JobStatus.SCHEDULED, "retrying"),
        ("running", JobStatus.FAILED, "failed"),
        ("succeeded", None, "succeeded"),
        ("partial", JobStatus.FINISHED, "partial"),
        ("queued", None, "queued"),
    ],
)
def test_a_jobs_status_combines_its_run_and_the_queue(
    run_status: str, rq_status: JobStatus | None, shown: str
) -> None:
    assert job_status(run_status, rq_status) == shown
