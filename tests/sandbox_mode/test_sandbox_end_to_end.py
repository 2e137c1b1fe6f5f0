"""A newcomer's tour without any cloud account: "Sandbox Outlook" connected through the real
msal consent flow, the "Sandbox CRM" with its demo account, "Sync calendar now" run by a
real `calsync worker --burst`, and the seeded meetings seen on the other side."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlsplit

import requests
from api_helpers import Browser
from flask import Flask

from calsync.sandbox.demo import CRM_PASSWORD, CRM_USER, Sandbox, start_sandbox
from e2e.test_sync_jobs import run_worker_until_idle

START = "/api/connections/calendar/oauth"
CALLBACK = "/api/connections/calendar/oauth/callback"
EMAIL = "ada@example.com"


def connect_sandbox_outlook(b: Browser, sandbox: Sandbox) -> dict[str, list[str]]:
    reply = b.post(START, json={"provider": "sandbox-outlook"})
    assert reply.status_code == 200, reply.get_json()
    authorize_url = reply.get_json()["authorize_url"]
    # The browser visits the consent page over plain http (it does not trust the
    # emulator's certificate); the emulator consents at once and sends it back.
    assert authorize_url.startswith(f"{sandbox.info['consent_url']}/organizations/oauth2/")
    consent = requests.get(authorize_url, allow_redirects=False, timeout=10)
    assert consent.status_code == 302, consent.text
    location = urlsplit(consent.headers["Location"])
    assert location.path == CALLBACK
    back = b.get(CALLBACK, query_string=dict(parse_qsl(location.query)))
    assert back.status_code == 302
    return parse_qs(urlsplit(back.headers["Location"]).query)


def test_sandbox_outlook_and_sandbox_crm_sync_both_ways(
    app: Flask, sandbox: Sandbox, env: dict[str, str]
) -> None:
    admin = Browser(app)
    admin.sign_in(EMAIL, name="Ada")
    page = admin.get("/api/connections").get_json()
    assert {"key": "sandbox-outlook", "label": "Sandbox Outlook", "method": "oauth",
            "two_way": True} in page["calendar_providers"]  # fmt: skip
    chosen = admin.patch("/api/organization", json={"crm_type": "sandbox"})
    assert chosen.status_code == 200, chosen.get_json()
    settings = admin.patch(
        "/api/organization/settings", json={"direction": "two_way", "record_option": "all"}
    )
    assert settings.status_code == 200, settings.get_json()

    assert connect_sandbox_outlook(admin, sandbox) == {"connected": ["calendar"]}
    crm = admin.put("/api/connections/crm", json={"user_name": CRM_USER, "password": CRM_PASSWORD})
    assert crm.status_code == 200, crm.get_json()
    page = admin.get("/api/connections").get_json()
    assert page["calendar"]["provider_label"] == "Sandbox Outlook"
    assert page["calendar"]["account"] == EMAIL
    assert page["calendar"]["details"] == {}  # the emulator's addresses stay server-side
    assert page["crm_connection"]["status"] == "connected"

    queued = admin.post("/api/sync")
    assert queued.status_code == 202, queued.get_json()
    output = run_worker_until_idle(env)

    job = admin.get(f"/api/jobs/{queued.get_json()['job_id']}").get_json()
    assert job["status"] == "succeeded", (job, output[-3000:])
    crm_titles = {m["name"] for m in sandbox.crm.live_meetings()}
    # Calendar -> CRM: a single meeting, a series, an all-day event.
    assert {
        "Demo \u2013 Fabrikam",
        "Contoso weekly check-in",
        "Trade fair \u2013 Hannover",
    } <= crm_titles
    # The invitee of "Demo - Fabrikam" is a CRM contact: the meeting is related to them.
    [demo] = [m for m in sandbox.crm.live_meetings() if m["name"] == "Demo \u2013 Fabrikam"]
    related = sandbox.crm.related(demo["id"])
    assert [r["module"] for r in related if r["module"] == "Contacts"] == ["Contacts"]
    # CRM -> calendar: the meetings only the CRM had.
    calendar_titles = {e["subject"] for e in sandbox.graph.events(EMAIL)}
    assert {"Quarterly review \u2013 Northwind", "Onboarding call \u2013 Adatum"} <= (
        calendar_titles
    )
    # Nobody was e-mailed.
    assert sandbox.graph.invitations.all() == []

    # "Run duplicate cleanup" finds the meeting imported twice (a preview: nothing removed).
    preview = admin.post("/api/cleanup/preview")
    assert preview.status_code == 202, preview.get_json()
    output = run_worker_until_idle(env)
    job = admin.get(f"/api/jobs/{preview.get_json()['job_id']}").get_json()
    assert job["status"] == "succeeded", (job, output[-3000:])
    found = json.dumps(job["run"]["counts"], ensure_ascii=False)
    assert "Pricing discussion \u2013 Contoso" in found, found

    # A restarted sandbox (`make run` again) keeps its data, ports and tokens: the stored
    # connections still open and the next sync has nothing to do.
    sandbox.stop()
    again = start_sandbox(Path(env["CALSYNC_INSTANCE_DIR"]))
    try:
        assert again.info["graph_url"] == sandbox.info["graph_url"]
        queued = admin.post("/api/sync")
        output = run_worker_until_idle(env)
        job = admin.get(f"/api/jobs/{queued.get_json()['job_id']}").get_json()
        assert job["status"] == "succeeded", (job, output[-3000:])
        counts = job["run"]["counts"]
        assert counts["crm"]["created"] == counts["calendar"]["created"] == 0, counts
    finally:
        again.stop()
