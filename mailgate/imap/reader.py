"""One thread per mailbox: hold its lease, log in, read its folders, wait
for new mail with IDLE or by polling, and reconnect with backoff.

Every error ends the session, is recorded on the mailbox (``mailgate
mailboxes list`` shows it) and is retried, so one failing mailbox never
stops the others. After ``imap_alert_after_seconds`` in failure the admins
get one mail, and one more when the mailbox is read again.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy.exc import SQLAlchemyError

from mailgate.app import App
from mailgate.errors import PermanentError
from mailgate.imap.alerts import KIND_FAILING, KIND_RECOVERED, queue_mailbox_alert
from mailgate.imap.config import MailboxConfig
from mailgate.imap.connection import close_session, open_session
from mailgate.imap.errors import LeaseLost, MailboxFailure, MailboxUnavailable
from mailgate.imap.folder import FetchLimits, FolderReader
from mailgate.imap.plan import has_new_mail, reconnect_delay, untagged_status
from mailgate.imap.spooling import MailboxSpool
from store.mailboxes import lease_holder, lock_mailbox, release_lease, take_lease
from store.models import utcnow

log = logging.getLogger(__name__)

# A reader renews its lease this often; another process may take over a
# mailbox whose lease has not been renewed for LEASE_SECONDS, e.g. after
# its reader was killed.
LEASE_SECONDS = 90.0
LEASE_RENEW_SECONDS = 30.0
# How long one IDLE check blocks, which bounds how late a stop is noticed.
IDLE_CHECK_SECONDS = 1.0
MAX_ERROR_CHARS = 2000


class Stopping(Exception):
    """Raised inside a session to end it because the reader is stopping."""


class MailboxReader(threading.Thread):
    def __init__(
        self,
        app: App,
        config: MailboxConfig,
        owner: str,
        on_spooled: Callable[[int], None],
        on_outbox: Callable[[int], None],
    ) -> None:
        super().__init__(name=f"mailgate-imap-{config.name}", daemon=True)
        self.app = app
        self.config = config
        self.owner = owner
        self.on_outbox = on_outbox
        self.spool = MailboxSpool(
            app.engine, config.queue_address, f"{config.host}:{config.port}", on_spooled
        )
        settings = app.settings
        self.limits = FetchLimits(
            batch_size=settings.imap_batch_size,
            batch_max_bytes=settings.imap_batch_max_bytes,
            max_message_bytes=settings.max_message_bytes,
        )
        self.failed_attempts = 0
        # How each wait for new mail ended: "idle" (the server reported
        # new mail), "timer" (poll interval or IDLE renewal), "changed" (mail
        # came before IDLE began), "check" (the server reported a problem or
        # the connection may be closed).
        self.wakeups: Counter[str] = Counter()
        self.idling = threading.Event()
        self._stop_event = threading.Event()
        self._client: IMAPClient | None = None
        self._lease_renewed_at = 0.0
        # True until a successful read has cleared the failure state stored
        # on the mailbox, which may be left from an earlier process.
        self._known_failing = True

    # -- control ------------------------------------------------------------

    def stop(self) -> None:
        """Ask the reader to end; a blocked socket read is cut short."""
        self._stop_event.set()
        client = self._client
        if client is not None:
            try:
                client.socket().shutdown(socket.SHUT_RDWR)
            except (OSError, IMAPClientError):
                pass

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    def run(self) -> None:
        config = self.config
        log.info(
            "mailbox id=%s name=%s reader started: %s folders=%s after=%s",
            config.id, config.name, config.server, ",".join(config.folders), config.after.value,
        )
        waiting_for = None
        try:
            while not self.stopping:
                try:
                    leased = self._take_lease()
                    holder = None if leased else lease_holder(self.app.sessions, config.id)
                except SQLAlchemyError as error:
                    self._failed(error)
                    continue
                if not leased:
                    if holder != waiting_for:
                        log.info("mailbox id=%s is read by %s; waiting for its lease",
                                 config.id, holder)
                        waiting_for = holder
                    self._stop_event.wait(LEASE_RENEW_SECONDS)
                    continue
                waiting_for = None
                self._run_session()
        finally:
            try:
                release_lease(self.app.sessions, config.id, self.owner)
            except SQLAlchemyError:
                log.warning("mailbox id=%s: lease not released", config.id, exc_info=True)
            log.info("mailbox id=%s name=%s reader stopped", config.id, config.name)

    # -- one session ----------------------------------------------------------

    def _run_session(self) -> None:
        client = None
        try:
            client = open_session(self.config, self.app.settings.imap_timeout_seconds)
            self._client = client
            if self.stopping:
                return
            self._read_until_stopped(client)
        except Stopping:
            return
        except LeaseLost as error:
            log.warning("mailbox id=%s: %s; this process stops reading it", self.config.id, error)
            return
        except Exception as error:  # every failure is recorded and retried
            if self.stopping:
                return
            self._failed(error)
        finally:
            self._client = None
            if client is not None:
                close_session(client)

    def _read_until_stopped(self, client: IMAPClient) -> None:
        reader = FolderReader(
            client, self.config, self.app.sessions, self.spool, self.limits, self._keep_alive
        )
        reader.prepare()
        while not self.stopping:
            for folder in self.config.folders:
                reader.sync(folder)
            self._healthy()
            reason = self._wait_for_mail(reader)
            self.wakeups[reason] += 1

    def _wait_for_mail(self, reader: FolderReader) -> str:
        settings = self.app.settings
        if b"IDLE" not in reader.capabilities:
            self._sleep(settings.imap_poll_interval_seconds)
            return "timer"
        seconds = settings.imap_idle_seconds
        if len(self.config.folders) > 1:
            # IDLE watches the first folder only; the others are polled.
            seconds = min(seconds, settings.imap_poll_interval_seconds)
        if reader.changed_since_read(self.config.folders[0]):
            return "changed"
        return self._idle(reader.client, seconds)

    def _idle(self, client: IMAPClient, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        reason = "timer"
        client.idle()
        self.idling.set()
        try:
            while not self.stopping and time.monotonic() < deadline:
                started = time.monotonic()
                responses = client.idle_check(timeout=IDLE_CHECK_SECONDS)
                goodbye = untagged_status(responses, b"BYE")
                if goodbye is not None:
                    raise MailboxUnavailable(f"server ended the session: {goodbye}")
                if has_new_mail(responses):
                    reason = "idle"
                    break
                problem = untagged_status(responses, b"NO") or untagged_status(responses, b"BAD")
                if problem is not None:
                    log.info("mailbox id=%s: server reported during IDLE: %s; reading again",
                             self.config.id, problem)
                    reason = "check"
                    break
                if not responses and time.monotonic() - started < IDLE_CHECK_SECONDS / 2:
                    # IMAPClient returns nothing at once when the socket is
                    # readable but closed. Ending IDLE raises if it is closed.
                    reason = "check"
                    break
                self._keep_alive()
        finally:
            self.idling.clear()
        if self.stopping:
            raise Stopping()
        client.idle_done()
        return reason

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._stop_event.wait(min(remaining, LEASE_RENEW_SECONDS))
            self._keep_alive()
        raise Stopping()

    # -- lease ----------------------------------------------------------------

    def _take_lease(self) -> bool:
        leased = take_lease(self.app.sessions, self.config.id, self.owner, LEASE_SECONDS)
        if leased:
            self._lease_renewed_at = time.monotonic()
        return leased

    def _keep_alive(self) -> None:
        """Renew the lease when due; raise Stopping or LeaseLost to end the session."""
        if self.stopping:
            raise Stopping()
        if time.monotonic() - self._lease_renewed_at < LEASE_RENEW_SECONDS:
            return
        healthy = not self._known_failing
        if not take_lease(self.app.sessions, self.config.id, self.owner, LEASE_SECONDS,
                          healthy=healthy):
            raise LeaseLost(f"lease taken by {lease_holder(self.app.sessions, self.config.id)}")
        self._lease_renewed_at = time.monotonic()

    # -- health -----------------------------------------------------------------

    def _failed(self, error: BaseException) -> None:
        self.failed_attempts += 1
        text = _describe(error)
        delay = reconnect_delay(
            self.failed_attempts,
            self.app.settings.imap_reconnect_min_seconds,
            self.app.settings.imap_reconnect_max_seconds,
        )
        level = logging.ERROR if isinstance(error, PermanentError) else logging.WARNING
        log.log(
            level, "mailbox id=%s name=%s: attempt %d failed: %s; reconnecting in %.1fs",
            self.config.id, self.config.name, self.failed_attempts, text, delay,
            exc_info=not isinstance(error, (MailboxFailure, OSError, IMAPClientError)),
        )
        try:
            self._record_failure(text)
        except SQLAlchemyError:
            log.warning("mailbox id=%s: failure not recorded", self.config.id, exc_info=True)
        self._stop_event.wait(delay)

    def _record_failure(self, text: str) -> None:
        alert_after = timedelta(seconds=self.app.settings.imap_alert_after_seconds)
        outbox_ids: list[int] = []
        with self.app.sessions.begin() as session:
            mailbox = lock_mailbox(session, self.config.id)
            if mailbox is None:
                return
            now = utcnow()
            mailbox.failing_since = mailbox.failing_since or now
            mailbox.last_error = text[:MAX_ERROR_CHARS]
            mailbox.last_error_at = now
            if mailbox.alerted_at is None and now - mailbox.failing_since >= alert_after:
                entries = queue_mailbox_alert(self.app, session, mailbox, KIND_FAILING, text)
                outbox_ids = [entry.id for entry in entries]
                mailbox.alerted_at = now
        self._known_failing = True
        for outbox_id in outbox_ids:
            self.on_outbox(outbox_id)

    def _healthy(self) -> None:
        """Record that the mailbox was read, once after each failure."""
        if not self._known_failing:
            return
        if self.failed_attempts:
            log.info("mailbox id=%s name=%s read again after %d failed attempts",
                     self.config.id, self.config.name, self.failed_attempts)
        self.failed_attempts = 0
        outbox_ids: list[int] = []
        with self.app.sessions.begin() as session:
            mailbox = lock_mailbox(session, self.config.id)
            if mailbox is None:
                return
            if mailbox.alerted_at is not None:
                entries = queue_mailbox_alert(
                    self.app, session, mailbox, KIND_RECOVERED, mailbox.last_error or ""
                )
                outbox_ids = [entry.id for entry in entries]
            mailbox.failing_since = None
            mailbox.alerted_at = None
            mailbox.last_ok_at = utcnow()
        self._known_failing = False
        for outbox_id in outbox_ids:
            self.on_outbox(outbox_id)


def _describe(error: BaseException) -> str:
    if isinstance(error, MailboxFailure):
        return str(error)
    if isinstance(error, (OSError, IMAPClientError)):
        return f"connection dropped: {type(error).__name__}: {error}"
    return f"{type(error).__name__}: {error}"
