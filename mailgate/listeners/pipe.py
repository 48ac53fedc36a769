"""``mailgate ingest``: spool one mail from a file or stdin, for an MTA's
pipe transport. Exit codes follow sysexits.h, which MTAs understand."""

from __future__ import annotations

import logging
from typing import BinaryIO

from mailgate.app import App
from mailgate.errors import MessageRejected, SpoolUnavailable
from store.spool import Envelope, spool_message

log = logging.getLogger(__name__)

EX_OK = 0
EX_DATAERR = 65  # the input is not a mail we can ever accept
EX_NOINPUT = 66  # the named input file cannot be read
EX_TEMPFAIL = 75  # try again later; nothing was kept


def header_problem(raw: bytes) -> str | None:
    """Return why ``raw`` can never be accepted, or None. Only empty input
    is refused, by SMTP and ingest alike: anything else, however broken, is
    spooled, and a mail that cannot be parsed stays there as failed with
    its error, where ``mailgate spool`` shows it."""
    if not raw.strip():
        return "message is empty"
    return None


def read_message(stream: BinaryIO, max_bytes: int) -> bytes:
    """Read one message, at most ``max_bytes``; raise MessageRejected when it
    is empty, too large, or has no header section."""
    raw = stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise MessageRejected(f"message exceeds the size limit of {max_bytes} bytes")
    # Postfix's pipe transport may prepend an mbox "From " line.
    if raw.startswith(b"From "):
        raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    problem = header_problem(raw)
    if problem:
        raise MessageRejected(problem)
    return raw


def ingest(app: App, raw: bytes, sender: str, recipients: tuple[str, ...]) -> int:
    """Spool ``raw`` and return its id; raise SpoolUnavailable on failure."""
    envelope = Envelope(mail_from=sender, rcpt_tos=recipients, source="ingest")
    try:
        return spool_message(app.sessions, raw, envelope)
    except Exception as error:
        log.exception("spooling from ingest failed")
        raise SpoolUnavailable(f"spool unavailable: {error}") from error
