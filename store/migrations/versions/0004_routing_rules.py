"""Add routing rules, their change history and routing decisions

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 17:49:25.013714
"""

from alembic import op
import sqlalchemy as sa
import store.models


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('routing_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('scope', sa.String(length=10), nullable=False),
    sa.Column('match_mode', sa.String(length=3), nullable=False),
    sa.Column('conditions', sa.JSON(), nullable=False),
    sa.Column('actions', sa.JSON(), nullable=False),
    sa.Column('stop', sa.Boolean(), nullable=False),
    sa.Column('created_at', store.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', store.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_routing_rules')),
    sa.UniqueConstraint('name', name=op.f('uq_routing_rules_name'))
    )
    with op.batch_alter_table('routing_rules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_routing_rules_position'), ['position'], unique=False)

    op.create_table('rule_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', store.models.UTCDateTime(), nullable=False),
    sa.Column('actor', sa.String(length=350), nullable=False),
    sa.Column('channel', sa.String(length=20), nullable=False),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('rule_id', sa.Integer(), nullable=False),
    sa.Column('rule_name', sa.String(length=200), nullable=False),
    sa.Column('before', sa.JSON(), nullable=True),
    sa.Column('after', sa.JSON(), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rule_history'))
    )
    with op.batch_alter_table('rule_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rule_history_rule_id'), ['rule_id'], unique=False)

    op.create_table('routing_decisions',
    sa.Column('spool_id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('scope', sa.String(length=10), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('rule_set_revision', sa.Integer(), nullable=False),
    sa.Column('decided_at', store.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['spool_id'], ['spool.id'], name=op.f('fk_routing_decisions_spool_id_spool')),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_routing_decisions_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('spool_id', name=op.f('pk_routing_decisions'))
    )


def downgrade() -> None:
    op.drop_table('routing_decisions')
    with op.batch_alter_table('rule_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rule_history_rule_id'))

    op.drop_table('rule_history')
    with op.batch_alter_table('routing_rules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_routing_rules_position'))

    op.drop_table('routing_rules')
