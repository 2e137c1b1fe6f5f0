"""What the `rq cron` scheduler runs (loaded by `calsync cron`)."""

from rq import cron

from calsync import jobs
from calsync.runtime import QUEUE_MAINTENANCE

cron.register(jobs.purge_old_runs, QUEUE_MAINTENANCE, cron="17 3 * * *", name="purge-old-runs")
