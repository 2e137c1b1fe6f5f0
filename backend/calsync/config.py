"""Settings from the environment, in one place.

Every process (web, worker, cron, CLI) builds its ``Config`` with ``Config.from_env()``
so that they all agree on the database, Redis and keys. Development works with no
variable set: SQLite and an embedded Redis under ``instance/``, and a Fernet key
generated there on first use. Production refuses to start until every secret is set.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import limits
from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEVELOPMENT = "development"
PRODUCTION = "production"

DEFAULT_MICROSOFT_JWKS_URL = "https://login.microsoftonline.com/common/discovery/v2.0/keys"
DEFAULT_MICROSOFT_AUTHORITY_HOST = "https://login.microsoftonline.com"

# Values that ship in examples and docs; a production deployment using one is not secret.
KNOWN_DEFAULT_SECRETS = {"", "dev", "change-me", "changeme", "secret", "development"}


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the setting and the fix."""


def default_instance_dir() -> Path:
    return Path(os.environ.get("CALSYNC_INSTANCE_DIR", Path.cwd() / "instance")).resolve()


@dataclass(frozen=True)
class Config:
    env: str
    instance_dir: Path
    database_url: str
    redis_url: str | None  # None: the embedded Redis under instance_dir
    secret_key: str
    encryption_keys: tuple[str, ...]  # first key encrypts; all keys decrypt (rotation)
    base_url: str
    microsoft_client_id: str | None = None
    microsoft_client_secret: str | None = None
    google_client_id: str | None = None
    google_client_secret: str | None = None
    sync_run_retention_days: int = 90
    # Seconds between RQ's retries of a sync that hit a transient fault (one per retry).
    retry_intervals: tuple[int, ...] = (30, 60, 120, 300, 600)
    # Sign-in with Microsoft: where the token signing keys are published, which login host
    # the web sign-in talks to (the sandbox's emulator can stand in), which tenants may
    # sign in (empty: any work or school tenant).
    microsoft_jwks_url: str = DEFAULT_MICROSOFT_JWKS_URL
    microsoft_authority_host: str = DEFAULT_MICROSOFT_AUTHORITY_HOST
    microsoft_allowed_tenants: frozenset[str] = frozenset()
    # Host names a user-supplied URL may name even though they resolve to a private,
    # loopback or link-local address (an on-premises CRM, the local sandbox). Set by the
    # operator, never by an organization's admin: that would reopen the SSRF hole.
    url_allowed_hosts: frozenset[str] = frozenset()
    # Requests per client address, in the "N per minute" notation of the limits library.
    signin_rate_limit: str = "20 per minute"
    connect_rate_limit: str = "10 per minute"
    # How long a push subscription (Graph) or watch channel (Google) is asked to live;
    # capped at what the provider documents (10,080 minutes for Outlook events).
    push_lifetime_minutes: int = 4230
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_production(self) -> bool:
        return self.env == PRODUCTION

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Config:
        env_vars = dict(os.environ if environ is None else environ)
        env = env_vars.get("CALSYNC_ENV", DEVELOPMENT).strip() or DEVELOPMENT
        if env not in (DEVELOPMENT, PRODUCTION):
            raise ConfigError(f"CALSYNC_ENV must be 'development' or 'production', not {env!r}.")
        production = env == PRODUCTION
        instance_dir = Path(
            env_vars.get("CALSYNC_INSTANCE_DIR") or default_instance_dir()
        ).resolve()

        database_url = env_vars.get("DATABASE_URL", "").strip()
        if not database_url:
            if production:
                raise ConfigError(
                    "DATABASE_URL is not set: production needs a shared PostgreSQL database, "
                    "e.g. postgresql://user:password@host:5432/calsync."
                )
            database_url = f"sqlite:///{instance_dir / 'calsync.sqlite3'}"
        database_url = validate_database_url(database_url)

        redis_url = env_vars.get("REDIS_URL", "").strip() or None
        if redis_url is None and production:
            raise ConfigError(
                "REDIS_URL is not set: production needs a Redis server shared by the web, "
                "worker and cron processes, e.g. redis://host:6379/0."
            )
        if redis_url is not None:
            validate_redis_url(redis_url)

        secret_key = env_vars.get("SECRET_KEY", "").strip()
        if production:
            _require_secret("SECRET_KEY", secret_key, "a long random string")
        elif not secret_key:
            secret_key = _instance_secret(instance_dir, "secret_key", secrets.token_urlsafe(48))

        raw_keys = env_vars.get("CALSYNC_ENCRYPTION_KEY", "").strip()
        if production:
            _require_secret(
                "CALSYNC_ENCRYPTION_KEY",
                raw_keys,
                "a Fernet key (python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')",
            )
        elif not raw_keys:
            raw_keys = _instance_secret(
                instance_dir, "encryption_key", Fernet.generate_key().decode()
            )
        encryption_keys = validate_encryption_keys(raw_keys)

        base_url = env_vars.get("BASE_URL", "").strip().rstrip("/")
        if not base_url:
            if production:
                raise ConfigError(
                    "BASE_URL is not set: production needs the public https address of "
                    "calsync, e.g. https://calsync.example.com."
                )
            base_url = f"http://localhost:{env_vars.get('PORT', '3000')}"
        base_url = validate_base_url(base_url, production=production)

        retry_intervals = _retry_intervals(env_vars.get("CALSYNC_RETRY_INTERVALS", ""))
        retention = env_vars.get("CALSYNC_RUN_RETENTION_DAYS", "90")
        if not retention.isdigit() or int(retention) < 1:
            raise ConfigError(
                f"CALSYNC_RUN_RETENTION_DAYS must be a whole number of days (1 or more), "
                f"not {retention!r}."
            )

        jwks_url = _setting_url(
            env_vars, "MICROSOFT_JWKS_URL", DEFAULT_MICROSOFT_JWKS_URL, production=production
        )
        authority_host = _setting_url(
            env_vars,
            "MICROSOFT_AUTHORITY_HOST",
            DEFAULT_MICROSOFT_AUTHORITY_HOST,
            production=production,
        ).rstrip("/")
        allowed_tenants = _word_list(env_vars.get("MICROSOFT_ALLOWED_TENANTS", ""))
        for tenant in allowed_tenants:
            if not _TENANT_ID.fullmatch(tenant):
                raise ConfigError(
                    f"MICROSOFT_ALLOWED_TENANTS: {tenant!r} is not a tenant id; list directory "
                    "(tenant) ids such as 72f988bf-86f1-41af-91ab-2d7cd011db47, comma-separated."
                )
        url_allowed_hosts = _word_list(env_vars.get("CALSYNC_URL_ALLOWED_HOSTS", ""))
        for host in url_allowed_hosts:
            if not _HOST_NAME.fullmatch(host):
                raise ConfigError(
                    f"CALSYNC_URL_ALLOWED_HOSTS: {host!r} is not a host name; list bare host "
                    "names such as crm.internal.example.com, comma-separated, without scheme "
                    "or port."
                )
        signin_limit = _rate_limit(env_vars, "CALSYNC_SIGNIN_RATE_LIMIT", "20 per minute")
        connect_limit = _rate_limit(env_vars, "CALSYNC_CONNECT_RATE_LIMIT", "10 per minute")
        push_lifetime = _push_lifetime(env_vars.get("CALSYNC_PUSH_LIFETIME_MINUTES", ""))

        return cls(
            env=env,
            instance_dir=instance_dir,
            database_url=database_url,
            redis_url=redis_url,
            secret_key=secret_key,
            encryption_keys=encryption_keys,
            base_url=base_url,
            microsoft_client_id=env_vars.get("MICROSOFT_CLIENT_ID") or None,
            microsoft_client_secret=env_vars.get("MICROSOFT_CLIENT_SECRET") or None,
            google_client_id=env_vars.get("GOOGLE_CLIENT_ID") or None,
            google_client_secret=env_vars.get("GOOGLE_CLIENT_SECRET") or None,
            sync_run_retention_days=int(retention),
            retry_intervals=retry_intervals,
            microsoft_jwks_url=jwks_url,
            microsoft_authority_host=authority_host,
            microsoft_allowed_tenants=allowed_tenants,
            url_allowed_hosts=url_allowed_hosts,
            signin_rate_limit=signin_limit,
            connect_rate_limit=connect_limit,
            push_lifetime_minutes=push_lifetime,
        )


def validate_database_url(url: str) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"DATABASE_URL is not a database URL ({redact_url(url)}); expected e.g. "
            "postgresql://user:password@host:5432/calsync or sqlite:///path/to/file.db."
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"DATABASE_URL uses {backend!r}; calsync supports postgresql:// and sqlite:// only."
        )
    if backend == "postgresql" and parsed.drivername == "postgresql":
        # psycopg 3 is the driver we install; SQLAlchemy's bare default is psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def validate_redis_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"REDIS_URL must start with redis://, rediss:// or unix:// (got {redact_url(url)})."
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"REDIS_URL has no host name ({redact_url(url)}).")
    try:
        parts.port  # noqa: B018 - raises ValueError for a non-numeric port
    except ValueError:
        raise ConfigError(f"REDIS_URL has an invalid port ({redact_url(url)}).") from None
    return url


def validate_encryption_keys(raw: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    for index, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            raise ConfigError(
                f"CALSYNC_ENCRYPTION_KEY: key {index} is not a Fernet key (32 url-safe "
                "base64-encoded bytes). Separate several keys with commas, newest first."
            ) from None
    return keys


def validate_base_url(url: str, *, production: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"BASE_URL must be an absolute http(s) URL, not {url!r}.")
    if production and parts.scheme != "https":
        raise ConfigError(
            "BASE_URL must use https in production: Outlook loads add-ins over https only."
        )
    return url


_TENANT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def _retry_intervals(raw: str) -> tuple[int, ...]:
    if not raw.strip():
        return Config.retry_intervals
    parts = [p.strip() for p in raw.split(",")]
    if not all(p.isdigit() and int(p) > 0 for p in parts) or len(parts) > 20:
        raise ConfigError(
            "CALSYNC_RETRY_INTERVALS must list whole seconds between retries, comma-separated "
            f"(e.g. 30,60,120), not {raw!r}."
        )
    return tuple(int(p) for p in parts)


def _word_list(raw: str) -> frozenset[str]:
    return frozenset(word.strip().lower() for word in raw.split(",") if word.strip())


def _setting_url(env_vars: dict[str, str], name: str, default: str, *, production: bool) -> str:
    """An operator-chosen URL: absolute, and https in production (keys must not be spoofed)."""
    url = env_vars.get(name, "").strip() or default
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an absolute http(s) URL, not {url!r}.")
    if production and parts.scheme != "https":
        raise ConfigError(f"{name} must use https in production, not {url!r}.")
    return url


def _rate_limit(env_vars: dict[str, str], name: str, default: str) -> str:
    value = env_vars.get(name, "").strip() or default
    try:
        limits.parse(value)
    except ValueError:
        raise ConfigError(
            f"{name} must be a rate such as '20 per minute' or '100/hour', not {value!r}."
        ) from None
    return value


# Graph's longest subscription to Outlook events ("Subscription lifetime" in
# https://learn.microsoft.com/en-us/graph/api/resources/subscription: 10,080 minutes, under
# 7 days); Google's channels live a week too. Below an hour, renewals (every 5 minutes, a
# quarter of the lifetime ahead) would be most of the traffic.
PUSH_LIFETIME_RANGE = (60, 10_080)


def _push_lifetime(raw: str) -> int:
    if not raw.strip():
        return Config.push_lifetime_minutes
    low, high = PUSH_LIFETIME_RANGE
    value = raw.strip()
    if not value.isdigit() or not low <= int(value) <= high:
        raise ConfigError(
            f"CALSYNC_PUSH_LIFETIME_MINUTES must be a whole number of minutes from {low} to "
            f"{high:,} (the longest Microsoft Graph allows for Outlook events), not {raw!r}."
        )
    return int(value)


def _require_secret(name: str, value: str, what: str) -> None:
    if value.lower() in KNOWN_DEFAULT_SECRETS:
        state = "is not set" if not value else "is a well-known default"
        raise ConfigError(f"{name} {state}: production needs {what}.")


def _instance_secret(instance_dir: Path, name: str, generated: str) -> str:
    """Read a development secret from instance/, creating it the first time."""
    path = instance_dir / name
    if path.exists():
        return path.read_text().strip()
    instance_dir.mkdir(parents=True, exist_ok=True)
    # Write aside, then link into place: os.link fails if another process (web and worker
    # start together) got there first, and nobody ever reads a half-written key.
    tmp = instance_dir / f".{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(generated)
    try:
        os.link(tmp, path)
    except FileExistsError:
        generated = path.read_text().strip()
    finally:
        tmp.unlink()
    return generated


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
