"""The outbox: rendered mail written in the transaction that caused it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from store.history import SYSTEM_ACTOR, record_history
from store.models import OutboxEntry, OutboxState, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingMail:
    kind: str
    mail_from: str
    rcpt_to: str
    message_id: str
    raw: bytes
    ticket_id: int | None


def add_to_outbox(session: Session, mail: OutgoingMail) -> OutboxEntry:
    entry = OutboxEntry(
        ticket_id=mail.ticket_id,
        kind=mail.kind,
        mail_from=mail.mail_from,
        rcpt_to=mail.rcpt_to,
        message_id=mail.message_id,
        raw=mail.raw,
        state=OutboxState.PENDING.value,
    )
    session.add(entry)
    return entry


@dataclass(frozen=True)
class LeasedEntry:
    """An outbox row leased to one worker, with what sending it needs.

    ``attempts`` is the count the lease set. A later lease of the same row
    raises it, so it also identifies the lease.
    """

    id: int
    ticket_id: int | None
    kind: str
    mail_from: str
    rcpt_to: str
    raw: bytes
    attempts: int


def lease_due_entries(
    session: Session,
    outbox_id: int,
    *,
    others: int,
    max_bytes: int,
    lease_seconds: float,
) -> list[LeasedEntry]:
    """Lease ``outbox_id`` and up to ``others`` more rows that are pending
    and due, oldest first, for ``lease_seconds``; return them in that order.

    Each lease adds one to the row's attempt count and moves its next
    attempt to the end of the lease, so no other worker takes the row
    before then. Rows already leased, sent or dead are left out, so the
    result may be empty. The rows stop once their mails add up to
    ``max_bytes``, but the first row is always included. On PostgreSQL rows
    that another transaction has locked are skipped (``SKIP LOCKED``); on
    SQLite the transaction holds the database's write lock.
    """
    now = utcnow()
    table = OutboxEntry.__table__
    pending = table.c.state == OutboxState.PENDING.value
    due = pending & (table.c.next_attempt_at <= now)
    sizes = select(table.c.id, func.length(table.c.raw))
    sizes = sizes.with_for_update(skip_locked=True)
    candidates = list(session.execute(sizes.where(due, table.c.id == outbox_id)))
    if others > 0:
        oldest = sizes.where(due, table.c.id != outbox_id).order_by(table.c.id)
        candidates += session.execute(oldest.limit(others))
    chosen: list[int] = []
    total_bytes = 0
    for row_id, size in candidates:
        if chosen and total_bytes + (size or 0) > max_bytes:
            break
        chosen.append(row_id)
        total_bytes += size or 0
    if not chosen:
        return []
    leased = session.execute(
        update(table)
        .where(table.c.id.in_(chosen), due)
        .values(
            next_attempt_at=now + timedelta(seconds=lease_seconds),
            attempts=table.c.attempts + 1,
        )
        .returning(
            table.c.id, table.c.ticket_id, table.c.kind, table.c.mail_from,
            table.c.rcpt_to, table.c.raw, table.c.attempts,
        )
    )
    entries = {row.id: LeasedEntry(*row) for row in leased}
    return [entries[row_id] for row_id in chosen if row_id in entries]


def mark_sent(session: Session, entries: list[LeasedEntry]) -> set[int]:
    """Mark the rows sent and write a ``<kind>_sent`` history row for each
    one with a ticket; return the ids changed.

    A pending row is changed even when its lease has ended, because its
    mail was sent. A row already sent or dead is left alone.
    """
    if not entries:
        return set()
    table = OutboxEntry.__table__
    changed = set(session.scalars(
        update(table)
        .where(
            table.c.id.in_([entry.id for entry in entries]),
            table.c.state == OutboxState.PENDING.value,
        )
        .values(state=OutboxState.SENT.value, last_error=None, sent_at=utcnow())
        .returning(table.c.id)
    ))
    for entry in entries:
        if entry.id in changed and entry.ticket_id is not None:
            record_history(
                session, entry.ticket_id, actor=SYSTEM_ACTOR, channel="worker",
                action=f"{entry.kind}_sent", outbox_id=entry.id,
                rcpt_to=entry.rcpt_to, error=None,
            )
    return changed


def mark_dead(session: Session, entry: LeasedEntry, error: str) -> bool:
    """Mark the row dead with ``error`` and write a ``<kind>_failed``
    history row; False when the lease is no longer this worker's."""
    dead = OutboxState.DEAD.value
    if not _update_leased(session, entry, state=dead, last_error=error):
        return False
    if entry.ticket_id is not None:
        record_history(
            session, entry.ticket_id, actor=SYSTEM_ACTOR, channel="worker",
            action=f"{entry.kind}_failed", outbox_id=entry.id,
            rcpt_to=entry.rcpt_to, error=error,
        )
    return True


def reschedule(
    session: Session, entry: LeasedEntry, error: str, delay_seconds: float
) -> bool:
    """Keep the row pending until ``delay_seconds`` from now, with ``error``,
    and write a ``<kind>_retry`` history row; False when the lease is no
    longer this worker's."""
    next_attempt_at = utcnow() + timedelta(seconds=delay_seconds)
    if not _update_leased(
        session, entry, last_error=error, next_attempt_at=next_attempt_at
    ):
        return False
    if entry.ticket_id is not None:
        record_history(
            session, entry.ticket_id, actor=SYSTEM_ACTOR, channel="worker",
            action=f"{entry.kind}_retry", outbox_id=entry.id,
            rcpt_to=entry.rcpt_to, attempt=entry.attempts, error=error,
            retry_in_seconds=round(delay_seconds, 1),
        )
    return True


def release(session: Session, entries: list[LeasedEntry]) -> int:
    """End the leases of rows that were not sent: they are due at once and
    their attempt counts go back down. Return how many were released."""
    table = OutboxEntry.__table__
    released = 0
    for entry in entries:
        released += _update_leased(
            session, entry, attempts=table.c.attempts - 1, next_attempt_at=utcnow()
        )
    return released


def _update_leased(session: Session, entry: LeasedEntry, **values: object) -> bool:
    """Update a pending row whose lease is still the one that ``entry`` holds."""
    table = OutboxEntry.__table__
    result = session.execute(
        update(table)
        .where(
            table.c.id == entry.id,
            table.c.state == OutboxState.PENDING.value,
            table.c.attempts == entry.attempts,
        )
        .values(**values)
    )
    return result.rowcount == 1


def count_recent(session: Session, kind: str, rcpt_to: str, since: datetime) -> int:
    """Count mail of ``kind`` queued since ``since`` for ``rcpt_to`` or for
    the same mailbox with any ``+tag``, which some auto-responders change on
    every mail."""
    local, _, domain = rcpt_to.lower().rpartition("@")
    base = local.partition("+")[0]
    return session.scalar(
        select(func.count(OutboxEntry.id)).where(
            OutboxEntry.kind == kind,
            or_(
                OutboxEntry.rcpt_to == f"{base}@{domain}",
                OutboxEntry.rcpt_to.like(f"{_escape_like(base)}+%@{_escape_like(domain)}", escape="\\"),
            ),
            OutboxEntry.created_at >= since,
        )
    ) or 0


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def due_outbox_ids(sessions: sessionmaker[Session], *, limit: int = 1000) -> list[int]:
    """Return ids of pending rows whose next attempt is due."""
    query = (
        select(OutboxEntry.id)
        .where(
            OutboxEntry.state == OutboxState.PENDING.value,
            OutboxEntry.next_attempt_at <= utcnow(),
        )
        .order_by(OutboxEntry.id)
        .limit(limit)
    )
    with sessions() as session:
        return list(session.scalars(query))


def list_outbox(
    sessions: sessionmaker[Session], *, state: str | None = None, limit: int = 100
) -> list[OutboxEntry]:
    query = select(OutboxEntry).order_by(OutboxEntry.id.desc()).limit(limit)
    if state:
        query = query.where(OutboxEntry.state == state)
    with sessions() as session:
        return list(session.scalars(query))


def get_outbox_entry(sessions: sessionmaker[Session], outbox_id: int) -> OutboxEntry | None:
    with sessions() as session:
        return session.get(OutboxEntry, outbox_id)


def retry_outbox_entry(sessions: sessionmaker[Session], outbox_id: int) -> bool:
    """Put a dead row back to pending with a fresh attempt count."""
    with sessions.begin() as session:
        result = session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.id == outbox_id, OutboxEntry.state == OutboxState.DEAD.value)
            .values(
                state=OutboxState.PENDING.value, attempts=0, next_attempt_at=utcnow()
            )
        )
    return result.rowcount == 1
