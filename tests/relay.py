"""A local SMTP relay for tests: aiosmtpd that records what it accepts and
can reply to the first attempts with a temporary or permanent error."""

from __future__ import annotations

import email
import email.policy
import threading
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller

from tests.process import free_port


@dataclass
class RecordingRelay:
    """Replies ``failure_reply`` to the first ``failures`` DATA attempts, then 250."""

    failures: int = 0
    failure_reply: str = "451 4.3.0 Try again later"
    accepted: list[email.message.EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    attempts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope) -> str:
        with self._lock:
            self.attempts += 1
            if self.attempts <= self.failures:
                return self.failure_reply
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.accepted.append(
                email.message_from_bytes(envelope.original_content, policy=email.policy.default)
            )
        return "250 2.0.0 OK"

    def message_ids(self) -> list[str]:
        with self._lock:
            return [str(message["Message-ID"]).strip() for message in self.accepted]


class RelayServer:
    def __init__(self, relay: RecordingRelay) -> None:
        self.relay = relay
        self.port = free_port()
        self.controller = Controller(relay, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> RelayServer:
        self.controller.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.controller.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"
