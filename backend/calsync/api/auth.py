"""Signing in and out: Office SSO token, one-time links, web sign-in through Microsoft."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import abort, redirect, session
from flask.views import MethodView
from flask_login import current_user, login_required
from flask_smorest import Blueprint
from flask_wtf.csrf import generate_csrf

from calsync.api.access import db, me, session_factory
from calsync.api.errors import ErrorSchema
from calsync.api.me import MeSchema, me_dict
from calsync.api.services import services
from calsync.auth.errors import SignInError, SignInUnavailable
from calsync.auth.provisioning import provision
from calsync.auth.session import sign_in, sign_out
from calsync.auth.web_signin import NotConfigured
from calsync.models import User
from calsync.security.ratelimit import rate_limited

AUTOSYNC_PAGE = "/addin/autosync.html"
FLOW_KEY = "calsync.auth_flow"

blp = Blueprint(
    "auth",
    __name__,
    url_prefix="/api/auth",
    description="Sign in with Microsoft (Office SSO, one-time links, web sign-in); sign out.",
)


class CsrfSchema(ma.Schema):
    csrf_token = ma.fields.String(
        required=True, metadata={"description": "Send it in the X-CSRFToken header of changes."}
    )


class TokenSchema(ma.Schema):
    token = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=16384),
        metadata={"description": "The Microsoft token from Office SSO / nested app auth."},
    )


class SignedInSchema(CsrfSchema):
    user = ma.fields.Nested(MeSchema, required=True)


class LinkSchema(ma.Schema):
    url = ma.fields.String(required=True, metadata={"description": "Open it in a new tab."})
    expires_in = ma.fields.Integer(required=True, metadata={"description": "Seconds."})


class CallbackArgs(ma.Schema):
    """Whatever Microsoft sends back (code, state, session_state, error...) goes to msal."""

    class Meta:
        unknown = ma.INCLUDE

    state = ma.fields.String()
    code = ma.fields.String()


def signed_in(user: User) -> dict[str, Any]:
    token = sign_in(user)
    with db() as session_:
        fresh = session_.get(User, user.id)
        assert fresh is not None
        return {"csrf_token": token, "user": me_dict(session_, fresh)}


@blp.route("/csrf")
class Csrf(MethodView):
    @blp.response(200, CsrfSchema)
    def get(self) -> dict[str, str]:
        """A CSRF token for this session (needed before the first sign-in POST)."""
        return {"csrf_token": generate_csrf()}


@blp.route("/microsoft/token", methods=["POST"])
@blp.arguments(TokenSchema)
@blp.response(200, SignedInSchema)
@blp.alt_response(
    401, schema=ErrorSchema, description="The token was refused; the message says why."
)
@blp.alt_response(
    429, schema=ErrorSchema, description="Too many sign-in attempts from this address."
)
@blp.alt_response(503, schema=ErrorSchema, description="Sign-in with Microsoft is not configured.")
@rate_limited("signin")
def sign_in_with_token(body: dict[str, str]) -> dict[str, Any]:
    """Sign in with the token the task pane got from Office SSO / nested app authentication."""
    validator = services().validator()
    if validator is None:
        abort(
            503,
            "Sign-in with Microsoft is not set up on this server: the administrator must set "
            "MICROSOFT_CLIENT_ID.",
        )
    try:
        identity = validator.validate(body["token"])
    except SignInUnavailable as exc:
        abort(503, str(exc))
    except SignInError as exc:
        abort(401, str(exc))
    return signed_in(provision(session_factory(), identity))


@blp.route("/signin-link", methods=["POST"])
@blp.response(201, LinkSchema)
@login_required
def create_signin_link() -> dict[str, Any]:
    """A one-time link (about 2 minutes) that signs me in to a new browser tab."""
    links = services().links
    token = links.issue(me().id)
    return {
        "url": f"{services().config.base_url}/api/auth/link/{token}",
        "expires_in": links.lifetime,
    }


@blp.route("/link/<string:token>", methods=["GET"])
@blp.response(302, description="Signed in: on to the Automatic sync page.")
@blp.alt_response(400, schema=ErrorSchema, description="The link is expired, used or not valid.")
@blp.alt_response(
    429, schema=ErrorSchema, description="Too many sign-in attempts from this address."
)
@rate_limited("signin")
def open_signin_link(token: str) -> Any:
    """Open a one-time sign-in link: sign in and go to the Automatic sync page."""
    try:
        user_id = services().links.redeem(token)
    except SignInError as exc:
        abort(400, str(exc))
    with db() as session_:
        user = session_.get(User, user_id)
    if user is None:
        abort(400, "This sign-in link's account no longer exists.")
    sign_in(user)
    return redirect(AUTOSYNC_PAGE, 302)


@blp.route("/microsoft/login", methods=["GET"])
@blp.response(302, description="On to Microsoft's sign-in page.")
@blp.alt_response(
    429, schema=ErrorSchema, description="Too many sign-in attempts from this address."
)
@blp.alt_response(
    503, schema=ErrorSchema, description="Sign-in with Microsoft is not configured or unreachable."
)
@rate_limited("signin")
def start_web_signin() -> Any:
    """Sign in through Microsoft in a browser without the add-in."""
    try:
        flow = services().web.start()
    except (NotConfigured, SignInError) as exc:
        abort(503, str(exc))
    session[FLOW_KEY] = flow
    return redirect(flow["auth_uri"], 302)


@blp.route("/microsoft/callback", methods=["GET"])
@blp.arguments(CallbackArgs, location="query", as_kwargs=True)
@blp.response(302, description="Signed in: on to the Automatic sync page.")
@blp.alt_response(400, schema=ErrorSchema, description="The sign-in failed; the message says why.")
@blp.alt_response(
    429, schema=ErrorSchema, description="Too many sign-in attempts from this address."
)
@blp.alt_response(503, schema=ErrorSchema, description="Sign-in with Microsoft is not configured.")
@rate_limited("signin")
def finish_web_signin(**reply: str) -> Any:
    """Where Microsoft sends the browser back after web sign-in."""
    flow = session.pop(FLOW_KEY, None)
    try:
        identity = services().web.finish(flow, {k: str(v) for k, v in reply.items()})
    except (NotConfigured, SignInUnavailable) as exc:
        abort(503, str(exc))
    except SignInError as exc:
        abort(400, str(exc))
    sign_in(provision(session_factory(), identity))
    return redirect(AUTOSYNC_PAGE, 302)


@blp.route("/signout", methods=["POST"])
@blp.response(204)
def sign_out_route() -> None:
    """Sign out of this browser."""
    if current_user.is_authenticated:
        sign_out()
