"""Sign-in through Microsoft in a plain browser tab (no task pane to hand us a token).

The authorization-code flow with PKCE and state, as msal runs it: ``start`` returns the
Microsoft address to send the browser to and a flow dict to keep in the session;
``finish`` exchanges the code Microsoft sends back for the user's ID token claims.
The authority host is configurable so that a local emulator can stand in for
login.microsoftonline.com; msal must then skip its authority validation.
"""

from __future__ import annotations

import warnings
from typing import Any

import msal

from calsync.auth.errors import SignInError, SignInUnavailable
from calsync.auth.microsoft import Identity, check_tenant, identity_from_claims
from calsync.config import DEFAULT_MICROSOFT_AUTHORITY_HOST, Config

# Work and school accounts only: the organization is the Microsoft tenant.
AUTHORITY_TENANT = "organizations"
SCOPES = ["User.Read"]
UNREACHABLE = "Microsoft's sign-in service cannot be reached just now. Try again in a minute."


class NotConfigured(Exception):
    """Web sign-in cannot work on this deployment; the message says which setting is missing."""


class WebSignIn:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.redirect_uri = f"{config.base_url}/api/auth/microsoft/callback"

    def _client(self) -> msal.ConfidentialClientApplication:
        if not self.config.microsoft_client_id:
            raise NotConfigured(
                "Sign-in with Microsoft is not set up on this server: the administrator must "
                "set MICROSOFT_CLIENT_ID and MICROSOFT_CLIENT_SECRET."
            )
        if not self.config.microsoft_client_secret:
            raise NotConfigured(
                "Sign-in with Microsoft is not set up on this server: the administrator must "
                "set MICROSOFT_CLIENT_SECRET."
            )
        microsoft = self.config.microsoft_authority_host == DEFAULT_MICROSOFT_AUTHORITY_HOST
        return msal.ConfidentialClientApplication(
            self.config.microsoft_client_id,
            client_credential=self.config.microsoft_client_secret,
            authority=f"{self.config.microsoft_authority_host}/{AUTHORITY_TENANT}",
            validate_authority=microsoft,
            instance_discovery=microsoft,
        )

    def start(self) -> dict[str, Any]:
        """A new flow: ``flow["auth_uri"]`` is where to send the browser; keep the rest."""
        try:
            client = self._client()
            with warnings.catch_warnings():
                # msal recommends response_mode=form_post; a cross-site POST back would
                # arrive without our SameSite=Lax session cookie (and without a CSRF
                # token), so the reply comes as a query, protected by state and PKCE.
                warnings.simplefilter("ignore", UserWarning)
                return client.initiate_auth_code_flow(
                    SCOPES, redirect_uri=self.redirect_uri, response_mode="query"
                )
        except (ValueError, OSError) as exc:
            raise SignInUnavailable(UNREACHABLE) from exc

    def finish(self, flow: dict[str, Any] | None, reply: dict[str, str]) -> Identity:
        again = "Start signing in again."
        if not flow:
            raise SignInError(f"This sign-in was not started here or has already finished. {again}")
        try:
            client = self._client()
        except (ValueError, OSError) as exc:
            raise SignInUnavailable(UNREACHABLE) from exc
        try:
            result = client.acquire_token_by_auth_code_flow(flow, reply)
        except OSError as exc:
            raise SignInUnavailable(UNREACHABLE) from exc
        except ValueError:  # state mismatch, missing code...
            raise SignInError(
                f"This sign-in reply does not match the sign-in we started. {again}"
            ) from None
        if "error" in result:
            raise SignInError(f"Microsoft did not sign you in ({result.get('error')}). {again}")
        claims = result.get("id_token_claims") or {}
        if not claims.get("tid") or not claims.get("oid"):
            raise SignInError(f"Microsoft's reply did not say who you are. {again}")
        check_tenant(str(claims["tid"]), self.config.microsoft_allowed_tenants)
        return identity_from_claims(claims)
