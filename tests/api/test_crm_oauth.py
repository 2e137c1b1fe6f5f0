"""Connecting Dynamics 365 with "Sign in with Microsoft" (the CRM tab).

The Dynamics 365 emulator (over TLS: msal refuses a plain-http authority) is both the
organization (the administrator's "Custom URL") and Microsoft's login host, as
MICROSOFT_AUTHORITY_HOST lets a development deployment do. The browser's trip to Microsoft
is a plain request to the emulator; with `consent_prompt` on, it walks the "Permissions
requested" page (Accept / Cancel) first. Microsoft sends the browser back to the one
callback the calendar's sign-in uses too.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
import requests
from api_helpers import Browser, error_of
from connect_helpers import choose_crm, suitecrm  # noqa: F401 - fixture
from flask import Flask
from sqlalchemy import select

from calsync.connections import open_crm
from calsync.db import transaction
from calsync.models import Connection
from calsync.sandbox.dynamics import DynamicsEmulator
from calsync.sandbox.suitecrm import SuiteCrmEmulator
from calsync.sync.adapters import Window

START = "/api/connections/crm/oauth"
CALENDAR_START = "/api/connections/calendar/oauth"
CALLBACK = "/api/connections/calendar/oauth/callback"
MEMBER = "bob@example.com"


@pytest.fixture
def dynamics() -> Iterator[DynamicsEmulator]:
    with DynamicsEmulator(seed=21) as emu:
        yield emu


@pytest.fixture
def env(
    env: dict[str, str], dynamics: DynamicsEmulator, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    assert dynamics.ca_file
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", dynamics.ca_file)  # the server trusts the emulator
    return {
        **env,
        # The emulator listens on 127.0.0.1, which the SSRF guard refuses unless named.
        "CALSYNC_URL_ALLOWED_HOSTS": "127.0.0.1",
        "MICROSOFT_CLIENT_ID": "calsync-test-app",
        "MICROSOFT_CLIENT_SECRET": "calsync-test-secret",
        "MICROSOFT_AUTHORITY_HOST": dynamics.url,
    }


@pytest.fixture
def organization(admin: Browser, dynamics: DynamicsEmulator) -> str:
    """The administrator chose Dynamics 365 at the emulator's address."""
    choose_crm(admin, dynamics.url, crm_type="dynamics")
    return dynamics.url


@pytest.fixture
def licensed(dynamics: DynamicsEmulator) -> str:
    """The member is a Dynamics 365 user of the organization (licence, security role)."""
    return dynamics.add_user(MEMBER, "Bob Member")


def start(b: Browser) -> str:
    reply = b.post(START, json={})
    assert reply.status_code == 200, reply.get_json()
    return str(reply.get_json()["authorize_url"])


def visit(emu: DynamicsEmulator, url: str, **kwargs: object) -> requests.Response:
    return requests.get(url, allow_redirects=False, verify=emu.ca_file, timeout=10, **kwargs)  # type: ignore[arg-type]


def redirect_query(reply: requests.Response) -> dict[str, str]:
    """Where Microsoft sends the browser: our callback, with its query."""
    assert reply.status_code == 302, reply.text
    location = urlsplit(reply.headers["Location"])
    assert location.path == CALLBACK
    return dict(parse_qsl(location.query))


def consent(emu: DynamicsEmulator, authorize_url: str) -> dict[str, str]:
    return redirect_query(visit(emu, authorize_url))


def answer_consent_page(emu: DynamicsEmulator, authorize_url: str, decision: str) -> dict[str, str]:
    """Walk the "Permissions requested" page: its form, with Accept or Cancel."""
    http = requests.Session()
    http.verify = emu.ca_file
    page = http.get(authorize_url, allow_redirects=False, timeout=10)
    assert page.status_code == 200 and "Permissions requested" in page.text
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    hidden = re.search(r'name="request" value="([^"]*)"', page.text)
    assert action and hidden
    reply = http.post(
        f"{emu.url}{action.group(1)}",
        data={"request": html.unescape(hidden.group(1)), "decision": decision},
        allow_redirects=False,
        timeout=10,
    )
    if decision == "accept":  # back to the authorize endpoint, which now issues the code
        assert reply.status_code == 302
        reply = http.get(f"{emu.url}{reply.headers['Location']}", allow_redirects=False)
    return redirect_query(reply)


def back(b: Browser, query: dict[str, str]) -> dict[str, list[str]]:
    """Call the callback; return the Automatic sync page's query it redirects to."""
    reply = b.get(CALLBACK, query_string=query)
    assert reply.status_code == 302
    location = urlsplit(reply.headers["Location"])
    assert location.path == "/addin/autosync.html"
    return parse_qs(location.query)


def stored(app: Flask, user_id: int, kind: str = "crm") -> Connection | None:
    with transaction(app.extensions["calsync"].sessions) as db:
        return db.scalars(
            select(Connection).where(Connection.user_id == user_id, Connection.kind == kind)
        ).one_or_none()


# -- starting -------------------------------------------------------------------------------


def test_sign_in_sends_the_browser_to_microsoft_for_the_organizations_dynamics(
    member: Browser, organization: str, dynamics: DynamicsEmulator
) -> None:
    url = urlsplit(start(member))
    query = parse_qs(url.query)

    assert f"{url.scheme}://{url.netloc}" == dynamics.url
    assert url.path == "/organizations/oauth2/v2.0/authorize"
    scopes = query["scope"][0].split()
    assert f"{organization}/user_impersonation" in scopes
    assert "offline_access" in scopes
    assert query["redirect_uri"] == [f"http://localhost:3000{CALLBACK}"]
    assert query["state"][0] and query["code_challenge_method"] == ["S256"]
    assert query["login_hint"] == [MEMBER]


def test_sign_in_needs_the_administrator_to_have_chosen_a_crm(member: Browser) -> None:
    reply = member.post(START, json={})

    assert reply.status_code == 409
    assert error_of(reply)["message"] == "Your administrator has not chosen a CRM yet."


def test_sign_in_is_refused_for_a_crm_that_takes_a_password(
    admin: Browser,
    member: Browser,
    suitecrm: SuiteCrmEmulator,  # noqa: F811
) -> None:
    choose_crm(admin, suitecrm.url)

    reply = member.post(START, json={})

    assert reply.status_code == 409
    assert "(SuiteCRM) connects with a user name and password" in error_of(reply)["message"]


def test_an_address_that_is_not_dynamics_is_refused_before_signing_in(
    admin: Browser,
    member: Browser,
    suitecrm: SuiteCrmEmulator,  # noqa: F811
) -> None:
    # A SuiteCRM address saved as the Dynamics 365 "Custom URL" (http, not Dataverse).
    choose_crm(admin, suitecrm.url, crm_type="dynamics")

    reply = member.post(START, json={})

    assert reply.status_code == 409
    message = error_of(reply)["message"]
    assert "Dynamics 365 is only reached over https" in message
    assert message.endswith('Ask your administrator to correct the CRM\'s "Custom URL".')


def test_sign_in_takes_no_input(member: Browser, organization: str) -> None:
    reply = member.post(START, json={"user_name": "bob"})

    assert reply.status_code == 422


def test_a_password_cannot_connect_dynamics_and_points_to_the_sign_in_button(
    member: Browser, organization: str
) -> None:
    reply = member.put("/api/connections/crm", json={"user_name": "bob", "password": "pw"})

    assert reply.status_code == 409
    assert error_of(reply)["message"] == (
        "Microsoft Dynamics 365 connects with your Microsoft account, not a user name and "
        'password: select "Sign in with Microsoft" on the CRM tab.'
    )


# -- finishing ------------------------------------------------------------------------------


def test_signing_in_connects_dynamics(
    member: Browser, organization: str, licensed: str, dynamics: DynamicsEmulator
) -> None:
    outcome = back(member, consent(dynamics, start(member)))

    assert outcome == {"connected": ["crm"], "tab": ["crm"]}
    crm = member.get("/api/connections").get_json()["crm_connection"]
    assert (crm["provider"], crm["provider_label"]) == ("dynamics", "Microsoft Dynamics 365")
    assert crm["account"] == MEMBER
    assert crm["status"] == "connected"
    assert crm["status_message"] == f"Connected to Dynamics 365 at {organization} as {MEMBER}."
    assert crm["details"] == {"server_url": organization, "api": "Dataverse Web API v9.2"}
    # The connection was tested live, as the signed-in user: who they are, what they may do.
    assert dynamics.counter.get("dataverse GET user_privileges") == 1


def test_the_dynamics_credential_is_stored_encrypted(
    app: Flask, member: Browser, organization: str, licensed: str, dynamics: DynamicsEmulator
) -> None:
    back(member, consent(dynamics, start(member)))

    connection = stored(app, member.user["id"])  # type: ignore[index]
    assert connection is not None
    assert connection.secret["user_id"] == licensed.lower()
    refresh = next(iter(json.loads(connection.secret["msal_cache"])["RefreshToken"].values()))
    assert refresh["secret"]
    with app.extensions["calsync"].engine.connect() as db:
        raw = db.exec_driver_sql("SELECT secret FROM connections").scalars().all()
    assert raw and all("msal_cache" not in r and refresh["secret"] not in r for r in raw)


def test_a_connected_dynamics_opens_for_the_worker(
    app: Flask, member: Browser, organization: str, licensed: str, dynamics: DynamicsEmulator
) -> None:
    dynamics.add_appointment(licensed, "Quarterly review")
    back(member, consent(dynamics, start(member)))
    connection = stored(app, member.user["id"])  # type: ignore[index]
    assert connection is not None

    adapter = open_crm(connection, app.extensions["calsync"].config).adapter
    now = datetime.now(UTC)
    page = adapter.list_changes(None, Window(now - timedelta(days=1), now + timedelta(days=7)))

    assert [e.title for e in page.events] == ["Quarterly review"]


def test_walking_the_consent_page_and_accepting_connects_dynamics(
    member: Browser, organization: str, licensed: str, dynamics: DynamicsEmulator
) -> None:
    dynamics.consent_prompt = True

    outcome = back(member, answer_consent_page(dynamics, start(member), "accept"))

    assert outcome == {"connected": ["crm"], "tab": ["crm"]}


def test_refusing_consent_says_so_and_stores_nothing(
    app: Flask, member: Browser, organization: str, licensed: str, dynamics: DynamicsEmulator
) -> None:
    dynamics.consent_prompt = True

    outcome = back(member, answer_consent_page(dynamics, start(member), "cancel"))

    assert outcome == {
        "error": [
            "You did not allow calsync to use Dynamics 365 as you, so your CRM is not "
            'connected. Select "Sign in with Microsoft" to try again.'
        ],
        "tab": ["crm"],
    }
    assert stored(app, member.user["id"]) is None  # type: ignore[index]


def test_a_forged_state_is_refused_and_stores_nothing(
    app: Flask, member: Browser, organization: str, licensed: str, dynamics: DynamicsEmulator
) -> None:
    query = consent(dynamics, start(member))

    outcome = back(member, {**query, "state": "forged"})

    assert "does not match a connection attempt" in outcome["error"][0]
    assert outcome["tab"] == ["crm"]
    assert stored(app, member.user["id"]) is None  # type: ignore[index]
    # The attempt is over: not even the genuine redirect connects after a forged one.
    assert "error" in back(member, query)
    assert stored(app, member.user["id"]) is None  # type: ignore[index]


def test_a_replayed_redirect_stores_nothing(
    app: Flask, member: Browser, organization: str, licensed: str, dynamics: DynamicsEmulator
) -> None:
    query = consent(dynamics, start(member))
    back(member, query)
    member.delete("/api/connections/crm")

    outcome = back(member, query)

    assert "expired or was already used" in outcome["error"][0]
    assert stored(app, member.user["id"]) is None  # type: ignore[index]


def test_another_organizations_user_cannot_finish_my_sign_in(
    app: Flask,
    member: Browser,
    outsider: Browser,
    organization: str,
    licensed: str,
    dynamics: DynamicsEmulator,
) -> None:
    query = consent(dynamics, start(member))

    outcome = back(outsider, query)

    assert "error" in outcome
    assert stored(app, outsider.user["id"]) is None  # type: ignore[index]
    assert stored(app, member.user["id"]) is None  # type: ignore[index]
    # My own attempt is untouched by theirs.
    assert back(member, query) == {"connected": ["crm"], "tab": ["crm"]}


def test_someone_who_signs_in_on_my_browser_cannot_finish_my_sign_in(
    app: Flask, member: Browser, organization: str, licensed: str, dynamics: DynamicsEmulator
) -> None:
    bob = member.user["id"]  # type: ignore[index]
    query = consent(dynamics, start(member))
    eve = member.sign_in("eve@other.example", name="Eve")  # another organization's user

    outcome = back(member, query)

    assert "error" in outcome
    assert stored(app, eve["id"]) is None
    assert stored(app, bob) is None


def test_a_wrong_organization_url_says_to_check_the_custom_url(
    app: Flask,
    admin: Browser,
    member: Browser,
    licensed: str,
    dynamics: DynamicsEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A real Dataverse organization, but not one of the tenant the user signs in to.
    with DynamicsEmulator(seed=22) as elsewhere:
        assert dynamics.ca_file and elsewhere.ca_file
        bundle = tmp_path / "both.pem"
        bundle.write_text(Path(dynamics.ca_file).read_text() + Path(elsewhere.ca_file).read_text())
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        choose_crm(admin, elsewhere.url, crm_type="dynamics")
        host = urlsplit(elsewhere.url).netloc

        outcome = back(member, consent(dynamics, start(member)))

    assert outcome["error"] == [
        f"Microsoft does not know a Dynamics 365 organization at {host} for your account. Ask "
        'your administrator to check the CRM\'s "Custom URL": it must be the address you open '
        "Dynamics 365 with, in your organization's Microsoft 365."
    ]
    assert stored(app, member.user["id"]) is None  # type: ignore[index]


def test_a_user_without_a_dynamics_licence_hears_what_to_ask_for(
    app: Flask, member: Browser, organization: str, dynamics: DynamicsEmulator
) -> None:
    # Signs in to Microsoft (a mailbox), but is no user of the Dynamics 365 organization.
    dynamics.add_mailbox(MEMBER, "Bob Member")

    outcome = back(member, consent(dynamics, start(member)))

    message = outcome["error"][0]
    assert f"{MEMBER} signed in, but is not a user of the Dynamics 365 organization" in message
    assert "no Dynamics 365 licence" in message
    assert stored(app, member.user["id"]) is None  # type: ignore[index]


def test_a_crm_changed_during_the_sign_in_connects_nothing(
    app: Flask,
    admin: Browser,
    member: Browser,
    organization: str,
    licensed: str,
    dynamics: DynamicsEmulator,
    suitecrm: SuiteCrmEmulator,  # noqa: F811
) -> None:
    query = consent(dynamics, start(member))
    choose_crm(admin, suitecrm.url)

    outcome = back(member, query)

    assert outcome["error"][0].startswith("Your organization's CRM changed while you were")
    assert stored(app, member.user["id"]) is None  # type: ignore[index]


# -- one callback for the calendar and the CRM ----------------------------------------------


def test_the_calendar_and_the_crm_sign_ins_share_one_callback(
    app: Flask, member: Browser, organization: str, licensed: str, dynamics: DynamicsEmulator
) -> None:
    # Both attempts pending in one browser; each redirect finishes its own.
    calendar_url = member.post(CALENDAR_START, json={"provider": "office365"}).get_json()[
        "authorize_url"
    ]
    crm_query = consent(dynamics, start(member))
    calendar_query = consent(dynamics, calendar_url)

    assert back(member, crm_query) == {"connected": ["crm"], "tab": ["crm"]}
    assert back(member, calendar_query) == {"connected": ["calendar"]}

    calendar, crm = stored(app, member.user["id"], "calendar"), stored(app, member.user["id"])  # type: ignore[index]
    assert calendar is not None and calendar.provider == "office365"
    assert crm is not None and crm.provider == "dynamics"
