"""study owner: a lease with a heartbeat, so two tuners never run one study

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 00:05:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('autotune_studies') as batch_op:
        batch_op.add_column(sa.Column('owner_token', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('owner_host', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('owner_pid', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('owner_create_time', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('owner_since', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('autotune_studies') as batch_op:
        for column in ('heartbeat_at', 'owner_since', 'owner_create_time', 'owner_pid',
                       'owner_host', 'owner_token'):
            batch_op.drop_column(column)
