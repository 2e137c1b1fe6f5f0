"""Event links remember on which side invitees were withheld (to email nobody).

Links written before this revision by a CRM-to-calendar copy may have had their
attendees withheld; marking them is safe (the engine clears the mark once the calendar
copy shows every CRM invitee), while leaving them unmarked could let an edit of the
calendar copy erase the CRM meeting's invitees.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("event_links") as batch_op:
        batch_op.add_column(sa.Column("withheld_on", sa.String(length=16), nullable=True))
    op.execute(
        "UPDATE event_links SET withheld_on = 'calendar' "
        "WHERE origin_side = 'crm' AND series_link_id IS NULL AND NOT expanded"
    )


def downgrade() -> None:
    with op.batch_alter_table("event_links") as batch_op:
        batch_op.drop_column("withheld_on")
