"""count hard bounces per address, to suppress mail to dead addresses

Revision ID: 0007
Revises: 0006
"""

from alembic import op
import sqlalchemy as sa
import store.models


revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('address_bounces',
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('hard_bounces', sa.Integer(), nullable=False),
    sa.Column('last_status', sa.String(length=32), nullable=False),
    sa.Column('last_diagnostic', sa.Text(), nullable=False),
    sa.Column('last_bounce_at', store.models.UTCDateTime(), nullable=False),
    sa.Column('suppressed_at', store.models.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('email', name=op.f('pk_address_bounces'))
    )


def downgrade() -> None:
    op.drop_table('address_bounces')
