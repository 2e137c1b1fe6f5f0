"""Connection secrets are never returned by any route, nor written to the logs."""

from __future__ import annotations

import logging

from api_helpers import Browser
from flask import Flask
from test_isolation import PUBLIC, fill, routes

from calsync.db import transaction
from calsync.models import Connection

SECRETS = {
    "calendar": {"refresh_token": "rt-SECRET-8c1f", "access_token": "at-SECRET-55aa"},
    "crm": {"password": "pw-SECRET-93be", "api_key": "key-SECRET-0d4c"},
}


def store_connections(app: Flask, user_id: int) -> None:
    with transaction(app.extensions["calsync"].sessions) as db:
        for kind, secret in SECRETS.items():
            db.add(
                Connection(
                    user_id=user_id,
                    kind=kind,
                    provider="caldav" if kind == "calendar" else "suitecrm",
                    account=f"{kind}@example.com",
                    details={"server_url": "https://dav.example.com/"},
                    secret=secret,
                )
            )


def secret_values() -> list[str]:
    return [value for secret in SECRETS.values() for value in secret.values()]


def test_no_route_returns_a_connection_secret(
    app: Flask, admin: Browser, member: Browser, caplog
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    for b in (admin, member):
        store_connections(app, b.user["id"])  # type: ignore[index]
    own = {"profile_id": 1, "user_id": member.user["id"], "run_id": 1, "job_id": "sync-1"}  # type: ignore[index]

    for b in (admin, member):
        for method, rule in routes(app):
            if method != "GET" or ((method, rule) in PUBLIC and "link" in rule):
                continue
            body = b.get(fill(rule, {**own, "filename": "support.html"})).get_data(as_text=True)
            for value in secret_values():
                assert value not in body, f"GET {rule} returned a secret"

    for value in secret_values():
        assert value not in caplog.text


def test_secrets_are_encrypted_in_the_database(app: Flask, member: Browser) -> None:
    store_connections(app, member.user["id"])  # type: ignore[index]

    with app.extensions["calsync"].engine.connect() as connection:
        raw = connection.exec_driver_sql("SELECT secret FROM connections").scalars().all()

    assert raw and all(value not in "".join(raw) for value in secret_values())
