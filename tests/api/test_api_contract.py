"""Schemathesis throws generated requests at every operation of /api/openapi.json.

Signed in as a development administrator (the session cookie and CSRF token are added to
every request), it must find no internal error and no answer that breaks the document:
status, content type, headers and body schema. Examples are bounded to stay well under
a minute; no name is resolved through DNS and nothing leaves the machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from api_helpers import HOSTS, Browser
from flask import Flask
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from calsync import migrate, runtime
from calsync.api.services import EXTENSION
from calsync.app import create_app
from calsync.config import Config
from calsync.security.urls import URLPolicy, hosts_resolver


def no_internal_error(ctx, response, case) -> None:  # type: ignore[no-untyped-def]
    """500 is a bug. A documented 503 (Microsoft sign-in not configured here) is not."""
    if response.status_code == 500:
        raise AssertionError(f"500 from {case.method} {case.formatted_path}")


CHECKS = [
    no_internal_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class SignedIn:
    """WSGI middleware: every request carries the signed-in session and its CSRF token."""

    def __init__(self, app: Flask, cookie: str, csrf: str) -> None:
        self.app, self.cookie, self.csrf = app, cookie, csrf

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        environ["HTTP_COOKIE"] = self.cookie
        environ["HTTP_X_CSRFTOKEN"] = self.csrf
        return self.app(environ, start_response)


@pytest.fixture(scope="module")
def contract_app(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SignedIn]:
    directory: Path = tmp_path_factory.mktemp("contract")
    config = Config.from_env(
        {
            "CALSYNC_ENV": "development",
            "CALSYNC_INSTANCE_DIR": str(directory / "instance"),
            "DATABASE_URL": f"sqlite:///{directory / 'calsync.sqlite3'}",
            "REDIS_URL": redis_url,
            # Schemathesis signs in hundreds of times; the limit has its own tests.
            "CALSYNC_SIGNIN_RATE_LIMIT": "100000 per minute",
        }
    )
    migrate.upgrade(config.database_url)
    rt = runtime.Runtime.from_config(config)
    app = create_app(rt=rt)
    no_dns = hosts_resolver(HOSTS)
    app.extensions[EXTENSION].url_policy = URLPolicy(allow_http=True, resolver=no_dns)
    admin = Browser(app)
    admin.sign_in("schema@contract.example")
    admin.post("/api/profiles", json={"name": "Existing"})
    cookie = admin.client.get_cookie("session")
    assert cookie is not None and admin.csrf
    yield SignedIn(app, f"session={cookie.value}", admin.csrf)
    runtime.install(None)
    rt.close()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_keeps_its_contract(contract_app: SignedIn, mode: GenerationMode) -> None:
    # Valid input (positive) must be answered as documented; invalid input (negative)
    # must be refused as documented, never with a 500. One hypothesis run per operation
    # (schemathesis's pytest plugin does the same; its lazy loader fails on pytest 9).
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", contract_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=50,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            phases=[Phase.explicit, Phase.generate],
        )
        def exercise(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(checks=CHECKS)

        try:
            exercise()
        except Unsatisfiable:
            # Nothing to get wrong: an operation without parameters has no invalid input.
            assert mode is GenerationMode.NEGATIVE, operation.label
