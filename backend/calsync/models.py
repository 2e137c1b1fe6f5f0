"""SQLAlchemy models: who the users are, what they connected, and what was synced.

Schema changes go through Alembic (``calsync/migrations``); a test compares these
models with the migrated database so the two never drift.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from calsync import crypto

# Named constraints: Alembic needs names to alter or drop them later, on SQLite too.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, returns aware datetimes on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class EncryptedJSON(TypeDecorator[Any]):
    """A JSON value encrypted with the process key ring before it reaches the database."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else crypto.box().encrypt(value)

    def process_result_value(self, value: str | None, dialect: Any) -> Any:
        return None if value is None else crypto.box().decrypt(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Organization(Base):
    """A Microsoft tenant: its users share the global settings and one CRM."""

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    crm_type: Mapped[str | None] = mapped_column(String(32))
    crm_base_url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    users: Mapped[list[User]] = relationship(
        back_populates="organization", cascade="all, delete-orphan", passive_deletes=True
    )
    profiles: Mapped[list[SyncProfile]] = relationship(
        back_populates="organization", cascade="all, delete-orphan", passive_deletes=True
    )


class SyncProfile(Base):
    """Sync settings: the organization's global default, or a named profile for some users."""

    __tablename__ = "sync_profiles"
    __table_args__ = (
        UniqueConstraint("organization_id", "name", name="uq_sync_profiles_org_name"),
        # At most one global profile per organization.
        Index(
            "uq_sync_profiles_one_global",
            "organization_id",
            unique=True,
            sqlite_where=text("is_global"),
            postgresql_where=text("is_global"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    is_global: Mapped[bool] = mapped_column(Boolean, default=False)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    organization: Mapped[Organization] = relationship(back_populates="profiles")


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("organization_id", "external_id", name="uq_users_org_external_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    external_id: Mapped[str] = mapped_column(String(64))  # Microsoft object id (oid)
    email: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(255), default="")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    sync_profile_id: Mapped[int | None] = mapped_column(
        ForeignKey("sync_profiles.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organization: Mapped[Organization] = relationship(back_populates="users")
    sync_profile: Mapped[SyncProfile | None] = relationship()
    # The database cascades the delete (ON DELETE CASCADE); the ORM must not null the FK.
    connections: Mapped[list[Connection]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


class Connection(Base):
    """A user's calendar account or CRM credentials; the secret part is encrypted."""

    __tablename__ = "connections"
    __table_args__ = (UniqueConstraint("user_id", "kind", name="uq_connections_user_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "calendar" | "crm"
    provider: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(320), default="")
    # Non-secret details: server URL, chosen calendar, token expiry...
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secret: Mapped[Any] = mapped_column(EncryptedJSON, nullable=True)
    # "connected" | "needs_reconnect" | "no_permission" | "error"
    status: Mapped[str] = mapped_column(String(32), default="connected")
    status_message: Mapped[str] = mapped_column(Text, default="")
    auto_sync_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(back_populates="connections")


class SyncState(Base):
    """Where each side's incremental listing resumes, and whether the first sync is done."""

    __tablename__ = "sync_states"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    calendar_cursor: Mapped[str | None] = mapped_column(Text)
    crm_cursor: Mapped[str | None] = mapped_column(Text)
    # JSON lists of item ids a run saw past the saved cursor (see SyncStore.recheck).
    calendar_recheck: Mapped[str | None] = mapped_column(Text)
    crm_recheck: Mapped[str | None] = mapped_column(Text)
    first_sync_completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class EventLink(Base):
    """Which calendar item is which CRM record, with what each side last looked like."""

    __tablename__ = "event_links"
    __table_args__ = (
        UniqueConstraint("user_id", "link_id", name="uq_event_links_user_link_id"),
        Index("ix_event_links_user_calendar_item", "user_id", "calendar_item_id"),
        Index("ix_event_links_user_crm_record", "user_id", "crm_record_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    link_id: Mapped[str] = mapped_column(String(64))  # our id, written into both sides
    calendar_item_id: Mapped[str | None] = mapped_column(String(1024))
    crm_record_id: Mapped[str | None] = mapped_column(String(255))
    calendar_version: Mapped[str | None] = mapped_column(String(255))
    crm_version: Mapped[str | None] = mapped_column(String(255))
    content_hash: Mapped[str | None] = mapped_column(String(64))
    origin_side: Mapped[str] = mapped_column(String(16))  # "calendar" | "crm"
    # An expanded series: a master link (expanded) plus one link per copied occurrence.
    series_link_id: Mapped[str | None] = mapped_column(String(64))
    occurrence_key: Mapped[str | None] = mapped_column(String(64))
    expanded: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # A create started on this side but not yet confirmed: a retry looks for it by link id.
    pending_side: Mapped[str | None] = mapped_column(String(16))
    # The side whose copy was written without invitees (so nobody was emailed): copying
    # that copy back must keep the other side's invitees.
    withheld_on: Mapped[str | None] = mapped_column(String(16))
    # A create given up while it may still land: the late copy is deleted when it shows.
    abandoned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a create of this link was last sent (a late copy may still land).
    unsure_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The content hash of a write that got no answer (it may still land, late).
    unanswered_hash: Mapped[str | None] = mapped_column(String(300))
    unanswered_on: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SyncRun(Base):
    """One sync, cleanup or reset job as the user sees it in the history."""

    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_user_created", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # "sync" | "cleanup" | "reset"
    trigger: Mapped[str] = mapped_column(String(16))  # "manual" | "automatic" | "push" | "reset"
    # "queued" | "running" | "succeeded" | "failed"
    status: Mapped[str] = mapped_column(String(16), default="queued")
    job_id: Mapped[str | None] = mapped_column(String(128))
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RemovedItem(Base):
    """An item duplicate cleanup removed, kept whole for a while so it can be restored."""

    __tablename__ = "removed_items"
    __table_args__ = (
        UniqueConstraint("entry_id", name="uq_removed_items_entry_id"),
        Index("ix_removed_items_user_run", "user_id", "run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The removal run; runs outlive their removed items (90 days against 30).
    run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id", ondelete="SET NULL"))
    entry_id: Mapped[str] = mapped_column(String(32))  # the id the UI restores by
    side: Mapped[str] = mapped_column(String(16))  # "calendar" | "crm"
    original_id: Mapped[str] = mapped_column(String(1024))
    # The stored link the item had (as JSON), so a restore can link it again.
    link: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Sent with the re-create: a restore retried after a crash finds its item by it.
    restore_link_id: Mapped[str] = mapped_column(String(64))
    event: Mapped[dict[str, Any]] = mapped_column(JSON)  # the neutral Event, whole
    removed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    restored_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    restored_id: Mapped[str | None] = mapped_column(String(1024))


class PushChannel(Base):
    """A calendar's change-notification subscription (Graph) or watch channel (Google).

    One per calendar connection: `calsync.push` creates, renews and removes them, and the
    webhooks find the user of a notification by `channel_id`. `client_state` is the secret
    the provider echoes on every notification; it is encrypted and never logged or returned.
    """

    __tablename__ = "push_channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connection_id: Mapped[int] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), unique=True
    )
    provider: Mapped[str] = mapped_column(String(16))  # "graph" | "google"
    channel_id: Mapped[str] = mapped_column(String(255), unique=True)
    # Graph: the subscribed resource; Google: the resourceId that stopping the channel needs.
    resource_id: Mapped[str] = mapped_column(String(1024), default="")
    client_state: Mapped[Any] = mapped_column(EncryptedJSON)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
