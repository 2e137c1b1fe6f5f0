"""The sandbox is impossible to enable in production: the command refuses to start, and
the API neither offers the sandbox's providers nor accepts them, even while a sandbox
runs on the same instance directory."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from calsync import migrate, push, runtime
from calsync.app import create_app
from calsync.config import Config
from calsync.connections import open_calendar, open_crm
from calsync.db import transaction
from calsync.models import Connection, Organization, PushChannel, User
from calsync.provider_errors import ProviderConfigError
from calsync.sandbox.demo import Sandbox

BASE = "https://calsync.example.com"


def production_env(env: dict[str, str]) -> dict[str, str]:
    return {
        **env,
        "CALSYNC_ENV": "production",
        "SECRET_KEY": "s" * 48,
        "CALSYNC_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "BASE_URL": BASE,
    }


def test_calsync_sandbox_refuses_to_start_in_production(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "calsync.cli", "sandbox"],
        env=production_env(env),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "calsync: sandbox: the sandbox is for development only; it never runs in production."
    ]


@pytest.fixture
def production(env: dict[str, str], redis_conn, sandbox: Sandbox) -> Iterator[tuple[Flask, Config]]:  # type: ignore[no-untyped-def]
    # A sandbox runs (instance/sandbox.json names a live process): production ignores it.
    config = Config.from_env(production_env(env))
    migrate.upgrade(config.database_url)
    rt = runtime.Runtime.from_config(config)
    yield create_app(rt=rt), config
    runtime.install(None)
    rt.close()


def signed_in(app: Flask) -> tuple[FlaskClient, dict[str, str], int]:
    """An administrator whose organization somehow holds crm_type "sandbox" (a database
    copied from development, say), signed in; their client and CSRF header."""
    with transaction(app.extensions["calsync"].sessions) as db:
        org = Organization(tenant_id="tenant-prod", crm_type="sandbox")
        user = User(organization=org, external_id="ada", email="ada@example.com", is_admin=True)
        user.connections = [
            Connection(kind="calendar", provider="sandbox-outlook", account="ada", secret={}),
            Connection(kind="crm", provider="sandbox", account="demo", secret={}),
        ]
        db.add(org)
        db.flush()
        user_id = user.id
    client = app.test_client()
    with client.session_transaction(base_url=BASE) as session:
        session["_user_id"] = str(user_id)
        session["_fresh"] = True
    csrf = client.get("/api/auth/csrf", base_url=BASE).get_json()["csrf_token"]
    # Over https the CSRF check also wants a same-site Referer, as the browser sends it.
    return client, {"X-CSRFToken": csrf, "Referer": f"{BASE}/addin/autosync.html"}, user_id


def test_production_never_offers_or_accepts_the_sandbox(
    production: tuple[Flask, Config],
) -> None:
    app, config = production
    client, headers, user_id = signed_in(app)

    page = client.get("/api/connections", base_url=BASE)
    assert page.status_code == 200, page.get_json()
    keys = [p["key"] for p in page.get_json()["calendar_providers"]]
    assert keys == ["outlook", "office365", "google", "caldav"]

    start = client.post(
        "/api/connections/calendar/oauth",
        json={"provider": "sandbox-outlook"},
        headers=headers,
        base_url=BASE,
    )
    assert start.status_code == 422, start.get_json()

    org = client.get("/api/organization", base_url=BASE).get_json()
    assert "sandbox" not in [c["type"] for c in org["crm_choices"]]
    chosen = client.patch(
        "/api/organization", json={"crm_type": "sandbox"}, headers=headers, base_url=BASE
    )
    assert chosen.status_code == 422, chosen.get_json()

    crm = client.put(
        "/api/connections/crm",
        json={"user_name": "demo", "password": "demo"},
        headers=headers,
        base_url=BASE,
    )
    assert crm.status_code in (409, 503), crm.get_json()

    # Stored sandbox connections do not open either: the worker cannot reach the sandbox.
    with transaction(app.extensions["calsync"].sessions) as db:
        user = db.get(User, user_id)
        assert user is not None
        by_kind = {c.kind: c for c in user.connections}
        with pytest.raises(ProviderConfigError):
            open_calendar(by_kind["calendar"], config)
        with pytest.raises(ProviderConfigError):
            open_crm(by_kind["crm"], config)


def test_production_never_offers_or_accepts_sandbox_dynamics(
    production: tuple[Flask, Config],
) -> None:
    app, config = production
    with transaction(app.extensions["calsync"].sessions) as db:
        # A database copied from development, say, holding the sandbox's Dynamics 365.
        org = Organization(tenant_id="tenant-dyn", crm_type="sandbox-dynamics")
        user = User(organization=org, external_id="eve", email="eve@example.com", is_admin=True)
        user.connections = [
            Connection(
                kind="crm",
                provider="sandbox-dynamics",
                account="eve@example.com",
                secret={"msal_cache": "{}", "org_url": "https://127.0.0.1:1"},
            )
        ]
        db.add(org)
        db.flush()
        user_id = user.id
    client = app.test_client()
    with client.session_transaction(base_url=BASE) as session:
        session["_user_id"] = str(user_id)
        session["_fresh"] = True
    csrf = client.get("/api/auth/csrf", base_url=BASE).get_json()["csrf_token"]
    headers = {"X-CSRFToken": csrf, "Referer": f"{BASE}/addin/autosync.html"}

    org_view = client.get("/api/organization", base_url=BASE).get_json()
    assert "sandbox-dynamics" not in [c["type"] for c in org_view["crm_choices"]]
    chosen = client.patch(
        "/api/organization", json={"crm_type": "sandbox-dynamics"}, headers=headers, base_url=BASE
    )
    assert chosen.status_code == 422, chosen.get_json()

    # "Sign in with Microsoft" does not start: production does not know this CRM.
    start = client.post("/api/connections/crm/oauth", json={}, headers=headers, base_url=BASE)
    assert start.status_code == 409, start.get_json()

    with transaction(app.extensions["calsync"].sessions) as db:
        user = db.get(User, user_id)
        assert user is not None
        [crm] = user.connections
        with pytest.raises(ProviderConfigError):
            open_crm(crm, config)


def test_production_opens_no_push_channel_for_a_stored_sandbox_outlook(
    production: tuple[Flask, Config], sandbox: Sandbox
) -> None:
    app, _config = production
    rt = app.extensions["calsync"]
    with transaction(rt.sessions) as db:
        # A database copied from development: Sandbox Outlook with automatic sync on.
        org = Organization(tenant_id="tenant-push")
        user = User(organization=org, external_id="bob", email="bob@example.com")
        user.connections = [
            Connection(
                kind="calendar",
                provider="sandbox-outlook",
                account="bob@example.com",
                secret={},
                auto_sync_enabled=True,
            )
        ]
        db.add(org)

    report = push.renew_push_channels(rt)

    assert (report.created, report.failed) == (0, 1)
    with transaction(rt.sessions) as db:
        assert db.scalars(select(PushChannel)).all() == []
    assert sandbox.graph._subs == {}  # the running sandbox was never asked
