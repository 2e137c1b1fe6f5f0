"""First sign-ins of a tenant, at the same moment, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from calsync import migrate
from calsync.auth.microsoft import Identity
from calsync.auth.provisioning import provision
from calsync.db import make_engine, make_sessionmaker, transaction
from calsync.models import Organization, SyncProfile, User
from calsync.profiles import default_profile_settings

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def test_simultaneous_first_sign_ins_make_one_organization_with_one_admin(
    database_url: str,
) -> None:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    people = [Identity(TENANT, f"oid-{n}", f"user{n}@contoso.example", "U") for n in range(8)]
    start = threading.Barrier(len(people))
    errors: list[BaseException] = []

    def sign_in(identity: Identity) -> None:
        start.wait()
        try:
            provision(sessions, identity)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sign_in, args=(p,)) for p in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    with transaction(sessions) as db:
        assert errors == []
        assert db.scalar(select(func.count(Organization.id))) == 1
        assert db.scalar(select(func.count(User.id))) == len(people)
        assert db.scalar(select(func.count(User.id)).where(User.is_admin.is_(True))) == 1
        (profile,) = db.scalars(select(SyncProfile)).all()
        assert profile.is_global and profile.settings == default_profile_settings()
    engine.dispose()


def test_signing_in_again_updates_the_name_and_keeps_the_user(sqlite_url: str) -> None:
    migrate.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    sessions = make_sessionmaker(engine)

    first = provision(sessions, Identity(TENANT, "oid-1", "ann@contoso.example", "Ann"))
    again = provision(sessions, Identity(TENANT, "oid-1", "ann@contoso.example", "Ann Lee"))

    assert again.id == first.id and again.display_name == "Ann Lee" and again.is_admin
    engine.dispose()
