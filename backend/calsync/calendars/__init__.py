"""Calendar providers: one module per vendor, each implementing `calsync.sync.CalendarAdapter`.

`adapter_class("caldav")` gives the adapter class of a provider key. Vendor modules are
imported only when asked for, so a worker that never syncs CalDAV never loads its client.

Failures a job must classify are the shared `calsync.provider_errors` types, re-exported
here: reconnect (auth), tell the user (permission, configuration), or retry (transient).
An expired cursor is the engine's own `calsync.sync.CursorExpired`, never one of these.
"""

from __future__ import annotations

from importlib import import_module

from calsync.provider_errors import (
    ProviderAuthError,
    ProviderConfigError,
    ProviderConflict,
    ProviderError,
    ProviderPermissionError,
    ProviderTransientError,
)

# Provider key (as stored on the connection) -> "module:class".
PROVIDERS: dict[str, str] = {
    "caldav": "calsync.calendars.caldav:CaldavCalendar",
    "outlook": "calsync.calendars.graph:GraphCalendar",  # personal accounts (consumers)
    "office365": "calsync.calendars.graph:GraphCalendar",  # work or school (organizations)
    "google": "calsync.calendars.google:GoogleCalendar",
}


def adapter_class(provider: str) -> type:
    """The adapter class registered for `provider`; a clear error for an unknown one."""
    try:
        target = PROVIDERS[provider]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(
            f"Unknown calendar provider {provider!r}; calsync knows {known}."
        ) from None
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)


__all__ = [
    "PROVIDERS",
    "ProviderAuthError",
    "ProviderConfigError",
    "ProviderConflict",
    "ProviderError",
    "ProviderPermissionError",
    "ProviderTransientError",
    "adapter_class",
]
