"""store large raw mails and blobs in chunks

Revision ID: 0010
Revises: 0009

A raw mail or a blob larger than one chunk keeps an empty value in its
row and its bytes in these tables, so that no process holds it whole.
"""

from alembic import op
import sqlalchemy as sa


revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spool_chunks",
        sa.Column("spool_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["spool_id"], ["spool.id"], name=op.f("fk_spool_chunks_spool_id_spool"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("spool_id", "seq", name=op.f("pk_spool_chunks")),
    )
    op.create_table(
        "blob_chunks",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sha256"], ["blobs.sha256"], name=op.f("fk_blob_chunks_sha256_blobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sha256", "seq", name=op.f("pk_blob_chunks")),
    )


def downgrade() -> None:
    # Chunked values are joined back into their rows first.
    connection = op.get_bind()
    for table, key, column, chunks, chunk_key in (
        ("spool", "id", "raw", "spool_chunks", "spool_id"),
        ("blobs", "sha256", "data", "blob_chunks", "sha256"),
    ):
        owners = connection.execute(
            sa.text(f"SELECT DISTINCT {chunk_key} FROM {chunks}")
        ).scalars().all()
        for owner in owners:
            pieces = connection.execute(
                sa.text(f"SELECT data FROM {chunks} WHERE {chunk_key} = :owner ORDER BY seq"),
                {"owner": owner},
            ).scalars().all()
            connection.execute(
                sa.text(f"UPDATE {table} SET {column} = :data WHERE {key} = :owner"),
                {"data": b"".join(pieces), "owner": owner},
            )
    op.drop_table("blob_chunks")
    op.drop_table("spool_chunks")
