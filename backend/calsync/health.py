"""``GET /healthz``: is every part this deployment needs alive?"""

from __future__ import annotations

from typing import Any

import redis
from flask import Blueprint, current_app, jsonify
from rq import Worker
from rq.cron import CronScheduler
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from calsync.runtime import Runtime

bp = Blueprint("health", __name__)


def check(runtime: Runtime) -> tuple[bool, dict[str, Any]]:
    """Check database, Redis, workers and scheduler; return (healthy, report)."""
    report: dict[str, Any] = {}
    failing: list[str] = []

    try:
        with runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        report["database"] = {"ok": True, "backend": runtime.engine.dialect.name}
    except SQLAlchemyError as exc:
        report["database"] = {"ok": False, "error": _first_line(exc)}
        failing.append("database")

    try:
        runtime.redis.ping()
        report["redis"] = {"ok": True}
        redis_ok = True
    except redis.RedisError as exc:
        report["redis"] = {"ok": False, "error": _first_line(exc)}
        failing.append("redis")
        redis_ok = False

    if redis_ok:
        workers = Worker.count(connection=runtime.redis)
        report["workers"] = {"ok": workers > 0, "live": workers}
        if workers == 0:
            report["workers"]["error"] = "no worker is running: start `calsync worker`"
            failing.append("workers")
        # all() drops schedulers whose heartbeat is stale, so a crashed one is not counted.
        schedulers = CronScheduler.all(runtime.redis)
        report["scheduler"] = {"ok": bool(schedulers), "live": len(schedulers)}
        if not schedulers:
            report["scheduler"]["error"] = "no cron scheduler is running: start `calsync cron`"
            failing.append("scheduler")
    else:
        report["workers"] = {"ok": False, "error": "unknown: Redis is unreachable"}
        report["scheduler"] = {"ok": False, "error": "unknown: Redis is unreachable"}
        failing += ["workers", "scheduler"]

    report["status"] = "ok" if not failing else "failing"
    report["failing"] = failing
    return not failing, report


@bp.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    healthy, report = check(current_app.extensions["calsync"])
    return jsonify(report), 200 if healthy else 503


def _first_line(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__
