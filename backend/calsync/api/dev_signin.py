"""Development sign-in: become any user without Microsoft (CALSYNC_ENV=development only).

``calsync.api.register`` adds this blueprint only when the deployment is in development;
in production the route does not exist at all, so no setting can switch it on.
Users of one email domain share an organization (a tenant id derived from the domain).
"""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask_smorest import Blueprint

from calsync.api.access import session_factory
from calsync.api.auth import SignedInSchema, signed_in
from calsync.api.errors import ErrorSchema
from calsync.auth.microsoft import TENANT_ID, Identity
from calsync.auth.provisioning import provision
from calsync.security.ratelimit import rate_limited

blp = Blueprint(
    "dev_signin",
    __name__,
    url_prefix="/api/auth/dev",
    description="Development only: sign in as anyone, without Microsoft.",
)


class DevSignInSchema(ma.Schema):
    email = ma.fields.Email(required=True, validate=ma.validate.Length(max=320))
    name = ma.fields.String(validate=ma.validate.Length(max=255))
    tenant_id = ma.fields.String(
        validate=ma.validate.Regexp(TENANT_ID, error='"Tenant id" must be a lowercase GUID.'),
        metadata={"description": "Default: derived from the email's domain."},
    )


@blp.route("", methods=["POST"])
@blp.arguments(DevSignInSchema)
@blp.response(200, SignedInSchema)
@blp.alt_response(
    429, schema=ErrorSchema, description="Too many sign-in attempts from this address."
)
@rate_limited("signin")
def dev_sign_in(body: dict[str, Any]) -> dict[str, Any]:
    """Sign in as the user with this email (development only)."""
    email = body["email"].lower()
    domain = email.rsplit("@", 1)[-1]
    identity = Identity(
        tenant_id=body.get("tenant_id") or str(uuid.uuid5(uuid.NAMESPACE_DNS, domain)),
        object_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{email}")),
        email=email,
        name=body.get("name") or email.split("@", 1)[0],
    )
    return signed_in(provision(session_factory(), identity))
