"""The schema as Spoke created it before it had migrations (see ``cloud.storage.migrations.baseline``).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from cloud.storage.migrations import baseline

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    baseline.create(op.get_bind())


def downgrade() -> None:
    baseline.schema.drop_all(op.get_bind())
