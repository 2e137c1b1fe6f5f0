"""GET /healthz says whether the database, Redis, workers and scheduler are alive."""

from __future__ import annotations

import dataclasses
import time

import redis

from calsync.app import create_app
from calsync.db import make_engine
from processes import calsync_process, stop_process


def test_health_names_the_missing_worker_and_scheduler(client) -> None:  # type: ignore[no-untyped-def]
    reply = client.get("/healthz")

    assert reply.status_code == 503
    body = reply.get_json()
    assert body["failing"] == ["workers", "scheduler"]
    assert body["database"]["ok"] and body["redis"]["ok"]
    assert "calsync worker" in body["workers"]["error"]


def test_health_is_ok_once_a_worker_and_the_scheduler_run(client, env) -> None:  # type: ignore[no-untyped-def]
    worker = calsync_process(env, "worker")
    cron = calsync_process(env, "cron")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            reply = client.get("/healthz")
            if reply.status_code == 200:
                break
            time.sleep(0.3)
        body = reply.get_json()
        assert reply.status_code == 200, body
        assert body["workers"]["live"] == 1
        assert body["scheduler"]["live"] == 1
    finally:
        stop_process(worker)
        stop_process(cron)


def test_health_names_an_unreachable_database(rt) -> None:  # type: ignore[no-untyped-def]
    broken = dataclasses.replace(
        rt, engine=make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none", pooled=False)
    )
    reply = create_app(rt=broken).test_client().get("/healthz")

    assert reply.status_code == 503
    assert "database" in reply.get_json()["failing"]
    assert reply.get_json()["database"]["ok"] is False


def test_health_names_an_unreachable_redis(rt, tmp_path) -> None:  # type: ignore[no-untyped-def]
    gone = redis.Redis(unix_socket_path=str(tmp_path / "no.sock"), socket_connect_timeout=1)
    reply = create_app(rt=dataclasses.replace(rt, redis=gone)).test_client().get("/healthz")

    assert reply.status_code == 503
    assert reply.get_json()["failing"] == ["redis", "workers", "scheduler"]
