"""Who may call a route, and the database session a route works in.

Every query a route makes is scoped by the signed-in principal: their own user id for
personal data, their organization id for administration. A row of another organization
is answered with 404, exactly like a row that does not exist, so ids cannot be probed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

from flask import abort, current_app
from flask_login import current_user, login_required
from sqlalchemy.orm import Session, sessionmaker

from calsync.auth.principal import Principal
from calsync.db import transaction

F = TypeVar("F", bound=Callable[..., Any])

# Ids are 32-bit database integers: a larger one cannot name a row (and would make the
# database driver raise), so routes refuse it before any query. Use ``<id:name>``.
MAX_ID = 2**31 - 1
ID_CONVERTER = f"int(min=1, max={MAX_ID})"

__all__ = ["admin_required", "db", "login_required", "me", "not_found", "session_factory"]


def me() -> Principal:
    """The signed-in principal (routes behind ``login_required`` only)."""
    return current_user._get_current_object()  # type: ignore[no-any-return]


def admin_required(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
        if not current_user.is_admin:
            abort(403, "Only an administrator of your organization can do this.")
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def session_factory() -> sessionmaker[Session]:
    return current_app.extensions["calsync"].sessions  # type: ignore[no-any-return]


@contextmanager
def db() -> Iterator[Session]:
    """A transaction on the app's database: committed when the block succeeds."""
    with transaction(current_app.extensions["calsync"].sessions) as session:
        yield session


def not_found(what: str) -> None:
    abort(404, f"There is no such {what} in your organization.")
