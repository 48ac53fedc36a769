"""The content store: attachment bytes, stored once per SHA-256.

A blob of more than ``CHUNK_BYTES`` is written to ``blob_chunks`` one chunk
at a time, from memory or from a file, and its row keeps an empty
``data``. The hash is always computed here, never taken from the caller,
so content stored under a hash is the content with that hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from store.chunks import CHUNK_BYTES, bytes_chunks, file_chunks, read_chunks, write_chunks
from store.models import Blob, BlobChunk


def _insert_row(session: Session, digest: str, size: int, data: bytes) -> bool:
    """Insert the blob's row unless it exists; return True when inserted."""
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    inserted = session.scalar(
        insert(Blob)
        .values(sha256=digest, size=size, data=data)
        .on_conflict_do_nothing(index_elements=["sha256"])
        .returning(Blob.sha256)
    )
    return inserted is not None


def store_blob(session: Session, data: bytes) -> str:
    """Store ``data`` once per content hash and return the hash."""
    digest = hashlib.sha256(data).hexdigest()
    if len(data) <= CHUNK_BYTES:
        _insert_row(session, digest, len(data), data)
    elif _insert_row(session, digest, len(data), b""):
        write_chunks(session, BlobChunk, digest, bytes_chunks(data))
    return digest


def store_blob_file(session: Session, path: Path) -> tuple[str, int]:
    """Store the content of the file at ``path`` once per content hash,
    reading it a chunk at a time. Return the hash and the size in bytes."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        for chunk in file_chunks(file):
            digest.update(chunk)
            size += len(chunk)
        sha256 = digest.hexdigest()
        if size <= CHUNK_BYTES:
            file.seek(0)
            _insert_row(session, sha256, size, file.read())
        elif _insert_row(session, sha256, size, b""):
            written = write_chunks(session, BlobChunk, sha256, file_chunks(file))
            if written != size:
                raise OSError(
                    f"{path} changed while it was stored: {size} bytes hashed, {written} stored"
                )
    return sha256, size


def blob_chunks(session: Session, sha256: str) -> Iterator[bytes]:
    """Yield the content of a blob in chunks; raise LookupError when it is missing."""
    blob = session.get(Blob, sha256)
    if blob is None:
        raise LookupError(f"blob {sha256} not found")
    if len(blob.data) == blob.size:
        yield blob.data
        return
    yield from read_chunks(session, BlobChunk, sha256, blob.size)


def read_blob(session: Session, sha256: str) -> bytes | None:
    """Return the whole content of a blob, or None when it is missing."""
    if session.get(Blob, sha256) is None:
        return None
    return b"".join(blob_chunks(session, sha256))
