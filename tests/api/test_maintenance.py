""" "Run duplicate cleanup" (preview, "Yes", restore) and "Reset calendar sync".

No worker runs in most of these: they are about what the API queues, refuses and
reports. The last test runs a real `calsync worker --burst` between Radicale and the
SuiteCRM emulator, as the add-in would drive it.
"""

from __future__ import annotations

import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from api_helpers import Browser, error_of
from connect_helpers import store_connection, store_run
from flask import Flask
from rq import Queue
from sqlalchemy import update

from calsync.cleanup import KEEP_DAYS
from calsync.db import transaction
from calsync.models import EventLink, Organization, RemovedItem, SyncRun, User, utcnow
from calsync.runtime import QUEUE_MAINTENANCE

# The end-to-end fixtures (tests/e2e is a package; tests/ is on the path as for
# tests/cleanup), and the real servers they stand on.
TESTS = str(Path(__file__).resolve().parents[1])
if TESTS not in sys.path:
    sys.path.append(TESTS)

from calendars import conftest as calendar_fixtures  # noqa: E402
from e2e import conftest as e2e_fixtures  # noqa: E402
from e2e.conftest import EMAIL, Account, soon  # noqa: E402
from processes import calsync_process  # noqa: E402

# Fixtures, used by name.
radicale = calendar_fixtures.radicale
suitecrm, account, worker_env = e2e_fixtures.suitecrm, e2e_fixtures.account, e2e_fixtures.worker_env


@pytest.fixture
def connected(app: Flask, member: Browser) -> Browser:
    store_connection(app, member.user["id"], "calendar")  # type: ignore[index]
    store_connection(app, member.user["id"], "crm")  # type: ignore[index]
    return member


def maintenance_queue(app: Flask) -> Queue:
    return Queue(QUEUE_MAINTENANCE, connection=app.extensions["calsync"].redis)


def run_row(app: Flask, run_id: int) -> SyncRun:
    with transaction(app.extensions["calsync"].sessions) as db:
        run = db.get(SyncRun, run_id)
        assert run is not None
        db.expunge(run)
        return run


def finished_preview(app: Flask, user_id: int) -> int:
    """A preview run as the worker leaves it: succeeded, what it found in its counts."""
    counts = {"phase": "preview", "counts": {"groups": 0, "remove": 0}, "groups": []}
    return store_run(app, user_id, kind="cleanup", counts=counts)


def store_removed(app: Flask, user_id: int, run_id: int, **values: object) -> str:
    entry_id = uuid.uuid4().hex
    defaults: dict[str, object] = {
        "side": "crm",
        "original_id": "meeting-2",
        "restore_link_id": uuid.uuid4().hex,
        "event": {"title": "Budget", "start": "2026-12-01T09:00:00+00:00"},
        "removed_at": utcnow(),
    }
    removed_at = values.get("removed_at", defaults["removed_at"])
    defaults["expires_at"] = removed_at + timedelta(days=KEEP_DAYS)  # type: ignore[operator]
    with transaction(app.extensions["calsync"].sessions) as db:
        db.add(RemovedItem(user_id=user_id, run_id=run_id, entry_id=entry_id, **defaults | values))
    return entry_id


def store_link(app: Flask, user_id: int, link_id: str, **ids: str | None) -> None:
    with transaction(app.extensions["calsync"].sessions) as db:
        db.add(EventLink(user_id=user_id, link_id=link_id, origin_side="calendar", **ids))


# -- Run duplicate cleanup -------------------------------------------------------------------


def test_run_duplicate_cleanup_queues_a_preview_on_the_maintenance_queue(
    app: Flask, connected: Browser
) -> None:
    reply = connected.post("/api/cleanup/preview")

    body = reply.get_json()
    assert reply.status_code == 202
    assert maintenance_queue(app).job_ids == [body["job_id"]]
    run = run_row(app, body["run_id"])
    assert (run.kind, run.trigger, run.status, run.job_id) == (
        "cleanup",
        "manual",
        "queued",
        body["job_id"],
    )
    assert run.user_id == connected.user["id"]  # type: ignore[index]


def test_run_duplicate_cleanup_shows_its_progress_as_a_job(connected: Browser) -> None:
    queued = connected.post("/api/cleanup/preview").get_json()

    job = connected.get(f"/api/jobs/{queued['job_id']}").get_json()

    assert job["status"] == "queued"
    assert job["run"]["id"] == queued["run_id"] and job["run"]["kind"] == "cleanup"


def test_run_duplicate_cleanup_needs_a_connected_calendar(app: Flask, member: Browser) -> None:
    store_connection(app, member.user["id"], "crm")  # type: ignore[index]

    reply = member.post("/api/cleanup/preview")

    assert reply.status_code == 409
    assert error_of(reply)["message"].startswith("Connect your calendar first")
    assert len(maintenance_queue(app)) == 0


def test_run_duplicate_cleanup_asks_to_reconnect_a_revoked_crm(app: Flask, member: Browser) -> None:
    store_connection(app, member.user["id"], "calendar")  # type: ignore[index]
    store_connection(
        app,
        member.user["id"],  # type: ignore[index]
        "crm",
        status="needs_reconnect",
        status_message="Your CRM password was refused. Enter it again.",
    )

    reply = member.post("/api/cleanup/preview")

    assert reply.status_code == 409
    assert error_of(reply)["message"] == "Your CRM password was refused. Enter it again."


def test_yes_queues_the_removal_of_a_finished_preview(app: Flask, connected: Browser) -> None:
    preview_id = finished_preview(app, connected.user["id"])  # type: ignore[index]

    reply = connected.post(f"/api/cleanup/{preview_id}/confirm")

    body = reply.get_json()
    assert reply.status_code == 202
    assert body["run_id"] != preview_id
    assert maintenance_queue(app).job_ids == [body["job_id"]]
    job = maintenance_queue(app).fetch_job(body["job_id"])
    assert job is not None and job.args == (connected.user["id"], body["run_id"], preview_id)  # type: ignore[index]


def test_yes_for_another_users_preview_is_not_found(
    app: Flask, admin: Browser, connected: Browser
) -> None:
    preview_id = finished_preview(app, admin.user["id"])  # type: ignore[index]

    reply = connected.post(f"/api/cleanup/{preview_id}/confirm")

    assert reply.status_code == 404
    assert "no finished duplicate cleanup preview" in error_of(reply)["message"]
    assert len(maintenance_queue(app)) == 0


def test_yes_for_a_preview_that_is_not_finished_is_not_found(
    app: Flask, connected: Browser
) -> None:
    queued = connected.post("/api/cleanup/preview").get_json()

    reply = connected.post(f"/api/cleanup/{queued['run_id']}/confirm")

    assert reply.status_code == 404
    assert len(maintenance_queue(app)) == 1


def test_yes_for_a_sync_run_is_not_found(app: Flask, connected: Browser) -> None:
    run_id = store_run(app, connected.user["id"])  # type: ignore[index]

    reply = connected.post(f"/api/cleanup/{run_id}/confirm")

    assert reply.status_code == 404


def test_yes_for_another_users_preview_is_not_found_even_when_not_connected(
    app: Flask, admin: Browser, member: Browser
) -> None:
    preview_id = finished_preview(app, admin.user["id"])  # type: ignore[index]

    reply = member.post(f"/api/cleanup/{preview_id}/confirm")

    assert reply.status_code == 404


# -- What a cleanup removed, and Restore -----------------------------------------------------


def test_a_cleanup_lists_what_it_removed(app: Flask, member: Browser) -> None:
    user_id = member.user["id"]  # type: ignore[index]
    removal = store_run(app, user_id, kind="cleanup", counts={"phase": "removal"})
    entry_id = store_removed(app, user_id, removal)
    store_removed(app, user_id, store_run(app, user_id, kind="cleanup"))  # another run's

    reply = member.get(f"/api/cleanup/{removal}/removed")

    assert reply.status_code == 200
    [entry] = reply.get_json()
    assert entry["entry_id"] == entry_id
    assert (entry["side"], entry["title"], entry["restored_at"]) == ("crm", "Budget", None)


def test_a_cleanup_does_not_list_removed_items_past_their_30_days(
    app: Flask, member: Browser
) -> None:
    user_id = member.user["id"]  # type: ignore[index]
    removal = store_run(app, user_id, kind="cleanup")
    store_removed(app, user_id, removal, removed_at=utcnow() - timedelta(days=KEEP_DAYS, minutes=1))

    assert member.get(f"/api/cleanup/{removal}/removed").get_json() == []


def test_another_users_cleanup_is_not_found(app: Flask, admin: Browser, member: Browser) -> None:
    removal = store_run(app, admin.user["id"], kind="cleanup")  # type: ignore[index]
    store_removed(app, admin.user["id"], removal)  # type: ignore[index]

    reply = member.get(f"/api/cleanup/{removal}/removed")

    assert reply.status_code == 404
    assert error_of(reply)["message"] == "There is no such duplicate cleanup in your history."


def test_restore_queues_bringing_back_a_removed_item(app: Flask, connected: Browser) -> None:
    user_id = connected.user["id"]  # type: ignore[index]
    entry_id = store_removed(app, user_id, store_run(app, user_id, kind="cleanup"))

    reply = connected.post(f"/api/cleanup/removed/{entry_id}/restore")

    body = reply.get_json()
    assert reply.status_code == 202
    job = maintenance_queue(app).fetch_job(body["job_id"])
    assert job is not None and job.args == (user_id, body["run_id"], entry_id)
    assert run_row(app, body["run_id"]).kind == "cleanup"


def test_restore_of_another_users_removed_item_is_not_found(
    app: Flask, admin: Browser, connected: Browser
) -> None:
    admin_id = admin.user["id"]  # type: ignore[index]
    entry_id = store_removed(app, admin_id, store_run(app, admin_id, kind="cleanup"))

    reply = connected.post(f"/api/cleanup/removed/{entry_id}/restore")

    assert reply.status_code == 404
    assert error_of(reply)["message"].startswith("There is no such removed item")
    assert len(maintenance_queue(app)) == 0


def test_restore_of_an_expired_removed_item_is_not_found(app: Flask, connected: Browser) -> None:
    user_id = connected.user["id"]  # type: ignore[index]
    run_id = store_run(app, user_id, kind="cleanup")
    long_ago = utcnow() - timedelta(days=KEEP_DAYS, minutes=1)
    entry_id = store_removed(app, user_id, run_id, removed_at=long_ago)

    reply = connected.post(f"/api/cleanup/removed/{entry_id}/restore")

    assert reply.status_code == 404


# -- Reset calendar sync ---------------------------------------------------------------------


def test_reset_preview_counts_the_users_linked_pairs(
    app: Flask, admin: Browser, connected: Browser
) -> None:
    user_id = connected.user["id"]  # type: ignore[index]
    store_link(app, user_id, "l1", calendar_item_id="c1", crm_record_id="m1")
    store_link(app, user_id, "l2", calendar_item_id="c2", crm_record_id="m2")
    store_link(app, user_id, "half", calendar_item_id="c3", crm_record_id=None)
    store_link(app, admin.user["id"], "theirs", calendar_item_id="c", crm_record_id="m")  # type: ignore[index]

    reply = connected.get("/api/reset/preview")

    assert reply.status_code == 200
    assert reply.get_json() == {
        "links": 2,
        "message": "2 links will be rebuilt; nothing is deleted.",
    }


def test_reset_preview_answers_before_anything_is_connected(member: Browser) -> None:
    reply = member.get("/api/reset/preview")

    assert reply.status_code == 200
    assert reply.get_json()["message"] == "0 links will be rebuilt; nothing is deleted."


def test_reset_calendar_sync_needs_the_crm_credentials(app: Flask, member: Browser) -> None:
    store_connection(app, member.user["id"], "calendar")  # type: ignore[index]

    reply = member.post("/api/reset")

    assert reply.status_code == 409
    assert "CRM credentials" in error_of(reply)["message"]


def test_reset_calendar_sync_queues_a_reset(app: Flask, connected: Browser) -> None:
    reply = connected.post("/api/reset")

    body = reply.get_json()
    assert reply.status_code == 202
    assert maintenance_queue(app).job_ids == [body["job_id"]]
    run = run_row(app, body["run_id"])
    assert (run.kind, run.status) == ("reset", "queued")


def test_reset_calendar_sync_needs_a_connected_calendar(app: Flask, member: Browser) -> None:
    reply = member.post("/api/reset")

    assert reply.status_code == 409
    assert len(maintenance_queue(app)) == 0


# -- End to end, on a real worker ------------------------------------------------------------


def sign_in_as(app: Flask, account: Account) -> Browser:
    """The end-to-end account's user, signed in as the development sign-in names them."""
    domain = EMAIL.rsplit("@", 1)[-1]
    with transaction(app.extensions["calsync"].sessions) as db:
        user = db.get(User, account.user_id)
        assert user is not None
        db.execute(
            update(Organization)
            .where(Organization.id == user.organization_id)
            .values(tenant_id=str(uuid.uuid5(uuid.NAMESPACE_DNS, domain)))
        )
        user.external_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{EMAIL}"))
    browser = Browser(app)
    assert browser.sign_in(EMAIL)["id"] == account.user_id
    return browser


def run_worker_until_idle(env: dict[str, str]) -> str:
    worker = calsync_process(env, "worker", "--burst")
    output = worker.communicate(timeout=120)[0].decode(errors="replace")
    assert worker.returncode == 0, output
    return output


def add_meeting(account: Account, title: str, days: int) -> str:
    user = next(u["id"] for u in account.crm.records["Users"].values())
    start = soon(days)
    return account.crm.add_meeting(
        user,
        name=title,
        date_start=f"{start:%Y-%m-%d %H:%M:%S}",
        date_end=f"{start + timedelta(hours=1):%Y-%m-%d %H:%M:%S}",
    )


def test_run_duplicate_cleanup_then_yes_removes_the_duplicate_on_a_real_worker(
    app: Flask, account: Account, worker_env: dict[str, str]
) -> None:
    user = sign_in_as(app, account)
    add_meeting(account, "Budget", 3)
    add_meeting(account, "Budget", 3)  # a duplicate made by hand in the CRM
    add_meeting(account, "Solo", 4)

    preview = user.post("/api/cleanup/preview").get_json()
    output = run_worker_until_idle(worker_env)
    job = user.get(f"/api/jobs/{preview['job_id']}").get_json()
    assert job["status"] == "succeeded", (job, output[-3000:])
    assert job["run"]["counts"]["counts"]["remove_crm"] == 1
    assert account.meeting_titles() == ["Budget", "Budget", "Solo"]  # nothing removed yet

    removal = user.post(f"/api/cleanup/{preview['run_id']}/confirm").get_json()
    output = run_worker_until_idle(worker_env)

    job = user.get(f"/api/jobs/{removal['job_id']}").get_json()
    assert job["status"] == "succeeded", (job, output[-3000:])
    assert account.meeting_titles() == ["Budget", "Solo"]
    [removed] = user.get(f"/api/cleanup/{removal['run_id']}/removed").get_json()
    assert (removed["side"], removed["title"]) == ("crm", "Budget")


# -- Security token ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/cleanup/preview",
        "/api/cleanup/1/confirm",
        "/api/cleanup/removed/0123456789abcdef0123456789abcdef/restore",
        "/api/reset",
    ],
)
def test_a_maintenance_request_without_the_security_token_is_refused(
    app: Flask, connected: Browser, path: str
) -> None:
    reply = connected.client.post(path, json={})

    assert reply.status_code == 400
    assert "security token" in error_of(reply)["message"]
    assert len(maintenance_queue(app)) == 0
