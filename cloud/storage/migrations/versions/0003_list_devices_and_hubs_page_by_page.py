"""List devices and hubs page by page: every hub registration names its account, and the indexes
an account's lists walk (its hubs in id order, each hub's devices in id order).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision: str | None = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A hub registered before accounts had none and belonged to the default account: say so, so
    # that an account's hubs are found through the index by account alone.
    op.execute("UPDATE hub_registrations SET account = 'default' WHERE account IS NULL")
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_devices_hub_id'))
        batch_op.create_index('ix_devices_hub_id_id', ['hub_id', 'id'], unique=False)

    with op.batch_alter_table('hub_registrations', schema=None) as batch_op:
        batch_op.alter_column('account',
               existing_type=sa.VARCHAR(length=128),
               nullable=False)
        batch_op.create_index('ix_hub_registrations_account', ['account', 'hub_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('hub_registrations', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_registrations_account')
        batch_op.alter_column('account',
               existing_type=sa.VARCHAR(length=128),
               nullable=True)

    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_index('ix_devices_hub_id_id')
        batch_op.create_index(batch_op.f('ix_devices_hub_id'), ['hub_id'], unique=False)
