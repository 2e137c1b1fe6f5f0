"""Validating the Microsoft token the task pane obtained through Office SSO / NAA.

A token is accepted only when every one of these holds:
- signed with RS256 by a key Microsoft publishes (``KeyCache``), never ``none`` or HMAC;
- issued by the tenant it names (``https://login.microsoftonline.com/{tid}/v2.0``, or
  ``https://sts.windows.net/{tid}/`` for v1 tokens);
- meant for us: audience is our client id or ``api://{our host}/{client id}``;
- current: ``exp`` and ``nbf`` hold within a small leeway for clock skew;
- from a work or school tenant (personal accounts share one tenant id, which would make
  every Outlook.com user a member of one organization), allowed by
  ``MICROSOFT_ALLOWED_TENANTS`` when that is set.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidTokenError,
    JoseError,
    MissingClaimError,
)

from calsync.auth.errors import SignInError
from calsync.auth.keys import KeyCache

# Microsoft accounts (Outlook.com, Hotmail) all carry this tenant id.
PERSONAL_ACCOUNTS_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
TENANT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
V1_ISSUER = "https://sts.windows.net/{tid}/"
MAX_TOKEN_LENGTH = 16 * 1024
RESIGN = "Close and reopen the add-in to sign in again."


@dataclass(frozen=True)
class Identity:
    """Who a validated token says the user is."""

    tenant_id: str
    object_id: str
    email: str
    name: str


class MicrosoftTokenValidator:
    def __init__(
        self,
        keys: KeyCache,
        *,
        client_id: str,
        base_url: str,
        authority_host: str = "https://login.microsoftonline.com",
        allowed_tenants: frozenset[str] = frozenset(),
        leeway: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.audiences = {client_id, f"api://{urlsplit(base_url).netloc}/{client_id}"}
        self.v2_issuer = authority_host.rstrip("/") + "/{tid}/v2.0"
        self.allowed_tenants = allowed_tenants
        self.leeway = leeway
        self.clock = clock

    def validate(self, token: str) -> Identity:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise SignInError(f"The sign-in token is missing or too long. {RESIGN}")
        try:
            header = jws.extract_compact(token.encode()).headers()
        except (JoseError, ValueError, UnicodeError):
            raise SignInError(f"This is not a Microsoft sign-in token. {RESIGN}") from None
        if header.get("alg") != "RS256" or not isinstance(header.get("kid"), str):
            raise SignInError(f"This sign-in token is not signed the way Microsoft signs. {RESIGN}")

        key = self.keys.key(header["kid"])
        try:
            claims = jwt.decode(token, key, algorithms=["RS256"]).claims
        except BadSignatureError:
            raise SignInError(f"The sign-in token's signature is not valid. {RESIGN}") from None
        except (JoseError, ValueError):
            raise SignInError(f"This is not a Microsoft sign-in token. {RESIGN}") from None

        registry = jwt.JWTClaimsRegistry(
            now=int(self.clock()),
            leeway=self.leeway,
            exp={"essential": True},
            tid={"essential": True},
            oid={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise SignInError(f"Your sign-in has expired. {RESIGN}") from None
        except MissingClaimError as exc:
            raise SignInError(f"The sign-in token lacks {exc.claim!r}. {RESIGN}") from None
        except (InvalidTokenError, InvalidClaimError):
            raise SignInError(f"The sign-in token is not valid yet. {RESIGN}") from None

        tenant = str(claims["tid"])
        if not TENANT_ID.fullmatch(tenant):
            raise SignInError(f"The sign-in token names no valid organization. {RESIGN}")
        if claims.get("iss") not in (
            self.v2_issuer.format(tid=tenant),
            V1_ISSUER.format(tid=tenant),
        ):
            raise SignInError(f"The sign-in token was not issued by your organization. {RESIGN}")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if not self.audiences.intersection(a for a in audiences if isinstance(a, str)):
            raise SignInError(f"The sign-in token was issued for another application. {RESIGN}")
        check_tenant(tenant, self.allowed_tenants)
        return identity_from_claims(claims)


def check_tenant(tenant: str, allowed_tenants: frozenset[str]) -> None:
    """Refuse personal accounts and, when an allow-list is set, tenants not on it."""
    if tenant == PERSONAL_ACCOUNTS_TENANT:
        raise SignInError(
            "calsync works with work or school accounts. Sign in with your "
            "organization's Microsoft account."
        )
    if not TENANT_ID.fullmatch(tenant):
        raise SignInError("Your sign-in names no valid organization. Sign in again.")
    if allowed_tenants and tenant not in allowed_tenants:
        raise SignInError(
            "Your organization is not allowed to use this calsync service. Ask your administrator."
        )


def identity_from_claims(claims: dict) -> Identity:
    """The user's identity from Microsoft claims (v1 or v2 access token, or an ID token)."""
    email = next(
        (
            str(claims[name])
            for name in ("preferred_username", "email", "upn", "unique_name")
            if claims.get(name)
        ),
        "",
    )
    return Identity(
        tenant_id=str(claims["tid"]),
        object_id=str(claims["oid"]),
        email=email[:320],
        name=str(claims.get("name") or email)[:255],
    )
