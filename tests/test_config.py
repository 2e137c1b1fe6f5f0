"""Settings come from the environment; production refuses to start without its secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from calsync.config import Config, ConfigError

GOOD_KEY = Fernet.generate_key().decode()


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        "CALSYNC_ENV": "production",
        "CALSYNC_INSTANCE_DIR": str(tmp_path),
        "DATABASE_URL": "postgresql://calsync:pw@db.internal:5432/calsync",
        "REDIS_URL": "redis://cache.internal:6379/0",
        "SECRET_KEY": "x" * 40,
        "CALSYNC_ENCRYPTION_KEY": GOOD_KEY,
        "BASE_URL": "https://calsync.example.com",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def test_development_needs_no_setting_at_all(tmp_path: Path) -> None:
    config = Config.from_env({"CALSYNC_INSTANCE_DIR": str(tmp_path)})

    assert config.env == "development"
    assert config.database_url == f"sqlite:///{tmp_path / 'calsync.sqlite3'}"
    assert config.embedded_redis
    assert config.base_url == "http://localhost:3000"
    Fernet(config.encryption_keys[0].encode())  # a usable key was generated


def test_development_keys_are_generated_once_and_reused(tmp_path: Path) -> None:
    first = Config.from_env({"CALSYNC_INSTANCE_DIR": str(tmp_path)})
    second = Config.from_env({"CALSYNC_INSTANCE_DIR": str(tmp_path)})

    assert first.encryption_keys == second.encryption_keys
    assert first.secret_key == second.secret_key
    assert (tmp_path / "encryption_key").stat().st_mode & 0o077 == 0


def test_production_starts_with_every_secret_set(tmp_path: Path) -> None:
    config = Config.from_env(production_env(tmp_path))

    assert config.is_production
    assert config.database_url.startswith("postgresql+psycopg://")


@pytest.mark.parametrize(
    "name", ["SECRET_KEY", "CALSYNC_ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL", "BASE_URL"]
)
def test_production_refuses_a_missing_setting_and_names_it(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Config.from_env(production_env(tmp_path, **{name: ""}))


def test_production_refuses_a_well_known_default_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY is a well-known default"):
        Config.from_env(production_env(tmp_path, SECRET_KEY="change-me"))


def test_production_refuses_plain_http_base_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="https"):
        Config.from_env(production_env(tmp_path, BASE_URL="http://calsync.example.com"))


def test_an_encryption_key_that_is_not_fernet_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key 2 is not a Fernet key"):
        Config.from_env(production_env(tmp_path, CALSYNC_ENCRYPTION_KEY=f"{GOOD_KEY},not-a-key"))


def test_several_encryption_keys_are_kept_in_order_for_rotation(tmp_path: Path) -> None:
    old = Fernet.generate_key().decode()
    config = Config.from_env(production_env(tmp_path, CALSYNC_ENCRYPTION_KEY=f"{GOOD_KEY},{old}"))

    assert config.encryption_keys == (GOOD_KEY, old)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not a url", "DATABASE_URL is not a database URL"),
        ("mysql://u@h/db", "supports postgresql:// and sqlite:// only"),
    ],
)
def test_a_malformed_database_url_is_explained(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_env({"CALSYNC_INSTANCE_DIR": str(tmp_path), "DATABASE_URL": value})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://cache:6379", "must start with redis://"),
        ("redis://:6379/0", "has no host name"),
        ("redis://cache:port/0", "invalid port"),
    ],
)
def test_a_malformed_redis_url_is_explained(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_env({"CALSYNC_INSTANCE_DIR": str(tmp_path), "REDIS_URL": value})


def test_a_password_in_a_bad_url_is_not_repeated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        Config.from_env(
            {"CALSYNC_INSTANCE_DIR": str(tmp_path), "REDIS_URL": "http://u:hunter2@cache:6379"}
        )
    assert "hunter2" not in str(error.value)


def test_an_unknown_environment_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CALSYNC_ENV"):
        Config.from_env({"CALSYNC_INSTANCE_DIR": str(tmp_path), "CALSYNC_ENV": "staging"})
