"""Restarts under a running sync: Redis stopped and started again, the database connection
cut. Jobs resume or run again, and the end state has every meeting exactly once."""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from rq import Queue
from sqlalchemy import create_engine, text

from calsync import enqueue, migrate, runtime
from calsync.config import Config
from calsync.embedded_redis import EmbeddedRedis
from calsync.runtime import QUEUE_SYNC

from .world import WorkerSync, worker_user

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
IN_CI = os.environ.get("CI", "").lower() == "true"
SETTINGS = {"direction": "calendar_to_crm", "record_option": "all", "invitations": "never"}
TITLES = [f"Customer call {n:02d}" for n in range(30)]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """An embedded Redis of this test's own, so the test may stop and start it."""
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def _runtime(env: dict[str, str]) -> runtime.Runtime:
    config = Config.from_env(env)
    migrate.upgrade(config.database_url)
    return runtime.Runtime.from_config(config)


def _seed_calendar(who) -> None:  # type: ignore[no-untyped-def]
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    for n, title in enumerate(TITLES):
        who.calendar.create(title, base + timedelta(days=n % 20, hours=n % 9), 30, "g@c.test")


def _wait(predicate, timeout: float = 90) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {predicate.__name__}")


def _sync_to_the_end(rt: runtime.Runtime, who, sync: WorkerSync) -> None:  # type: ignore[no-untyped-def]
    """A fresh trigger after the incident, run on a worker until nothing is left to do."""
    enqueue.enqueue_sync(sync.rt, who.user_id, "manual")

    def idle_and_done() -> bool:
        queue = Queue(QUEUE_SYNC, connection=rt.redis)
        return sync._idle() and len(queue) == 0

    time.sleep(0.5)
    _wait(idle_and_done)


def _assert_each_meeting_once(who) -> None:  # type: ignore[no-untyped-def]
    names = Counter(title for title, _ in who.crm.contents())
    assert sorted(names) == sorted(TITLES)
    assert set(names.values()) == {1}, f"a meeting was created twice: {names}"


def test_redis_stopped_and_started_mid_sync_ends_with_every_meeting_once(
    world, env, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    env = {**env, "REDIS_URL": own_redis.url}
    rt = _runtime(env)
    who = worker_user(world, rt, env, SETTINGS)
    _seed_calendar(who)
    who.crm_emu.set_faults(rate_slow=1.0, slow_seconds=0.05)
    sync = WorkerSync(rt, who.env, who.user_id, tmp_path / "worker.log")
    try:
        enqueue.enqueue_sync(sync.rt, who.user_id, "manual")
        sync.start()

        def some_written() -> bool:
            return len(who.crm.contents()) >= 5

        _wait(some_written)
        own_redis.stop()  # SIGTERM: Redis saves its snapshot, as a restart would
        time.sleep(1.0)
        own_redis.start()
        who.crm_emu.set_faults(rate_slow=0.0)
        rt.redis.ping()
        # The worker may have died with its Redis connection: a supervisor restarts it.
        if sync.worker is None or sync.worker.poll() is not None:
            sync.start()
        _sync_to_the_end(rt, who, sync)
    finally:
        sync.stop()
        who.close()
        rt.close()
    _assert_each_meeting_once(who)


def _cut_postgres_connections(admin_url: str, application: str) -> int:
    """pg_terminate_backend on every connection of this test's calsync processes (found by
    their application_name, so nobody else's tests on the same server are touched)."""
    engine = create_engine(admin_url)
    try:
        with engine.begin() as connection:
            return len(
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name"
                    ),
                    {"name": application},
                ).all()
            )
    finally:
        engine.dispose()


def test_the_sqlite_file_locked_mid_sync_makes_the_sync_wait_and_end_with_every_meeting_once(
    world, env, redis_conn: redis.Redis, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    rt = _runtime(env)
    who = worker_user(world, rt, env, SETTINGS)
    _seed_calendar(who)
    who.crm_emu.set_faults(rate_slow=1.0, slow_seconds=0.05)
    sync = WorkerSync(rt, who.env, who.user_id, tmp_path / "worker.log")
    database = env["DATABASE_URL"].removeprefix("sqlite:///")
    try:
        enqueue.enqueue_sync(sync.rt, who.user_id, "manual")
        sync.start()

        def some_written() -> bool:
            return len(who.crm.contents()) >= 5

        _wait(some_written)
        # Another process holds the write lock for a while (under the 30 s busy timeout).
        locker = sqlite3.connect(database, timeout=1, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        time.sleep(3)
        locker.execute("ROLLBACK")
        locker.close()
        who.crm_emu.set_faults(rate_slow=0.0)
        if sync.worker is None or sync.worker.poll() is not None:
            sync.start()
        _sync_to_the_end(rt, who, sync)
    finally:
        sync.stop()
        who.close()
        rt.close()
    _assert_each_meeting_once(who)


@pytest.mark.skipif(
    not TEST_DATABASE_URL and not IN_CI,
    reason="needs TEST_DATABASE_URL (PostgreSQL); CI always sets it",
)
def test_the_database_connection_cut_mid_sync_is_retried_and_ends_with_every_meeting_once(
    world, env, redis_conn: redis.Redis, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    assert TEST_DATABASE_URL, "CI must set TEST_DATABASE_URL"
    from databases import postgres_schema_url

    urls = postgres_schema_url(TEST_DATABASE_URL)
    application = f"calsync-reliability-{uuid.uuid4().hex[:8]}"
    env = {**env, "DATABASE_URL": f"{next(urls)}&application_name={application}"}
    rt = _runtime(env)
    who = worker_user(world, rt, env, SETTINGS)
    _seed_calendar(who)
    who.crm_emu.set_faults(rate_slow=1.0, slow_seconds=0.05)
    sync = WorkerSync(rt, who.env, who.user_id, tmp_path / "worker.log")
    try:
        enqueue.enqueue_sync(sync.rt, who.user_id, "manual")
        sync.start()

        def some_written() -> bool:
            return len(who.crm.contents()) >= 5

        _wait(some_written)
        admin = TEST_DATABASE_URL.replace("postgresql://", "postgresql+psycopg://", 1)
        assert _cut_postgres_connections(admin, application) >= 1
        who.crm_emu.set_faults(rate_slow=0.0)
        if sync.worker is None or sync.worker.poll() is not None:
            sync.start()
        _sync_to_the_end(rt, who, sync)
    finally:
        sync.stop()
        who.close()
        rt.close()
        for _ in urls:
            pass
    _assert_each_meeting_once(who)
