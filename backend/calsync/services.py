"""Connections to the database and Redis, and the checks every process runs at start."""

from __future__ import annotations

import redis
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from calsync.config import ConfigError, redact_url


def redis_client(url: str) -> redis.Redis:
    # Short timeouts: a health check or web request must fail fast, not hang on Redis.
    return redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def check_database(engine: Engine) -> None:
    """Raise ConfigError naming DATABASE_URL if the database cannot be reached."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
        raise ConfigError(
            f"DATABASE_URL: cannot reach the database at "
            f"{redact_url(engine.url.render_as_string(hide_password=True))}: {reason}"
        ) from None


def check_redis(client: redis.Redis, url: str) -> None:
    """Raise ConfigError naming REDIS_URL if Redis cannot be reached."""
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ConfigError(f"REDIS_URL: cannot reach Redis at {redact_url(url)}: {exc}") from None
