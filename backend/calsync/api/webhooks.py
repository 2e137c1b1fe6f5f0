"""Webhooks for push notifications: POST /webhooks/graph and POST /webhooks/google.

Microsoft Graph and Google call these, not a browser: there is no session and no CSRF token
(``security/csrf.py`` exempts everything under /webhooks/). Each notification is
authenticated by the secret of the channel it names (Graph's ``clientState``, Google's
channel token), in ``calsync.push``. The answer never depends on whether that check
passed, so a caller learns nothing by guessing; what was ignored is counted in the log.

Graph wants the validation handshake answered within 10 seconds and notifications within
3, or it retries and eventually drops the subscription
(https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks): these
routes only read the database and queue jobs, never call a provider.
"""

from __future__ import annotations

import json
from typing import Any

import marshmallow as ma
from flask import Response, current_app, request
from flask_smorest import Api, Blueprint
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from calsync import push
from calsync.api.errors import error_response
from calsync.runtime import Runtime
from calsync.security.ratelimit import storage_uri

blp = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/webhooks",
    description="Push notifications from Microsoft Graph and Google Calendar. Authenticated "
    "by each channel's own secret, never by a session.",
)

# Graph sends changes without resource data here (under 1 KB each) and batches them; a
# body this large is not from Graph or Google.
MAX_BODY_BYTES = 512 * 1024
# Graph's validation tokens are about 100 characters; echoing more is never needed.
MAX_VALIDATION_TOKEN = 1024
# Per client address. Generous: Microsoft and Google deliver every tenant's notifications
# from a few addresses, and a 429 only delays them (both retry). The app config key
# overrides it (tests).
RATE_LIMIT = "3000 per minute"
RATE_LIMIT_KEY = "CALSYNC_WEBHOOK_RATE_LIMIT"
_LIMITER = "calsync.webhooks.limiter"

VALIDATION_RESPONSE = "GraphValidationToken"
ACCEPTED_RESPONSE = "NotificationAccepted"
RECEIVED_RESPONSE = "NotificationReceived"


class ResourceDataSchema(ma.Schema):
    class Meta:
        unknown = ma.INCLUDE

    id = ma.fields.String(metadata={"description": "The changed event's id."})


class GraphNotificationSchema(ma.Schema):
    """One entry of a changeNotificationCollection
    (https://learn.microsoft.com/en-us/graph/api/resources/changenotification), in Graph's
    own spelling."""

    class Meta:
        unknown = ma.INCLUDE

    subscriptionId = ma.fields.String(required=True)
    clientState = ma.fields.String(
        required=True, metadata={"description": "The subscription's secret, echoed by Graph."}
    )
    changeType = ma.fields.String(metadata={"description": "created, updated or deleted."})
    lifecycleEvent = ma.fields.String(
        metadata={"description": "reauthorizationRequired, subscriptionRemoved or missed."}
    )
    resource = ma.fields.String()
    resourceData = ma.fields.Nested(ResourceDataSchema)
    subscriptionExpirationDateTime = ma.fields.String()
    tenantId = ma.fields.String()


class GraphNotificationCollectionSchema(ma.Schema):
    class Meta:
        unknown = ma.INCLUDE

    value = ma.fields.List(ma.fields.Nested(GraphNotificationSchema), required=True)


class GoogleBodySchema(ma.Schema):
    """Google sends no body: the X-Goog-* headers are the whole message."""

    class Meta:
        unknown = ma.INCLUDE


def _header(name: str, description: str, *, required: bool = False, **schema: Any) -> dict:
    return {
        "in": "header",
        "name": name,
        "required": required,
        "description": description,
        "schema": {"type": "string", **schema},
    }


def _rt() -> Runtime:
    return current_app.extensions["calsync"]


@blp.before_request
def _limit_and_cap() -> Response | None:
    request.max_content_length = MAX_BODY_BYTES
    limiter = current_app.extensions.get(_LIMITER)
    if limiter is None:
        storage = storage_from_string(storage_uri(_rt().redis_url))
        limiter = current_app.extensions[_LIMITER] = MovingWindowRateLimiter(storage)
    budget = parse(current_app.config.get(RATE_LIMIT_KEY, RATE_LIMIT))
    if not limiter.hit(budget, "webhooks", request.remote_addr or "-"):
        return error_response(429, "Too many notifications from this address; retry later.")
    return None


@blp.route("/graph", methods=["POST"])
@blp.doc(
    summary="Microsoft Graph change and lifecycle notifications",
    parameters=[
        {
            "in": "query",
            "name": "validationToken",
            "required": False,
            "description": "Sent when Graph validates this address: echoed as text/plain.",
            "schema": {"type": "string", "maxLength": MAX_VALIDATION_TOKEN},
        }
    ],
    requestBody={
        "required": False,
        "description": "A changeNotificationCollection; empty for the validation request.",
        "content": {"application/json": {"schema": GraphNotificationCollectionSchema}},
    },
)
@blp.alt_response(200, response=VALIDATION_RESPONSE, success=True)
@blp.alt_response(202, response=ACCEPTED_RESPONSE, success=True)
def graph_notification() -> Response:
    """Graph's validation handshake, or a batch of change and lifecycle notifications.

    Every notification is checked against its subscription's clientState; each genuine one
    queues a sync of its user (debounced), lifecycle events renew or reopen the
    subscription. The answer is 202 whatever the check said.
    """
    token = request.args.get("validationToken")
    if token is not None:
        if len(token) > MAX_VALIDATION_TOKEN:
            return error_response(400, "The validation token is too long.")
        # Graph compares the body with its token: plain text, exactly as sent (decoded).
        return Response(token, status=200, mimetype="text/plain")
    try:
        body = json.loads(request.get_data(cache=False) or b"null")
    except ValueError:
        body = None
    push.handle_graph_notification(_rt(), body)
    return Response(status=202)


@blp.route("/google", methods=["POST"])
@blp.doc(
    summary="Google Calendar push messages",
    parameters=[
        _header("X-Goog-Channel-ID", "The channel calsync opened.", required=True),
        _header("X-Goog-Channel-Token", "The channel's secret, echoed by Google."),
        _header(
            "X-Goog-Resource-State",
            '"sync" when the channel starts, "exists" when events changed.',
            required=True,
        ),
        _header("X-Goog-Resource-ID", "The watched resource."),
        _header("X-Goog-Message-Number", "The message's sequence number."),
        _header("X-Goog-Channel-Expiration", "When the channel expires."),
        _header("X-Goog-Resource-URI", "The watched resource's URI."),
    ],
    requestBody={
        "required": False,
        "description": "Google sends no body; anything sent is ignored.",
        "content": {"application/json": {"schema": GoogleBodySchema}},
    },
)
@blp.alt_response(200, response=RECEIVED_RESPONSE, success=True)
def google_notification() -> Response:
    """A Google push message: "sync" (a new channel's handshake) changes nothing, "exists"
    queues a sync of the channel's user once its token matched."""
    push.handle_google_notification(_rt(), request.headers)
    return Response(status=200)


def register(api: Api) -> None:
    """Register the blueprint and the non-JSON answers it documents by reference."""
    api.spec.components.response(
        VALIDATION_RESPONSE,
        {
            "description": "The validation token, echoed.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
    )
    api.spec.components.response(
        ACCEPTED_RESPONSE,
        {"description": "Received; genuine notifications are being acted on. No body."},
    )
    api.spec.components.response(
        RECEIVED_RESPONSE, {"description": "Received; acted on if genuine. No body."}
    )
    api.register_blueprint(blp)
