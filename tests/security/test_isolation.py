"""Tenant and user isolation, tried on every route the app has.

The routes come from the app's url_map, so a route added later is tried too: it fails
here until it is classified below (public, personal, or administration) and its path
parameters have a value belonging to another organization.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from api_helpers import Browser
from flask import Flask

from calsync.db import transaction
from calsync.models import Connection, EventLink, RemovedItem, SyncRun, utcnow

# Reachable without signing in: sign-in itself, documentation, the add-in's files.
PUBLIC = {
    ("GET", "/"),
    ("GET", "/healthz"),
    ("GET", "/addin/<path:filename>"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/docs"),
    ("GET", "/api/docs/<path:filename>"),
    ("GET", "/api/auth/csrf"),
    ("POST", "/api/auth/microsoft/token"),
    ("GET", "/api/auth/microsoft/login"),
    ("GET", "/api/auth/microsoft/callback"),
    ("GET", "/api/auth/link/<string:token>"),
    ("POST", "/api/auth/signout"),
    ("POST", "/api/auth/dev"),
}
# Any signed-in user, on their own data only.
PERSONAL = {
    ("GET", "/api/me"),
    ("POST", "/api/auth/signin-link"),
    ("GET", "/api/connections"),
    ("PATCH", "/api/connections/calendar"),
    ("DELETE", "/api/connections/calendar"),
    ("POST", "/api/connections/calendar/oauth"),
    ("GET", "/api/connections/calendar/oauth/callback"),
    ("GET", "/api/connections/calendar/caldav/presets"),
    ("POST", "/api/connections/calendar/caldav/discover"),
    ("POST", "/api/connections/calendar/caldav"),
    ("PUT", "/api/connections/crm"),
    ("POST", "/api/connections/crm/oauth"),
    ("DELETE", "/api/connections/crm"),
    ("POST", "/api/sync"),
    ("GET", "/api/jobs/<string:job_id>"),
    ("GET", "/api/runs"),
    ("GET", "/api/runs/<int(min=1, max=2147483647):run_id>"),
    ("GET", "/api/events/status"),
    ("POST", "/api/cleanup/preview"),
    ("POST", "/api/cleanup/<int(min=1, max=2147483647):run_id>/confirm"),
    ("GET", "/api/cleanup/<int(min=1, max=2147483647):run_id>/removed"),
    ("POST", "/api/cleanup/removed/<string:entry_id>/restore"),
    ("GET", "/api/reset/preview"),
    ("POST", "/api/reset"),
}
# Called by Microsoft and Google, never by a browser: authenticated by the secret of the
# channel each notification names (Graph's clientState, Google's channel token), never by a
# session. tests/push tries them with right, wrong and missing secrets.
AUTHENTICATED_BY_CHANNEL_SECRET = {
    ("POST", "/webhooks/graph"),
    ("POST", "/webhooks/google"),
}
# Everything else is administration: administrators of the organization only.


def routes(app: Flask) -> list[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                found.add((method, rule.rule))
    return sorted(found)


def protected(app: Flask) -> list[tuple[str, str]]:
    return [r for r in routes(app) if r not in PUBLIC | AUTHENTICATED_BY_CHANNEL_SECRET]


@pytest.fixture
def world(app: Flask, admin: Browser, member: Browser, outsider: Browser) -> dict[str, Any]:
    """Organization A (admin, member) and organization B (outsider) with data of each kind."""
    b_profile = outsider.post("/api/profiles", json={"name": "B only"}).get_json()
    outsider.patch("/api/organization", json={"name": "Organization B"})
    b_run = personal_data(app, outsider.user["id"])  # type: ignore[index]
    # One value per path parameter, always an object of organization B.
    foreign = {
        "profile_id": b_profile["id"],
        "user_id": outsider.user["id"],  # type: ignore[index]
        "run_id": b_run.id,
        "job_id": b_run.job_id,
        "entry_id": B_ENTRY,
    }
    return {"foreign": foreign, "snapshot": snapshot(outsider)}


B_ENTRY = "b0000000000000000000000000000001"


def personal_data(app: Flask, user_id: int) -> SyncRun:
    """A user's calendar and CRM connections, a sync run, a synced event and an item a
    duplicate cleanup removed."""
    with transaction(app.extensions["calsync"].sessions) as db:
        db.add_all(
            [
                Connection(
                    user_id=user_id,
                    kind="calendar",
                    provider="caldav",
                    account="b-calendar",
                    details={"server_url": "https://dav.example.com/"},
                    secret={"password": "b"},
                ),
                Connection(
                    user_id=user_id, kind="crm", provider="suitecrm", account="b-crm", secret={}
                ),
                EventLink(
                    user_id=user_id,
                    link_id="b-link",
                    calendar_item_id="b-item",
                    crm_record_id="b-record",
                    origin_side="calendar",
                ),
            ]
        )
        run = SyncRun(
            user_id=user_id, kind="sync", trigger="manual", status="succeeded", job_id="sync-b-1"
        )
        db.add(run)
        db.flush()
        db.add(
            RemovedItem(
                user_id=user_id,
                run_id=run.id,
                entry_id=B_ENTRY,
                side="calendar",
                original_id="b-removed",
                restore_link_id="b-restore",
                event={"title": "B only"},
                removed_at=utcnow(),
                expires_at=utcnow() + timedelta(days=30),
            )
        )
        db.flush()
        db.expunge(run)
        return run


def snapshot(b: Browser) -> dict[str, Any]:
    paths = ("/api/me", "/api/users", "/api/profiles", "/api/organization")
    personal = ("/api/connections", "/api/runs", "/api/events/status?item_id=b-item")
    return {path: b.get(path).get_json() for path in paths + personal}


def fill(rule: str, values: dict[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[-1]
        assert name in values, f"{rule}: give the isolation test a foreign value for {name!r}"
        return str(values[name])

    return re.sub(r"<([^>]+)>", value, rule)


def call(b: Browser, method: str, path: str) -> Any:
    return b.open(method, path, json={} if method in ("POST", "PUT", "PATCH") else None)


def test_every_route_is_classified(app: Flask) -> None:
    # A route nobody classified would otherwise be tested as administration only.
    for method, rule in protected(app):
        assert rule.startswith("/api/"), f"{method} {rule}: classify it in test_isolation.py"


def test_webhooks_live_under_the_csrf_exempt_prefix_only(app: Flask) -> None:
    for method, rule in routes(app):
        if rule.startswith("/webhooks/"):
            assert (method, rule) in AUTHENTICATED_BY_CHANNEL_SECRET, f"classify {method} {rule}"
    for _method, rule in AUTHENTICATED_BY_CHANNEL_SECRET:
        assert rule.startswith("/webhooks/")


def test_a_session_does_not_authenticate_a_webhook(app: Flask, admin: Browser) -> None:
    from calsync.models import SyncRun

    for method, rule in sorted(AUTHENTICATED_BY_CHANNEL_SECRET):
        reply = admin.open(method, rule, json={"value": [{"subscriptionId": "x"}]})
        assert reply.status_code in (200, 202), f"{method} {rule} answered {reply.status_code}"
    rt = app.extensions["calsync"]
    with rt.sessions() as session:
        assert session.query(SyncRun).count() == 0


def test_every_protected_route_refuses_anonymous_callers(app: Flask, world) -> None:  # type: ignore[no-untyped-def]
    stranger = Browser(app)
    for method, rule in protected(app):
        reply = call(stranger, method, fill(rule, world["foreign"]))
        assert reply.status_code == 401, f"{method} {rule} answered {reply.status_code}"


def test_members_cannot_use_administration_routes(app: Flask, member: Browser, world) -> None:  # type: ignore[no-untyped-def]
    for method, rule in protected(app):
        if (method, rule) in PERSONAL:
            continue
        own = {"profile_id": 1, "user_id": member.user["id"]}  # type: ignore[index]
        reply = call(member, method, fill(rule, own))
        assert reply.status_code == 403, f"{method} {rule} answered {reply.status_code}"


def test_an_admin_cannot_reach_another_organizations_objects(
    app: Flask, admin: Browser, world
) -> None:  # type: ignore[no-untyped-def]
    for method, rule in protected(app):
        if "<" not in rule:
            continue
        reply = call(admin, method, fill(rule, world["foreign"]))
        assert reply.status_code in (403, 404), f"{method} {rule} answered {reply.status_code}"


def test_nothing_an_admin_does_changes_another_organization(
    app: Flask, admin: Browser, outsider: Browser, world
) -> None:  # type: ignore[no-untyped-def]
    for method, rule in protected(app):
        if rule == "/api/auth/signout":
            continue
        call(admin, method, fill(rule, world["foreign"]))

    assert snapshot(outsider) == world["snapshot"]


def test_no_route_shows_an_admin_another_organizations_data(
    app: Flask, admin: Browser, outsider: Browser, world
) -> None:  # type: ignore[no-untyped-def]
    secrets_of_b = [outsider.user["email"], outsider.user["organization"]["tenant_id"], "B only"]  # type: ignore[index]
    for method, rule in protected(app):
        if method != "GET":
            continue
        text = call(admin, method, fill(rule, world["foreign"])).get_data(as_text=True)
        for secret in secrets_of_b:
            assert secret not in text, f"{method} {rule} shows {secret!r}"


def test_a_member_sees_only_themselves(member: Browser, admin: Browser) -> None:
    me = member.get("/api/me").get_json()

    assert me["id"] == member.user["id"]  # type: ignore[index]
    assert admin.user["email"] not in member.get("/api/me").get_data(as_text=True)  # type: ignore[index]
