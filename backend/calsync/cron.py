"""What the `rq cron` scheduler enqueues (loaded by `calsync cron`)."""

from rq import cron

from calsync import jobs
from calsync.runtime import QUEUE_MAINTENANCE

# Each minute: users whose automatic sync interval has elapsed get a sync queued.
cron.register(jobs.enqueue_due_syncs, QUEUE_MAINTENANCE, interval=60, name="enqueue-due-syncs")
cron.register(jobs.purge_old_runs, QUEUE_MAINTENANCE, cron="17 3 * * *", name="purge-old-runs")
# Nightly: items removed by duplicate cleanup are kept 30 days for restore, then forgotten.
cron.register(
    jobs.purge_removed_items, QUEUE_MAINTENANCE, cron="27 3 * * *", name="purge-removed-items"
)
# Every 5 minutes: push channels are renewed long before they expire (see calsync.push).
cron.register(
    jobs.renew_push_channels,
    QUEUE_MAINTENANCE,
    interval=300,
    job_timeout=300,
    name="renew-push-channels",
)
