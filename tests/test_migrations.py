"""The schema is built by migrations that agree with the models, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from calsync import migrate
from calsync.db import make_engine
from calsync.models import Base

TABLES = {
    "organizations",
    "sync_profiles",
    "users",
    "connections",
    "sync_states",
    "event_links",
    "sync_runs",
    "removed_items",
    "push_channels",
}


def test_upgrade_creates_every_table(database_url: str) -> None:
    migrate.upgrade(database_url)

    engine = make_engine(database_url, pooled=False)
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert migrate.current_revision(database_url) == migrate.head_revision(database_url)
    engine.dispose()


def test_migrations_match_the_models(database_url: str) -> None:
    migrate.upgrade(database_url)

    engine = make_engine(database_url, pooled=False)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert differences == [], "models changed without a migration: run `calsync db revision`"


def test_every_migration_can_be_undone_and_redone(database_url: str) -> None:
    migrate.upgrade(database_url)
    migrate.downgrade(database_url, "base")

    engine = make_engine(database_url, pooled=False)
    assert not TABLES & set(inspect(engine).get_table_names())
    engine.dispose()

    migrate.upgrade(database_url)
    assert migrate.current_revision(database_url) == migrate.head_revision(database_url)


def test_upgrading_keeps_existing_rows(database_url: str) -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config(database_url))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    migrate.upgrade(database_url, revisions[0])
    engine = make_engine(database_url, pooled=False)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO organizations (tenant_id, name, created_at) "
                "VALUES ('tenant-1', 'Acme', CURRENT_TIMESTAMP)"
            )
        )

    for revision in revisions[1:]:
        migrate.upgrade(database_url, revision)
    migrate.upgrade(database_url)

    with engine.connect() as connection:
        names = connection.execute(text("SELECT name FROM organizations")).scalars().all()
    engine.dispose()
    assert names == ["Acme"]
