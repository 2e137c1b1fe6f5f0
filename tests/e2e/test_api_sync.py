"""The whole path through the API: connect CalDAV and the CRM, "Sync calendar now", a real
worker runs the job, and the API reports the job and the run."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from calendars.conftest import RadicaleServer, new_calendar
from calsync.sandbox.suitecrm import SuiteCrmEmulator

from .conftest import CRM_PASSWORD, CRM_USER, Account, soon
from .test_sync_jobs import run_worker_until_idle

# The API tests' browser (tests/api is not a package: put it on the path).
sys.path.insert(0, str(Path(__file__).parents[1] / "api"))
from api_helpers import Browser


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    # Radicale and the emulator are on 127.0.0.1: the web process allows it as the worker
    # does (worker_env).
    return {**env, "CALSYNC_URL_ALLOWED_HOSTS": "127.0.0.1"}


def test_sync_calendar_now_through_the_api_copies_the_event_to_the_crm(
    app,  # type: ignore[no-untyped-def]
    radicale: RadicaleServer,
    suitecrm: SuiteCrmEmulator,
    worker_env: dict[str, str],
) -> None:
    admin = Browser(app)
    admin.sign_in("ada@acme.test", name="Ada")
    admin.patch("/api/organization", json={"crm_type": "suitecrm", "crm_url": suitecrm.url})
    admin.patch(
        "/api/organization/settings", json={"direction": "calendar_to_crm", "record_option": "all"}
    )
    calendar_url = new_calendar(radicale, "Work")
    account = {
        "server_url": radicale.url,
        "username": radicale.username,
        "password": radicale.password,
    }
    found = admin.post("/api/connections/calendar/caldav/discover", json=account).get_json()
    assert {"url": calendar_url, "name": "Work"} in found["calendars"]
    connected = admin.post(
        "/api/connections/calendar/caldav", json={**account, "calendar_url": calendar_url}
    )
    assert connected.status_code == 201, connected.get_json()
    crm = admin.put("/api/connections/crm", json={"user_name": CRM_USER, "password": CRM_PASSWORD})
    assert crm.status_code == 200, crm.get_json()
    user = Account(admin.user["id"], calendar_url, radicale, suitecrm)  # type: ignore[index]
    user.put_event("kickoff", "Kickoff with Contoso", soon(1))

    queued = admin.post("/api/sync")
    assert queued.status_code == 202
    job_id = queued.get_json()["job_id"]
    output = run_worker_until_idle(worker_env)

    job = admin.get(f"/api/jobs/{job_id}").get_json()
    assert job["status"] == "succeeded", (job, output[-3000:])
    assert job["run"]["counts"]["crm"]["created"] == 1
    runs = admin.get("/api/runs").get_json()
    assert [r["id"] for r in runs] == [job["run"]["id"]]
    assert user.meeting_titles() == ["Kickoff with Contoso"]
    item_id = urlsplit(calendar_url).path + "kickoff.ics"
    event = admin.get("/api/events/status", query_string={"item_id": item_id}).get_json()
    assert event["synced"] is True
    [meeting] = suitecrm.live_meetings()
    assert event["crm_url"] == (
        f"{suitecrm.url}/index.php?module=Meetings&action=DetailView&record={meeting['id']}"
    )
