"""Key material: client keys are hashed (shown once), upstream keys encrypted at rest."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from pathlib import Path

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

KEY_PREFIX = "sk-or-"


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def upstream_key_id(key: str) -> str:
    """A stable public name for a channel's upstream key (12 hex digits of its sha256): how the admin API, the
    database and the circuit breakers refer to it without holding the secret."""
    return hash_key(key)[:12]


def display_prefix(key: str) -> str:
    """What the console may show of a key: enough to recognise it, too little to use it."""
    return key[:10]


def mask_secret(secret: str) -> str:
    if len(secret) <= 8:
        return "***"
    return secret[:3] + "***" + secret[-2:]


class SecretBox:
    """Encrypts the JSON list of a channel's upstream keys with the master key. ``previous`` keys only decrypt:
    during a rotation every instance reads rows sealed with either key (``omnirelay rotate-master-key``)."""

    def __init__(self, master_key: str, previous: Sequence[str] = ()) -> None:
        self._fernet = MultiFernet([Fernet(key.encode()) for key in (master_key, *previous)])

    def seal(self, keys: list[str]) -> str:
        return self._fernet.encrypt(orjson.dumps(keys)).decode()

    def open(self, token: str) -> list[str]:
        if not token:
            return []
        try:
            return list(orjson.loads(self._fernet.decrypt(token.encode())))
        except InvalidToken as exc:
            raise ValueError("upstream keys cannot be decrypted: the master key changed") from exc


def load_or_create_master_key(path: Path) -> str:
    """For single-machine installs without a configured master key: keep one beside the database, mode 0600."""
    if path.exists():
        return path.read_text().strip()
    key = Fernet.generate_key().decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(key)
    return key
