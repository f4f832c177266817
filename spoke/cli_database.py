"""`spoke cloud migrate`: bring the cloud's database to this Spoke's schema, as the cloud does when it
starts unless SPOKE_DATABASE_AUTO_MIGRATE is false."""

from __future__ import annotations

import typer

from spoke.cli_broker import cloud_settings
from spoke.console import console, fail


def register(cloud_app: typer.Typer) -> None:
    cloud_app.command("migrate")(migrate)


def migrate() -> None:
    """Migrate the cloud's database (SPOKE_DATABASE_URL) to the newest schema revision; print the
    revision before and after. Safe to run while clouds run: they wait for it."""
    from sqlalchemy.exc import OperationalError

    from cloud.storage.base import SchemaOutdated
    from cloud.storage.migrations import upgrade_to_head
    from cloud.storage.sql_engine import make_engine

    settings = cloud_settings()
    engine = make_engine(settings.database_url)
    where = engine.url.render_as_string(hide_password=True)
    try:
        done = upgrade_to_head(engine)
    except SchemaOutdated as exc:
        fail(str(exc))
    except OperationalError as exc:
        fail(f"cannot reach the database {where}: {str(exc.orig or exc).strip()}")
    finally:
        engine.dispose()
    if done.before == done.after:
        console.print(f"{where}: already at schema revision {done.after}", highlight=False)
        return
    before = done.before or ("none (made before migrations)" if done.had_tables else "none (empty)")
    console.print(f"{where}: schema revision {before} -> {done.after}", highlight=False)
