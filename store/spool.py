"""The spool: raw mail and its envelope, committed before we acknowledge it.

A raw mail of up to ``CHUNK_BYTES`` is stored in its spool row. A larger
one is written to ``spool_chunks`` a chunk at a time, in the same
transaction, and its row keeps an empty ``raw``. ``raw_chunks`` and
``read_raw`` read either form.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.orm import Session, defer, sessionmaker

from store.chunks import CHUNK_BYTES, bytes_chunks, file_chunks, read_chunks, write_chunks
from store.models import SpoolChunk, SpoolEntry, SpoolState, utcnow

log = logging.getLogger(__name__)

_SPOOL_TABLE = SpoolEntry.__table__
# sort_by_parameter_order: the ids come back in the order of the rows.
# SQLAlchemy 2.1 sends one multi-row INSERT for this on PostgreSQL, and one
# INSERT per row on SQLite, whose RETURNING order is not defined.
_INSERT_SPOOL_ROWS = insert(_SPOOL_TABLE).returning(
    _SPOOL_TABLE.c.id, sort_by_parameter_order=True
)


class RawFile:
    """A raw mail in a binary file, such as the SMTP listener writes while
    it receives one; ``len()`` is its size in bytes."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self.file = file
        self.size = size

    def __len__(self) -> int:
        return self.size

    def close(self) -> None:
        self.file.close()


RawMail = bytes | RawFile


def _chunks_of(raw: RawMail) -> Iterator[bytes]:
    return bytes_chunks(raw) if isinstance(raw, bytes) else file_chunks(raw.file)


@dataclass(frozen=True)
class Envelope:
    """The SMTP envelope (or what an MTA's pipe transport passes on)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    source: str
    peer: str | None = None
    helo: str | None = None


def spool_message(sessions: sessionmaker[Session], raw: RawMail, envelope: Envelope) -> int:
    """Write ``raw`` and its envelope to the spool, commit, and return the id.

    Raises whatever the database raises; a caller that acknowledges mail must
    acknowledge only after this returns.
    """
    return spool_messages(sessions, [(raw, envelope)])[0]


def spool_messages(
    sessions: sessionmaker[Session], mails: list[tuple[RawMail, Envelope]]
) -> list[int]:
    """Write every (raw, envelope) of ``mails`` in one transaction, commit,
    log each row, and return their ids in the same order.

    The rows are ORM objects, so hooks on ``sessions`` see them in the
    session (the IMAP reader records where each mail was read that way).
    Raises whatever the database raises, and then none of the rows is
    written.
    """
    with sessions.begin() as session:
        entries = [SpoolEntry(**_spool_row(raw, envelope)) for raw, envelope in mails]
        session.add_all(entries)
        session.flush()
        spool_ids = [entry.id for entry in entries]
        _write_large_raw(session.connection(), spool_ids, mails)
    log_spooled(spool_ids, mails)
    return spool_ids


def insert_spool_rows(connection: Connection, mails: list[tuple[RawMail, Envelope]]) -> list[int]:
    """Insert every (raw, envelope) of ``mails`` in the caller's transaction
    and return their ids in the same order. Logs nothing.

    One transaction of several rows costs one fsync of the log at commit
    (SQLite's WAL, PostgreSQL's WAL), so several mails become durable for
    the price of one. The rows go in through a Core INSERT with RETURNING,
    without the ORM's unit of work.
    """
    rows = [_spool_row(raw, envelope) for raw, envelope in mails]
    spool_ids = list(connection.execute(_INSERT_SPOOL_ROWS, rows).scalars())
    _write_large_raw(connection, spool_ids, mails)
    return spool_ids


def _write_large_raw(
    connection: Connection, spool_ids: list[int], mails: list[tuple[RawMail, Envelope]]
) -> None:
    """Write the raw mail of each row over CHUNK_BYTES as its chunks."""
    for spool_id, (raw, _) in zip(spool_ids, mails):
        if len(raw) > CHUNK_BYTES:
            written = write_chunks(connection, SpoolChunk, spool_id, _chunks_of(raw))
            if written != len(raw):
                raise OSError(
                    f"raw mail changed while it was spooled: {len(raw)} bytes"
                    f" expected, {written} read"
                )


def log_spooled(spool_ids: list[int], mails: list[tuple[RawMail, Envelope]]) -> None:
    """Log one line per spooled mail: its id, size and envelope."""
    for spool_id, (raw, envelope) in zip(spool_ids, mails):
        log.info(
            "spooled id=%s source=%s size=%d from=<%s> rcpt=%s",
            spool_id, envelope.source, len(raw), envelope.mail_from, ",".join(envelope.rcpt_tos),
        )


def _spool_row(raw: RawMail, envelope: Envelope) -> dict[str, object]:
    if len(raw) > CHUNK_BYTES:
        inline = b""
    else:
        inline = raw if isinstance(raw, bytes) else b"".join(_chunks_of(raw))
    return {
        "source": envelope.source,
        "peer": envelope.peer,
        "helo": envelope.helo,
        "mail_from": envelope.mail_from,
        "rcpt_tos": list(envelope.rcpt_tos),
        "raw": inline,
        "size": len(raw),
        "state": SpoolState.PENDING.value,
    }


def raw_chunks(
    sessions: Session | sessionmaker[Session], entry: SpoolEntry
) -> Iterator[bytes]:
    """Yield the raw mail of ``entry`` in chunks.

    Given a sessionmaker rather than a session, each chunk is read in a
    short session of its own, so no transaction stays open between two
    chunks (with SQLite every transaction holds the write lock). A thread
    that holds a transaction passes its session instead: with SQLite a
    new session would wait for that thread's own lock. Raises LookupError
    when stored chunks are missing.
    """
    if len(entry.raw) == entry.size:
        yield entry.raw
        return
    yield from read_chunks(sessions, SpoolChunk, entry.id, entry.size)


def read_raw(sessions: Session | sessionmaker[Session], entry: SpoolEntry) -> bytes:
    """Return the whole raw mail of ``entry``."""
    return b"".join(raw_chunks(sessions, entry))


def lock_spool_entry(session: Session, spool_id: int) -> SpoolEntry | None:
    """Load a spool row for update, so two workers never process it twice.

    The raw mail is loaded only when read (``read_raw``): processing has
    parsed it already and reads it again only to verify DKIM.
    """
    return session.execute(
        select(SpoolEntry).options(defer(SpoolEntry.raw))
        .where(SpoolEntry.id == spool_id).with_for_update()
    ).scalar_one_or_none()


def finish_spool_entry(
    entry: SpoolEntry,
    state: SpoolState,
    *,
    error: str | None = None,
    ticket_id: int | None = None,
) -> None:
    entry.state = state.value
    entry.error = error
    entry.processed_at = utcnow()
    if ticket_id is not None:
        entry.ticket_id = ticket_id


def mark_failed(sessions: sessionmaker[Session], spool_id: int, error: str) -> None:
    """Record a processing error in its own transaction."""
    with sessions.begin() as session:
        entry = lock_spool_entry(session, spool_id)
        if entry is None or entry.state != SpoolState.PENDING.value:
            return
        entry.attempts += 1
        finish_spool_entry(entry, SpoolState.FAILED, error=error)


def pending_spool_ids(
    sessions: sessionmaker[Session], *, received_before: datetime | None = None, limit: int = 1000
) -> list[int]:
    """Return ids of rows waiting for processing, oldest first."""
    query = select(SpoolEntry.id).where(SpoolEntry.state == SpoolState.PENDING.value)
    if received_before is not None:
        query = query.where(SpoolEntry.received_at < received_before)
    with sessions() as session:
        return list(session.scalars(query.order_by(SpoolEntry.id).limit(limit)))


def list_spool(
    sessions: sessionmaker[Session], *, state: str | None = None, limit: int = 100
) -> list[SpoolEntry]:
    query = select(SpoolEntry).order_by(SpoolEntry.id.desc()).limit(limit)
    if state:
        query = query.where(SpoolEntry.state == state)
    with sessions() as session:
        return list(session.scalars(query))


def get_spool_entry(sessions: sessionmaker[Session], spool_id: int) -> SpoolEntry | None:
    with sessions() as session:
        return session.get(SpoolEntry, spool_id)


RETRYABLE_STATES = (SpoolState.FAILED.value, SpoolState.REJECTED.value)


def retry_spool_entry(sessions: sessionmaker[Session], spool_id: int) -> bool:
    """Put a failed or rejected row back to pending; return False if it was not."""
    with sessions.begin() as session:
        result = session.execute(
            update(SpoolEntry)
            .where(SpoolEntry.id == spool_id, SpoolEntry.state.in_(RETRYABLE_STATES))
            .values(state=SpoolState.PENDING.value, error=None, processed_at=None)
        )
    retried = result.rowcount == 1
    if retried:
        log.info("spool id=%s set back to pending", spool_id)
    return retried


def stale_cutoff(age_seconds: float) -> datetime:
    return utcnow() - timedelta(seconds=age_seconds)
