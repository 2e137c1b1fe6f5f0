"""Latency of the status and history routes under a steady load, on the real web server.

`calsync web` (gunicorn as `calsync web` configures it, its default 2 processes) on a
SQLite file, one signed-in user with a full history: a sync every 15 minutes for the 90
days runs are kept (8,640 runs). An open-loop load generator on loopback (a thread pool of
requests.Sessions, with the session cookie) sends GET /api/me and GET /api/runs
alternately at 200 requests/s for 30 s. Each latency is counted from the request's
scheduled send time, so a server (or client) falling behind shows as latency instead of
silently lowering the rate. Baseline: none; the routes have no naive counterpart, the
figure stands alone.

Latency depends on what else runs on the machine's two CPUs, so the scenario also reports
what does not: the CPU time the web server's processes and the load generator spend per
request (from /proc), and the machine's load average before the run.
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests

from bench import common
from bench.common import percentile
from bench.procs import Proc, cpu_seconds, flush_redis, free_port, wait_http

PATHS = ("/api/me", "/api/runs")
THREADS = 32
# Requests still unsent this long after the planned end are dropped (bounded run time).
GRACE = 5.0
# A second, lighter load, to show the latency below the server's saturation.
LIGHT_RATE, LIGHT_SECONDS = 50.0, 10.0
# A sync every 15 minutes, kept for the default 90 days: the history a user really has.
HISTORY_RUNS = 90 * 24 * 4


def _sign_in(base: str) -> requests.Session:
    http = requests.Session()
    csrf = http.get(f"{base}/api/auth/csrf", timeout=10).json()["csrf_token"]
    reply = http.post(
        f"{base}/api/auth/dev",
        json={"email": "loadtest@contoso.example", "name": "Load Test"},
        headers={"X-CSRFToken": csrf},
        timeout=10,
    )
    reply.raise_for_status()
    return http


def _history(rt: Any, email: str, count: int) -> None:
    from sqlalchemy import insert, select

    from calsync.db import transaction
    from calsync.models import SyncRun, User, utcnow

    counts = {
        "calendar": {"created": 0, "updated": 1, "deleted": 0, "linked": 0},
        "crm": {"created": 2, "updated": 0, "deleted": 0, "linked": 0},
        "skipped": {},
        "notes": {},
        "conflicts": [],
        "full_listing": {"calendar": False, "crm": False},
    }
    with transaction(rt.sessions) as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        now = utcnow()
        rows = []
        for i in range(count):
            at = now - timedelta(minutes=15 * i)
            rows.append(
                {
                    "user_id": user.id,
                    "kind": "sync",
                    "trigger": "automatic",
                    "status": "succeeded",
                    "job_id": f"bench-{i}",
                    "created_at": at,
                    "started_at": at,
                    "finished_at": at + timedelta(seconds=2),
                    "counts": counts,
                    "errors": [],
                }
            )
        session.execute(insert(SyncRun), rows)


def load(
    base: str, cookies: Any, rate: float, seconds: float, server_pid: int | None = None
) -> dict[str, Any]:
    total = int(rate * seconds)
    ticket = itertools.count()
    lock = threading.Lock()
    results: list[tuple[str, float, float, int]] = []  # path, latency, service, status
    unsent: list[int] = []
    start = time.perf_counter() + 0.5

    def worker() -> None:
        http = requests.Session()
        http.cookies.update(cookies)
        mine: list[tuple[str, float, float, int]] = []
        while True:
            with lock:
                k = next(ticket)
            if k >= total:
                break
            scheduled = start + k / rate
            if time.perf_counter() > start + seconds + GRACE:
                with lock:  # the server fell so far behind: the rest is not even sent
                    unsent.append(k)
                continue
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            path = PATHS[k % len(PATHS)]
            sent = time.perf_counter()
            try:
                status = http.get(base + path, timeout=10).status_code
            except requests.RequestException:
                status = 0
            done = time.perf_counter()
            mine.append((path, done - scheduled, done - sent, status))
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    server_before = cpu_seconds(server_pid) if server_pid else {}
    client_before = time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    client_cpu = time.process_time() - client_before
    server_after = cpu_seconds(server_pid) if server_pid else {}
    server_cpu = sum(v - server_before.get(pid, 0.0) for pid, v in server_after.items())
    out: dict[str, Any] = {
        "offered": total,
        "requests": len(results),
        "unsent": len(unsent),
        "seconds": round(elapsed, 1),
        "server_cpu_ms_per_request": round(server_cpu * 1000 / max(len(results), 1), 2),
        "client_cpu_ms_per_request": round(client_cpu * 1000 / max(len(results), 1), 2),
    }
    for path in PATHS:
        lat = [r[1] * 1000 for r in results if r[0] == path]
        svc = [r[2] * 1000 for r in results if r[0] == path]
        out[path] = {
            "p50_ms": round(percentile(lat, 0.5), 1),
            "p99_ms": round(percentile(lat, 0.99), 1),
            "service_p50_ms": round(percentile(svc, 0.5), 1),
            "service_p99_ms": round(percentile(svc, 0.99), 1),
            "errors": sum(1 for r in results if r[0] == path and r[3] != 200),
        }
    out["achieved_rate"] = round(len(results) / elapsed, 1)
    return out


def run(quick: bool = False) -> dict[str, Any]:
    rate, seconds = (50.0, 5.0) if quick else (200.0, 30.0)
    where = Path(tempfile.mkdtemp(prefix="calsync-bench-api-"))
    db = common.sqlite_database(where)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**db.env, "BASE_URL": base}
    flush_redis(common.REDIS_URL)
    from calsync import runtime
    from calsync.config import Config

    rt = runtime.Runtime.from_config(Config.from_env(env))
    web = Proc(env, where / "web.log", "web", "--host", "127.0.0.1", "--port", str(port))
    try:
        wait_http(f"{base}/healthz", web)
        http = _sign_in(base)
        _history(rt, "loadtest@contoso.example", HISTORY_RUNS)
        for path in PATHS:  # warm up, and fail loudly if a route is refused
            reply = http.get(base + path, timeout=10)
            if reply.status_code != 200:
                raise RuntimeError(f"GET {path}: {reply.status_code} {reply.text[:200]}")
        load_average = os.getloadavg()
        measured = load(base, http.cookies, rate, seconds, web.popen.pid)
        light = load(base, http.cookies, LIGHT_RATE, 5.0 if quick else LIGHT_SECONDS, web.popen.pid)
    finally:
        web.stop()
        rt.close()
    server = _server_description(web.log_path.read_text(errors="replace"))
    figures = []
    for path in PATHS:
        m = measured[path]
        figures.append(
            {
                "metric": f"GET {path} p50 / p99 ms at {rate:.0f} req/s for {seconds:.0f} s",
                "calsync": f"{m['p50_ms']} / {m['p99_ms']}",
                "baseline": None,
                "ratio": None,
                "target": "p99 < 50 ms",
                "met": m["p99_ms"] < 50 and m["errors"] == 0 and not measured["unsent"],
                "note": f"latency from the scheduled send time; service time p50/p99 "
                f"{m['service_p50_ms']}/{m['service_p99_ms']} ms; {m['errors']} errors; "
                f"server sustained {measured['achieved_rate']} req/s, "
                f"{measured['unsent']} of {measured['offered']} requests unsent "
                f"({server}, SQLite, {HISTORY_RUNS} runs in the history); CPU per request "
                f"(both routes): server {measured['server_cpu_ms_per_request']} ms, load "
                f"generator {measured['client_cpu_ms_per_request']} ms; load average "
                f"before the run {load_average[0]:.2f} on {os.cpu_count()} CPUs",
            }
        )
    for path in PATHS:
        m = light[path]
        figures.append(
            {
                "metric": f"GET {path} p50 / p99 ms at {LIGHT_RATE:.0f} req/s (below saturation)",
                "calsync": f"{m['p50_ms']} / {m['p99_ms']}",
                "baseline": None,
                "ratio": None,
                "target": "(diagnostic)",
                "met": None,
                "note": f"{m['errors']} errors; {light['unsent']} unsent; CPU per request "
                f"(both routes): server {light['server_cpu_ms_per_request']} ms",
            }
        )
    return {
        "figures": figures,
        "load": measured,
        "light_load": light,
        "server": server,
        "load_average_before": load_average,
    }


def _server_description(log: str) -> str:
    """What gunicorn says it runs (worker class, processes), from its own log."""
    worker = re.search(r"Using worker: (\w+)", log)
    processes = len(set(re.findall(r"Booting worker with pid: (\d+)", log)))
    return f"gunicorn {worker.group(1) if worker else '?'} worker, {processes} processes"
