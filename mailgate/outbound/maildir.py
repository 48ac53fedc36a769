"""Deliver outbound mail into a local Maildir, for the embedded default."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from pathlib import Path

log = logging.getLogger(__name__)


class MaildirSender:
    """Write each outbox row to ``<path>/new`` exactly once.

    The file name comes from the outbox id and a hash of the mail, so
    sending the same row twice (Dramatiq delivers at least once) leaves one
    file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        for folder in ("tmp", "new", "cur"):
            (path / folder).mkdir(parents=True, exist_ok=True)

    def __str__(self) -> str:
        return f"maildir {self.path}"

    def close(self) -> None:
        """Nothing to release: each mail is one file."""

    def send(self, outbox_id: int, mail_from: str, rcpt_to: str, raw: bytes) -> str:
        # The hash of the mail keeps names apart when a new database reuses
        # outbox ids in the same Maildir.
        digest = hashlib.sha256(raw).hexdigest()[:16]
        name = f"mailgate-outbox-{outbox_id}-{digest}.{socket.gethostname()}"
        final = self.path / "new" / name
        if final.exists():
            return f"already in {final}"
        temporary = self.path / "tmp" / name
        envelope = f"Return-Path: <{mail_from}>\r\nDelivered-To: {rcpt_to}\r\n".encode()
        with temporary.open("wb") as file:
            file.write(envelope + raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, final)
        return f"written to {final}"
