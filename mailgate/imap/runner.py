"""Run one reader per enabled mailbox, and follow changes to the list."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from mailgate.app import App
from mailgate.imap.config import MailboxConfig, load_enabled_configs
from mailgate.imap.reader import MailboxReader

log = logging.getLogger(__name__)

READER_STOP_TIMEOUT_SECONDS = 30.0


def _ignore(_: int) -> None:
    return None


class ImapRunner:
    """Starts, restarts and stops the mailbox readers of this process.

    The list of enabled mailboxes is read again every
    ``imap_reload_seconds``: a new mailbox gets a reader, a changed one a
    new reader, and a removed or disabled one loses its reader.
    """

    def __init__(
        self,
        app: App,
        on_spooled: Callable[[int], None],
        on_outbox: Callable[[int], None] | None = None,
    ) -> None:
        self.app = app
        self.on_spooled = on_spooled
        # Without a callback the sweeper sends alert mail on its next round.
        self.on_outbox = on_outbox or _ignore
        # Names this process in leases and in ``mailgate mailboxes list``.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.readers: dict[int, MailboxReader] = {}
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mailgate-imap", daemon=True)

    def start(self) -> None:
        self.reload()
        self._thread.start()
        log.info("IMAP reading started as %s with %d mailboxes", self.owner, len(self.readers))

    def stop(self) -> None:
        """Stop every reader and wait for them, releasing their leases."""
        self._stop_event.set()
        if self._thread.is_alive():
            self._thread.join(timeout=READER_STOP_TIMEOUT_SECONDS)
        with self._lock:
            readers = list(self.readers.values())
            self.readers.clear()
        _stop_all(readers)
        log.info("IMAP reading stopped")

    def reload(self) -> None:
        """Match the running readers to the enabled mailboxes in the store."""
        configs = {config.id: config for config in load_enabled_configs(self.app.sessions)}
        with self._lock:
            outdated = [
                reader for mailbox_id, reader in self.readers.items()
                if configs.get(mailbox_id) != reader.config or not reader.is_alive()
            ]
            for reader in outdated:
                del self.readers[reader.config.id]
            _stop_all(outdated)
            for mailbox_id, config in configs.items():
                if mailbox_id not in self.readers and not self._stop_event.is_set():
                    self.readers[mailbox_id] = self._start_reader(config)

    def _start_reader(self, config: MailboxConfig) -> MailboxReader:
        reader = MailboxReader(self.app, config, self.owner, self.on_spooled, self.on_outbox)
        reader.start()
        return reader

    def _run(self) -> None:
        interval = self.app.settings.imap_reload_seconds
        while not self._stop_event.wait(interval):
            try:
                self.reload()
            except SQLAlchemyError:
                log.warning("reading the list of mailboxes failed; next try in %.0fs",
                            interval, exc_info=True)


def _stop_all(readers: list[MailboxReader]) -> None:
    for reader in readers:
        reader.stop()
    for reader in readers:
        reader.join(timeout=READER_STOP_TIMEOUT_SECONDS)
        if reader.is_alive():
            log.warning("mailbox id=%s reader did not stop within %.0fs",
                        reader.config.id, READER_STOP_TIMEOUT_SECONDS)
