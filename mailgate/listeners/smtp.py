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
) -> asyncio.Server:
    """Listen on ``host:port`` in the running loop and return the server."""
    handler = SpoolHandler(app, on_spooled)
    loop = asyncio.get_running_loop()
    limit = app.settings.max_message_bytes

    def factory() -> GatewaySMTP:
        return GatewaySMTP(
            handler,
            data_size_limit=limit,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=app.settings.domain,
            ident="mailgate",
            loop=loop,
        )

    return await loop.create_server(factory, host=host, port=port)
