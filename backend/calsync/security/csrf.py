"""CSRF protection on every state-changing request, except webhooks.

flask-wtf checks the token (sent in the ``X-CSRFToken`` header) for POST, PUT, PATCH
and DELETE. Webhooks under ``/webhooks/`` are called by Google, Microsoft or a CRM, not
by a browser, and authenticate with their own tokens, so they are exempt by path:
a webhook added later is exempt without anyone remembering to mark it.
"""

from __future__ import annotations

from flask import Flask, request
from flask_wtf.csrf import CSRFError, CSRFProtect

WEBHOOK_PREFIX = "/webhooks/"
csrf = CSRFProtect()


def init_app(app: Flask) -> None:
    # Checked in our before_request below, so the webhook exemption is by path.
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    # The task pane may stay open all day; the token lives as long as the session.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    csrf.init_app(app)

    @app.before_request
    def _check_csrf() -> None:
        if request.method in ("GET", "HEAD", "OPTIONS", "TRACE"):
            return
        if request.path.startswith(WEBHOOK_PREFIX):
            return
        if request.routing_exception is not None:
            return  # no such route: let the 404/405 answer say so
        csrf.protect()

    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError):  # type: ignore[no-untyped-def]
        from calsync.api.errors import error_response

        return error_response(
            400,
            "Your page's security token is missing or out of date. Reload the page and try again.",
        )
