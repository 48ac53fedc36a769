"""The SMTP listener: takes mail for the addresses we serve and spools it.

It replies ``250 queued as <id>`` only after the spool row is committed, and
451 when the commit fails, so the sender retries and nothing is lost. Any
address we do not serve gets 550 at RCPT, so it is never an open relay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from mailgate.app import App
from mailgate.listeners import replies
from mailgate.listeners.pipe import header_problem
from store.spool import Envelope as SpoolEnvelope
from store.spool import spool_message

log = logging.getLogger(__name__)

# RFC 5321 4.5.3.1.6 limits a line to 1000 octets. Real mail carries longer
# header lines, so we accept lines up to this length rather than lose mail.
LINE_LENGTH_LIMIT = 64 * 1024


class GatewaySMTP(SMTP):
    line_length_limit = LINE_LENGTH_LIMIT

    def __init__(
        self, *args: Any, sessions: set[GatewaySMTP] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        # The open sessions of this session's listener, for a graceful stop.
        self._open_sessions = sessions if sessions is not None else set()
        self.in_data = False
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._open_sessions.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._open_sessions.discard(self)
        super().connection_lost(error)

    async def smtp_DATA(self, arg: str) -> None:
        # Between "DATA" and the reply to the final dot (which is sent only
        # after the spool commit), a shutdown waits for this session.
        if self.closing:
            await self.push(replies.SHUTTING_DOWN)
            self.close_session()
            return
        self.in_data = True
        try:
            await super().smtp_DATA(arg)
        finally:
            self.in_data = False

    def close_session(self, reply: str | None = None) -> None:
        """Send ``reply`` (e.g. 421) if given and close the connection."""
        if self.transport is None:
            return
        if reply:
            self.transport.write(reply.encode("ascii") + b"\r\n")
        self.transport.close()


class SMTPListener:
    """The listening socket and its open sessions, for a graceful stop."""

    def __init__(self, server: asyncio.Server, sessions: set[GatewaySMTP]) -> None:
        self.server = server
        self.sessions = sessions

    @property
    def sockets(self) -> tuple[Any, ...]:
        return tuple(self.server.sockets)

    def close(self) -> None:
        self.server.close()

    async def wait_closed(self) -> None:
        await self.server.wait_closed()

    async def shutdown(self, grace_seconds: float) -> None:
        """Stop accepting connections and close every session with 421.

        Sessions receiving DATA or spooling it get up to ``grace_seconds``
        to finish, so a mail in hand is acknowledged or, past the grace time,
        left unacknowledged for the sender to retry. Idle sessions are
        closed at once.
        """
        self.server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        for session in list(self.sessions):
            session.closing = True
        while self.sessions and loop.time() < deadline:
            for session in list(self.sessions):
                if not session.in_data:
                    session.close_session(replies.SHUTTING_DOWN)
            await asyncio.sleep(0.05)
        busy = [session for session in self.sessions if session.in_data]
        if busy:
            log.warning(
                "SMTP shutdown grace time of %.0fs elapsed; closing %d sessions in "
                "DATA, whose mail is not acknowledged", grace_seconds, len(busy),
            )
        for session in list(self.sessions):
            session.close_session(replies.SHUTTING_DOWN)
        await self.server.wait_closed()


class SpoolHandler:
    """aiosmtpd handler that spools every accepted message."""

    def __init__(self, app: App, on_spooled: Callable[[int], None]) -> None:
        self.app = app
        self.on_spooled = on_spooled

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        mail_options: list[str],
    ) -> str:
        if not envelope.smtp_utf8 and not address.isascii():
            log.info("MAIL rejected peer=%s: non-ASCII address without SMTPUTF8", session.peer)
            return replies.NON_ASCII_ADDRESS
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return replies.SENDER_OK

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        if not envelope.smtp_utf8 and not address.isascii():
            log.info("RCPT rejected peer=%s: non-ASCII address without SMTPUTF8", session.peer)
            return replies.NON_ASCII_ADDRESS
        loop = asyncio.get_running_loop()
        try:
            served = await loop.run_in_executor(None, self.app.serves, address)
        except Exception:
            log.exception("RCPT check for %s failed, replying 451", address)
            return replies.SPOOL_UNAVAILABLE
        if not served:
            log.info("RCPT rejected peer=%s rcpt=<%s>: not served", session.peer, address)
            return replies.RCPT_NOT_SERVED.format(address=address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return replies.RCPT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        problem = header_problem(raw)
        if problem:
            log.info("DATA rejected peer=%s size=%d: %s", session.peer, len(raw), problem)
            return replies.NOT_A_MESSAGE.format(problem=problem)
        spool_envelope = SpoolEnvelope(
            mail_from=_printable(envelope.mail_from or ""),
            rcpt_tos=tuple(_printable(rcpt) for rcpt in envelope.rcpt_tos),
            source="smtp",
            peer=_peer(session.peer),
            helo=_printable(session.host_name or "") or None,
        )
        loop = asyncio.get_running_loop()
        try:
            spool_id = await loop.run_in_executor(
                None, spool_message, self.app.sessions, raw, spool_envelope
            )
        except Exception:
            log.exception("spooling failed for peer=%s size=%d, replying 451", session.peer, len(raw))
            return replies.SPOOL_UNAVAILABLE
        self.on_spooled(spool_id)
        return replies.QUEUED.format(spool_id=spool_id)


def _printable(text: str) -> str:
    """Return ``text`` safe to store: undecodable bytes (kept by aiosmtpd as
    surrogates, e.g. from an 8-bit EHLO name) become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _peer(peer: Any) -> str | None:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer) if peer else None


async def start_smtp_server(
    app: App, host: str, port: int, on_spooled: Callable[[int], None]
) -> SMTPListener:
    """Listen on ``host:port`` in the running loop and return the listener."""
    handler = SpoolHandler(app, on_spooled)
    loop = asyncio.get_running_loop()
    limit = app.settings.max_message_bytes
    sessions: set[GatewaySMTP] = set()

    def factory() -> GatewaySMTP:
        return GatewaySMTP(
            handler,
            data_size_limit=limit,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=app.settings.domain,
            ident="mailgate",
            loop=loop,
            sessions=sessions,
        )

    server = await loop.create_server(factory, host=host, port=port)
    return SMTPListener(server, sessions)
