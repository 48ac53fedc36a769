"""Outbound mail: templates, composition, and the senders that deliver it."""

from __future__ import annotations

from typing import Protocol

from mailgate.settings import Settings


class Sender(Protocol):
    def send(self, outbox_id: int, mail_from: str, rcpt_to: str, raw: bytes) -> str:
        """Deliver one mail; return a short description of where it went."""
        ...

    def close(self) -> None:
        """Release what the sender keeps open between mails."""
        ...


def make_sender(settings: Settings) -> Sender:
    """Return the relay sender when a relay is configured, else the Maildir."""
    from mailgate.outbound.maildir import MaildirSender
    from mailgate.outbound.relay import RelaySender

    if settings.relay:
        return RelaySender(settings.relay, settings.relay_max_connections)
    return MaildirSender(settings.outbox_maildir)
