"""Fixtures for the connection and sync API tests: real servers the API connects to.

Radicale and the SuiteCRM emulator listen on 127.0.0.1, which the SSRF guard refuses
unless the operator names it (CALSYNC_URL_ALLOWED_HOSTS), as tests/e2e does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from api_helpers import Browser
from flask import Flask

from calsync.db import transaction
from calsync.models import Connection, SyncRun
from calsync.sandbox.suitecrm import SuiteCrmEmulator

CRM_USER, CRM_PASSWORD, CRM_EMAIL = "alice", "correct horse battery", "alice@acme.test"


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "CALSYNC_URL_ALLOWED_HOSTS": "127.0.0.1"}


@pytest.fixture
def suitecrm() -> Iterator[SuiteCrmEmulator]:
    with SuiteCrmEmulator(seed=11) as emu:
        emu.add_user(CRM_USER, CRM_PASSWORD, CRM_EMAIL, first_name="Alice", last_name="Admin")
        yield emu


def choose_crm(admin: Browser, url: str, crm_type: str = "suitecrm") -> None:
    reply = admin.patch("/api/organization", json={"crm_type": crm_type, "crm_url": url})
    assert reply.status_code == 200, reply.get_json()


def store_connection(app: Flask, user_id: int, kind: str, **values: Any) -> None:
    """A connection put straight into the database, for tests about what follows it."""
    defaults: dict[str, Any] = {
        "provider": "caldav" if kind == "calendar" else "suitecrm",
        "account": f"{kind}-account",
        "details": {"server_url": "https://dav.example.com/"} if kind == "calendar" else {},
        "secret": {"password": "pw"},
    }
    with transaction(app.extensions["calsync"].sessions) as db:
        db.add(Connection(user_id=user_id, kind=kind, **{**defaults, **values}))


def store_run(app: Flask, user_id: int, **values: Any) -> int:
    defaults: dict[str, Any] = {"kind": "sync", "trigger": "manual", "status": "succeeded"}
    with transaction(app.extensions["calsync"].sessions) as db:
        run = SyncRun(user_id=user_id, **{**defaults, **values})
        db.add(run)
        db.flush()
        return run.id
