"""The browser session: flask-login on Flask's signed cookie.

Signing in starts from an empty session (nothing an attacker planted before sign-in
survives it: session fixation) and with a fresh CSRF token, which the response returns
so the page can send it with its next change.
"""

from __future__ import annotations

from flask import Flask, abort, current_app, g, session
from flask_login import LoginManager, login_user, logout_user
from flask_wtf.csrf import generate_csrf
from sqlalchemy import bindparam, select

from calsync.auth.principal import Principal
from calsync.models import User

login_manager = LoginManager()


def init_app(app: Flask) -> None:
    login_manager.init_app(app)


# The principal is reloaded before every signed-in request (principal.py says why), so
# the loader reads just its four columns on a pooled connection: no ORM session, no entity.
# Built once, with the id bound per call: building a statement costs more CPU than SQLite
# takes to answer it.
_PRINCIPAL = select(User.id, User.organization_id, User.is_admin, User.email).where(
    User.id == bindparam("user_id")
)


@login_manager.user_loader
def _load(user_id: str) -> Principal | None:
    if not user_id.isdigit():
        return None
    with current_app.extensions["calsync"].engine.connect() as connection:
        row = connection.execute(_PRINCIPAL, {"user_id": int(user_id)}).first()
    if row is None:
        return None
    return Principal(row.id, row.organization_id, row.is_admin, row.email)


@login_manager.unauthorized_handler
def _unauthorized() -> None:
    abort(401, "You are not signed in. Open calsync from Outlook to sign in.")


def sign_in(user: User) -> str:
    """Start a fresh session for ``user``; return the new CSRF token."""
    session.clear()
    login_user(Principal.of(user))
    # The session was emptied; drop the token flask-wtf cached for this request too, so
    # generate_csrf() makes a new one instead of handing back the pre-sign-in token.
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)
    return generate_csrf()


def sign_out() -> None:
    logout_user()
    session.clear()
