"""The JSON API under /api: one blueprint module per resource.

To add a resource (connections, actions...): write ``calsync/api/<resource>.py`` with a
flask-smorest ``blp`` whose routes have schemas and use ``calsync.api.access`` for who
may call them (queries scoped by ``me()``), then name the module in ``RESOURCES``.
Mark sign-in and connect routes with ``@rate_limited(...)``; state-changing routes are
CSRF-checked without any marking; errors take their shape from ``calsync.api.errors``.
"""

from __future__ import annotations

import importlib

from flask_smorest import Api

RESOURCES = (
    "auth",
    "me",
    "organization",
    "profiles",
    "users",
    "connections",
    "calendar_oauth",
    "crm_oauth",
    "caldav",
    "actions",
    "maintenance",
    "runs",
    "event_status",
)
DEVELOPMENT_ONLY = ("dev_signin",)
# Outside /api: called by Microsoft and Google, each registering itself with its
# documentation components (``register(api)``).
WEBHOOKS = ("webhooks",)


def register(api: Api, *, development: bool) -> None:
    """Register every resource's blueprint; development-only ones only in development."""
    for name in RESOURCES + (DEVELOPMENT_ONLY if development else ()):
        module = importlib.import_module(f"calsync.api.{name}")
        api.register_blueprint(module.blp)
    for name in WEBHOOKS:
        importlib.import_module(f"calsync.api.{name}").register(api)
