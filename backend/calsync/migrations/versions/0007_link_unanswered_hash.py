"""Event links remember what a write that got no answer carried, and where it went.

A write that timed out may still reach the provider, even after a later run wrote a newer
version; the item then holds our older content, which must not pass for a user's edit.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("event_links") as batch_op:
        batch_op.add_column(sa.Column("unanswered_hash", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("unanswered_on", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("event_links") as batch_op:
        batch_op.drop_column("unanswered_on")
        batch_op.drop_column("unanswered_hash")
