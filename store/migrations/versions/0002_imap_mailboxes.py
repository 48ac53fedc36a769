"""add IMAP mailboxes, their folders and the mail read from them

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa
import store.models


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imap_mailboxes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("security", sa.String(length=10), nullable=False),
        sa.Column("verify_certificate", sa.Boolean(), nullable=False),
        sa.Column("ca_file", sa.String(length=1000), nullable=True),
        sa.Column("username", sa.String(length=320), nullable=False),
        sa.Column("auth", sa.String(length=10), nullable=False),
        sa.Column("password", sa.String(length=1000), nullable=True),
        sa.Column("token_command", sa.Text(), nullable=True),
        sa.Column("folders", sa.JSON(), nullable=False),
        sa.Column("queue_id", sa.Integer(), nullable=False),
        sa.Column("after", sa.String(length=10), nullable=False),
        sa.Column("move_to", sa.String(length=1000), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", store.models.UTCDateTime(), nullable=False),
        sa.Column("last_ok_at", store.models.UTCDateTime(), nullable=True),
        sa.Column("failing_since", store.models.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", store.models.UTCDateTime(), nullable=True),
        sa.Column("alerted_at", store.models.UTCDateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_until", store.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["queue_id"], ["queues.id"], name=op.f("fk_imap_mailboxes_queue_id_queues")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imap_mailboxes")),
        sa.UniqueConstraint("name", name=op.f("uq_imap_mailboxes_name")),
    )
    op.create_table(
        "imap_folders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=1000), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("start_uid", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", store.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["imap_mailboxes.id"],
            name=op.f("fk_imap_folders_mailbox_id_imap_mailboxes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imap_folders")),
        sa.UniqueConstraint("mailbox_id", "name", name="uq_imap_folders_mailbox_id_name"),
    )
    op.create_table(
        "imap_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("folder", sa.String(length=1000), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("spool_id", sa.Integer(), nullable=False),
        sa.Column("action_pending", sa.Boolean(), nullable=False),
        sa.Column("spooled_at", store.models.UTCDateTime(), nullable=False),
        sa.Column("acted_at", store.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["imap_mailboxes.id"],
            name=op.f("fk_imap_messages_mailbox_id_imap_mailboxes"),
        ),
        sa.ForeignKeyConstraint(
            ["spool_id"], ["spool.id"], name=op.f("fk_imap_messages_spool_id_spool")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imap_messages")),
        sa.UniqueConstraint("mailbox_id", "sha256", name="uq_imap_messages_mailbox_id_sha256"),
    )
    op.create_index(
        "ix_imap_messages_mailbox_id_action_pending",
        "imap_messages",
        ["mailbox_id", "action_pending"],
    )


def downgrade() -> None:
    op.drop_index("ix_imap_messages_mailbox_id_action_pending", table_name="imap_messages")
    op.drop_table("imap_messages")
    op.drop_table("imap_folders")
    op.drop_table("imap_mailboxes")
