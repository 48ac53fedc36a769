"""Deliver outbound mail through an SMTP relay."""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import threading

from mailgate.errors import PermanentDeliveryError, TemporaryDeliveryError
from mailgate.settings import RelaySettings

log = logging.getLogger(__name__)


class RelaySender:
    """Send through one relay; 4xx and network errors are temporary, 5xx permanent."""

    def __init__(self, relay: RelaySettings, max_connections: int = 4) -> None:
        self.relay = relay
        self._connections = threading.BoundedSemaphore(max_connections)

    def __str__(self) -> str:
        return f"relay {self.relay}"

    def _connect(self) -> smtplib.SMTP:
        relay = self.relay
        if relay.implicit_tls:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                relay.host, relay.port, timeout=relay.timeout_seconds,
                context=ssl.create_default_context(),
            )
        else:
            client = smtplib.SMTP(relay.host, relay.port, timeout=relay.timeout_seconds)
        if relay.starttls:
            client.starttls(context=ssl.create_default_context())
        if relay.username:
            client.login(relay.username, relay.password or "")
        return client

    def send(self, outbox_id: int, mail_from: str, rcpt_to: str, raw: bytes) -> str:
        with self._connections:
            return self._send(mail_from, rcpt_to, raw)

    def _send(self, mail_from: str, rcpt_to: str, raw: bytes) -> str:
        try:
            client = self._connect()
            try:
                refused = client.sendmail(mail_from, [rcpt_to], raw)
            finally:
                try:
                    client.quit()
                except smtplib.SMTPException:
                    client.close()
        except smtplib.SMTPRecipientsRefused as error:
            code, text = next(iter(error.recipients.values()))
            raise _classify(code, text, "RCPT") from None
        except smtplib.SMTPResponseException as error:
            raise _classify(error.smtp_code, error.smtp_error, "relay") from None
        except (smtplib.SMTPServerDisconnected, OSError, socket.timeout) as error:
            raise TemporaryDeliveryError(f"relay {self.relay}: {error}") from None
        if refused:
            code, text = next(iter(refused.values()))
            raise _classify(code, text, "RCPT")
        return f"accepted by {self.relay}"


def _classify(code: int, text: bytes | str, stage: str) -> Exception:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    message = f"{stage} replied {code} {text}"
    if 400 <= code < 500:
        return TemporaryDeliveryError(message)
    return PermanentDeliveryError(message)
