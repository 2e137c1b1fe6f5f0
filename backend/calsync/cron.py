"""What the `rq cron` scheduler enqueues (loaded by `calsync cron`)."""

from rq import cron

from calsync import jobs
from calsync.runtime import QUEUE_MAINTENANCE

# Each minute: users whose automatic sync interval has elapsed get a sync queued.
cron.register(jobs.enqueue_due_syncs, QUEUE_MAINTENANCE, interval=60, name="enqueue-due-syncs")
cron.register(jobs.purge_old_runs, QUEUE_MAINTENANCE, cron="17 3 * * *", name="purge-old-runs")
