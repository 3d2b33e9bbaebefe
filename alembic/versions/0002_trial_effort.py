"""trial effort: requests measured relative to the spec's usual number

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows from before this column were all measured at the usual effort.
    with op.batch_alter_table('autotune_trials') as batch_op:
        batch_op.add_column(sa.Column('effort', sa.Float(), server_default='1.0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('autotune_trials') as batch_op:
        batch_op.drop_column('effort')
