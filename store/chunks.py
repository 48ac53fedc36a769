"""Values too large for one row, stored as numbered chunks in a table of
their own (``spool_chunks``, ``blob_chunks``).

A value of more than ``CHUNK_BYTES`` leaves its own column empty and is
written and read one chunk at a time. So no process has it whole in
memory: not the driver binding a parameter, not SQLite assembling a
column value, and not the caller. Smaller values stay in their row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

from sqlalchemy import Connection, insert, select
from sqlalchemy.orm import Session, sessionmaker

from store.models import BlobChunk, SpoolChunk

CHUNK_BYTES = 1024 * 1024

ChunkTable = type[SpoolChunk] | type[BlobChunk]


def _key_column(table: ChunkTable) -> str:
    return "spool_id" if table is SpoolChunk else "sha256"


def bytes_chunks(data: bytes) -> Iterator[bytes]:
    """Yield ``data`` in pieces of ``CHUNK_BYTES``."""
    view = memoryview(data)
    for start in range(0, len(data), CHUNK_BYTES):
        yield bytes(view[start : start + CHUNK_BYTES])


def file_chunks(file: BinaryIO) -> Iterator[bytes]:
    """Yield the content of ``file`` from its start in pieces of ``CHUNK_BYTES``."""
    file.seek(0)
    while chunk := file.read(CHUNK_BYTES):
        yield chunk


def write_chunks(
    session: Session | Connection, table: ChunkTable, key: int | str, chunks: Iterable[bytes]
) -> int:
    """Insert ``chunks`` in order as the value of ``key``; return their total size.

    Each chunk is its own INSERT, so only one chunk is bound at a time.
    """
    key_column = _key_column(table)
    total = 0
    for seq, chunk in enumerate(chunks):
        session.execute(insert(table), {key_column: key, "seq": seq, "data": chunk})
        total += len(chunk)
    return total


def read_chunks(
    sessions: Session | sessionmaker[Session], table: ChunkTable, key: int | str, size: int
) -> Iterator[bytes]:
    """Yield the chunks of ``key`` in order, each read by a query of its own.

    Given a sessionmaker rather than a session, each query runs in a short
    session of its own. Raises LookupError when the chunks found do not
    add up to ``size``.
    """
    key_column = getattr(table, _key_column(table))
    seq = total = 0
    while total < size:
        query = select(table.data).where(key_column == key, table.seq == seq)
        if isinstance(sessions, Session):
            chunk = sessions.scalar(query)
        else:
            with sessions() as session:
                chunk = session.scalar(query)
        if not chunk:
            break
        total += len(chunk)
        seq += 1
        yield chunk
    if total != size:
        raise LookupError(
            f"{table.__tablename__} of {key!r} contain {total} bytes, expected {size}"
        )
