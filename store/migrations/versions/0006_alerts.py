"""Add alert subscriptions and tray items

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 17:54:49.906096
"""

from alembic import op
import sqlalchemy as sa
import store.models


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alert_subscriptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('queue_id', sa.Integer(), nullable=True),
    sa.Column('events', sa.JSON(), nullable=False),
    sa.Column('channels', sa.JSON(), nullable=False),
    sa.Column('push_url', sa.String(length=2000), nullable=True),
    sa.Column('push_secret', sa.String(length=128), nullable=True),
    sa.Column('created_at', store.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['queue_id'], ['queues.id'], name=op.f('fk_alert_subscriptions_queue_id_queues')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_alert_subscriptions_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_subscriptions'))
    )
    with op.batch_alter_table('alert_subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_subscriptions_user_id'), ['user_id'], unique=False)

    op.create_table('tray_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=False),
    sa.Column('history_id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(length=50), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', store.models.UTCDateTime(), nullable=False),
    sa.Column('read_at', store.models.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['history_id'], ['history.id'], name=op.f('fk_tray_items_history_id_history')),
    sa.ForeignKeyConstraint(['subscription_id'], ['alert_subscriptions.id'], name=op.f('fk_tray_items_subscription_id_alert_subscriptions')),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_tray_items_ticket_id_tickets')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_tray_items_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tray_items')),
    sa.UniqueConstraint('subscription_id', 'history_id', name=op.f('uq_tray_items_subscription_id'))
    )
    with op.batch_alter_table('tray_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tray_items_user_id'), ['user_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('tray_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tray_items_user_id'))

    op.drop_table('tray_items')
    with op.batch_alter_table('alert_subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_subscriptions_user_id'))

    op.drop_table('alert_subscriptions')
