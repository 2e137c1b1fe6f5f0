"""What the routes share, built once per app: token validator, links, web sign-in, URL policy."""

from __future__ import annotations

import redis
from flask import current_app

from calsync.auth.keys import KeyCache
from calsync.auth.links import SignInLinks
from calsync.auth.microsoft import MicrosoftTokenValidator
from calsync.auth.web_signin import WebSignIn
from calsync.config import Config
from calsync.security.urls import URLPolicy, policy_for

EXTENSION = "calsync.services"


class Services:
    """Built once per app; tests may replace a part (the URL policy's resolver, the config)."""

    def __init__(self, config: Config, redis_client: redis.Redis) -> None:
        self.config = config
        # One key cache per process: Microsoft's keys are fetched once, not per request.
        self.keys = KeyCache(config.microsoft_jwks_url)
        self.links = SignInLinks(config.secret_key, redis_client)
        self.web = WebSignIn(config)
        self.url_policy: URLPolicy = policy_for(config)
        self._validator: MicrosoftTokenValidator | None = None

    def validator(self) -> MicrosoftTokenValidator | None:
        """None when MICROSOFT_CLIENT_ID is not set (no audience to check tokens against)."""
        if self.config.microsoft_client_id is None:
            return None
        if self._validator is None:
            self._validator = MicrosoftTokenValidator(
                self.keys,
                client_id=self.config.microsoft_client_id,
                base_url=self.config.base_url,
                authority_host=self.config.microsoft_authority_host,
                allowed_tenants=self.config.microsoft_allowed_tenants,
            )
        return self._validator


def services() -> Services:
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]
