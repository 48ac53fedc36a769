"""Add ticket fields, stages, tags, root causes and custom fields

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 17:38:02.566313
"""

from alembic import op
import sqlalchemy as sa
import store.models


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('custom_fields',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('choices', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_custom_fields')),
    sa.UniqueConstraint('name', name=op.f('uq_custom_fields_name'))
    )
    op.create_table('root_causes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_root_causes')),
    sa.UniqueConstraint('name', name=op.f('uq_root_causes_name'))
    )
    stages = op.create_table('stages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('is_closed', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stages')),
    sa.UniqueConstraint('name', name=op.f('uq_stages_name'))
    )
    # The default stage list; admins edit it, and one stage is always closed.
    op.bulk_insert(stages, [
        {"name": "new", "position": 0, "is_closed": False},
        {"name": "open", "position": 1, "is_closed": False},
        {"name": "pending", "position": 2, "is_closed": False},
        {"name": "closed", "position": 3, "is_closed": True},
    ])
    op.create_table('ticket_field_values',
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('field_id', sa.Integer(), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['field_id'], ['custom_fields.id'], name=op.f('fk_ticket_field_values_field_id_custom_fields')),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_field_values_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('ticket_id', 'field_id', name=op.f('pk_ticket_field_values'))
    )
    op.create_table('ticket_root_causes',
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('root_cause_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['root_cause_id'], ['root_causes.id'], name=op.f('fk_ticket_root_causes_root_cause_id_root_causes')),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_root_causes_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('ticket_id', 'root_cause_id', name=op.f('pk_ticket_root_causes'))
    )
    op.create_table('ticket_tags',
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_tags_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('ticket_id', 'tag', name=op.f('pk_ticket_tags'))
    )
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('removed_at', store.models.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('removed_by', sa.String(length=350), nullable=True))

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('direction', sa.String(length=3), nullable=False, server_default='in'))
        batch_op.add_column(sa.Column('author_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_messages_author_id_users'), 'users', ['author_id'], ['id'])

    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ticket_type', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('assignee_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('escalation_level', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('due_at', store.models.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('keep_postponed', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('closed_at', store.models.UTCDateTime(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_tickets_assignee_id_users'), 'users', ['assignee_id'], ['id'])

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('api_token_hash', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_users_api_token_hash'), ['api_token_hash'])



def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_users_api_token_hash'), type_='unique')
        batch_op.drop_column('api_token_hash')

    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_tickets_assignee_id_users'), type_='foreignkey')
        batch_op.drop_column('closed_at')
        batch_op.drop_column('keep_postponed')
        batch_op.drop_column('due_at')
        batch_op.drop_column('escalation_level')
        batch_op.drop_column('assignee_id')
        batch_op.drop_column('ticket_type')

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_messages_author_id_users'), type_='foreignkey')
        batch_op.drop_column('author_id')
        batch_op.drop_column('direction')

    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_column('removed_by')
        batch_op.drop_column('removed_at')

    op.drop_table('ticket_tags')
    op.drop_table('ticket_root_causes')
    op.drop_table('ticket_field_values')
    op.drop_table('stages')
    op.drop_table('root_causes')
    op.drop_table('custom_fields')
