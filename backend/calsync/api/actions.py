"""Actions on my sync: "Sync calendar now", and how a queued job is getting on.

The sync itself runs on a worker (`calsync.jobs.sync_user`); this only queues it and
reports progress. A job is mine when its sync run row is: job ids happen to contain the
user id, but an id is not an authorization.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import current_app
from flask_login import login_required
from flask_smorest import Blueprint
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import select

from calsync import connections
from calsync.api.access import db, me
from calsync.api.errors import ErrorSchema, refuse
from calsync.api.runs import RunSchema, run_dict
from calsync.enqueue import enqueue_sync
from calsync.models import Connection, SyncRun

NO_SUCH_JOB = "There is no such job among your syncs."
MAX_JOB_ID = 128
# A run row whose job says one of these has settled, whatever the row says.
FINAL_RUN = ("succeeded", "failed", "partial")
DEAD_JOB = (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)

blp = Blueprint("actions", __name__, url_prefix="/api", description="Sync now; job progress.")


class EmptySchema(ma.Schema):
    """No input."""


class EnqueuedSchema(ma.Schema):
    job_id = ma.fields.String(required=True, metadata={"description": "GET /api/jobs/{job_id}."})
    run_id = ma.fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "The new run; null when an existing job covers this one."},
    )
    absorbed = ma.fields.Boolean(
        required=True,
        metadata={"description": "True: a sync was already queued or running, no new one."},
    )


class JobSchema(ma.Schema):
    job_id = ma.fields.String(required=True)
    status = ma.fields.String(
        required=True,
        metadata={
            "description": '"queued", "scheduled", "running", "succeeded", "failed", '
            '"partial" or "retrying".'
        },
    )
    phase = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "What the job is doing now."}
    )
    done = ma.fields.Integer(required=True)
    total = ma.fields.Integer(required=True, metadata={"description": "0 while unknown."})
    run = ma.fields.Nested(RunSchema, required=True)


@blp.route("/sync", methods=["POST"])
@login_required
@blp.arguments(EmptySchema, required=False)
@blp.response(202, EnqueuedSchema)
@blp.alt_response(409, schema=ErrorSchema, description="The calendar or the CRM is not ready.")
def sync_now(_body: dict[str, Any]) -> dict[str, Any]:
    """ "Sync calendar now": queue a sync of my calendar and CRM."""
    # Refused here rather than by a job that fails at once: the user sees why now.
    require_ready()
    queued = enqueue_sync(current_app.extensions["calsync"], me().id, "manual")
    return {"job_id": queued.job_id, "run_id": queued.run_id, "absorbed": queued.absorbed}


def require_ready() -> None:
    """Refuse (409, with why) unless my calendar and CRM are connected and usable."""
    with db() as session:
        mine = session.scalars(select(Connection).where(Connection.user_id == me().id))
        by_kind = {c.kind: c for c in mine}
        for kind, missing in (("calendar", connections.NO_CALENDAR), ("crm", connections.NO_CRM)):
            connection = by_kind.get(kind)
            if connection is None:
                refuse(409, missing)
            if connection.status in ("needs_reconnect", "no_permission"):
                refuse(409, connection.status_message or connections.RECONNECT[kind])


@blp.route("/jobs/<string:job_id>", methods=["GET"])
@login_required
@blp.response(200, JobSchema)
@blp.alt_response(404, schema=ErrorSchema, description="Not one of my jobs.")
def job_progress(job_id: str) -> dict[str, Any]:
    """How one of my jobs is getting on: its status, progress and run."""
    if len(job_id) > MAX_JOB_ID:
        refuse(404, NO_SUCH_JOB)
    with db() as session:
        run = session.scalars(
            select(SyncRun)
            .where(SyncRun.job_id == job_id, SyncRun.user_id == me().id)
            .order_by(SyncRun.id.desc())
            .limit(1)
        ).one_or_none()
        if run is None:
            refuse(404, NO_SUCH_JOB)
        run_view = run_dict(run)
    job = _job(job_id)
    meta = job.meta if job is not None else {}
    return {
        "job_id": job_id,
        "status": job_status(run_view["status"], job.get_status() if job else None),
        "phase": meta.get("phase"),
        "done": int(meta.get("done") or 0),
        "total": int(meta.get("total") or 0),
        "run": run_view,
    }


def job_status(run_status: str, rq_status: JobStatus | None) -> str:
    """One status from the run row (what the job recorded) and RQ (what the queue knows)."""
    if run_status in FINAL_RUN:
        return run_status
    # A worker that died mid-run never finishes the row; RQ knows the job is over.
    if rq_status in DEAD_JOB:
        return "failed"
    if run_status == "retrying":
        return "retrying"
    if run_status == "running" or rq_status == JobStatus.STARTED:
        return "running"
    if rq_status in (JobStatus.SCHEDULED, JobStatus.DEFERRED):
        return "scheduled"
    return "queued"


def _job(job_id: str) -> Job | None:
    try:
        return Job.fetch(job_id, connection=current_app.extensions["calsync"].redis)
    except NoSuchJobError:
        return None  # finished jobs expire from Redis; the run row still tells the story
