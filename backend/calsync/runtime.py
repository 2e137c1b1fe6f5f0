"""What a calsync process holds: its config, database sessions and Redis connection.

The web app keeps one in ``app.extensions``; a worker builds one lazily on its first
job (``current()``), so RQ job functions stay plain functions of ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from calsync import crypto
from calsync.config import Config
from calsync.db import make_engine, make_sessionmaker
from calsync.embedded_redis import EmbeddedRedis
from calsync.services import redis_client

QUEUE_SYNC = "sync"
QUEUE_MAINTENANCE = "maintenance"
QUEUES = (QUEUE_SYNC, QUEUE_MAINTENANCE)


def redis_url_for(config: Config) -> str:
    return config.redis_url or EmbeddedRedis(config.instance_dir).url


@dataclass
class Runtime:
    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    redis: redis.Redis
    redis_url: str

    @classmethod
    def from_config(cls, config: Config) -> Runtime:
        crypto.configure(config.encryption_keys)
        engine = make_engine(config.database_url)
        url = redis_url_for(config)
        return cls(config, engine, make_sessionmaker(engine), redis_client(url), url)

    def close(self) -> None:
        self.engine.dispose()
        self.redis.close()


_current: Runtime | None = None


def current() -> Runtime:
    """The process-wide runtime, built from the environment on first use."""
    global _current
    if _current is None:
        _current = Runtime.from_config(Config.from_env())
    return _current


def install(runtime: Runtime | None) -> None:
    """Make ``runtime`` the process-wide one (the web app and tests call this)."""
    global _current
    _current = runtime
