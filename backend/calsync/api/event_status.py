"""Is this event synced? Asked by the task pane opened next to a calendar event."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_login import login_required
from flask_smorest import Blueprint
from sqlalchemy import select

from calsync import connections
from calsync.api.access import db, me
from calsync.api.connections import crm_record_url, own_connection
from calsync.api.runs import RunSchema, latest_runs, run_dict
from calsync.models import EventLink, Organization

NOT_YET = (
    "This event is not linked to a CRM meeting. The next sync copies it if your sync "
    'settings include it ("Sync record option", "Sync direction" and the sync window).'
)
PENDING = "calsync is copying this event; the next sync finishes it."

blp = Blueprint(
    "event_status",
    __name__,
    url_prefix="/api/events",
    description="Whether a calendar event is synced with a CRM meeting.",
)


class StatusArgs(ma.Schema):
    item_id = ma.fields.String(
        required=True,
        validate=ma.validate.Length(
            min=1, max=1024, error='"item_id" must be 1 to 1024 characters.'
        ),
        error_messages={"required": '"item_id" is required: the Outlook REST id of the event.'},
        metadata={"description": "The event's Outlook REST item id (convertToRestId)."},
    )


class EventStatusSchema(ma.Schema):
    synced = ma.fields.Boolean(required=True)
    crm_record_id = ma.fields.String(required=True, allow_none=True)
    crm_url = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "Opens the meeting in the CRM."}
    )
    last_run = ma.fields.Nested(
        RunSchema, required=True, allow_none=True, metadata={"description": "My latest sync."}
    )
    reason = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "Why it is not synced."}
    )


@blp.route("/status")
class EventStatus(MethodView):
    decorators = [login_required]

    @blp.arguments(StatusArgs, location="query")
    @blp.response(200, EventStatusSchema)
    def get(self, args: dict[str, str]) -> dict[str, Any]:
        """Whether this calendar event is linked to a CRM meeting, and my latest sync."""
        with db() as session:
            runs = latest_runs(session, me().id, 1, kind="sync")
            answer: dict[str, Any] = {
                "synced": False,
                "crm_record_id": None,
                "crm_url": None,
                "last_run": run_dict(runs[0]) if runs else None,
                "reason": None,
            }
            calendar, crm = own_connection(session, "calendar"), own_connection(session, "crm")
            if calendar is None:
                return {**answer, "reason": connections.NO_CALENDAR}
            if crm is None:
                return {**answer, "reason": connections.NO_CRM}
            link = session.scalars(
                select(EventLink)
                .where(EventLink.user_id == me().id, EventLink.calendar_item_id == args["item_id"])
                .order_by(EventLink.updated_at.desc(), EventLink.id.desc())
                .limit(1)
            ).one_or_none()
            if link is None:
                return {**answer, "reason": NOT_YET}
            if link.crm_record_id is None or link.pending_side is not None:
                return {**answer, "reason": PENDING}
            organization = session.get(Organization, me().organization_id)
            assert organization is not None
            return {
                **answer,
                "synced": True,
                "crm_record_id": link.crm_record_id,
                "crm_url": crm_record_url(crm, organization, link.crm_record_id),
            }
