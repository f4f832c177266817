"""API tokens: only a token's sha256 is stored; the token itself is shown once, when created."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from cloud.storage.base import Registry, TokenRecord

TOKEN_PREFIX = "spk_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(registry: Registry, name: str) -> tuple[TokenRecord, str]:
    """Create a new token named ``name``; returns its record and the token (shown only now)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return _store(registry, token, name), token


def ensure_token(registry: Registry, token: str, name: str = "demo") -> TokenRecord:
    """Make ``token`` a valid token (e.g. ``SPOKE_DEMO_TOKEN``); a revoked one is an error."""
    if not token:
        raise ValueError("an API token cannot be empty")
    existing = registry.find_token(hash_token(token))
    if existing is not None:
        if existing.revoked:
            raise ValueError(f"token {existing.id} ({existing.name}) was revoked")
        return existing
    return _store(registry, token, name)


def verify_token(registry: Registry, token: str) -> TokenRecord | None:
    """The record of a valid token, or None for an unknown or revoked one."""
    if not token:
        return None
    record = registry.find_token(hash_token(token))
    return record if record is not None and not record.revoked else None


def list_tokens(registry: Registry) -> list[TokenRecord]:
    return registry.list_tokens()


def revoke_token(registry: Registry, token_id: str) -> bool:
    """Revoke a token by its id; False when there is no such active token."""
    return registry.revoke_token(token_id)


def _store(registry: Registry, token: str, name: str) -> TokenRecord:
    token_id = secrets.token_hex(6)
    created = datetime.now(UTC)
    registry.add_token(token_id, name, hash_token(token), created)
    return TokenRecord(id=token_id, name=name, created_at=created)
