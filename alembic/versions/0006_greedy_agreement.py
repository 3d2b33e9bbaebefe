"""greedy agreement of each KV / flash-attention setting with the reference, per study

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 02:15:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'autotune_agreement',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('study_id', sa.Integer(), nullable=False),
        sa.Column('setting', sa.String(length=120), nullable=False),
        sa.Column('compared', sa.Integer(), nullable=False),
        sa.Column('identical', sa.Integer(), nullable=False),
        sa.Column('mean_edit_distance', sa.Float(), nullable=False),
        sa.Column('first_divergences', sa.JSON(), nullable=False),
        sa.Column('measured_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['study_id'], ['autotune_studies.id'],
                                name=op.f('fk_autotune_agreement_study_id_autotune_studies')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_autotune_agreement')),
        sa.UniqueConstraint('study_id', 'setting', name='uq_agreement_setting'),
    )


def downgrade() -> None:
    op.drop_table('autotune_agreement')
