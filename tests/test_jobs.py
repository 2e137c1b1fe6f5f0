"""Maintenance jobs run on a real RQ worker process."""

from __future__ import annotations

from datetime import timedelta

from rq import Queue
from sqlalchemy import select

from calsync import jobs
from calsync.db import transaction
from calsync.models import Organization, SyncRun, User, utcnow
from calsync.runtime import QUEUE_MAINTENANCE
from processes import calsync_process


def test_runs_older_than_the_retention_period_are_purged(rt, env) -> None:  # type: ignore[no-untyped-def]
    with transaction(rt.sessions) as session:
        user = User(organization=Organization(tenant_id="t"), external_id="u", email="u@x.org")
        session.add(user)
        session.flush()
        session.add_all(
            [
                SyncRun(
                    user_id=user.id,
                    kind="sync",
                    trigger="manual",
                    created_at=utcnow() - timedelta(days=91),
                ),
                SyncRun(
                    user_id=user.id,
                    kind="sync",
                    trigger="manual",
                    created_at=utcnow() - timedelta(days=89),
                ),
            ]
        )
    job = Queue(QUEUE_MAINTENANCE, connection=rt.redis).enqueue(jobs.purge_old_runs)

    worker = calsync_process(env, "worker", "--burst")
    output = worker.communicate(timeout=60)[0].decode(errors="replace")

    assert job.get_status(refresh=True) == "finished", output
    assert job.return_value() == 1
    with transaction(rt.sessions) as session:
        remaining = session.scalars(select(SyncRun.created_at)).all()
    assert len(remaining) == 1
    assert remaining[0] > utcnow() - timedelta(days=90)
