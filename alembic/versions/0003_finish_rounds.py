"""finish rounds as trials: each round of each finalist is its own launch, committed at once

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 23:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('autotune_trials') as batch_op:
        batch_op.add_column(sa.Column('round', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('disturbed', sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('autotune_trials') as batch_op:
        batch_op.drop_column('disturbed')
        batch_op.drop_column('round')
