"""Operations on tickets; each writes its own history rows.

These functions run inside a caller's transaction and never commit, so a
change, its history and the mail it causes commit together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from store.blobs import store_blob, store_blob_file
from store.directory import normalize_address
from store.history import customer_actor, record_history, user_actor
from store.models import (
    Attachment,
    Message,
    Note,
    OutboxEntry,
    Participant,
    Queue,
    Ticket,
    User,
    utcnow,
)


@dataclass(frozen=True)
class NewAttachment:
    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None
    inline: bool = False
    # A file holding the content instead of ``data``, which is then empty;
    # it is stored a chunk at a time.
    path: Path | None = None


@dataclass(frozen=True)
class NewMessage:
    """A customer-side mail to store on a ticket."""

    from_name: str
    from_email: str
    subject: str
    text: str
    html: str | None
    message_id: str | None
    spool_id: int | None
    attachments: tuple[NewAttachment, ...] = ()
    automatic: bool = False
    trimmed: str = ""


def _store_blob(session: Session, item: NewAttachment) -> tuple[str, int]:
    """Store the content of ``item``; return its hash and size in bytes."""
    if item.path is not None:
        return store_blob_file(session, item.path)
    return store_blob(session, item.data), len(item.data)


def _add_attachments(
    session: Session,
    ticket: Ticket,
    attachments: Iterable[NewAttachment],
    *,
    message: Message | None = None,
    note: Note | None = None,
) -> list[Attachment]:
    stored = []
    for item in attachments:
        sha256, size = _store_blob(session, item)
        stored.append(
            Attachment(
                ticket_id=ticket.id,
                message_id=message.id if message else None,
                note_id=note.id if note else None,
                filename=item.filename,
                content_type=item.content_type,
                size=size,
                content_id=item.content_id,
                inline=item.inline,
                blob_sha256=sha256,
            )
        )
    session.add_all(stored)
    return stored


def create_ticket(
    session: Session,
    queue: Queue,
    message: NewMessage,
    *,
    participants: Iterable[tuple[str, str]] = (),
    channel: str = "email",
) -> Ticket:
    """Create a ticket from a customer's first mail, with its history."""
    requester = normalize_address(message.from_email)
    ticket = Ticket(
        subject=message.subject,
        requester_name=message.from_name,
        requester_email=requester,
        queue_id=queue.id,
    )
    session.add(ticket)
    session.flush()
    actor = customer_actor(requester)
    record_history(
        session, ticket.id, actor=actor, channel=channel, action="ticket_created",
        queue=queue.name, spool_id=message.spool_id,
    )
    seen = {requester}
    for email, name in participants:
        email = normalize_address(email)
        if email and email not in seen:
            seen.add(email)
            session.add(Participant(ticket_id=ticket.id, email=email, name=name))
    add_message(session, ticket, message, channel=channel)
    return ticket


def add_message(
    session: Session, ticket: Ticket, message: NewMessage, *, channel: str = "email"
) -> Message:
    """Add a customer-side mail to a ticket, with its attachments and history."""
    stored = Message(
        ticket_id=ticket.id,
        spool_id=message.spool_id,
        message_id=message.message_id,
        from_name=message.from_name,
        from_email=normalize_address(message.from_email),
        subject=message.subject,
        text=message.text,
        trimmed=message.trimmed,
        html=message.html,
        automatic=message.automatic,
    )
    session.add(stored)
    session.flush()
    attachments = _add_attachments(session, ticket, message.attachments, message=stored)
    ticket.updated_at = utcnow()
    record_history(
        session, ticket.id, actor=customer_actor(stored.from_email), channel=channel,
        action="message_added", message_id=stored.id, spool_id=message.spool_id,
        attachments=len(attachments), automatic=message.automatic,
    )
    return stored


def add_note(
    session: Session,
    ticket: Ticket,
    author: User,
    body: str,
    *,
    channel: str,
    trimmed: str = "",
    spool_id: int | None = None,
    attachments: Iterable[NewAttachment] = (),
) -> Note:
    """Add an internal note by ``author``; notes are never sent to the customer."""
    note = Note(
        ticket_id=ticket.id,
        author_id=author.id,
        spool_id=spool_id,
        channel=channel,
        body=body,
        trimmed=trimmed,
    )
    session.add(note)
    session.flush()
    stored = _add_attachments(session, ticket, attachments, note=note)
    ticket.updated_at = utcnow()
    record_history(
        session, ticket.id, actor=user_actor(author.username), channel=channel,
        action="note_added", note_id=note.id, spool_id=spool_id, attachments=len(stored),
    )
    return note


def find_ticket_by_message_ids(session: Session, message_ids: Iterable[str]) -> Ticket | None:
    """Return the ticket one of ``message_ids`` belongs to, received or sent."""
    ids = [value for value in message_ids if value]
    if not ids:
        return None
    ticket_id = session.scalar(
        select(Message.ticket_id).where(Message.message_id.in_(ids)).limit(1)
    )
    if ticket_id is None:
        ticket_id = session.scalar(
            select(OutboxEntry.ticket_id)
            .where(OutboxEntry.message_id.in_(ids), OutboxEntry.ticket_id.is_not(None))
            .limit(1)
        )
    return session.get(Ticket, ticket_id) if ticket_id is not None else None


def is_participant(session: Session, ticket: Ticket, email: str) -> bool:
    """True when ``email`` is the ticket's requester or one of its participants."""
    email = normalize_address(email)
    if email == ticket.requester_email:
        return True
    return session.scalar(
        select(Participant.id).where(
            Participant.ticket_id == ticket.id, Participant.email == email
        )
    ) is not None


def load_ticket(session: Session, ticket_id: int) -> Ticket | None:
    """Load a ticket with everything ``tickets show`` prints."""
    return session.scalar(
        select(Ticket)
        .where(Ticket.id == ticket_id)
        .options(
            selectinload(Ticket.queue),
            selectinload(Ticket.messages).selectinload(Message.attachments),
            selectinload(Ticket.notes).selectinload(Note.author),
            selectinload(Ticket.notes).selectinload(Note.attachments),
            selectinload(Ticket.history),
            selectinload(Ticket.participants),
        )
    )


def list_tickets(
    session: Session, *, queue: str | None = None, limit: int = 100
) -> list[Ticket]:
    query = select(Ticket).options(selectinload(Ticket.queue)).order_by(Ticket.id.desc())
    if queue:
        query = query.join(Queue).where(or_(Queue.name == queue, Queue.address == queue))
    return list(session.scalars(query.limit(limit)))
