"""Putting sync, cleanup and reset jobs on the queues, one per user at a time.

Two guarantees, both enforced in Redis so they hold across web processes and workers:
- One job per user at a time: every job of a user carries RQ's
  ``RateLimit(key=user, concurrency=1)``, so a cleanup or reset waits for a running sync.
- A trigger never doubles a sync: while a user's sync is queued, scheduled or running,
  another trigger is absorbed. If it arrives while the sync is *running* (it may carry a
  change the run has already listed past), one follow-up sync is queued when the run
  ends — never more than one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rq import Queue, Retry
from rq.job import Job
from rq.rate_limit import RateLimit

from calsync.db import transaction
from calsync.models import SyncRun
from calsync.runtime import QUEUE_MAINTENANCE, QUEUE_SYNC, Runtime

JOB_TIMEOUTS = {"sync": 30 * 60, "cleanup": 15 * 60, "reset": 30 * 60}
# Several push notifications within this many seconds give one sync.
PUSH_DEBOUNCE_SECONDS = 3
# Longer than any job can stay queued, retried or running: a crashed worker's claim expires.
_ACTIVE_TTL = 4 * 3600

# KEYS: active, again. ARGV: new job id, job key prefix, ttl.
# Returns the live job id when the trigger is absorbed, or nothing when the caller
# must enqueue (the new id is then recorded as active).
_CLAIM = """
local active = redis.call('GET', KEYS[1])
if active then
    local status = redis.call('HGET', ARGV[2] .. active, 'status')
    if status == 'queued' or status == 'scheduled' or status == 'rate_limited'
        or status == 'deferred' then
        return active
    end
    if status == 'started' then
        redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
        return active
    end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return false
"""

# KEYS: active, again. ARGV: finishing job id. Returns 1 if a follow-up is owed.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
end
local again = redis.call('GET', KEYS[2])
redis.call('DEL', KEYS[2])
if again then return 1 end
return 0
"""


@dataclass(frozen=True)
class Enqueued:
    job_id: str
    run_id: int | None
    absorbed: bool  # True: an existing job covers this trigger


def _keys(user_id: int) -> list[str]:
    return [f"calsync:sync:{user_id}:active", f"calsync:sync:{user_id}:again"]


def user_rate_limit(user_id: int) -> RateLimit:
    return RateLimit(key=f"calsync-user-{user_id}", concurrency=1)


def retry_policy(intervals: tuple[int, ...]) -> Retry:
    return Retry(max=len(intervals), interval=list(intervals))


def enqueue_sync(rt: Runtime, user_id: int, trigger: str) -> Enqueued:
    """Queue a sync for the user unless one is already queued or running."""
    job_id = f"sync-{user_id}-{uuid.uuid4().hex[:12]}"
    live = rt.redis.eval(
        _CLAIM, 2, *_keys(user_id), job_id, Job.redis_job_namespace_prefix, _ACTIVE_TTL
    )
    if live:
        return Enqueued(
            job_id=live.decode() if isinstance(live, bytes) else live, run_id=None, absorbed=True
        )
    run_id = _new_run(rt, user_id, "sync", trigger, job_id)
    queue = Queue(QUEUE_SYNC, connection=rt.redis)
    options: dict[str, Any] = dict(
        job_id=job_id,
        job_timeout=JOB_TIMEOUTS["sync"],
        retry=retry_policy(rt.config.retry_intervals),
        rate_limit=user_rate_limit(user_id),
        description=f"sync user {user_id} ({trigger})",
        failure_ttl=7 * 24 * 3600,
    )
    from calsync import jobs  # jobs imports this module to re-enqueue follow-ups

    if trigger == "push":
        queue.enqueue_in(
            timedelta(seconds=PUSH_DEBOUNCE_SECONDS), jobs.sync_user, user_id, run_id, **options
        )
    else:
        queue.enqueue(jobs.sync_user, user_id, run_id, **options)
    return Enqueued(job_id=job_id, run_id=run_id, absorbed=False)


def release_sync(rt: Runtime, user_id: int, job_id: str) -> bool:
    """Mark the user's sync as ended; True if a trigger arrived meanwhile."""
    return bool(rt.redis.eval(_RELEASE, 2, *_keys(user_id), job_id))


def _new_run(rt: Runtime, user_id: int, kind: str, trigger: str, job_id: str) -> int:
    with transaction(rt.sessions) as session:
        run = SyncRun(user_id=user_id, kind=kind, trigger=trigger, status="queued", job_id=job_id)
        session.add(run)
        session.flush()
        return run.id


MAINTENANCE_KINDS = ("cleanup", "reset", "restore")


def enqueue_maintenance(rt: Runtime, user_id: int, kind: str, **kwargs: Any) -> Enqueued:
    """Queue a duplicate cleanup (preview, or with `preview_id` the confirmed removal), a
    reset, or a restore (`entry_id`) for the user, on the maintenance queue. Raises
    `calsync.cleanup.NotFound` for a `preview_id` that is not a finished preview of theirs.

    It carries the same per-user RateLimit as syncs, so it waits for a running sync (and
    a sync triggered meanwhile waits for it): a cleanup never races a sync's writes.
    Not retried automatically: a removal re-checks its preview and a reset its state,
    so the user simply asks again.
    """
    from calsync import jobs
    from calsync.cleanup import load_preview

    if kind not in MAINTENANCE_KINDS:
        raise ValueError(f"unknown maintenance job {kind!r}")
    if kind == "cleanup" and kwargs.get("preview_id") is not None:
        # "Yes" confirms a preview the user has seen: refuse (NotFound) one that is not
        # theirs or not finished, rather than queue a removal that could only fail.
        load_preview(rt.sessions, user_id, kwargs["preview_id"])
    job_id = f"{kind}-{user_id}-{uuid.uuid4().hex[:12]}"
    # A restore is shown on its cleanup run's page, so it is recorded as a cleanup run.
    run_id = _new_run(rt, user_id, "cleanup" if kind == "restore" else kind, "manual", job_id)
    args: tuple[Any, ...]
    if kind == "cleanup":
        func, args = jobs.cleanup_duplicates, (user_id, run_id, kwargs.get("preview_id"))
    elif kind == "reset":
        func, args = jobs.reset_sync, (user_id, run_id)
    else:
        func, args = jobs.restore_removed_item, (user_id, run_id, kwargs["entry_id"])
    Queue(QUEUE_MAINTENANCE, connection=rt.redis).enqueue(
        func,
        *args,
        job_id=job_id,
        job_timeout=JOB_TIMEOUTS.get(kind, JOB_TIMEOUTS["cleanup"]),
        rate_limit=user_rate_limit(user_id),
        description=f"{kind} for user {user_id}",
        failure_ttl=7 * 24 * 3600,
    )
    return Enqueued(job_id=job_id, run_id=run_id, absorbed=False)
