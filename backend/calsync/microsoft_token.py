"""One signed-in Microsoft account's access token, kept fresh from msal's token cache.

Outlook/Office 365 (`calendars/graph.py`) and Dynamics 365 (`crm/dynamics.py`) both call
Microsoft with a user's delegated token; how that token is renewed, and what a refusal
means, is the same for both and lives here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import requests

from calsync.provider_errors import ProviderAuthError, ProviderTransientError

# msal's errors that only the user can mend: a revoked or expired grant, a changed
# password, withdrawn consent or MFA now required, an app that lost its registration.
_USER_MUST_RECONNECT = frozenset(
    {"invalid_grant", "interaction_required", "invalid_client", "unauthorized_client"}
)
# Renew this long before Microsoft's expiry, so a token never lapses mid-request.
_EARLY = 300.0


class AccountToken:
    """`get()` answers the account's access token; `get(force=True)` after a 401.

    `app` builds (or returns) the msal application holding the account's token cache;
    `auth_lost` is the sentence the user sees when only connecting again helps.
    """

    def __init__(
        self,
        app: Callable[[], Any],
        scopes: Sequence[str],
        home_account_id: str | None,
        auth_lost: str,
    ) -> None:
        self._app = app
        self._scopes = list(scopes)
        self._home_account_id = home_account_id
        self._auth_lost = auth_lost
        self._lock = threading.Lock()
        self._token: str | None = None
        self._until = 0.0

    def get(self, *, force: bool = False) -> str:
        with self._lock:
            # msal would answer from its cache too; keeping the token here just saves the
            # cache look-up on every request. A 401 forces a refresh regardless.
            if self._token and not force and time.monotonic() < self._until:
                return self._token
            try:
                result = self._app().acquire_token_silent_with_error(
                    self._scopes, account=self._account(), force_refresh=force
                )
            except requests.RequestException as exc:
                raise ProviderTransientError(
                    f"Microsoft sign-in could not be reached ({exc}). Sync will retry."
                ) from exc
            if not result:
                raise ProviderAuthError(self._auth_lost)
            if "error" in result:
                if result["error"] in _USER_MUST_RECONNECT:
                    raise ProviderAuthError(self._auth_lost)
                raise ProviderTransientError(
                    "Microsoft sign-in failed for now "
                    f"({result.get('error_description') or result['error']}). Sync will retry."
                )
            self._token = str(result["access_token"])
            lifetime = float(result.get("expires_in") or 0)
            self._until = time.monotonic() + max(0.0, lifetime - _EARLY)
            return self._token

    def _account(self) -> dict[str, Any]:
        for account in self._app().get_accounts():
            if not self._home_account_id or account["home_account_id"] == self._home_account_id:
                return account
        raise ProviderAuthError(self._auth_lost)
