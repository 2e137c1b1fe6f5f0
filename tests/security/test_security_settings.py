"""The identity and security settings are validated with messages naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from calsync.config import DEFAULT_MICROSOFT_JWKS_URL, Config, ConfigError


def dev(tmp_path: Path, **settings: str) -> Config:
    return Config.from_env({"CALSYNC_INSTANCE_DIR": str(tmp_path), **settings})


def test_the_defaults_point_at_microsoft(tmp_path: Path) -> None:
    config = dev(tmp_path)

    assert config.microsoft_jwks_url == DEFAULT_MICROSOFT_JWKS_URL
    assert config.microsoft_authority_host == "https://login.microsoftonline.com"
    assert config.microsoft_allowed_tenants == frozenset()
    assert config.signin_rate_limit == "20 per minute"


def test_allowed_tenants_and_hosts_are_comma_separated_lists(tmp_path: Path) -> None:
    config = dev(
        tmp_path,
        MICROSOFT_ALLOWED_TENANTS="72f988bf-86f1-41af-91ab-2d7cd011db47, ",
        CALSYNC_URL_ALLOWED_HOSTS="CRM.corp.example, localhost",
    )

    assert config.microsoft_allowed_tenants == {"72f988bf-86f1-41af-91ab-2d7cd011db47"}
    assert config.url_allowed_hosts == {"crm.corp.example", "localhost"}


def test_a_tenant_that_is_not_an_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"MICROSOFT_ALLOWED_TENANTS: 'contoso\.com'"):
        dev(tmp_path, MICROSOFT_ALLOWED_TENANTS="contoso.com")


def test_an_allowed_host_with_a_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CALSYNC_URL_ALLOWED_HOSTS"):
        dev(tmp_path, CALSYNC_URL_ALLOWED_HOSTS="https://crm.corp")


def test_a_rate_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CALSYNC_SIGNIN_RATE_LIMIT must be a rate"):
        dev(tmp_path, CALSYNC_SIGNIN_RATE_LIMIT="lots")


def test_production_fetches_keys_over_https_only(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    with pytest.raises(ConfigError, match="MICROSOFT_JWKS_URL must use https"):
        Config.from_env(
            {
                "CALSYNC_ENV": "production",
                "CALSYNC_INSTANCE_DIR": str(tmp_path),
                "DATABASE_URL": "postgresql://u:p@db:5432/c",
                "REDIS_URL": "redis://cache:6379/0",
                "SECRET_KEY": "x" * 40,
                "CALSYNC_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                "BASE_URL": "https://calsync.example.com",
                "MICROSOFT_JWKS_URL": "http://keys.example.com/keys",
            }
        )
