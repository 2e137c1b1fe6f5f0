"""Faults a calendar or CRM adapter reports, in terms the jobs can act on.

Every adapter translates its vendor's errors into these, so the job layer decides
retries and connection states without knowing any vendor:

- ProviderTransientError: retry later (network, timeouts, 429, 5xx); may carry Retry-After.
- ProviderAuthError: the grant or password no longer works; the connection needs the
  user to connect again. Never retried.
- ProviderPermissionError: signed in, but not allowed (no access to meetings/calendar).
- ProviderConfigError: the address does not answer like that provider (wrong URL).
- ProviderConflict: the item changed (or vanished) while we wrote it (HTTP 412); the
  write is recorded as failed and the next run sees the newer version.
Each message is a sentence the user can act on; it is shown in the UI as it is.
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base class; `message` is shown to the user."""

    connection_status = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProviderTransientError(ProviderError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderAuthError(ProviderError):
    connection_status = "needs_reconnect"


class ProviderPermissionError(ProviderError):
    connection_status = "no_permission"


class ProviderConfigError(ProviderError):
    connection_status = "error"


class ProviderConflict(ProviderError):
    pass
