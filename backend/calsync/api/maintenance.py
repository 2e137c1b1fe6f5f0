"""Maintenance of my sync: "Run duplicate cleanup", restoring what it removed, "Reset
calendar sync".

Like "Sync calendar now", each only queues a job on the maintenance queue
(`calsync.enqueue.enqueue_maintenance`) and answers with its job and run: the add-in
follows the job at GET /api/jobs/{job_id} and shows the run (GET /api/runs/{run_id}).
A cleanup preview is a run too: its id is the preview id that "Yes" confirms, and what
it found (groups, counts) is in that run's counts.

Every id a route takes (a preview, a cleanup run, a removed item) is looked up among the
signed-in user's own before anything else, so another user's id is "not found" even when
the user could not act anyway.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import current_app
from flask_login import login_required
from flask_smorest import Blueprint
from sqlalchemy import select

from calsync.api.access import ID_CONVERTER, db, me, session_factory
from calsync.api.actions import EmptySchema, require_ready
from calsync.api.errors import ErrorSchema, refuse
from calsync.cleanup import NotFound, SqlTrash, load_preview
from calsync.enqueue import Enqueued, enqueue_maintenance
from calsync.models import SyncRun, utcnow
from calsync.reset import reset_preview
from calsync.store import SqlSyncStore

NO_SUCH_PREVIEW = (
    "There is no finished duplicate cleanup preview with this id among your runs. "
    "Run the duplicate cleanup again."
)
NO_SUCH_CLEANUP = "There is no such duplicate cleanup in your history."
NO_SUCH_ENTRY = (
    "There is no such removed item among yours: removed items can be restored for 30 days."
)
MAX_ENTRY_ID = 64  # entry ids are 32 characters; a longer one cannot name a row
NOT_READY = "The calendar or the CRM is not ready."

blp = Blueprint(
    "maintenance",
    __name__,
    url_prefix="/api",
    description="Duplicate cleanup (preview, confirm, restore) and reset of my sync.",
)


class QueuedSchema(ma.Schema):
    job_id = ma.fields.String(required=True, metadata={"description": "GET /api/jobs/{job_id}."})
    run_id = ma.fields.Integer(
        required=True,
        metadata={"description": "The job's run (GET /api/runs/{run_id}); a preview's id."},
    )


class RemovedEntrySchema(ma.Schema):
    entry_id = ma.fields.String(
        required=True,
        metadata={"description": "POST /api/cleanup/removed/{entry_id}/restore."},
    )
    side = ma.fields.String(required=True, metadata={"description": '"calendar" or "crm".'})
    original_id = ma.fields.String(
        required=True, metadata={"description": "The item's id on its side before removal."}
    )
    title = ma.fields.String(required=True, allow_none=True)
    start = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "ISO 8601: a date-time, or a date for an all-day event."},
    )
    end = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "ISO 8601: a date-time, or a date for an all-day event."},
    )
    linked = ma.fields.Boolean(
        required=True, metadata={"description": "It was linked: a restore links it again."}
    )
    removed_at = ma.fields.String(required=True, metadata={"description": "ISO 8601."})
    expires_at = ma.fields.String(
        required=True, metadata={"description": "ISO 8601: it can be restored until then."}
    )
    restored_at = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "ISO 8601; null until restored."}
    )
    restored_id = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "The re-created item's id on its side; null until restored."},
    )


class ResetPreviewSchema(ma.Schema):
    links = ma.fields.Integer(
        required=True, metadata={"description": "How many linked pairs a reset rebuilds."}
    )
    message = ma.fields.String(
        required=True,
        metadata={"description": 'For the confirmation: "N links will be rebuilt; ...".'},
    )


@blp.route("/cleanup/preview", methods=["POST"])
@login_required
@blp.arguments(EmptySchema, required=False)
@blp.response(202, QueuedSchema)
@blp.alt_response(409, schema=ErrorSchema, description=NOT_READY)
def preview_cleanup(_body: dict[str, Any]) -> dict[str, Any]:
    """ "Run duplicate cleanup": queue a search for duplicates; nothing is removed.

    The run's counts hold what was found (groups, counts) once the job has succeeded;
    the run's id is the preview id to confirm.
    """
    require_ready()
    return queued(enqueue_maintenance(current_app.extensions["calsync"], me().id, "cleanup"))


@blp.route(f"/cleanup/<{ID_CONVERTER}:run_id>/confirm", methods=["POST"])
@login_required
@blp.arguments(EmptySchema, required=False)
@blp.response(202, QueuedSchema)
@blp.alt_response(404, schema=ErrorSchema, description="Not a finished preview of mine.")
@blp.alt_response(409, schema=ErrorSchema, description=NOT_READY)
def confirm_cleanup(_body: dict[str, Any], run_id: int) -> dict[str, Any]:
    """ "Yes": queue the removal of exactly what the preview `run_id` showed."""
    user_id = me().id
    try:
        load_preview(session_factory(), user_id, run_id)
    except NotFound:
        refuse(404, NO_SUCH_PREVIEW)
    require_ready()
    try:
        job = enqueue_maintenance(
            current_app.extensions["calsync"], user_id, "cleanup", preview_id=run_id
        )
    except NotFound:  # gone between the two looks
        refuse(404, NO_SUCH_PREVIEW)
    return queued(job)


@blp.route(f"/cleanup/<{ID_CONVERTER}:run_id>/removed", methods=["GET"])
@login_required
@blp.response(200, RemovedEntrySchema(many=True))
@blp.alt_response(404, schema=ErrorSchema, description="Not one of my cleanup runs.")
def removed_items(run_id: int) -> list[dict[str, Any]]:
    """What the removal run `run_id` removed and can still be restored, oldest first."""
    user_id = me().id
    with db() as session:
        run = session.scalars(
            select(SyncRun).where(
                SyncRun.id == run_id, SyncRun.user_id == user_id, SyncRun.kind == "cleanup"
            )
        ).one_or_none()
        if run is None:
            refuse(404, NO_SUCH_CLEANUP)
    now = utcnow()
    # Expired entries wait for the daily purge but can no longer be restored.
    entries = SqlTrash(session_factory(), user_id).entries(run_id)
    return [e.to_dict() for e in entries if e.expires_at > now]


@blp.route("/cleanup/removed/<string:entry_id>/restore", methods=["POST"])
@login_required
@blp.arguments(EmptySchema, required=False)
@blp.response(202, QueuedSchema)
@blp.alt_response(404, schema=ErrorSchema, description="Not one of my removed items.")
@blp.alt_response(409, schema=ErrorSchema, description=NOT_READY)
def restore_removed(_body: dict[str, Any], entry_id: str) -> dict[str, Any]:
    """ "Restore": queue re-creating a removed item on its side, linked again."""
    user_id = me().id
    if len(entry_id) > MAX_ENTRY_ID or SqlTrash(session_factory(), user_id).get(entry_id) is None:
        refuse(404, NO_SUCH_ENTRY)
    require_ready()
    rt = current_app.extensions["calsync"]
    return queued(enqueue_maintenance(rt, user_id, "restore", entry_id=entry_id))


@blp.route("/reset/preview", methods=["GET"])
@login_required
@blp.response(200, ResetPreviewSchema)
def preview_reset() -> dict[str, Any]:
    """What "Reset calendar sync" would do: how many links it rebuilds (nothing is deleted).

    Only reads my links, so it answers whether or not the calendar and the CRM are ready;
    "Yes" (POST /api/reset) is refused when they are not.
    """
    return reset_preview(SqlSyncStore(session_factory(), me().id)).to_dict()


@blp.route("/reset", methods=["POST"])
@login_required
@blp.arguments(EmptySchema, required=False)
@blp.response(202, QueuedSchema)
@blp.alt_response(409, schema=ErrorSchema, description=NOT_READY)
def reset(_body: dict[str, Any]) -> dict[str, Any]:
    """ "Yes" to "Reset calendar sync": queue forgetting every link, then a first sync."""
    require_ready()
    return queued(enqueue_maintenance(current_app.extensions["calsync"], me().id, "reset"))


def queued(job: Enqueued) -> dict[str, Any]:
    return {"job_id": job.job_id, "run_id": job.run_id}
