"""The outbox: rendered mail written in the transaction that caused it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

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


def lock_outbox_entry(session: Session, outbox_id: int) -> OutboxEntry | None:
    return session.execute(
        select(OutboxEntry).where(OutboxEntry.id == outbox_id).with_for_update()
    ).scalar_one_or_none()


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
