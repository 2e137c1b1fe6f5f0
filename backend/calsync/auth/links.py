"""One-time sign-in links: from the task pane to the Automatic sync page in a new tab.

The task pane is signed in; the new browser tab is not (different cookie jar in the
desktop clients). The task pane asks for a link, which is
- signed with the app's secret key (nobody can make one up),
- bound to one user and valid for ``LINK_LIFETIME`` seconds,
- single use: its nonce is stored in Redis when issued and taken (GETDEL) when
  redeemed, so a second opening, even a concurrent one, finds nothing.
"""

from __future__ import annotations

import secrets

import redis
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from calsync.auth.errors import SignInError

LINK_LIFETIME = 120
SALT = "calsync.signin-link"
KEY = "calsync:signin-link:{nonce}"


class SignInLinks:
    def __init__(self, secret_key: str, store: redis.Redis, lifetime: int = LINK_LIFETIME):
        self._serializer = URLSafeTimedSerializer(secret_key, salt=SALT)
        self._store = store
        self.lifetime = lifetime

    def issue(self, user_id: int) -> str:
        """A token for a link that signs ``user_id`` in once, within the lifetime."""
        nonce = secrets.token_urlsafe(24)
        self._store.set(KEY.format(nonce=nonce), str(user_id), ex=self.lifetime)
        return self._serializer.dumps({"u": user_id, "n": nonce})

    def redeem(self, token: str) -> int:
        """The user the link was issued to; the link cannot be used again."""
        again = "Open Automatic sync again from the calsync add-in in Outlook."
        try:
            data = self._serializer.loads(token, max_age=self.lifetime)
        except SignatureExpired:
            raise SignInError(f"This sign-in link has expired. {again}") from None
        except BadSignature:
            raise SignInError(f"This sign-in link is not valid. {again}") from None
        if not isinstance(data, dict) or not isinstance(data.get("n"), str):
            raise SignInError(f"This sign-in link is not valid. {again}")
        stored = self._store.getdel(KEY.format(nonce=data["n"]))
        if stored is None:
            raise SignInError(f"This sign-in link was already used. {again}")
        if stored.decode() != str(data.get("u")):
            raise SignInError(f"This sign-in link is not valid. {again}")
        return int(stored)
