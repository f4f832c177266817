"""Accounts and API tokens.

Every token belongs to one account and carries scopes: ``read`` (look), ``control`` (commands,
pairing, rename) and ``admin`` (tokens, device removal, usage). Each scope includes those before it.
Only a token's sha256 is stored; the token itself is shown once, when created.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from cloud.storage.base import AccountRecord, Registry, TokenRecord
from cloud.storage.sql_schema import DEFAULT_ACCOUNT

TOKEN_PREFIX = "spk_"
ACCOUNT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# A token chosen by hand (SPOKE_DEMO_TOKEN) must be at least this long and not a plain word.
MIN_TOKEN_LENGTH = 20
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class Scope(StrEnum):
    READ = "read"
    CONTROL = "control"
    ADMIN = "admin"


_ORDER = (Scope.READ, Scope.CONTROL, Scope.ADMIN)


class AccessError(ValueError):
    """A request to make or change an account or token that cannot be done (said why)."""


def expand(scopes: Iterable[str]) -> frozenset[str]:
    """The scopes with those they include: ``control`` gives ``read``, ``admin`` gives both."""
    granted: set[str] = set()
    for scope in scopes:
        try:
            top = _ORDER.index(Scope(scope))
        except ValueError:
            raise AccessError(f"unknown scope {scope!r} (read, control or admin)") from None
        granted.update(s.value for s in _ORDER[: top + 1])
    if not granted:
        raise AccessError("a token needs a scope (read, control or admin)")
    return frozenset(granted)


def top_scope(scopes: Iterable[str]) -> str:
    """The broadest scope of a set, for listing."""
    held = set(scopes)
    return next((s.value for s in reversed(_ORDER) if s.value in held), "")


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s`` as a timedelta."""
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) == 0:
        raise AccessError(f"invalid duration {text!r} (a number and s, m, h, d or w: e.g. 30d)")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Accounts -------------------------------------------------------------------------------------------
def check_account_name(account: str) -> None:
    if not re.match(ACCOUNT_PATTERN, account):
        raise AccessError(f"invalid account name {account!r} (letters, digits, '_', '.', '-'; "
                          "at most 64, starting with a letter or digit)")


def create_account(registry: Registry, account: str) -> AccountRecord:
    check_account_name(account)
    if not registry.add_account(account, datetime.now(UTC)):
        raise AccessError(f"account {account!r} exists already")
    record = registry.get_account(account)
    assert record is not None
    return record


def require_account(registry: Registry, account: str | None) -> str:
    """The account to use: an existing one by name, or the default one (made on first use)."""
    if account is None or account == DEFAULT_ACCOUNT:
        registry.add_account(DEFAULT_ACCOUNT, datetime.now(UTC))
        return DEFAULT_ACCOUNT
    check_account_name(account)
    if registry.get_account(account) is None:
        raise AccessError(f"no account {account!r} (create it with `spoke cloud account create "
                          f"{account}`)")
    return account


# Tokens ---------------------------------------------------------------------------------------------
def create_token(registry: Registry, name: str, *, account: str | None = None,
                 scopes: Iterable[str] = (Scope.ADMIN,),
                 expires_at: datetime | None = None) -> tuple[TokenRecord, str]:
    """Create a token for ``account``; returns its record and the token (shown only now)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return _store(registry, token, name, account, scopes, expires_at), token


def ensure_token(registry: Registry, token: str, name: str = "demo", *,
                 account: str | None = None, scopes: Iterable[str] = (Scope.ADMIN,),
                 weak_ok: bool = False) -> TokenRecord:
    """Make a token chosen by hand valid; a revoked one is refused, and a weak one unless
    ``weak_ok`` (the demo's own token, on the demo's loopback cloud)."""
    if not token:
        raise AccessError("an API token cannot be empty")
    if not weak_ok:
        check_token_strength(token)
    existing = registry.find_token(hash_token(token))
    if existing is not None:
        if existing.revoked:
            raise AccessError(f"token {existing.id} ({existing.name}) was revoked")
        return existing
    return _store(registry, token, name, account, scopes, None)


def check_token_strength(token: str) -> None:
    """Refuse a hand-chosen token that is short, or one word, or one repeated character."""
    if len(token) < MIN_TOKEN_LENGTH:
        raise AccessError(f"a token must be at least {MIN_TOKEN_LENGTH} characters long")
    if token.isalpha() or len(set(token)) < 8:
        raise AccessError("a token must not be a word or a few repeated characters: mix letters, "
                          "digits and symbols (or let Spoke generate one)")


def verify_token(registry: Registry, token: str, now: datetime | None = None
                 ) -> TokenRecord | None:
    """The record of a valid token, or None for an unknown, revoked or expired one."""
    digest = lookup_hash(token)
    return valid_token(registry.find_token(digest) if digest else None, now)


def lookup_hash(token: str) -> str | None:
    """The hash to look a presented token up by; None for one that cannot be a token."""
    if not token or len(token) > 256:
        return None
    return hash_token(token)


def valid_token(record: TokenRecord | None, now: datetime | None = None) -> TokenRecord | None:
    """The record as read, unless it is revoked or expired (None)."""
    if record is None or record.revoked or record.expired(now or datetime.now(UTC)):
        return None
    return record


def list_tokens(registry: Registry, account: str | None = None) -> list[TokenRecord]:
    return registry.list_tokens(account)


def revoke_token(registry: Registry, token_id: str, account: str | None = None) -> bool:
    """Revoke a token by its id (within ``account`` when given); False when there is no such
    active token."""
    return registry.revoke_token(token_id, account)


def _store(registry: Registry, token: str, name: str, account: str | None,
           scopes: Iterable[str], expires_at: datetime | None) -> TokenRecord:
    name = name.strip()
    if not name or len(name) > 128:
        raise AccessError("a token's name must be 1 to 128 characters")
    record = TokenRecord(id=secrets.token_hex(6), name=name, created_at=datetime.now(UTC),
                         account=require_account(registry, account), scopes=expand(scopes),
                         expires_at=expires_at)
    if expires_at is not None and expires_at <= record.created_at:
        raise AccessError("a token's expiry must be in the future")
    registry.add_token(record, hash_token(token))
    return record
