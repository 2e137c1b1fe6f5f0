"""Items removed by duplicate cleanup, kept whole for 30 days so they can be restored.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "removed_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("entry_id", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("original_id", sa.String(length=1024), nullable=False),
        sa.Column("link", sa.JSON(), nullable=True),
        sa.Column("restore_link_id", sa.String(length=64), nullable=False),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("restored_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("restored_id", sa.String(length=1024), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_removed_items_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["sync_runs.id"],
            name=op.f("fk_removed_items_run_id_sync_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_removed_items")),
        sa.UniqueConstraint("entry_id", name="uq_removed_items_entry_id"),
    )
    with op.batch_alter_table("removed_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_removed_items_expires_at"), ["expires_at"])
        batch_op.create_index("ix_removed_items_user_run", ["user_id", "run_id"])


def downgrade() -> None:
    with op.batch_alter_table("removed_items", schema=None) as batch_op:
        batch_op.drop_index("ix_removed_items_user_run")
        batch_op.drop_index(batch_op.f("ix_removed_items_expires_at"))
    op.drop_table("removed_items")
