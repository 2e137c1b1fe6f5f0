"""Event links remember expanded series and creates that are not yet confirmed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("event_links") as batch_op:
        batch_op.add_column(sa.Column("series_link_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("occurrence_key", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("expanded", sa.Boolean(), nullable=False, server_default=sa.text("false"))
        )
        batch_op.add_column(sa.Column("pending_side", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("event_links") as batch_op:
        batch_op.drop_column("pending_side")
        batch_op.drop_column("expanded")
        batch_op.drop_column("occurrence_key")
        batch_op.drop_column("series_link_id")
