"""gunicorn's settings for `calsync web` (loaded with ``--config python:calsync.gunicorn_config``).

`calsync web` passes the address, the number of processes and the log and TLS options on
the command line; what is here holds for every deployment. An operator can still override
any of it with gunicorn's own ``GUNICORN_CMD_ARGS``.
"""

from __future__ import annotations

import gc
import os
from typing import Any

# Threads, not one request per process: an OAuth callback waits a second or more on
# Microsoft's or Google's token endpoint, and with sync workers two such callbacks would
# stall every task pane. gthread also keeps connections alive, so a task pane's polling does
# not pay a TCP handshake and a graceful close per request. The routes are short and hold
# the GIL only briefly, so a few threads per process is enough; processes still give the
# CPU parallelism.
worker_class = "gthread"
threads = 4

# gunicorn's heartbeat fchmod()s a file every loop; on a disk-backed /tmp that call can
# block behind the filesystem journal (gunicorn's FAQ, "Blocking os.fchmod"). /dev/shm is
# memory, where it cannot.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"


def post_worker_init(worker: Any) -> None:
    """Move everything the app built at start-up out of the garbage collector's sight.

    The app's modules, SQLAlchemy's mappers and the OpenAPI schemas are ~180,000 objects
    that live as long as the process. Each full (generation 2) collection walked them all
    and stalled the worker for about 100 ms every few thousand requests - the periodic
    spike in the API latency tail. Frozen objects are never collected; they were never
    garbage anyway, and cycles created later are still collected as before.
    """
    gc.freeze()
