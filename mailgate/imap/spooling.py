"""Spool a mail read over IMAP and record where it was read, in one transaction.

``store.spool.spool_message`` writes the spool row in its own transaction.
The sessions given to it here carry a ``before_commit`` hook that adds the
``imap_messages`` row and advances the folder's last UID in that same
transaction. So after a crash at any point a mail is either spooled and
recorded, or neither, and it is never spooled twice or skipped.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from mailgate.imap.plan import envelope_sender
from store.mailboxes import MessageLocation, record_message, relocate_known_message
from store.models import SpoolEntry
from store.spool import Envelope, spool_message

log = logging.getLogger(__name__)

SOURCE = "imap"


@dataclass(frozen=True)
class _Pending:
    location: MessageLocation
    sha256: str
    size: int


class MailboxSpool:
    """Spools the mail of one mailbox; used by one reader thread at a time."""

    def __init__(
        self,
        engine: Engine,
        queue_address: str,
        peer: str,
        on_spooled: Callable[[int], None],
    ) -> None:
        self.queue_address = queue_address
        self.peer = peer
        self.on_spooled = on_spooled
        self.sessions: sessionmaker[Session] = sessionmaker(engine, expire_on_commit=False)
        self._pending: _Pending | None = None
        event.listen(self.sessions, "before_commit", self._record)

    def take(self, raw: bytes, location: MessageLocation) -> int | None:
        """Spool ``raw`` unless this mailbox spooled the same bytes before.

        Return the new spool id, or None for a mail spooled before, whose
        record now points at ``location``. Either way the folder's last UID
        is at least ``location.uid`` afterwards and the mailbox's action on
        the mail is pending.
        """
        sha256 = hashlib.sha256(raw).hexdigest()
        earlier = relocate_known_message(self.sessions, location, sha256)
        if earlier is not None:
            log.info(
                "mailbox id=%s %s uid=%s: spooled before as id=%s, not spooled again",
                location.mailbox_id, location.folder, location.uid, earlier,
            )
            return None
        envelope = Envelope(
            mail_from=envelope_sender(raw),
            rcpt_tos=(self.queue_address,),
            source=SOURCE,
            peer=self.peer,
        )
        self._pending = _Pending(location, sha256, len(raw))
        try:
            spool_id = spool_message(self.sessions, raw, envelope)
        finally:
            self._pending = None
        log.info(
            "mailbox id=%s %s uidvalidity=%s uid=%s spooled as id=%s",
            location.mailbox_id, location.folder, location.uidvalidity, location.uid, spool_id,
        )
        self.on_spooled(spool_id)
        return spool_id

    def _record(self, session: Session) -> None:
        pending = self._pending
        if pending is None:
            return
        entries = [item for item in session.identity_map.values() if isinstance(item, SpoolEntry)]
        if len(entries) != 1 or entries[0].id is None:
            raise RuntimeError(f"expected one flushed spool row, found {len(entries)}")
        record_message(session, pending.location, pending.sha256, pending.size, entries[0].id)
        session.flush()
