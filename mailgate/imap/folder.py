"""Read the new mail of one folder on a logged-in session.

The order of steps is what keeps the promise that no mail is lost or taken
twice: a mail is fetched with ``BODY.PEEK[]`` (which leaves \\Seen alone),
spooled and committed together with its record and the folder's last UID,
and only then flagged, moved or deleted on the server. An action that a
dropped connection interrupted is still pending in the store and is done
first in the next session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError
from sqlalchemy.orm import Session, sessionmaker

from mailgate.imap.config import MailboxConfig
from mailgate.imap.errors import FolderUnusable, MailboxUnavailable
from mailgate.imap.plan import (
    FetchStep,
    plan_fetches,
    read_before_start_criteria,
    search_criteria,
)
from mailgate.imap.spooling import MailboxSpool
from store.mailboxes import (
    AfterSpool,
    FolderState,
    MessageLocation,
    advance_folder,
    finish_actions,
    load_folder,
    pending_action_uids,
    reset_folder,
)

log = logging.getLogger(__name__)

SEEN = b"\\Seen"
FLAGGED = b"\\Flagged"
# UIDs per FETCH of RFC822.SIZE; sizes are small, so a large folder is
# sized in a few round trips without one huge response.
SIZE_FETCH_CHUNK = 1000


@dataclass(frozen=True)
class FetchLimits:
    batch_size: int
    batch_max_bytes: int
    max_message_bytes: int


@dataclass
class FolderReport:
    """Counts of what one pass over a folder did."""

    spooled: int = 0
    known: int = 0  # spooled before, e.g. found again after a UIDVALIDITY change
    oversize: int = 0
    vanished: int = 0  # expunged by someone else between SEARCH and FETCH
    actions: int = 0


class FolderReader:
    """Takes new mail from the folders of one mailbox over one session."""

    def __init__(
        self,
        client: IMAPClient,
        config: MailboxConfig,
        sessions: sessionmaker[Session],
        spool: MailboxSpool,
        limits: FetchLimits,
        keep_alive: Callable[[], None],
    ) -> None:
        self.client = client
        self.config = config
        self.sessions = sessions
        self.spool = spool
        self.limits = limits
        # Called between mails: renews the lease, raises to stop early.
        self.keep_alive = keep_alive
        self.capabilities = frozenset(client.capabilities())
        # UIDVALIDITY and UIDNEXT of each folder when it was last read.
        self.read_at: dict[str, tuple[int, int | None]] = {}

    def prepare(self) -> None:
        """Create the folder that mail is moved to, when it is missing."""
        target = self.config.move_to
        if self.config.after is not AfterSpool.MOVE or not target:
            return
        with _server_errors(f"checking folder {target}"):
            if self.client.folder_exists(target):
                return
            self.client.create_folder(target)
        log.info("mailbox id=%s: created folder %s for read mail", self.config.id, target)

    def select(self, folder: str) -> dict[bytes, Any]:
        try:
            return self.client.select_folder(folder)
        except IMAPClientAbortError as error:
            raise MailboxUnavailable(f"selecting {folder} failed: {error}") from None
        except IMAPClientError as error:
            raise FolderUnusable(
                f"folder {folder} cannot be selected: {error}; "
                f"'mailgate mailboxes test {self.config.name}' lists the folders"
            ) from None

    def changed_since_read(self, folder: str) -> bool:
        """Select ``folder`` again; True when mail arrived or the folder was
        replaced since it was last read, which IDLE would not report."""
        selected = self.select(folder)
        return self.read_at.get(folder) != _identity(selected)

    def sync(self, folder: str) -> FolderReport:
        """Take every new mail of ``folder``; return what was done."""
        selected = self.select(folder)
        state = self._folder_state(folder, selected)
        report = FolderReport()
        with _server_errors(f"reading {folder}"):
            self._finish_pending_actions(folder, state, report)
            uids, skipped = self._new_uids(state)
            for start in range(0, len(uids), SIZE_FETCH_CHUNK):
                chunk = uids[start:start + SIZE_FETCH_CHUNK]
                for step in plan_fetches(
                    self._sizes(chunk),
                    max_count=self.limits.batch_size,
                    max_bytes=self.limits.batch_max_bytes,
                    max_message_bytes=self.limits.max_message_bytes,
                ):
                    self._take(folder, state, step, report)
        if skipped:
            # Every UID up to here is taken or read before mailgate began.
            self._advance(MessageLocation(self.config.id, state.id, folder,
                                          state.uidvalidity, max(skipped)))
        self.read_at[folder] = _identity(selected)
        if report.spooled or report.known or report.oversize or report.vanished or report.actions:
            log.info(
                "mailbox id=%s %s: spooled %d, found %d spooled before, left %d over the "
                "size limit, %d vanished, %d actions done",
                self.config.id, folder, report.spooled, report.known, report.oversize,
                report.vanished, report.actions,
            )
        return report

    def _folder_state(self, folder: str, selected: dict[bytes, Any]) -> FolderState:
        uidvalidity = int(selected[b"UIDVALIDITY"])
        state = load_folder(self.sessions, self.config.id, folder)
        if state is not None and state.uidvalidity == uidvalidity:
            return state
        uidnext = selected.get(b"UIDNEXT")
        start_uid = int(uidnext) if uidnext is not None else self._highest_uid() + 1
        if state is None:
            log.info(
                "mailbox id=%s %s: first read, uidvalidity=%s uidnext=%s",
                self.config.id, folder, uidvalidity, start_uid,
            )
        else:
            log.warning(
                "mailbox id=%s %s: UIDVALIDITY changed from %s to %s; reading the whole "
                "folder again, mail spooled before is not spooled twice",
                self.config.id, folder, state.uidvalidity, uidvalidity,
            )
        return reset_folder(self.sessions, self.config.id, folder, uidvalidity, start_uid)

    def _highest_uid(self) -> int:
        with _server_errors("searching"):
            uids = self.client.search(["ALL"])
        return max(uids, default=0)

    def _new_uids(self, state: FolderState) -> tuple[list[int], list[int]]:
        """Return the UIDs to take and the UIDs left alone because they were
        read before mailgate began on the folder."""
        uids = [uid for uid in self.client.search(search_criteria(state.last_uid))
                if uid > state.last_uid]
        skipped: list[int] = []
        if self.config.after is AfterSpool.SEEN:
            criteria = read_before_start_criteria(state.last_uid, state.start_uid)
            if criteria is not None and uids:
                read_before = set(self.client.search(criteria))
                skipped = [uid for uid in uids if uid in read_before]
                uids = [uid for uid in uids if uid not in read_before]
        return sorted(uids), skipped

    def _sizes(self, uids: Sequence[int]) -> list[tuple[int, int]]:
        if not uids:
            return []
        response = self.client.fetch(uids, ["RFC822.SIZE"])
        return [
            (uid, int(response[uid][b"RFC822.SIZE"]))
            for uid in uids
            if uid in response and b"RFC822.SIZE" in response[uid]
        ]

    def _take(
        self, folder: str, state: FolderState, step: FetchStep, report: FolderReport
    ) -> None:
        fetched = self.client.fetch(step.fetch, ["BODY.PEEK[]"]) if step.fetch else {}
        spooled_uids = []
        for uid in step.uids:
            self.keep_alive()
            location = MessageLocation(self.config.id, state.id, folder, state.uidvalidity, uid)
            if uid in step.oversize:
                self._leave_oversize(location, report)
                continue
            raw = fetched.get(uid, {}).get(b"BODY[]")
            if raw is None:
                log.info("mailbox id=%s %s uid=%s: expunged before it was fetched",
                         self.config.id, folder, uid)
                self._advance(location)
                report.vanished += 1
                continue
            if self.spool.take(raw, location) is None:
                report.known += 1
            else:
                report.spooled += 1
            spooled_uids.append(uid)
        self._act(folder, state.uidvalidity, spooled_uids, report)

    def _leave_oversize(self, location: MessageLocation, report: FolderReport) -> None:
        self.client.add_flags([location.uid], [FLAGGED], silent=True)
        log.warning(
            "mailbox id=%s %s uid=%s: over the size limit of %d bytes; left on the server "
            "and flagged \\Flagged",
            self.config.id, location.folder, location.uid, self.limits.max_message_bytes,
        )
        self._advance(location)
        report.oversize += 1

    def _advance(self, location: MessageLocation) -> None:
        with self.sessions.begin() as session:
            advance_folder(session, location.folder_id, location.uid)

    def _finish_pending_actions(
        self, folder: str, state: FolderState, report: FolderReport
    ) -> None:
        uids = pending_action_uids(self.sessions, self.config.id, folder, state.uidvalidity)
        if uids:
            log.info(
                "mailbox id=%s %s: doing %d actions left over from the last session",
                self.config.id, folder, len(uids),
            )
            self._act(folder, state.uidvalidity, uids, report)

    def _act(self, folder: str, uidvalidity: int, uids: list[int], report: FolderReport) -> None:
        """Apply the mailbox's action to spooled mail, then record it as done."""
        if not uids:
            return
        after = self.config.after
        if after is AfterSpool.SEEN:
            self.client.add_flags(uids, [SEEN], silent=True)
        elif after is AfterSpool.MOVE:
            self._move(uids)
        else:
            self._expunge(uids)
        finish_actions(self.sessions, self.config.id, folder, uidvalidity, uids)
        report.actions += len(uids)

    def _move(self, uids: list[int]) -> None:
        target = self.config.move_to or ""
        if b"MOVE" in self.capabilities:
            self.client.move(uids, target)
            return
        # RFC 6851 3.3: without MOVE, COPY then delete and expunge.
        self.client.copy(uids, target)
        self._expunge(uids)

    def _expunge(self, uids: list[int]) -> None:
        self.client.delete_messages(uids, silent=True)
        if b"UIDPLUS" in self.capabilities:
            self.client.uid_expunge(uids)
        else:
            # NOTE: without UIDPLUS (RFC 4315) EXPUNGE also removes mail that
            # someone else flagged \Deleted in this folder.
            self.client.expunge()


def _identity(selected: dict[bytes, Any]) -> tuple[int, int | None]:
    uidnext = selected.get(b"UIDNEXT")
    return int(selected[b"UIDVALIDITY"]), int(uidnext) if uidnext is not None else None


@contextmanager
def _server_errors(doing: str) -> Iterator[None]:
    """Turn IMAPClient errors into MailboxUnavailable (the connection
    dropped) or FolderUnusable (the server replied NO or BAD)."""
    try:
        yield
    except IMAPClientAbortError as error:
        raise MailboxUnavailable(f"{doing} failed: {error}") from None
    except IMAPClientError as error:
        raise FolderUnusable(f"{doing} failed: {error}") from None
