"""RQ job entry points: thin functions of ids that load state, do the work, record it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete

from calsync import runtime
from calsync.db import transaction
from calsync.models import SyncRun, utcnow


def purge_old_runs() -> int:
    """Delete sync runs older than the retention period; return how many went."""
    rt = runtime.current()
    cutoff = utcnow() - timedelta(days=rt.config.sync_run_retention_days)
    with transaction(rt.sessions) as session:
        result = session.execute(delete(SyncRun).where(SyncRun.created_at < cutoff))
        return result.rowcount or 0
