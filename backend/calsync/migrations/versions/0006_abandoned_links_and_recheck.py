"""Event links remember a create given up while it may still land (abandoned_at); sync
states remember the items a run saw past a cursor it could not save (*_recheck).

A create whose answer was lost may be applied by the provider minutes later. When its
source is deleted meanwhile, the link used to be dropped, and the late copy then stayed
as an orphan nobody owned. Such a link is now kept, without ids, for a day.

A run that could not apply everything keeps the old cursor; an item it copied and that is
deleted before the next run may never be mentioned by a delta from that old cursor (Graph).
The next run reads such items back when the listing leaves them out.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("event_links") as batch_op:
        batch_op.add_column(sa.Column("abandoned_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("unsure_since", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("sync_states") as batch_op:
        batch_op.add_column(sa.Column("calendar_recheck", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("crm_recheck", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_states") as batch_op:
        batch_op.drop_column("crm_recheck")
        batch_op.drop_column("calendar_recheck")
    with op.batch_alter_table("event_links") as batch_op:
        batch_op.drop_column("unsure_since")
        batch_op.drop_column("abandoned_at")
