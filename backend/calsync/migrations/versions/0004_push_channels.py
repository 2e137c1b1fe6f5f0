"""Push channels: one change-notification subscription per calendar connection.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "push_channels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("channel_id", sa.String(length=255), nullable=False),
        sa.Column("resource_id", sa.String(length=1024), nullable=False),
        sa.Column("client_state", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_push_channels_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_channels")),
        sa.UniqueConstraint("channel_id", name=op.f("uq_push_channels_channel_id")),
        sa.UniqueConstraint("connection_id", name=op.f("uq_push_channels_connection_id")),
    )
    with op.batch_alter_table("push_channels", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_push_channels_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("push_channels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_push_channels_expires_at"))
    op.drop_table("push_channels")
