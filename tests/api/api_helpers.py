"""Browsers for the API tests: own cookies, the CSRF token sent like the add-in sends it.

Also the fixtures both tests/api and tests/security use: people in one organization
(an admin and a member) and in another (an outsider).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from calsync.api.services import EXTENSION
from calsync.security.urls import URLPolicy, hosts_resolver

CHANGES = ("POST", "PUT", "PATCH", "DELETE")


class Browser:
    """One person's browser: a cookie jar and the CSRF token of its session."""

    def __init__(self, app: Flask) -> None:
        self.client: FlaskClient = app.test_client()
        self.csrf: str | None = None
        self.user: dict[str, Any] | None = None

    def fetch_csrf(self) -> str:
        self.csrf = self.client.get("/api/auth/csrf").get_json()["csrf_token"]
        return self.csrf

    def sign_in(self, email: str, **extra: str) -> dict[str, Any]:
        """Development sign-in; returns /api/me's view of the user."""
        reply = self.post("/api/auth/dev", json={"email": email, **extra})
        assert reply.status_code == 200, reply.get_json()
        body = reply.get_json()
        self.csrf = body["csrf_token"]
        self.user = body["user"]
        return body["user"]

    def open(self, method: str, path: str, **kwargs: Any) -> TestResponse:
        headers = dict(kwargs.pop("headers", None) or {})
        if method.upper() in CHANGES and "X-CSRFToken" not in headers:
            headers["X-CSRFToken"] = self.csrf or self.fetch_csrf()
        return self.client.open(path, method=method.upper(), headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.open("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestResponse:
        return self.open("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> TestResponse:
        return self.open("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> TestResponse:
        return self.open("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> TestResponse:
        return self.open("DELETE", path, **kwargs)


def error_of(reply: TestResponse) -> dict[str, Any]:
    """The error object of a reply, checking it has the one shape every error has."""
    body = reply.get_json()
    assert set(body) == {"error"}, body
    assert body["error"]["status"] == reply.status_code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


# Fixtures, imported by the conftest.py of tests/api and tests/security.

# Public addresses the tests' host table gives out (documentation ranges are not public,
# so these are real public addresses that nothing connects to).
PUBLIC = "93.184.215.14"
HOSTS = {
    "crm.example.com": [PUBLIC],
    "org.crm4.dynamics.com": [PUBLIC],
    "intranet.example.com": ["10.1.2.3"],
}


@pytest.fixture
def app(app: Flask) -> Flask:
    # No test resolves real names: a hosts table answers instead.
    services = app.extensions[EXTENSION]
    services.url_policy = URLPolicy(
        allow_http=services.url_policy.allow_http,
        allowed_hosts=services.url_policy.allowed_hosts,
        resolver=hosts_resolver(HOSTS),
    )
    return app


@pytest.fixture
def browser(app: Flask) -> Callable[[], Browser]:
    return lambda: Browser(app)


@pytest.fixture
def admin(browser: Callable[[], Browser]) -> Browser:
    """The first user of example.com's organization, hence its administrator."""
    b = browser()
    b.sign_in("ada@example.com", name="Ada")
    return b


@pytest.fixture
def member(admin: Browser, browser: Callable[[], Browser]) -> Browser:
    """A second user of the same organization: not an administrator."""
    b = browser()
    b.sign_in("bob@example.com", name="Bob")
    return b


@pytest.fixture
def outsider(browser: Callable[[], Browser]) -> Browser:
    """The administrator of another organization (another tenant)."""
    b = browser()
    b.sign_in("eve@other.example", name="Eve")
    return b
