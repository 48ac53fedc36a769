"""IMAP mailboxes that feed queues, and what was read from them.

Three tables:

- ``imap_mailboxes``: an account with its folders, the queue it feeds, what
  to do with a mail once it is spooled, its health, and the lease of the
  process that reads it (so two processes never read the same mailbox);
- ``imap_folders``: per folder, the UIDVALIDITY seen last and the highest
  UID taken, so a reconnect continues where the last session stopped;
- ``imap_messages``: one row per distinct mail spooled from a mailbox, keyed
  by the SHA-256 of its bytes, with the server action (flag, move, delete)
  still to apply. A re-scan after a UIDVALIDITY change finds mail it took
  before here and does not spool it again.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship, selectinload, sessionmaker

from store.models import Base, Queue, UTCDateTime, created_at, int_pk, utcnow

log = logging.getLogger(__name__)

# RFC 3501 2.3.1.1: UIDs and UIDVALIDITY are unsigned 32-bit numbers, which
# do not fit a signed 32-bit INTEGER column on PostgreSQL.
imap_number = BigInteger


class AfterSpool(str, enum.Enum):
    """The action on a mail on the server once its spool row is committed."""

    SEEN = "seen"  # add the \Seen flag, leave it in its folder
    MOVE = "move"  # move it to another folder
    DELETE = "delete"  # flag it \Deleted and expunge it


class Security(str, enum.Enum):
    TLS = "tls"  # implicit TLS, usually port 993
    STARTTLS = "starttls"  # plain connection upgraded by STARTTLS, usually 143
    NONE = "none"  # no encryption; for a server on the same host only


class AuthMethod(str, enum.Enum):
    PASSWORD = "password"  # IMAP LOGIN
    XOAUTH2 = "xoauth2"  # AUTHENTICATE XOAUTH2 with a token from a command


class Mailbox(Base):
    __tablename__ = "imap_mailboxes"

    id: Mapped[int_pk]
    name: Mapped[str] = mapped_column(String(100), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    security: Mapped[str] = mapped_column(String(10), default=Security.TLS.value)
    verify_certificate: Mapped[bool] = mapped_column(default=True)
    # A CA bundle for servers with a private CA; unset: the system's CAs.
    ca_file: Mapped[str | None] = mapped_column(String(1000))
    username: Mapped[str] = mapped_column(String(320))
    auth: Mapped[str] = mapped_column(String(10), default=AuthMethod.PASSWORD.value)
    # NOTE: stored in clear text, like MAILGATE_SMTP_RELAY's password in the
    # settings; protect the database accordingly or use XOAUTH2.
    password: Mapped[str | None] = mapped_column(String(1000))
    # Run without a shell; its standard output is the OAuth2 access token.
    token_command: Mapped[str | None] = mapped_column(Text)
    folders: Mapped[list[str]] = mapped_column(JSON, default=list)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id"))
    after: Mapped[str] = mapped_column(String(10), default=AfterSpool.SEEN.value)
    move_to: Mapped[str | None] = mapped_column(String(1000))
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[created_at]

    # Health, written by the process that reads the mailbox.
    last_ok_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # The process reading the mailbox holds the lease until lease_until and
    # renews it while it runs.
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    queue: Mapped[Queue] = relationship()


class MailboxFolder(Base):
    __tablename__ = "imap_folders"
    __table_args__ = (
        UniqueConstraint("mailbox_id", "name", name="uq_imap_folders_mailbox_id_name"),
    )

    id: Mapped[int_pk]
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("imap_mailboxes.id"))
    name: Mapped[str] = mapped_column(String(1000))
    uidvalidity: Mapped[int] = mapped_column(imap_number)
    last_uid: Mapped[int] = mapped_column(imap_number, default=0)
    # UIDNEXT when mailgate began reading the folder under this UIDVALIDITY.
    # With the seen action, mail below it that is \Seen already was read
    # before mailgate and is left alone.
    start_uid: Mapped[int] = mapped_column(imap_number, default=1)
    updated_at: Mapped[created_at]


class MailboxMessage(Base):
    """A mail spooled from a mailbox, and where it was on the server."""

    __tablename__ = "imap_messages"
    __table_args__ = (
        UniqueConstraint("mailbox_id", "sha256", name="uq_imap_messages_mailbox_id_sha256"),
        Index("ix_imap_messages_mailbox_id_action_pending", "mailbox_id", "action_pending"),
    )

    id: Mapped[int_pk]
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("imap_mailboxes.id"))
    folder: Mapped[str] = mapped_column(String(1000))
    uidvalidity: Mapped[int] = mapped_column(imap_number)
    uid: Mapped[int] = mapped_column(imap_number)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    spool_id: Mapped[int] = mapped_column(ForeignKey("spool.id"))
    # True from the spool commit until the mailbox's action is done on the
    # server; a new session applies pending actions before reading on.
    action_pending: Mapped[bool] = mapped_column(default=True)
    spooled_at: Mapped[created_at]
    acted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MailboxError(ValueError):
    """Raised when a mailbox cannot be added or changed as requested."""


@dataclass(frozen=True)
class MailboxSpec:
    """The options of ``mailgate mailboxes add``, checked by ``check_spec``."""

    name: str
    host: str
    port: int
    username: str
    queue_name: str
    security: Security = Security.TLS
    verify_certificate: bool = True
    ca_file: str | None = None
    auth: AuthMethod = AuthMethod.PASSWORD
    password: str | None = field(default=None, repr=False)
    token_command: str | None = None
    folders: tuple[str, ...] = ("INBOX",)
    after: AfterSpool = AfterSpool.SEEN
    move_to: str | None = None
    enabled: bool = True


def check_spec(spec: MailboxSpec) -> None:
    """Raise MailboxError naming the first option that is missing or invalid."""
    if not spec.name.strip():
        raise MailboxError("mailbox name is empty")
    if not spec.host.strip():
        raise MailboxError("--host is empty; example: imap.example.org")
    if not 0 < spec.port < 65536:
        raise MailboxError(f"--port {spec.port} is invalid; use 993 for TLS or 143")
    if not spec.folders or any(not folder.strip() for folder in spec.folders):
        raise MailboxError("--folder is empty; example: --folder INBOX")
    if spec.auth is AuthMethod.PASSWORD and not spec.password:
        raise MailboxError("password authentication needs --password")
    if spec.auth is AuthMethod.XOAUTH2 and not (spec.token_command or "").strip():
        raise MailboxError("--auth xoauth2 needs --token-command, which prints an access token")
    if spec.after is AfterSpool.MOVE and not spec.move_to:
        raise MailboxError("--after move needs --move-to FOLDER")
    if spec.after is not AfterSpool.MOVE and spec.move_to:
        raise MailboxError("--move-to is only used with --after move")
    if spec.move_to and spec.move_to in spec.folders:
        raise MailboxError(
            f"--move-to {spec.move_to} is also a folder to read; mail would be read again"
        )


def add_mailbox(sessions: sessionmaker[Session], spec: MailboxSpec) -> Mailbox:
    check_spec(spec)
    try:
        with sessions.begin() as session:
            queue = session.scalar(select(Queue).where(Queue.name == spec.queue_name))
            if queue is None:
                raise MailboxError(
                    f"queue {spec.queue_name!r} not found; add it with "
                    f"'mailgate queues add {spec.queue_name} --address ADDR'"
                )
            mailbox = Mailbox(
                name=spec.name, host=spec.host, port=spec.port,
                security=spec.security.value, verify_certificate=spec.verify_certificate,
                ca_file=spec.ca_file, username=spec.username, auth=spec.auth.value,
                password=spec.password, token_command=spec.token_command,
                folders=list(spec.folders), queue=queue, after=spec.after.value,
                move_to=spec.move_to, enabled=spec.enabled,
            )
            session.add(mailbox)
    except IntegrityError:
        raise MailboxError(f"a mailbox named {spec.name!r} exists already") from None
    log.info(
        "mailbox added id=%s name=%s %s@%s:%d queue=%s",
        mailbox.id, spec.name, spec.username, spec.host, spec.port, spec.queue_name,
    )
    return mailbox


def list_mailboxes(sessions: sessionmaker[Session], *, enabled_only: bool = False) -> list[Mailbox]:
    query = select(Mailbox).options(selectinload(Mailbox.queue)).order_by(Mailbox.id)
    if enabled_only:
        query = query.where(Mailbox.enabled.is_(True))
    with sessions() as session:
        return list(session.scalars(query))


def find_mailbox(sessions: sessionmaker[Session], name: str) -> Mailbox | None:
    query = select(Mailbox).options(selectinload(Mailbox.queue)).where(Mailbox.name == name)
    with sessions() as session:
        return session.scalar(query)


def remove_mailbox(sessions: sessionmaker[Session], name: str) -> bool:
    """Delete a mailbox and its reading state; return False if it was not found.

    The spool rows and tickets made from its mail stay.
    """
    with sessions.begin() as session:
        mailbox = session.scalar(select(Mailbox).where(Mailbox.name == name))
        if mailbox is None:
            return False
        session.execute(delete(MailboxMessage).where(MailboxMessage.mailbox_id == mailbox.id))
        session.execute(delete(MailboxFolder).where(MailboxFolder.mailbox_id == mailbox.id))
        session.delete(mailbox)
        mailbox_id = mailbox.id
    log.info("mailbox removed id=%s name=%s", mailbox_id, name)
    return True


def lock_mailbox(session: Session, mailbox_id: int) -> Mailbox | None:
    return session.execute(
        select(Mailbox).where(Mailbox.id == mailbox_id).with_for_update()
    ).scalar_one_or_none()


# -- leases ----------------------------------------------------------------


def take_lease(
    sessions: sessionmaker[Session], mailbox_id: int, owner: str, seconds: float, *,
    healthy: bool = False,
) -> bool:
    """Take or renew the lease on a mailbox for ``seconds``.

    Return False while another owner holds an unexpired lease. ``healthy``
    also records the time as the mailbox's last good contact.
    """
    now = utcnow()
    values: dict[str, object] = {
        "lease_owner": owner, "lease_until": now + timedelta(seconds=seconds),
    }
    if healthy:
        values["last_ok_at"] = now
    with sessions.begin() as session:
        result = session.execute(
            update(Mailbox)
            .where(
                Mailbox.id == mailbox_id,
                or_(
                    Mailbox.lease_owner.is_(None),
                    Mailbox.lease_owner == owner,
                    Mailbox.lease_until < now,
                ),
            )
            .values(**values)
        )
    return result.rowcount == 1


def release_lease(sessions: sessionmaker[Session], mailbox_id: int, owner: str) -> None:
    with sessions.begin() as session:
        session.execute(
            update(Mailbox)
            .where(Mailbox.id == mailbox_id, Mailbox.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )


def lease_holder(sessions: sessionmaker[Session], mailbox_id: int) -> str | None:
    """Return the owner of an unexpired lease on the mailbox, if any."""
    with sessions() as session:
        mailbox = session.get(Mailbox, mailbox_id)
    if mailbox is None or mailbox.lease_until is None or mailbox.lease_until < utcnow():
        return None
    return mailbox.lease_owner


# -- folders and messages --------------------------------------------------


@dataclass(frozen=True)
class FolderState:
    id: int
    uidvalidity: int
    last_uid: int
    start_uid: int


def load_folder(sessions: sessionmaker[Session], mailbox_id: int, name: str) -> FolderState | None:
    query = select(MailboxFolder).where(
        MailboxFolder.mailbox_id == mailbox_id, MailboxFolder.name == name
    )
    with sessions() as session:
        row = session.scalar(query)
    if row is None:
        return None
    return FolderState(row.id, row.uidvalidity, row.last_uid, row.start_uid)


def reset_folder(
    sessions: sessionmaker[Session], mailbox_id: int, name: str, uidvalidity: int,
    start_uid: int,
) -> FolderState:
    """Start a folder over at UID 0 under a new UIDVALIDITY.

    Actions still pending under the old UIDVALIDITY are dropped: their UIDs
    no longer name the same mail. A re-scan finds those mails again.
    """
    with sessions.begin() as session:
        row = session.scalar(
            select(MailboxFolder)
            .where(MailboxFolder.mailbox_id == mailbox_id, MailboxFolder.name == name)
            .with_for_update()
        )
        if row is None:
            row = MailboxFolder(mailbox_id=mailbox_id, name=name)
            session.add(row)
        row.uidvalidity = uidvalidity
        row.last_uid = 0
        row.start_uid = start_uid
        row.updated_at = utcnow()
        session.execute(
            update(MailboxMessage)
            .where(
                MailboxMessage.mailbox_id == mailbox_id,
                MailboxMessage.folder == name,
                MailboxMessage.uidvalidity != uidvalidity,
                MailboxMessage.action_pending.is_(True),
            )
            .values(action_pending=False)
        )
        session.flush()
        return FolderState(row.id, uidvalidity, 0, start_uid)


def advance_folder(session: Session, folder_id: int, uid: int) -> None:
    """Raise the folder's last UID to ``uid``; never lower it."""
    session.execute(
        update(MailboxFolder)
        .where(MailboxFolder.id == folder_id, MailboxFolder.last_uid < uid)
        .values(last_uid=uid, updated_at=utcnow())
    )


@dataclass(frozen=True)
class MessageLocation:
    """A mail's place on the server, enough to apply an action to it later."""

    mailbox_id: int
    folder_id: int
    folder: str
    uidvalidity: int
    uid: int


def record_message(
    session: Session, location: MessageLocation, sha256: str, size: int, spool_id: int
) -> None:
    """Record a mail just spooled, with its action pending, and advance its folder."""
    session.add(MailboxMessage(
        mailbox_id=location.mailbox_id, folder=location.folder,
        uidvalidity=location.uidvalidity, uid=location.uid, sha256=sha256, size=size,
        spool_id=spool_id, action_pending=True,
    ))
    advance_folder(session, location.folder_id, location.uid)


def relocate_known_message(
    sessions: sessionmaker[Session], location: MessageLocation, sha256: str
) -> int | None:
    """Point the record of a mail spooled before at its new place.

    Return the spool id it was spooled as, or None when this mailbox never
    spooled a mail with these bytes. The folder advances past the UID and
    the action is pending again, so the mail is flagged, moved or deleted
    like a new one, without a second spool row.
    """
    with sessions.begin() as session:
        row = session.scalar(
            select(MailboxMessage).where(
                MailboxMessage.mailbox_id == location.mailbox_id,
                MailboxMessage.sha256 == sha256,
            ).with_for_update()
        )
        if row is None:
            return None
        row.folder = location.folder
        row.uidvalidity = location.uidvalidity
        row.uid = location.uid
        row.action_pending = True
        row.acted_at = None
        advance_folder(session, location.folder_id, location.uid)
        return row.spool_id


def pending_action_uids(
    sessions: sessionmaker[Session], mailbox_id: int, folder: str, uidvalidity: int
) -> list[int]:
    query = select(MailboxMessage.uid).where(
        MailboxMessage.mailbox_id == mailbox_id,
        MailboxMessage.action_pending.is_(True),
        MailboxMessage.folder == folder,
        MailboxMessage.uidvalidity == uidvalidity,
    ).order_by(MailboxMessage.uid)
    with sessions() as session:
        return list(session.scalars(query))


def finish_actions(
    sessions: sessionmaker[Session], mailbox_id: int, folder: str, uidvalidity: int,
    uids: list[int],
) -> None:
    """Record that the action on these UIDs was done on the server."""
    if not uids:
        return
    with sessions.begin() as session:
        session.execute(
            update(MailboxMessage)
            .where(
                MailboxMessage.mailbox_id == mailbox_id,
                MailboxMessage.folder == folder,
                MailboxMessage.uidvalidity == uidvalidity,
                MailboxMessage.uid.in_(uids),
            )
            .values(action_pending=False, acted_at=utcnow())
        )
