"""Secrets at rest: Fernet encryption with key rotation (MultiFernet).

The first configured key encrypts; every key decrypts, so an operator rotates by
putting a new key first, running ``calsync rotate-keys`` and then dropping the old one.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretsUnavailable(RuntimeError):
    """Encrypted data was read or written before a key ring was configured."""


class SecretBox:
    def __init__(self, keys: tuple[str, ...] | list[str]) -> None:
        if not keys:
            raise ValueError("at least one Fernet key is needed")
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])

    def encrypt(self, data: Any) -> str:
        return self._fernet.encrypt(json.dumps(data).encode()).decode()

    def decrypt(self, token: str) -> Any:
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise SecretsUnavailable(
                "A stored secret cannot be decrypted with CALSYNC_ENCRYPTION_KEY: "
                "the key was changed without keeping the old one in the list."
            ) from None

    def rotate(self, token: str) -> str:
        return self._fernet.rotate(token.encode()).decode()


_box: SecretBox | None = None


def configure(keys: tuple[str, ...] | list[str]) -> SecretBox:
    """Install the process-wide key ring (called once by every process at start)."""
    global _box
    _box = SecretBox(keys)
    return _box


def box() -> SecretBox:
    if _box is None:
        raise SecretsUnavailable("encryption keys are not configured in this process")
    return _box
