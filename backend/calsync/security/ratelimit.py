"""Rate limits on sign-in and connect routes, counted in Redis (shared by all web processes).

A route opts in with ``@rate_limited("signin")`` or ``@rate_limited("connect")``; the
limit comes from the deployment's settings. All routes of one kind share one budget per
client address, so an attacker cannot spread guesses over several sign-in routes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from flask_limiter.util import get_remote_address

from calsync.config import Config

F = TypeVar("F", bound=Callable[..., Any])
MARK = "_calsync_rate_limit"
KINDS = ("signin", "connect")


def rate_limited(kind: str) -> Callable[[F], F]:
    """Mark a view as limited by the ``kind`` budget (applied when the app is built)."""
    if kind not in KINDS:
        raise ValueError(f"unknown rate limit {kind!r}; one of {KINDS}")

    def mark(view: F) -> F:
        setattr(view, MARK, kind)
        return view

    return mark


def storage_uri(redis_url: str) -> str:
    # The limits library spells a Unix socket redis+unix://; redis-py spells it unix://.
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url.removeprefix("unix://")
    return redis_url


def init_app(app: Flask, config: Config, redis_url: str) -> Limiter:
    """Apply the limits to every marked view already registered on ``app``."""
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=storage_uri(redis_url),
        strategy="moving-window",
        key_prefix="calsync",
        headers_enabled=True,
    )
    budgets = {"signin": config.signin_rate_limit, "connect": config.connect_rate_limit}
    for endpoint, view in list(app.view_functions.items()):
        kind = getattr(view, MARK, None)
        if kind:
            app.view_functions[endpoint] = limiter.shared_limit(budgets[kind], scope=kind)(view)

    @app.errorhandler(RateLimitExceeded)
    def _too_many(error: RateLimitExceeded):  # type: ignore[no-untyped-def]
        from calsync.api.errors import error_response

        return error_response(
            429, "Too many attempts from your network. Wait a minute, then try again."
        )

    return limiter
