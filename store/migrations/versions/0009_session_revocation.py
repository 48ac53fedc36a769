"""end web sessions on sign-out

Revision ID: 0009
Revises: 0008
"""

from alembic import op
import sqlalchemy as sa
import store.models


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("sessions_revoked_at", store.models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("sessions_revoked_at")
