"""`spoke cloud account …`, `spoke cloud token …` and `spoke cloud usage`: the households one cloud
serves, their API tokens and how much those used the API, on the cloud's own database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from spoke.console import command_group, console, fail
from spoke.listing import iso, print_json, print_list

if TYPE_CHECKING:
    from cloud.storage.base import Registry

account_app = command_group("Accounts: one per household; hubs, devices and tokens belong to one.")
token_app = command_group("API tokens, each of one account and scope.")


class ScopeChoice(StrEnum):
    read = "read"
    control = "control"
    admin = "admin"


AsJson = Annotated[bool, typer.Option("--json", help="Print JSON (for programs).")]
Account = Annotated[str | None, typer.Option(
    "--account", help="The account (default: the default account).")]


def register(cloud_app: typer.Typer) -> None:
    cloud_app.add_typer(account_app, name="account")
    cloud_app.add_typer(token_app, name="token")
    cloud_app.command("usage")(usage)


@contextmanager
def _registry() -> Iterator[Registry]:
    from cloud.auth import AccessError
    from cloud.settings import CloudSettings
    from cloud.storage import open_registry
    from cloud.storage.base import SchemaOutdated

    try:
        with open_registry(CloudSettings()) as registry:
            yield registry
    except (AccessError, SchemaOutdated) as exc:
        fail(str(exc))


@account_app.command("create")
def account_create(name: Annotated[str, typer.Argument(help="The account's name.")]) -> None:
    """Create an account."""
    from cloud.auth import create_account

    with _registry() as registry:
        create_account(registry, name)
    console.print(f"account {name} created; give it tokens with "
                  f"`spoke cloud token create NAME --account {name} --scope read|control|admin`")


@account_app.command("list")
def account_list(as_json: AsJson = False) -> None:
    """List the accounts."""
    with _registry() as registry:
        accounts = registry.list_accounts()
    if as_json:
        print_json([{"id": a.id, "created_at": iso(a.created_at)} for a in accounts])
        return
    print_list(("account", "created"), [(a.id, f"{a.created_at:%Y-%m-%d %H:%M}") for a in accounts])


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="What the token is for.")],
    account: Account = None,
    scope: Annotated[ScopeChoice, typer.Option(
        help="read: look; control: also commands, pairing, rename; admin: also tokens, device "
             "removal, usage.")] = ScopeChoice.read,
    expires: Annotated[str | None, typer.Option(
        help="Lifetime, e.g. 30d, 12h, 2w (default: no expiry).")] = None,
) -> None:
    """Create an API token; it is shown once."""
    from cloud.auth import create_token, parse_duration

    with _registry() as registry:
        expires_at = datetime.now(UTC) + parse_duration(expires) if expires else None
        record, token = create_token(registry, name, account=account, scopes=[scope.value],
                                     expires_at=expires_at)
    until = f", expires {record.expires_at:%Y-%m-%d %H:%M} UTC" if record.expires_at else ""
    console.print(f"token id {record.id} ({record.name}, account {record.account}, scope "
                  f"{scope.value}{until}):")
    console.print(token, highlight=False)


@token_app.command("list")
def token_list(account: Account = None, as_json: AsJson = False) -> None:
    """List API tokens (ids, names, accounts, scopes; the secrets are not stored)."""
    from cloud.auth import list_tokens, top_scope

    with _registry() as registry:
        tokens = list_tokens(registry, account)
    if as_json:  # as GET /api/v1/tokens answers
        print_json([{"id": t.id, "name": t.name, "account": t.account, "scopes": sorted(t.scopes),
                     "created_at": iso(t.created_at), "expires_at": iso(t.expires_at),
                     "revoked": t.revoked} for t in tokens])
        return
    now = datetime.now(UTC)
    rows = []
    for t in tokens:
        state = "revoked" if t.revoked else "expired" if t.expired(now) else "active"
        rows.append((t.id, t.name, t.account, top_scope(t.scopes),
                     f"{t.created_at:%Y-%m-%d %H:%M}",
                     f"{t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else "never", state))
    print_list(("id", "name", "account", "scope", "created", "expires", "state"), rows,
               whole=(0, 2))


@token_app.command("revoke")
def token_revoke(token_id: str) -> None:
    """Revoke an API token by id; it stops working at once."""
    from cloud.auth import revoke_token

    with _registry() as registry:
        if not revoke_token(registry, token_id):
            fail(f"no active token with id {token_id}")
    console.print(f"revoked {token_id}")


def usage(
    account: Account = None,
    days: Annotated[int, typer.Option(min=1, max=366, help="The last N UTC days, today "
                                                          "included.")] = 7,
    as_json: AsJson = False,
) -> None:
    """API requests of an account's tokens per day, token, route and status class."""
    from cloud.settings import CloudSettings
    from cloud.storage import open_usage
    from cloud.storage.sql_schema import DEFAULT_ACCOUNT

    if account is not None:
        with _registry() as registry:
            if registry.get_account(account) is None:
                fail(f"no account {account!r}")
    until = datetime.now(UTC).date()
    since = until - timedelta(days=days - 1)
    with open_usage(CloudSettings()) as store:
        rows = store.usage(account or DEFAULT_ACCOUNT, since, until)
    if as_json:  # as GET /api/v1/usage answers
        print_json([{"day": r.day.isoformat(), "token_id": r.token_id, "token_name": r.token_name,
                     "method": r.method, "route": r.route, "status": r.status,
                     "requests": r.count} for r in rows])
        return
    print_list(("token", "name", "day", "method", "route", "status", "requests"),
               [(r.token_id, r.token_name or "deleted", f"{r.day}", r.method, r.route, r.status, str(r.count))
                for r in rows],
               title=f"API usage of account {account or DEFAULT_ACCOUNT}, {since} to {until}")
    console.print(f"{sum(r.count for r in rows)} requests")
