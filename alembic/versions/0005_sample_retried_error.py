"""samples keep the transport failure that a retry recovered from

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 02:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('autotune_samples') as batch_op:
        batch_op.add_column(sa.Column('retried_error', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('autotune_samples') as batch_op:
        batch_op.drop_column('retried_error')
