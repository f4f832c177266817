"""The cloud's broker secret and every MQTT password derived from it.

The cloud keeps one random secret in a 0600 file. Each hub's password is
HMAC-SHA256(secret, "<hub id>:<generation>") and the cloud's own is HMAC-SHA256(secret,
"spoke-cloud"), so the registry stores no password at all (only each hub's credential generation)
and the cloud can rebuild the broker's accounts from the registry whenever the broker lost them.
The brokers store PBKDF2-SHA512 hashes in Mosquitto's dynamic-security format.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import TypedDict

from private_files import private_dir

SECRET_BYTES = 32
# Mosquitto 2.0's dynamic-security plugin: PBKDF2-HMAC-SHA512, 12-byte salt, 101 iterations.
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12
# No hub id contains ":" (see wire.contract.HUB_ID_PATTERN), so this never equals "<hub>:<n>".
_CLOUD_LABEL = "spoke-cloud"


class BrokerSecretMissing(FileNotFoundError):
    """The cloud's broker secret file does not exist (``spoke cloud broker init`` creates it)."""


class PasswordHash(TypedDict):
    password: str  # base64 PBKDF2-SHA512 of the password
    salt: str  # base64, 12 bytes
    iterations: int


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), replacing it atomically."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def ensure_broker_secret(path: Path) -> bytes:
    """The secret in ``path``, created (0600) when the file does not exist yet."""
    if not path.exists():
        private_dir(path.parent)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return load_broker_secret(path)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(SECRET_BYTES) + "\n")
    return load_broker_secret(path)


def load_broker_secret(path: Path) -> bytes:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise BrokerSecretMissing(
            f"no broker secret at {path} (run `spoke cloud broker init` first)") from None
    if len(text) < 32:
        raise ValueError(f"the broker secret in {path} is too short")
    return text.encode()


def _derive(secret: bytes, label: str) -> str:
    digest = hmac.new(secret, label.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def hub_password(secret: bytes, hub_id: str, generation: int) -> str:
    """The MQTT password of ``hub_id`` for its credential generation (a new generation rotates it)."""
    return _derive(secret, f"{hub_id}:{generation}")


def cloud_password(secret: bytes) -> str:
    """The MQTT password every cloud process logs in with."""
    return _derive(secret, _CLOUD_LABEL)


def hash_password(password: str) -> PasswordHash:
    """A new salted hash of ``password`` in the dynamic-security format."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return {"password": base64.b64encode(digest).decode(),
            "salt": base64.b64encode(salt).decode(), "iterations": PBKDF2_ITERATIONS}


def verify_password(stored: PasswordHash, password: str) -> bool:
    try:
        salt = base64.b64decode(stored["salt"])
        expected = base64.b64decode(stored["password"])
        iterations = int(stored["iterations"])
    except (KeyError, ValueError, TypeError):
        return False
    if iterations < 1:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return hmac.compare_digest(digest, expected)
