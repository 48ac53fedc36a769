"""Deliver outbound mail through an SMTP relay, over connections kept open."""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass

from mailgate.errors import PermanentDeliveryError, TemporaryDeliveryError
from mailgate.settings import RelaySettings

log = logging.getLogger(__name__)

# A connection idle for longer than this is checked with NOOP before it
# carries a mail, because relays close idle connections. RFC 5321, section
# 4.5.3.2.7, recommends that a server wait at least 5 minutes for the next
# command, but a relay may wait less.
# NOTE: on a relay that closes idle connections sooner than this, the next
# mail over such a connection fails as temporary and waits for its backoff.
IDLE_CHECK_SECONDS = 5.0
# A connection is closed with QUIT once it is this old, as Postfix's SMTP
# client does by default (smtp_connection_reuse_time_limit = 300s).
REUSE_TIME_LIMIT_SECONDS = 300.0


@dataclass
class _Connection:
    client: smtplib.SMTP
    opened_at: float
    used_at: float


class RelaySender:
    """Send through one relay; 4xx and network errors are temporary, 5xx permanent.

    At most ``max_connections`` connections are open at a time. A
    connection goes back to a pool after each mail, also after the relay
    rejected that mail, and the next send takes the one used last. One
    that failed on the network or was closed by the relay is dropped.
    """

    def __init__(self, relay: RelaySettings, max_connections: int = 4) -> None:
        self.relay = relay
        self._slots = threading.BoundedSemaphore(max_connections)
        self._idle: list[_Connection] = []
        self._idle_lock = threading.Lock()

    def __str__(self) -> str:
        return f"relay {self.relay}"

    def send(self, outbox_id: int, mail_from: str, rcpt_to: str, raw: bytes) -> str:
        with self._slots:
            connection = self._take_connection()
            # True once the conversation ended with a reply from the relay
            # or an error after which smtplib closed the socket, so that
            # an open connection is between two mails.
            settled = False
            try:
                self._transfer(connection.client, mail_from, rcpt_to, raw)
                settled = True
            except (TemporaryDeliveryError, PermanentDeliveryError):
                settled = True
                raise
            finally:
                self._put_back(connection, settled)
        return f"accepted by {self.relay}"

    def close(self) -> None:
        """Close the idle connections with QUIT; later sends open new ones."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            _quit(connection.client)

    def _transfer(
        self, client: smtplib.SMTP, mail_from: str, rcpt_to: str, raw: bytes
    ) -> None:
        """Send one mail; raise TemporaryDeliveryError or
        PermanentDeliveryError with the relay's reply.

        smtplib sends RSET after a rejected MAIL, RCPT or DATA, and closes
        the socket after a 421 or a network error, so a connection whose
        socket is open can carry the next mail.
        """
        try:
            refused = client.sendmail(mail_from, [rcpt_to], raw)
        except smtplib.SMTPRecipientsRefused as error:
            code, text = next(iter(error.recipients.values()))
            raise _classify(code, text, "RCPT") from None
        except smtplib.SMTPResponseException as error:
            raise _classify(error.smtp_code, error.smtp_error, "relay") from None
        except (smtplib.SMTPException, OSError) as error:
            raise TemporaryDeliveryError(f"relay {self.relay}: {error}") from None
        if refused:
            code, text = next(iter(refused.values()))
            raise _classify(code, text, "RCPT")

    def _take_connection(self) -> _Connection:
        while True:
            with self._idle_lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return self._open()
            now = time.monotonic()
            if now - connection.opened_at > REUSE_TIME_LIMIT_SECONDS:
                _quit(connection.client)
            elif now - connection.used_at <= IDLE_CHECK_SECONDS:
                return connection
            elif _answers_noop(connection.client):
                return connection
            else:
                log.info("relay %s closed an idle connection", self.relay)
                connection.client.close()

    def _put_back(self, connection: _Connection, settled: bool) -> None:
        now = time.monotonic()
        if not settled or connection.client.sock is None:
            connection.client.close()
            return
        if now - connection.opened_at > REUSE_TIME_LIMIT_SECONDS:
            _quit(connection.client)
            return
        connection.used_at = now
        with self._idle_lock:
            self._idle.append(connection)

    def _open(self) -> _Connection:
        """Connect, greet and log in; raise the classified error on failure."""
        try:
            client = self._connect()
        except smtplib.SMTPResponseException as error:
            raise _classify(error.smtp_code, error.smtp_error, "relay") from None
        except (smtplib.SMTPException, OSError) as error:
            raise TemporaryDeliveryError(f"relay {self.relay}: {error}") from None
        now = time.monotonic()
        log.debug("relay %s: connection opened", self.relay)
        return _Connection(client, opened_at=now, used_at=now)

    def _connect(self) -> smtplib.SMTP:
        relay = self.relay
        if relay.implicit_tls:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                relay.host, relay.port, timeout=relay.timeout_seconds,
                context=ssl.create_default_context(),
            )
        else:
            client = smtplib.SMTP(relay.host, relay.port, timeout=relay.timeout_seconds)
        try:
            if relay.starttls:
                client.starttls(context=ssl.create_default_context())
            if relay.username:
                client.login(relay.username, relay.password or "")
            client.ehlo_or_helo_if_needed()
        except BaseException:
            client.close()
            raise
        return client


def _answers_noop(client: smtplib.SMTP) -> bool:
    try:
        code, _ = client.noop()
    except (smtplib.SMTPException, OSError):
        return False
    return code == 250


def _quit(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def _classify(code: int, text: bytes | str, stage: str) -> Exception:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    message = f"{stage} replied {code} {text}"
    if 400 <= code < 500:
        return TemporaryDeliveryError(message)
    return PermanentDeliveryError(message)
