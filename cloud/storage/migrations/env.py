"""Alembic's environment: migrations run on the connection the caller hands over in
``config.attributes["connection"]`` (see ``cloud.storage.migrations``), never from a URL in a file."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext

from cloud.storage.sql_schema import UtcDateTime, metadata


def render_item(kind: str, obj: Any, autogen: AutogenContext) -> str | Literal[False]:
    """A new revision spells the cloud's UTC timestamp type as the column type it creates, so the
    revision does not depend on the current Python schema."""
    if kind == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    render_as_batch=True,  # SQLite alters a table by copying it; batch mode writes that for us
    render_item=render_item,
)
with context.begin_transaction():
    context.run_migrations()
