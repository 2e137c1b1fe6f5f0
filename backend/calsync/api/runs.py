"""My sync history: each sync, cleanup or reset job as a run, with what it did."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_login import login_required
from flask_smorest import Blueprint
from sqlalchemy import bindparam, select

from calsync.api.access import ID_CONVERTER, db, me
from calsync.api.errors import ErrorSchema, refuse
from calsync.models import SyncRun

NO_SUCH_RUN = "There is no such sync run in your history."
MAX_LIMIT = 100

blp = Blueprint(
    "runs", __name__, url_prefix="/api/runs", description="My sync history, newest first."
)


class RunSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    kind = ma.fields.String(required=True, metadata={"description": '"sync", "cleanup", "reset".'})
    trigger = ma.fields.String(
        required=True, metadata={"description": '"manual", "automatic", "push" or "reset".'}
    )
    status = ma.fields.String(
        required=True,
        metadata={
            "description": '"queued", "running", "succeeded", "partial", "retrying" or "failed".'
        },
    )
    created_at = ma.fields.AwareDateTime(required=True)
    started_at = ma.fields.AwareDateTime(required=True, allow_none=True)
    finished_at = ma.fields.AwareDateTime(required=True, allow_none=True)
    # As the job stores them, so the history also shows what cleanup and reset record.
    counts = ma.fields.Dict(
        keys=ma.fields.String(),
        required=True,
        metadata={
            "description": "A sync's: calendar and crm {created, updated, deleted, linked}, "
            "skipped {reason: n}, notes {note: n}, conflicts [...], full_listing."
        },
    )
    errors = ma.fields.List(
        ma.fields.Dict(keys=ma.fields.String()),
        required=True,
        metadata={"description": 'What went wrong, each with a "message" sentence.'},
    )


class RunsArgs(ma.Schema):
    limit = ma.fields.Integer(
        load_default=20,
        validate=ma.validate.Range(
            1, MAX_LIMIT, error=f'"limit" must be between 1 and {MAX_LIMIT}.'
        ),
        metadata={"description": "How many runs, newest first."},
    )


def run_dict(run: SyncRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": run.kind,
        "trigger": run.trigger,
        "status": run.status,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "counts": dict(run.counts or {}),
        "errors": list(run.errors or []),
    }


# Ids break ties: two runs may be created within one clock tick. The index on (user_id,
# created_at) answers both orders without a sort on SQLite (the id is its rowid) and with an
# incremental sort of the tied rows only on PostgreSQL. Built once, with values bound per
# call: building the statement costs more CPU than the database takes to answer it.
_LATEST = (
    select(SyncRun)
    .where(SyncRun.user_id == bindparam("user_id"))
    .order_by(SyncRun.created_at.desc(), SyncRun.id.desc())
    .limit(bindparam("limit"))
)
_LATEST_OF_KIND = _LATEST.where(SyncRun.kind == bindparam("kind"))


def latest_runs(session: Any, user_id: int, limit: int, kind: str | None = None) -> list[SyncRun]:
    values = {"user_id": user_id, "limit": limit}
    if kind is None:
        return list(session.scalars(_LATEST, values))
    return list(session.scalars(_LATEST_OF_KIND, {**values, "kind": kind}))


@blp.route("")
class Runs(MethodView):
    decorators = [login_required]

    @blp.arguments(RunsArgs, location="query")
    @blp.response(200, RunSchema(many=True))
    def get(self, args: dict[str, int]) -> list[dict[str, Any]]:
        """My latest sync runs, newest first."""
        with db() as session:
            return [run_dict(r) for r in latest_runs(session, me().id, args["limit"])]


@blp.route(f"/<{ID_CONVERTER}:run_id>")
class Run(MethodView):
    decorators = [login_required]

    @blp.response(200, RunSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="Not one of my runs.")
    def get(self, run_id: int) -> dict[str, Any]:
        """One of my sync runs."""
        with db() as session:
            run = session.get(SyncRun, run_id)
            # Another user's run is "not found", exactly like one that does not exist.
            if run is None or run.user_id != me().id:
                refuse(404, NO_SUCH_RUN)
            return run_dict(run)
