"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 10:01:45.587400
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('autotune_studies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('server_kind', sa.String(length=40), nullable=False),
    sa.Column('strategy', sa.String(length=60), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('trials_budget', sa.Integer(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('recommendation', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_autotune_studies')),
    sa.UniqueConstraint('name', name=op.f('uq_autotune_studies_name'))
    )
    op.create_table('autotune_trials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('phase', sa.String(length=20), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('config_key', sa.String(length=400), nullable=False),
    sa.Column('objective', sa.Float(), nullable=True),
    sa.Column('feasible', sa.Boolean(), nullable=True),
    sa.Column('violated', sa.JSON(), nullable=True),
    sa.Column('summary', sa.JSON(), nullable=True),
    sa.Column('launch_argv', sa.JSON(), nullable=True),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('server_log_excerpt', sa.Text(), nullable=True),
    sa.Column('launch_seconds', sa.Float(), nullable=True),
    sa.Column('server_pid', sa.Integer(), nullable=True),
    sa.Column('server_create_time', sa.Float(), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['study_id'], ['autotune_studies.id'], name=op.f('fk_autotune_trials_study_id_autotune_studies')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_autotune_trials')),
    sa.UniqueConstraint('study_id', 'number', name='uq_trial_number')
    )
    with op.batch_alter_table('autotune_trials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_autotune_trials_config_key'), ['config_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_autotune_trials_study_id'), ['study_id'], unique=False)

    op.create_table('autotune_samples',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('trial_id', sa.Integer(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('concurrency', sa.Integer(), nullable=False),
    sa.Column('prompt_index', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=80), nullable=False),
    sa.Column('warmup', sa.Boolean(), nullable=False),
    sa.Column('started_s', sa.Float(), nullable=False),
    sa.Column('e2e_s', sa.Float(), nullable=False),
    sa.Column('ttft_s', sa.Float(), nullable=True),
    sa.Column('tpot_s', sa.Float(), nullable=True),
    sa.Column('generated_tokens', sa.Integer(), nullable=False),
    sa.Column('prompt_tokens', sa.Integer(), nullable=True),
    sa.Column('draft_tokens', sa.Integer(), nullable=True),
    sa.Column('draft_accepted', sa.Integer(), nullable=True),
    sa.Column('server_tokens_per_second', sa.Float(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['trial_id'], ['autotune_trials.id'], name=op.f('fk_autotune_samples_trial_id_autotune_trials')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_autotune_samples'))
    )
    with op.batch_alter_table('autotune_samples', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_autotune_samples_trial_id'), ['trial_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('autotune_samples', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_autotune_samples_trial_id'))

    op.drop_table('autotune_samples')
    with op.batch_alter_table('autotune_trials', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_autotune_trials_study_id'))
        batch_op.drop_index(batch_op.f('ix_autotune_trials_config_key'))

    op.drop_table('autotune_trials')
    op.drop_table('autotune_studies')
