"""Turning a Microsoft identity into an organization and a user, the first time and after.

The organization is the Microsoft tenant. It is created, with its global sync profile,
the first time anyone of the tenant signs in; two first sign-ins at the same moment
both end up in the one organization (the unique tenant id decides, the loser retries).
The first user of an organization becomes its administrator: the organization row is
locked while that is decided, so two concurrent first users cannot both become admin.
"""

from __future__ import annotations

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from calsync.auth.microsoft import Identity
from calsync.db import transaction
from calsync.models import Organization, SyncProfile, User, utcnow
from calsync.profiles import GLOBAL_PROFILE_NAME, default_profile_settings


def provision(sessions: sessionmaker[Session], identity: Identity) -> User:
    """The user ``identity`` names, created (with their organization) if new."""
    organization_id = _organization_id(sessions, identity.tenant_id)
    for _attempt in range(3):
        try:
            return _user(sessions, organization_id, identity)
        except IntegrityError:
            continue  # the same user signing in twice at once: the other insert won
    raise RuntimeError("could not create the user after three attempts")


def lock_organization(session: Session, organization_id: int) -> None:
    """Hold the organization's row until the transaction ends: admin decisions serialise.

    A no-op UPDATE rather than SELECT ... FOR UPDATE: it locks the row on PostgreSQL and
    takes SQLite's write lock, which a plain SELECT would not.
    """
    session.execute(
        update(Organization)
        .where(Organization.id == organization_id)
        .values(id=Organization.id)
        .execution_options(synchronize_session=False)
    )


def _organization_id(sessions: sessionmaker[Session], tenant_id: str) -> int:
    for _attempt in range(3):
        with transaction(sessions) as session:
            found = session.scalar(
                select(Organization.id).where(Organization.tenant_id == tenant_id)
            )
            if found is not None:
                return found
        try:
            with transaction(sessions) as session:
                organization = Organization(tenant_id=tenant_id, name="")
                organization.profiles.append(
                    SyncProfile(
                        name=GLOBAL_PROFILE_NAME,
                        is_global=True,
                        settings=default_profile_settings(),
                    )
                )
                session.add(organization)
                session.flush()
                return organization.id
        except IntegrityError:
            continue  # another request created it first; read theirs
    raise RuntimeError("could not create the organization after three attempts")


def _user(sessions: sessionmaker[Session], organization_id: int, identity: Identity) -> User:
    with transaction(sessions) as session:
        lock_organization(session, organization_id)
        user = session.scalar(
            select(User).where(
                User.organization_id == organization_id,
                User.external_id == identity.object_id,
            )
        )
        if user is None:
            user = User(organization_id=organization_id, external_id=identity.object_id)
            session.add(user)
        user.email = identity.email
        user.display_name = identity.name
        user.last_login_at = utcnow()
        session.flush()
        has_admin = session.scalar(
            select(exists().where(User.organization_id == organization_id, User.is_admin.is_(True)))
        )
        if not has_admin:
            user.is_admin = True
        session.flush()
        return user
