"""SQLAlchemy models of the store.

Times are stored in UTC through one column type. Enums are stored by value as
short strings, so Alembic and people reading the database see words.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Annotated, Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored without zone as UTC and read back as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=timezone.utc) if value is not None else None


int_pk = Annotated[int, mapped_column(Integer, primary_key=True)]
created_at = Annotated[datetime, mapped_column(UTCDateTime, default=utcnow)]
email_address = Annotated[str, mapped_column(String(320))]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Role(str, enum.Enum):
    FRONTLINE = "frontline"
    MANAGER = "manager"
    ADMIN = "admin"
    # Someone outside the organisation a ticket was forwarded to: no
    # permissions, but a reply to the forward becomes a note marked as theirs.
    EXTERNAL = "external"


class SpoolState(str, enum.Enum):
    """The processing state of a spooled mail."""

    PENDING = "pending"  # waiting for a worker
    PROCESSED = "processed"  # made or changed a ticket
    DUPLICATE = "duplicate"  # the same mail was processed before
    REJECTED = "rejected"  # refused on purpose, e.g. a forged reply token
    IGNORED = "ignored"  # nothing to do, e.g. an automatic reply on a ticket
    HELD = "held"  # kept for review, e.g. a reply failing DMARC; ``spool release``
    FAILED = "failed"  # an error; ``mailgate spool retry`` tries again


class OutboxState(str, enum.Enum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


class Queue(Base):
    __tablename__ = "queues"

    id: Mapped[int_pk]
    name: Mapped[str] = mapped_column(String(200), unique=True)
    address: Mapped[email_address] = mapped_column(unique=True)
    created_at: Mapped[created_at]

    agents: Mapped[list[User]] = relationship(
        secondary="queue_agents", back_populates="queues", order_by="User.id"
    )


class User(Base):
    __tablename__ = "users"

    id: Mapped[int_pk]
    username: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[email_address] = mapped_column(unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(20), default=Role.FRONTLINE.value)
    # SHA-256 of the user's HTTP API token; the token itself is never stored.
    api_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Argon2id hash of the web sign-in password; None: the user cannot sign in.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # Web sessions started before this time are ended: set by sign-out,
    # which thereby ends the user's sessions in every browser.
    sessions_revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[created_at]

    queues: Mapped[list[Queue]] = relationship(
        secondary="queue_agents", back_populates="agents", order_by="Queue.id"
    )


class QueueAgent(Base):
    __tablename__ = "queue_agents"

    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)


class SpoolEntry(Base):
    """A raw mail exactly as received, with its envelope."""

    __tablename__ = "spool"
    __table_args__ = (Index("ix_spool_state_id", "state", "id"),)

    id: Mapped[int_pk]
    received_at: Mapped[created_at]
    source: Mapped[str] = mapped_column(String(20))  # smtp, ingest, imap
    peer: Mapped[str | None] = mapped_column(String(200))
    helo: Mapped[str | None] = mapped_column(String(255))
    mail_from: Mapped[str] = mapped_column(String(320), default="")
    rcpt_tos: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The whole mail, or empty when it is larger than one chunk and stored
    # in spool_chunks instead (see store/spool.py).
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20), default=SpoolState.PENDING.value)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_id: Mapped[str | None] = mapped_column(String(998))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))


class SpoolChunk(Base):
    """One piece, in order, of a raw mail too large for its spool row."""

    __tablename__ = "spool_chunks"

    spool_id: Mapped[int] = mapped_column(
        ForeignKey("spool.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ProcessedMail(Base):
    """One row per distinct mail processed; its key enforces deduplication."""

    __tablename__ = "processed_mail"

    dedupe_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    spool_id: Mapped[int] = mapped_column(ForeignKey("spool.id"))


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[int_pk]
    subject: Mapped[str] = mapped_column(Text, default="")
    requester_name: Mapped[str] = mapped_column(String(200), default="")
    requester_email: Mapped[email_address]
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id"))
    stage: Mapped[str] = mapped_column(String(50), default="new")
    ticket_type: Mapped[str | None] = mapped_column(String(100))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A postponement normally ends when the customer writes; this keeps it.
    keep_postponed: Mapped[bool] = mapped_column(default=False)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[created_at]
    updated_at: Mapped[created_at]

    queue: Mapped[Queue] = relationship()
    assignee: Mapped[User | None] = relationship()
    tags: Mapped[list[TicketTag]] = relationship(
        order_by="TicketTag.tag", cascade="all, delete-orphan"
    )
    root_causes: Mapped[list[RootCause]] = relationship(
        secondary="ticket_root_causes", order_by="RootCause.name"
    )
    field_values: Mapped[list[TicketFieldValue]] = relationship(cascade="all, delete-orphan")
    watchers: Mapped[list[User]] = relationship(secondary="ticket_watchers", order_by="User.id")
    messages: Mapped[list[Message]] = relationship(
        back_populates="ticket", order_by="Message.id"
    )
    notes: Mapped[list[Note]] = relationship(back_populates="ticket", order_by="Note.id")
    participants: Mapped[list[Participant]] = relationship(
        back_populates="ticket", order_by="Participant.id"
    )
    history: Mapped[list[HistoryEntry]] = relationship(order_by="HistoryEntry.id")


class Stage(Base):
    """One stage of the ordered, configurable stage list."""

    __tablename__ = "stages"

    id: Mapped[int_pk]
    name: Mapped[str] = mapped_column(String(50), unique=True)
    position: Mapped[int] = mapped_column(Integer)
    is_closed: Mapped[bool] = mapped_column(default=False)


class RootCause(Base):
    __tablename__ = "root_causes"

    id: Mapped[int_pk]
    name: Mapped[str] = mapped_column(String(200), unique=True)


class TicketRootCause(Base):
    __tablename__ = "ticket_root_causes"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    root_cause_id: Mapped[int] = mapped_column(ForeignKey("root_causes.id"), primary_key=True)


class TicketTag(Base):
    __tablename__ = "ticket_tags"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)


class CustomField(Base):
    """An admin-defined ticket field: text, number, date, choice or multichoice."""

    __tablename__ = "custom_fields"

    id: Mapped[int_pk]
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    choices: Mapped[list[str]] = mapped_column(JSON, default=list)


class TicketFieldValue(Base):
    __tablename__ = "ticket_field_values"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    field_id: Mapped[int] = mapped_column(ForeignKey("custom_fields.id"), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)

    field: Mapped[CustomField] = relationship()


class TicketWatcher(Base):
    """A user who gets "Ticket Updated" mail for a ticket."""

    __tablename__ = "ticket_watchers"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)


class Participant(Base):
    """An address, besides the requester, whose mail may add to the ticket."""

    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("ticket_id", "email"),)

    id: Mapped[int_pk]
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    email: Mapped[email_address]
    name: Mapped[str] = mapped_column(String(200), default="")

    ticket: Mapped[Ticket] = relationship(back_populates="participants")


class Message(Base):
    """A mail from the customer side, stored on its ticket."""

    __tablename__ = "messages"

    id: Mapped[int_pk]
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    spool_id: Mapped[int | None] = mapped_column(ForeignKey("spool.id"))
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    from_name: Mapped[str] = mapped_column(String(200), default="")
    from_email: Mapped[email_address]
    subject: Mapped[str] = mapped_column(Text, default="")
    # The customer's new text. On follow-ups the quoted thread is moved to
    # ``trimmed``, so nothing is lost when trimming cuts too much.
    text: Mapped[str] = mapped_column(Text, default="")
    trimmed: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str | None] = mapped_column(Text)
    automatic: Mapped[bool] = mapped_column(default=False)
    # "in" for the customer side's mail, "out" for an agent's public reply.
    direction: Mapped[str] = mapped_column(String(3), default="in")
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[created_at]

    ticket: Mapped[Ticket] = relationship(back_populates="messages")
    attachments: Mapped[list[Attachment]] = relationship(order_by="Attachment.id")


class Note(Base):
    """An internal note; never sent to the customer."""

    __tablename__ = "notes"

    id: Mapped[int_pk]
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    spool_id: Mapped[int | None] = mapped_column(ForeignKey("spool.id"))
    channel: Mapped[str] = mapped_column(String(20))  # email, cli, api
    body: Mapped[str] = mapped_column(Text)
    # What reply trimming removed, so a wrong cut loses nothing.
    trimmed: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[created_at]

    ticket: Mapped[Ticket] = relationship(back_populates="notes")
    author: Mapped[User] = relationship()
    attachments: Mapped[list[Attachment]] = relationship(order_by="Attachment.id")


class Blob(Base):
    """Attachment content, stored once per SHA-256 of its bytes."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    # The whole content, or empty when it is larger than one chunk and
    # stored in blob_chunks instead (see store/blobs.py).
    data: Mapped[bytes] = mapped_column(LargeBinary)


class BlobChunk(Base):
    """One piece, in order, of a blob too large for its row."""

    __tablename__ = "blob_chunks"

    sha256: Mapped[str] = mapped_column(
        ForeignKey("blobs.sha256", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int_pk]
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    note_id: Mapped[int | None] = mapped_column(ForeignKey("notes.id"))
    filename: Mapped[str] = mapped_column(String(500))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    content_id: Mapped[str | None] = mapped_column(String(998))
    inline: Mapped[bool] = mapped_column(default=False)
    blob_sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    created_at: Mapped[created_at]
    # A removed attachment stays, with who removed it, so history keeps it.
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    removed_by: Mapped[str | None] = mapped_column(String(350))


class HistoryEntry(Base):
    """One change to a ticket: its actor, action, values and time."""

    __tablename__ = "history"

    id: Mapped[int_pk]
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[created_at]
    actor: Mapped[str] = mapped_column(String(350))  # user:NAME, customer:ADDR, system
    channel: Mapped[str] = mapped_column(String(20))  # email, cli, api, worker
    action: Mapped[str] = mapped_column(String(50))
    field: Mapped[str | None] = mapped_column(String(100))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class OutboxEntry(Base):
    """A fully rendered mail waiting to be sent, or its final state."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_state_id", "state", "id"),)

    id: Mapped[int_pk]
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(50))  # new_ticket, acknowledgement
    mail_from: Mapped[str] = mapped_column(String(320))
    rcpt_to: Mapped[email_address]
    message_id: Mapped[str] = mapped_column(String(998), index=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(20), default=OutboxState.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[created_at]
    next_attempt_at: Mapped[created_at]
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AlertSubscription(Base):
    """A user's wish to hear of some events on a queue's tickets (or every
    queue's), on some channels: email, push (an HTTP POST), tray."""

    __tablename__ = "alert_subscriptions"

    id: Mapped[int_pk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("queues.id"))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    push_url: Mapped[str | None] = mapped_column(String(2000))
    # Key for the HMAC-SHA256 signature of push bodies; shown once at subscribe.
    push_secret: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[created_at]

    user: Mapped[User] = relationship()


class TrayItem(Base):
    """An alert shown in the user's in-app tray until marked read."""

    __tablename__ = "tray_items"
    __table_args__ = (UniqueConstraint("subscription_id", "history_id"),)

    id: Mapped[int_pk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("alert_subscriptions.id"))
    history_id: Mapped[int] = mapped_column(ForeignKey("history.id"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    event: Mapped[str] = mapped_column(String(50))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[created_at]
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AddressBounces(Base):
    """Hard bounces of mail we sent to one address; at the configured count
    the address is suppressed and gets no more automatic mail."""

    __tablename__ = "address_bounces"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    hard_bounces: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[str] = mapped_column(String(32), default="")
    last_diagnostic: Mapped[str] = mapped_column(Text, default="")
    last_bounce_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    suppressed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
