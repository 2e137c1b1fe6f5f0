"""The newcomer's Dynamics 365 tour without any cloud account: the administrator picks
"Sandbox Dynamics 365", a user selects "Sign in with Microsoft", accepts the emulator's
"Permissions requested" page (plain http, as the browser sees it) and becomes a system user
of the sandbox organization; "Sync calendar now", run by a real `calsync worker --burst`,
moves a Sandbox Outlook event into Dynamics 365 and a seeded appointment into the calendar."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urljoin, urlsplit

import requests
from api_helpers import Browser, error_of
from flask import Flask

from calsync.sandbox.demo import CONTACTS, Sandbox, start_sandbox
from e2e.test_sync_jobs import run_worker_until_idle
from sandbox_mode.test_sandbox_end_to_end import connect_sandbox_outlook

START = "/api/connections/crm/oauth"
CALLBACK = "/api/connections/calendar/oauth/callback"
EMAIL = "ada@example.com"
LABEL = "Sandbox Dynamics 365 (development)"


class _ConsentForm(HTMLParser):
    """The consent page's form: where it posts and its hidden fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = values.get("action", "")
        elif tag == "input" and values.get("type") == "hidden":
            self.fields[values["name"]] = values.get("value", "")


def sign_in_with_microsoft(b: Browser, sandbox: Sandbox) -> dict[str, list[str]]:
    """ "Sign in with Microsoft", "Accept" on the consent page; the CRM tab's outcome."""
    reply = b.post(START, json={})
    assert reply.status_code == 200, reply.get_json()
    authorize_url = reply.get_json()["authorize_url"]
    consent_url = sandbox.info["dynamics_consent_url"]
    assert authorize_url.startswith(f"{consent_url}/organizations/oauth2/v2.0/authorize?")
    web = requests.Session()
    web.trust_env = False
    page = web.get(authorize_url, allow_redirects=False, timeout=10)
    assert page.status_code == 200, page.text
    assert "Permissions requested" in page.text
    assert f"Access Dynamics 365 as you ({sandbox.info['dynamics_url']})" in page.text
    form = _ConsentForm()
    form.feed(page.text)
    accepted = web.post(
        urljoin(authorize_url, form.action),
        data={**form.fields, "decision": "accept"},
        allow_redirects=False,
        timeout=10,
    )
    assert accepted.status_code == 302, accepted.text
    # Consent given: the authorize endpoint issues the code and sends the browser back.
    back_to_calsync = web.get(
        urljoin(authorize_url, accepted.headers["Location"]), allow_redirects=False, timeout=10
    )
    assert back_to_calsync.status_code == 302, back_to_calsync.text
    location = urlsplit(back_to_calsync.headers["Location"])
    assert location.path == CALLBACK
    back = b.get(CALLBACK, query_string=dict(parse_qsl(location.query)))
    assert back.status_code == 302
    return parse_qs(urlsplit(back.headers["Location"]).query)


def test_sandbox_dynamics_signs_in_with_microsoft_and_syncs_both_ways(
    app: Flask, sandbox: Sandbox, env: dict[str, str]
) -> None:
    admin = Browser(app)
    admin.sign_in(EMAIL, name="Ada")
    choices = admin.get("/api/organization").get_json()["crm_choices"]
    assert {"type": "sandbox-dynamics", "label": LABEL, "needs_url": False} in choices
    chosen = admin.patch("/api/organization", json={"crm_type": "sandbox-dynamics"})
    assert chosen.status_code == 200, chosen.get_json()
    settings = admin.patch(
        "/api/organization/settings", json={"direction": "two_way", "record_option": "all"}
    )
    assert settings.status_code == 200, settings.get_json()

    assert connect_sandbox_outlook(admin, sandbox) == {"connected": ["calendar"]}
    # No Entra ID app is configured here: the sandbox's emulator accepts its own client.
    assert sign_in_with_microsoft(admin, sandbox) == {"connected": ["crm"], "tab": ["crm"]}
    page = admin.get("/api/connections").get_json()
    assert page["crm_connection"]["status"] == "connected", page["crm_connection"]
    assert page["crm_connection"]["provider_label"] == LABEL
    assert page["crm_connection"]["account"] == EMAIL
    # Signing in made the user a system user of the sandbox organization.
    user_id = sandbox.dynamics.user_id_for(EMAIL)

    queued = admin.post("/api/sync")
    assert queued.status_code == 202, queued.get_json()
    output = run_worker_until_idle(env)

    job = admin.get(f"/api/jobs/{queued.get_json()['job_id']}").get_json()
    assert job["status"] == "succeeded", (job, output[-3000:])
    appointments = {
        row["subject"]: row
        for row in sandbox.dynamics.tables["appointments"].values()
        if row["_ownerid_value"] == user_id
    }
    # Calendar -> Dynamics 365: "Demo - Fabrikam", its invitee resolved to the contact Ben.
    demo = appointments["Demo \u2013 Fabrikam"]
    parties = sandbox.dynamics.appointment_parties(demo["activityid"])
    invitees = [
        (p["partyobjecttypecode"], p["addressused"])
        for p in parties
        if p["participationtypemask"] == 5  # required attendee
    ]
    assert invitees == [("contact", CONTACTS[1][2])]
    # Dynamics 365 -> calendar: a seeded appointment only the CRM had.
    calendar_titles = {e["subject"] for e in sandbox.graph.events(EMAIL)}
    assert "Quarterly review \u2013 Northwind" in calendar_titles
    # Nobody was e-mailed.
    assert sandbox.graph.invitations.all() == sandbox.dynamics.invitations.all() == []

    # A restarted sandbox keeps the organization, its users and the tokens: the stored
    # connection still opens and the next sync has nothing to do.
    sandbox.stop()
    again = start_sandbox(Path(env["CALSYNC_INSTANCE_DIR"]))
    try:
        assert again.info["dynamics_url"] == sandbox.info["dynamics_url"]
        queued = admin.post("/api/sync")
        output = run_worker_until_idle(env)
        job = admin.get(f"/api/jobs/{queued.get_json()['job_id']}").get_json()
        assert job["status"] == "succeeded", (job, output[-3000:])
        counts = job["run"]["counts"]
        assert counts["crm"]["created"] == counts["calendar"]["created"] == 0, counts
    finally:
        again.stop()


def test_each_user_who_signs_in_finds_the_seeded_meetings_of_their_own(
    app: Flask, sandbox: Sandbox
) -> None:
    admin = Browser(app)
    admin.sign_in(EMAIL, name="Ada")
    chosen = admin.patch("/api/organization", json={"crm_type": "sandbox-dynamics"})
    assert chosen.status_code == 200, chosen.get_json()
    member = Browser(app)
    member.sign_in("bob@example.com", name="Bob")

    for person in (admin, member):
        assert sign_in_with_microsoft(person, sandbox) == {"connected": ["crm"], "tab": ["crm"]}

    for email in (EMAIL, "bob@example.com"):
        owner = sandbox.dynamics.user_id_for(email)
        subjects = sorted(
            row["subject"]
            for row in sandbox.dynamics.tables["appointments"].values()
            if row["_ownerid_value"] == owner
        )
        assert subjects.count("Follow-up \u2013 Litware") == 2  # the CRM-side duplicate
        assert "Quarterly review \u2013 Northwind" in subjects


def test_sandbox_dynamics_is_offered_only_while_the_sandbox_runs(
    app: Flask, sandbox: Sandbox
) -> None:
    admin = Browser(app)
    admin.sign_in(EMAIL, name="Ada")
    chosen = admin.patch("/api/organization", json={"crm_type": "sandbox-dynamics"})
    assert chosen.status_code == 200, chosen.get_json()

    sandbox.stop()

    choices = [c["type"] for c in admin.get("/api/organization").get_json()["crm_choices"]]
    assert "sandbox-dynamics" not in choices
    assert "sandbox" in choices  # the password sandbox is chosen now, connected later
    # The stored choice keeps its name, and signing in says what to do.
    info = admin.get("/api/connections").get_json()["crm_info"]
    assert info["label"] == LABEL
    reply = admin.post(START, json={})
    assert reply.status_code == 503
    assert "`make run`" in error_of(reply)["message"]
