"""Helpers for the IMAP tests: sample mail, mailboxes, a running reader,
and log lines collected without pytest's logging plugin."""

from __future__ import annotations

import email
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from datetime import datetime, timezone

from sqlalchemy import select

from mailgate.app import App
from mailgate.imap.runner import ImapRunner
from store.mailboxes import AfterSpool, AuthMethod, MailboxSpec, Security, add_mailbox
from store.models import SpoolEntry
from tests.dovecot import PASSWORD, Dovecot
from tests.harness import SUPPORT, Gateway

# Fast retries and short waits, so failure tests finish in seconds.
IMAP_TEST_SETTINGS = {
    "imap_reconnect_min_seconds": 0.2,
    "imap_reconnect_max_seconds": 1.0,
    "imap_poll_interval_seconds": 0.5,
    "imap_reload_seconds": 0.5,
    "imap_timeout_seconds": 10.0,
}


def make_mail(subject: str, body: str = "", sender: str = "ana@example.com",
              index: int = 0, size_padding: int = 0) -> bytes:
    """Return a mail as a client would send it, with CRLF line ends."""
    message = EmailMessage()
    message["Return-Path"] = f"<{sender}>"
    message["From"] = sender
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime(2026, 3, 2, 9, 0, index % 60, tzinfo=timezone.utc))
    message["Message-ID"] = make_msgid(domain="example.com")
    text = body or f"Mail number {index}: {subject}."
    if size_padding:
        text += "\n" + ("x" * 76 + "\n") * (size_padding // 77 + 1)
    message.set_content(text)
    return message.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def message_id_of(raw: bytes) -> str:
    return str(email.message_from_bytes(raw)["Message-ID"]).strip()


def add_test_mailbox(
    app: App, server: Dovecot, user: str, *, name: str = "Support",
    after: AfterSpool = AfterSpool.SEEN, move_to: str | None = None,
    folders: tuple[str, ...] = ("INBOX",), password: str = PASSWORD,
    queue_name: str = "Support", **options: object,
) -> int:
    spec = MailboxSpec(
        name=name, host="127.0.0.1", port=server.port, username=user, queue_name=queue_name,
        security=Security.NONE, auth=AuthMethod.PASSWORD, password=password,
        folders=folders, after=after, move_to=move_to, **options,  # type: ignore[arg-type]
    )
    return add_mailbox(app.sessions, spec).id


@contextmanager
def reading(gateway: Gateway) -> Iterator[ImapRunner]:
    """Run the IMAP readers of the gateway's mailboxes for the block."""
    runner = ImapRunner(gateway.app, gateway.actors.enqueue_spool, gateway.actors.enqueue_outbox)
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()


def spool_message_ids(app: App) -> list[str]:
    """Return the Message-ID of every spool row, in spool order (repeats kept)."""
    with app.sessions() as session:
        raws = list(session.scalars(select(SpoolEntry.raw).order_by(SpoolEntry.id)))
    return [message_id_of(raw) for raw in raws]


class LogLines(logging.Handler):
    """Collects formatted records of the ``mailgate`` loggers."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")

    def matching(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]


@contextmanager
def collect_logs(name: str = "mailgate") -> Iterator[LogLines]:
    logger = logging.getLogger(name)
    handler = LogLines()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
