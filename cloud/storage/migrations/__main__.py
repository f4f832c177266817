"""``python -m cloud.storage.migrations revision "what changed"``: write the next revision from the
difference between the schema at the current head and ``cloud.storage.sql_schema.metadata``."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from alembic import command

from cloud.storage.migrations import alembic_config, head, upgrade_to_head
from cloud.storage.sql_engine import make_engine


def new_revision(message: str, *, autogenerate: bool = True) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        engine = make_engine(f"sqlite:///{Path(scratch) / 'head.db'}")
        try:
            upgrade_to_head(engine)
            with engine.connect() as conn:
                command.revision(alembic_config(conn), message, autogenerate=autogenerate,
                                 rev_id=f"{int(head()) + 1:04d}")
        finally:
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m cloud.storage.migrations")
    commands = parser.add_subparsers(dest="command", required=True)
    revision = commands.add_parser("revision", help="write the next revision")
    revision.add_argument("message", help="what the revision changes, e.g. 'add the export queue'")
    revision.add_argument("--empty", action="store_true",
                          help="no operations: for a data migration written by hand")
    args = parser.parse_args()
    new_revision(args.message, autogenerate=not args.empty)


if __name__ == "__main__":
    main()
