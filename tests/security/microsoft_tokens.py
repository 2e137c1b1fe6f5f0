"""Microsoft-like tokens for the tests: our own key set, served like Microsoft's JWKS."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

CLIENT_ID = "6a1f0d3c-1111-4c4b-9d52-0a1b2c3d4e5f"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "0b3c5e9a-2222-4d6e-8f00-112233445566"


@dataclass
class KeyServer:
    """The signing keys a local JWKS endpoint publishes; tests rotate them at will."""

    published: list[RSAKey] = field(default_factory=list)
    fetches: int = 0
    url: str = ""

    def new_key(self, publish: bool = True) -> RSAKey:
        key = RSAKey.generate_key(2048, parameters={"kid": uuid.uuid4().hex}, private=True)
        if publish:
            self.published.append(key)
        return key

    def jwks(self) -> dict[str, Any]:
        self.fetches += 1
        return {"keys": [k.as_dict(private=False) for k in self.published]}


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "aud": CLIENT_ID,
        "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0",
        "tid": TENANT,
        "oid": "00000000-0000-0000-0000-00000000a11c",
        "preferred_username": "alice@contoso.example",
        "name": "Alice",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "ver": "2.0",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: RSAKey, payload: dict[str, Any], alg: str = "RS256") -> str:
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, payload, key)
