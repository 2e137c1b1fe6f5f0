"""Microsoft's token signing keys, fetched from the JWKS URL and cached.

Keys rotate: a token signed with a key we have not seen yet triggers a refresh, but at
most once per ``min_refresh_interval`` so that a flood of tokens with made-up key ids
cannot turn us into a traffic amplifier against the key endpoint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import requests
from joserfc.jwk import KeySet, RSAKey

from calsync.auth.errors import SignInError, SignInUnavailable


class KeyCache:
    def __init__(
        self,
        jwks_url: str,
        *,
        max_age: float = 24 * 3600,
        min_refresh_interval: float = 300,
        timeout: float = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jwks_url = jwks_url
        self.max_age = max_age
        self.min_refresh_interval = min_refresh_interval
        self.timeout = timeout
        self._clock = clock
        self._keys: dict[str, RSAKey] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()
        self.fetch_count = 0

    def key(self, kid: str) -> RSAKey:
        """The key with id ``kid``, refreshing the set when it is stale or lacks that key."""
        with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at > self.max_age
            unknown = kid not in self._keys
            may_refresh = (
                self._fetched_at is None or now - self._fetched_at >= self.min_refresh_interval
            )
            if stale or (unknown and may_refresh):
                self._refresh(now)
            try:
                return self._keys[kid]
            except KeyError:
                raise SignInError(
                    "Your sign-in token was signed with a key Microsoft does not publish. "
                    "Close and reopen the add-in to sign in again."
                ) from None

    def _refresh(self, now: float) -> None:
        self.fetch_count += 1
        # Count the attempt even if it fails: a key endpoint outage must not be hammered.
        self._fetched_at = now
        try:
            reply = requests.get(self.jwks_url, timeout=self.timeout)
            reply.raise_for_status()
            key_set = KeySet.import_key_set(reply.json())
        except (requests.RequestException, ValueError) as exc:
            if self._keys:
                return  # keep serving the keys we have
            raise SignInUnavailable(
                "Microsoft's sign-in keys could not be fetched just now. Try again in a minute."
            ) from exc
        self._keys = {key.kid: key for key in key_set.keys if isinstance(key, RSAKey) and key.kid}
