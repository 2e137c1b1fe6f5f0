"""How long a change in Outlook takes to reach SuiteCRM with push on, end to end.

Real processes: `calsync web` (gunicorn) receives Graph's change notifications on
/webhooks/graph, `calsync worker` runs the debounced "push" sync (3 s debounce in
`calsync.enqueue`). The Graph emulator holds a real subscription, opened by
`push.renew_push_channels` exactly as the scheduler opens it, and POSTs a notification for
every change. The benchmark retitles one linked event per second and measures, for each,
the time from the change to the new title in the CRM emulator's store.

If the subscription cannot be opened, the benchmark falls back to calling
`enqueue.enqueue_sync(rt, user, "push")` itself when it makes a change, and says so.
The baseline (polling every 5 minutes, the fastest automatic sync interval) waits 150 s
on average for a change; it is not run, its figure is that arithmetic.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench import common
from bench.common import SETTINGS, World, percentile
from bench.procs import Proc, flush_redis, free_port, wait_http
from calsync.store import SqlSyncStore
from calsync.sync import run_sync

POLL_INTERVAL_MINUTES = 5


def run(quick: bool = False) -> dict[str, Any]:
    changes = 10 if quick else 50
    size = 100 if quick else 200
    where = Path(tempfile.mkdtemp(prefix="calsync-bench-push-"))
    db = common.sqlite_database(where)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**db.env, "BASE_URL": base, "WEB_CONCURRENCY": "2"}
    flush_redis(common.REDIS_URL)
    from calsync import runtime
    from calsync.config import Config

    rt = runtime.Runtime.from_config(Config.from_env(env))
    world = World(seed=31)
    procs: list[Proc] = []
    try:
        account = world.new_account(size, seed=3, name="push")
        user_id = common.provision_user(rt, world, account, SETTINGS)
        _enable_auto_sync(rt, user_id)
        store = SqlSyncStore(rt.sessions, user_id)
        for _ in range(2):  # link, then settle
            run_sync(
                world.calendar(account),
                world.crm_adapter(account),
                store,
                SETTINGS,
                common.now(),
                user_email=account.address,
            )
        pairs = [
            (lk.calendar_id, lk.crm_id)
            for lk in store.links()
            if lk.calendar_id and lk.crm_id and not lk.series_link_id and not lk.expanded
        ]
        web = Proc(env, where / "web.log", "web", "--host", "127.0.0.1", "--port", str(port))
        procs.append(web)
        procs.append(Proc(env, where / "worker.log", "worker"))
        wait_http(f"{base}/healthz", web)
        from calsync import enqueue, push

        renewal = push.renew_push_channels(rt)
        mode = "push" if renewal.created else "direct"

        latencies: dict[int, float] = {}
        pending: dict[int, tuple[str, str, float]] = {}
        lock = threading.Lock()
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                with lock:
                    items = list(pending.items())
                for i, (crm_id, title, t0) in items:
                    if world.crm.meeting(crm_id).get("name") == title:
                        with lock:
                            latencies[i] = time.monotonic() - t0
                            pending.pop(i, None)
                time.sleep(0.02)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        step = max(1, len(pairs) // changes)
        for i in range(changes):
            graph_id, crm_id = pairs[(i * step) % len(pairs)]
            title = f"Pushed change {i}"
            with lock:
                pending[i] = (str(crm_id), title, time.monotonic())
            world.graph.change_event(account.address, str(graph_id), {"subject": title})
            if mode == "direct":
                enqueue.enqueue_sync(rt, user_id, "push")
            time.sleep(1.0)
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            time.sleep(0.1)
        done.set()
        watcher.join()
        lost = len(pending)
        values = list(latencies.values())
        p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
        notified = sum(1 for n in world.graph.notification_log if n.get("status") == 202)
        baseline_avg = POLL_INTERVAL_MINUTES * 60 / 2
        note = (
            f"{changes} changes, 1 per second, on a {size}-event calendar; "
            + (
                f"real push: Graph subscription -> /webhooks/graph ({notified} notifications "
                "accepted) -> debounced sync on a calsync worker"
                if mode == "push"
                else "push channel could not be opened: enqueue_sync(push) called directly"
            )
            + (f"; {lost} changes never arrived within 60 s" if lost else "")
        )
        return {
            "figures": [
                {
                    "metric": "change-to-CRM latency p50 s",
                    "calsync": round(p50, 2),
                    "baseline": baseline_avg,
                    "ratio": round(baseline_avg / p50, 1) if values else None,
                    "target": "(p95 is the target)",
                    "met": None,
                    "note": f"baseline: polling every {POLL_INTERVAL_MINUTES} min, mean wait",
                },
                {
                    "metric": "change-to-CRM latency p95 s",
                    "calsync": round(p95, 2),
                    "baseline": POLL_INTERVAL_MINUTES * 60 * 0.95,
                    "ratio": round(POLL_INTERVAL_MINUTES * 60 * 0.95 / p95, 1) if values else None,
                    "target": "< 10 s",
                    "met": bool(values) and p95 < 10 and not lost,
                    "note": note,
                },
            ],
            "mode": mode,
            "latencies": [round(v, 3) for v in values],
            "lost": lost,
            "renewal": renewal.as_dict(),
        }
    finally:
        for proc in procs:
            proc.stop()
        world.close()
        rt.close()


def _enable_auto_sync(rt: Any, user_id: int) -> None:
    from calsync.db import transaction
    from calsync.models import Connection

    with transaction(rt.sessions) as session:
        for connection in session.scalars(
            select(Connection).where(Connection.user_id == user_id, Connection.kind == "calendar")
        ):
            connection.auto_sync_enabled = True
