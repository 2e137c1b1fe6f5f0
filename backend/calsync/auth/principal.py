"""The signed-in user as flask-login sees it: a snapshot of the user row, per request.

A snapshot, not the ORM object: routes open their own transactions, and a detached row
would tempt code into lazy loads outside one. It is reloaded on every request, so a user
who was removed or lost the admin flag loses those rights at their next request.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask_login import UserMixin

from calsync.models import User


@dataclass(frozen=True)
class Principal(UserMixin):
    id: int
    organization_id: int
    is_admin: bool
    email: str

    @classmethod
    def of(cls, user: User) -> Principal:
        return cls(user.id, user.organization_id, user.is_admin, user.email)

    def get_id(self) -> str:
        return str(self.id)
