"""Tenant and user isolation, tried on every route the app has.

The routes come from the app's url_map, so a route added later is tried too: it fails
here until it is classified below (public, personal, or administration) and its path
parameters have a value belonging to another organization.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from api_helpers import Browser
from flask import Flask

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
    return [r for r in routes(app) if r not in PUBLIC]


@pytest.fixture
def world(admin: Browser, member: Browser, outsider: Browser) -> dict[str, Any]:
    """Organization A (admin, member) and organization B (outsider) with data of each kind."""
    b_profile = outsider.post("/api/profiles", json={"name": "B only"}).get_json()
    outsider.patch("/api/organization", json={"name": "Organization B"})
    # One value per path parameter, always an object of organization B.
    foreign = {"profile_id": b_profile["id"], "user_id": outsider.user["id"]}  # type: ignore[index]
    return {"foreign": foreign, "snapshot": snapshot(outsider)}


def snapshot(b: Browser) -> dict[str, Any]:
    return {
        path: b.get(path).get_json()
        for path in ("/api/me", "/api/users", "/api/profiles", "/api/organization")
    }


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
