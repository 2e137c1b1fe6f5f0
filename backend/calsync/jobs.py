"""RQ job entry points: thin functions of ids that load state, call the engine, record the run.

Failure policy:
- transient faults (network, throttling, 5xx) propagate so RQ's `Retry` runs the job
  again later; the run row says it will be retried;
- permanent faults (revoked consent, wrong password, no permission) mark the connection
  and end the job at once: retrying cannot help until the user connects again;
- the engine stopping on purpose (an emptied calendar, a failed listing) is recorded with
  its sentence; nothing was written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import requests
from rq import get_current_job
from sqlalchemy import delete, select

from calsync import enqueue, runtime
from calsync import reset as reset_engine
from calsync.cleanup import (
    NotFound,
    PreviewStale,
    SqlTrash,
    load_preview,
    preview_cleanup,
    purge_expired,
    remove_duplicates,
    restore_item,
)
from calsync.db import transaction
from calsync.models import Connection, SyncRun, User, utcnow
from calsync.provider_errors import (
    ProviderAuthError,
    ProviderError,
    ProviderPermissionError,
    ProviderTransientError,
)
from calsync.store import SqlSyncStore

if TYPE_CHECKING:
    from calsync.connections import Sides
from calsync.sync import SyncAborted, run_sync
from calsync.sync.errors import ListingFailed, SyncError

log = logging.getLogger(__name__)

TRANSIENT = (ProviderTransientError, requests.ConnectionError, requests.Timeout)
PERMANENT = (ProviderAuthError, ProviderPermissionError)


def sync_user(user_id: int, run_id: int) -> dict[str, Any]:
    """One sync of one user's calendar and CRM, recorded as sync run `run_id`."""
    rt = runtime.current()
    job = get_current_job()
    job_id = job.id if job else f"inline-{run_id}"
    _start_run(rt, run_id)
    outcome: dict[str, Any] = {}
    retrying = False
    try:
        outcome = _sync(rt, user_id, run_id, job)
        return outcome
    except TRANSIENT as exc:
        retrying = bool(job and job.retries_left)
        _finish_run(
            rt, run_id, "retrying" if retrying else "failed", errors=[{"message": _message(exc)}]
        )
        raise
    finally:
        if not retrying and enqueue.release_sync(rt, user_id, job_id):
            enqueue.enqueue_sync(rt, user_id, "push")


def _sync(rt: runtime.Runtime, user_id: int, run_id: int, job: Any) -> dict[str, Any]:
    from calsync.connections import open_sides

    with transaction(rt.sessions) as session:
        user = session.get(User, user_id)
        if user is None:
            _finish_run(rt, run_id, "failed", errors=[{"message": "This user no longer exists."}])
            return {"status": "failed"}
        try:
            sides = open_sides(session, user, rt)
        except ProviderError as exc:
            _finish_run(rt, run_id, "failed", errors=[{"message": exc.message}])
            return {"status": "failed"}

    def progress(phase: str, done: int, total: int) -> None:
        if job is not None:
            job.meta.update(phase=phase, done=done, total=total)
            job.save_meta()

    store = SqlSyncStore(rt.sessions, user_id)
    try:
        return _run_engine(rt, user_id, run_id, sides, store, progress)
    finally:
        # Whatever happened, tokens refreshed during the run are the only valid ones now.
        _save_credentials(rt, sides.rotated_credentials())


def _run_engine(
    rt: runtime.Runtime,
    user_id: int,
    run_id: int,
    sides: Sides,
    store: SqlSyncStore,
    progress: Any,
) -> dict[str, Any]:
    try:
        result = run_sync(
            sides.calendar,
            sides.crm,
            store,
            sides.settings,
            utcnow(),
            progress,
            user_email=sides.user_email,
        )
    except ListingFailed as exc:
        cause = exc.cause
        if isinstance(cause, TRANSIENT):
            raise cause from exc
        if isinstance(cause, PERMANENT):
            _mark_connection(rt, user_id, exc.side, cause)
        _finish_run(
            rt,
            run_id,
            "failed",
            result=exc.result,
            errors=[{"message": _message(cause) if cause else exc.message}],
        )
        return {"status": "failed"}
    except SyncAborted as exc:
        _finish_run(rt, run_id, "failed", result=exc.result, errors=[{"message": exc.message}])
        return {"status": "failed"}
    except PERMANENT as exc:
        _mark_connection(rt, user_id, getattr(exc, "side", None), exc)
        _finish_run(rt, run_id, "failed", errors=[{"message": exc.message}])
        return {"status": "failed"}

    status = "succeeded" if result.ok else "partial"
    _finish_run(rt, run_id, status, result=result)
    return {"status": status, **result.to_dict()}


def enqueue_due_syncs() -> int:
    """Enqueue an automatic sync for every user whose interval has elapsed (cron, each minute)."""
    from calsync.profiles import auto_sync_interval_minutes, effective_profile

    rt = runtime.current()
    now = utcnow()
    due: list[int] = []
    with transaction(rt.sessions) as session:
        connections = session.scalars(
            select(Connection).where(
                Connection.kind == "calendar",
                Connection.auto_sync_enabled,
                # A permanent fault waits for the user to reconnect.
                Connection.status == "connected",
            )
        ).all()
        for connection in connections:
            user = connection.user
            profile = effective_profile(session, user)
            interval = auto_sync_interval_minutes(profile)
            last = session.scalar(
                select(SyncRun.created_at)
                .where(SyncRun.user_id == user.id, SyncRun.kind == "sync")
                .order_by(SyncRun.created_at.desc())
                .limit(1)
            )
            if last is None or now - last >= timedelta(minutes=interval):
                due.append(user.id)
    for user_id in due:
        enqueue.enqueue_sync(rt, user_id, "automatic")
    return len(due)


def purge_old_runs() -> int:
    """Delete sync runs older than the retention period; return how many went."""
    rt = runtime.current()
    cutoff = utcnow() - timedelta(days=rt.config.sync_run_retention_days)
    with transaction(rt.sessions) as session:
        result = session.execute(delete(SyncRun).where(SyncRun.created_at < cutoff))
        return result.rowcount or 0


def _save_credentials(rt: runtime.Runtime, changed: dict[int, Any]) -> None:
    if not changed:
        return
    with transaction(rt.sessions) as session:
        for connection_id, secret in changed.items():
            connection = session.get(Connection, connection_id)
            if connection is not None:
                connection.secret = dict(secret)


def _start_run(rt: runtime.Runtime, run_id: int) -> None:
    with transaction(rt.sessions) as session:
        run = session.get(SyncRun, run_id)
        if run is not None:
            run.status = "running"
            run.started_at = utcnow()


def _finish_run(
    rt: runtime.Runtime,
    run_id: int,
    status: str,
    *,
    result: Any = None,
    errors: list[dict[str, Any]] | None = None,
) -> None:
    with transaction(rt.sessions) as session:
        run = session.get(SyncRun, run_id)
        if run is None:
            return
        run.status = status
        run.finished_at = utcnow()
        if result is not None:
            data = result.to_dict()
            run.counts = {
                k: data[k]
                for k in ("calendar", "crm", "skipped", "notes", "conflicts", "full_listing")
            }
            run.errors = list(data["errors"]) + list(errors or [])
            if data.get("aborted") and not errors:
                run.errors.append({"message": data["aborted"]})
        elif errors is not None:
            run.errors = errors


def _mark_connection(
    rt: runtime.Runtime, user_id: int, side: str | None, exc: BaseException
) -> None:
    status = getattr(exc, "connection_status", "error")
    with transaction(rt.sessions) as session:
        if side is None:
            # Which account failed is unknown: marking both would send the user to
            # reconnect something that works. The run's error still says what happened.
            return
        query = select(Connection).where(Connection.user_id == user_id, Connection.kind == side)
        for connection in session.scalars(query):
            connection.status = status
            connection.status_message = _message(exc)


def _message(exc: BaseException) -> str:
    if isinstance(exc, ProviderError):
        return exc.message
    if isinstance(exc, requests.Timeout):
        return "The service took too long to answer. calsync will try again."
    if isinstance(exc, requests.ConnectionError):
        return "The service could not be reached. calsync will try again."
    return str(exc) or type(exc).__name__


# -- maintenance: duplicate cleanup, reset, restore ----------------------------------------


class _NoUser(LookupError):
    pass


# What ends a maintenance job with a sentence for the user rather than a traceback.
MAINTENANCE_FAULTS = (ProviderError, SyncError, _NoUser, NotFound, *TRANSIENT)


def cleanup_duplicates(user_id: int, run_id: int, preview_id: int | None = None) -> dict[str, Any]:
    """Duplicate cleanup as run `run_id`: without `preview_id` the preview (stored in the
    run's counts; the run's id is the preview id), with it the confirmed removal of
    exactly what that preview showed (stopped, nothing removed, if anything changed)."""
    rt = runtime.current()
    _start_run(rt, run_id)
    try:
        with _opened(rt, user_id) as sides:
            return _cleanup(rt, user_id, run_id, preview_id, sides)
    except MAINTENANCE_FAULTS as exc:
        _record(rt, run_id, "failed", None, [{"message": _maintenance_message(exc)}])
        return {"status": "failed"}


def _cleanup(
    rt: runtime.Runtime, user_id: int, run_id: int, preview_id: int | None, sides: Sides
) -> dict[str, Any]:
    store = SqlSyncStore(rt.sessions, user_id)
    if preview_id is None:
        preview = preview_cleanup(
            sides.calendar,
            sides.crm,
            store,
            sides.settings,
            utcnow(),
            user_email=sides.user_email,
        )
        counts = {**preview.to_dict(), "preview_id": run_id}
        _record(rt, run_id, "succeeded", counts)
        return {"status": "succeeded", "preview_id": run_id, "counts": counts["counts"]}
    stored = load_preview(rt.sessions, user_id, preview_id)
    try:
        removal = remove_duplicates(
            sides.calendar,
            sides.crm,
            store,
            SqlTrash(rt.sessions, user_id),
            stored,
            utcnow(),
            run_id=run_id,
        )
    except PreviewStale as exc:
        counts = {"phase": "removal", "preview_id": preview_id, "changed": exc.changed}
        _record(rt, run_id, "failed", counts, [{"message": exc.message}])
        return {"status": "stale", "changed": exc.changed}
    status = "succeeded" if removal.ok else "partial"
    _record(rt, run_id, status, {**removal.to_dict(), "preview_id": preview_id}, removal.errors)
    return {"status": status, **removal.to_dict()}


def reset_sync(user_id: int, run_id: int) -> dict[str, Any]:
    """Reset calendar sync as run `run_id`: every link and cursor forgotten, then the
    first sync again, which relinks the twins on both sides instead of copying them."""
    rt = runtime.current()
    _start_run(rt, run_id)
    try:
        with _opened(rt, user_id) as sides:
            outcome = reset_engine.reset_sync(
                sides.calendar,
                sides.crm,
                SqlSyncStore(rt.sessions, user_id),
                sides.settings,
                utcnow(),
                user_email=sides.user_email,
            )
    except SyncAborted as exc:
        data = exc.result.to_dict() if exc.result is not None else {}
        _record(rt, run_id, "failed", {"phase": "reset", **data}, [{"message": exc.message}])
        return {"status": "failed"}
    except MAINTENANCE_FAULTS as exc:
        _record(rt, run_id, "failed", None, [{"message": _maintenance_message(exc)}])
        return {"status": "failed"}
    data = outcome.to_dict()
    status = "succeeded" if outcome.sync.ok else "partial"
    _record(rt, run_id, status, data, data["errors"])
    return {"status": status, **data}


def restore_removed_item(user_id: int, run_id: int, entry_id: str) -> dict[str, Any]:
    """Bring back one item a cleanup removed (the "Restore" of a cleanup run's page)."""
    rt = runtime.current()
    _start_run(rt, run_id)
    try:
        with _opened(rt, user_id) as sides:
            restored = restore_item(
                sides.calendar,
                sides.crm,
                SqlSyncStore(rt.sessions, user_id),
                SqlTrash(rt.sessions, user_id),
                entry_id,
                utcnow(),
            )
    except MAINTENANCE_FAULTS as exc:
        _record(rt, run_id, "failed", None, [{"message": _maintenance_message(exc)}])
        return {"status": "failed"}
    counts = {"phase": "restore", "entry_id": entry_id, **restored.to_dict()}
    _record(rt, run_id, "succeeded", counts)
    return counts


def purge_removed_items() -> int:
    """Forget removed items kept for their 30 days (cron, daily); returns how many went."""
    return purge_expired(runtime.current().sessions, utcnow())


@contextmanager
def _opened(rt: runtime.Runtime, user_id: int) -> Iterator[Sides]:
    from calsync.connections import open_sides  # adapters pull in every vendor module

    with transaction(rt.sessions) as session:
        user = session.get(User, user_id)
        if user is None:
            raise _NoUser("This user no longer exists.")
        sides = open_sides(session, user, rt)
    try:
        yield sides
    finally:
        # Tokens refreshed during the job are the only valid ones now.
        _save_credentials(rt, sides.rotated_credentials())


def _maintenance_message(exc: BaseException) -> str:
    if isinstance(exc, SyncError):
        return getattr(exc, "message", None) or str(exc)
    if isinstance(exc, LookupError):
        return str(exc.args[0]) if exc.args else "Not found."
    return _message(exc)


def _record(
    rt: runtime.Runtime,
    run_id: int,
    status: str,
    counts: dict[str, Any] | None,
    errors: list[dict[str, Any]] | None = None,
) -> None:
    with transaction(rt.sessions) as session:
        run = session.get(SyncRun, run_id)
        if run is None:
            return
        run.status = status
        run.finished_at = utcnow()
        if counts is not None:
            run.counts = counts
        if errors is not None:
            run.errors = list(errors)


def renew_push_channels() -> dict[str, int]:
    """Open, renew or remove every calendar's push channel (cron, every 5 minutes)."""
    from calsync import push

    return push.renew_push_channels(runtime.current()).as_dict()
