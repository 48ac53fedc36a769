"""The SMTP listener: takes mail for the addresses we serve and spools it.

It replies ``250 queued as <id>`` only after the spool row is committed, and
451 when the commit fails, so the sender retries and nothing is lost. Any
address we do not serve gets 550 at RCPT, so it is never an open relay.

Budgets against abuse: connections in total and per peer address (421 on
connect), commands and seconds per connection (421, then the connection
is closed), and free disk under home (452 at MAIL, 451 at DATA).

Bare line ends (RFC 5321 2.3.8): aiosmtpd 1.4.5 and later end DATA only
at ``<CRLF>.<CRLF>``, so a bare LF can never end a mail here. Mail whose
lines end in a bare LF or CR, as scripts send it, is kept, with every line
end normalised to CRLF and lines after a bare LF dot-unstuffed as the
client stuffed them. A line holding only "." next to a bare LF is what
SMTP smuggling uses to hide a second mail in the first, which a lax
server downstream would split; that mail gets 550 5.5.2. Command lines
ending in a bare LF are accepted, as aiosmtpd reads them.

DATA is written to a file as it arrives (``data.py``), never held whole.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import shutil
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session
from sqlalchemy.orm import configure_mappers

from mailgate.app import App
from mailgate.listeners import replies
from mailgate.listeners.data import DataWriter
from mailgate.listeners.pipe import header_problem
from store.spool import Envelope as SpoolEnvelope
from store.spool_writer import SpoolWriter, SpoolWriterClosed

log = logging.getLogger(__name__)

# RFC 5321 4.5.3.1.6 limits a line to 1000 octets. Real mail carries longer
# header lines, so we accept lines up to this length rather than lose mail.
LINE_LENGTH_LIMIT = 64 * 1024
# A line "." with a bare LF before or after it, in the bytes a client sends.
_BARE_LF_DOT = re.compile(rb"(?<!\r)\n\.\r?\n|\r\n\.\n")
_CRLF = b"\r\n"


# The usual form of a MAIL or RCPT argument: "<local@domain>", both
# dot-atoms of ASCII atext (RFC 5322 3.2.3, 3.4.1), then nothing, or blanks
# and parameters that do not start with a comment.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_SIMPLE_ADDRESS_ARGUMENT = re.compile(
    rf"<({_ATEXT}+(?:\.{_ATEXT}+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
    r"(?:[ \t]*\Z|[ \t]+([^\s(].*)\Z)",
    re.DOTALL,
)


def parse_simple_address(argument: str) -> tuple[str, str] | None:
    """Return (address, parameters) of a MAIL or RCPT argument in the simple
    form, as aiosmtpd's parser returns them, or None for any other form."""
    match = _SIMPLE_ADDRESS_ARGUMENT.match(argument)
    if match is None:
        return None
    return match.group(1), match.group(2) or ""


class ConnectionLimiter:
    """Open SMTP connections in total and per peer address.

    Used only from the event loop's thread, so it needs no lock.
    """

    def __init__(self, max_total: int, max_per_address: int) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.total = 0
        self.by_address: Counter[str] = Counter()

    def acquire(self, address: str) -> str | None:
        """Count a new connection; return the 421 reply when it is one too many."""
        if self.total >= self.max_total:
            return replies.TOO_MANY_CONNECTIONS
        if self.by_address[address] >= self.max_per_address:
            return replies.TOO_MANY_CONNECTIONS_FROM_PEER
        self.total += 1
        self.by_address[address] += 1
        return None

    def release(self, address: str) -> None:
        self.total -= 1
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]


class ReceivedEnvelope(Envelope):
    """aiosmtpd's envelope, with the DATA received into a file."""

    def __init__(self) -> None:
        super().__init__()
        self.data: DataWriter | None = None


class GatewaySMTP(SMTP):
    """aiosmtpd's SMTP with connection, command and time budgets, a watch
    for bare-LF dot lines in the bytes the client sends, and DATA written
    to a file as it arrives."""

    line_length_limit = LINE_LENGTH_LIMIT

    def __init__(
        self,
        handler: Any,
        *,
        limiter: ConnectionLimiter,
        max_commands: int,
        max_session_seconds: float,
        sessions: set[GatewaySMTP] | None = None,
        temporary_dir: Path | None = None,
        **kwargs: Any,
    ) -> None:
        # DataWriter keeps the bytes as sent, which is what decode_data=False means.
        if kwargs.get("decode_data"):
            raise ValueError("GatewaySMTP receives DATA as bytes; decode_data must be False")
        super().__init__(handler, **kwargs)
        self.temporary_dir = temporary_dir
        # The open sessions of this session's listener, for a graceful stop.
        self._open_sessions = sessions if sessions is not None else set()
        self.in_data = False
        self.closing = False
        self.limiter = limiter
        self.max_commands = max_commands
        self.max_session_seconds = max_session_seconds
        self.commands = 0
        self.bare_lf_dot_seen = False
        self._tail = b""
        self._peer_address: str | None = None
        self._rejected_on_connect = False
        self._deadline: asyncio.TimerHandle | None = None
        self._smtp_methods = {
            name: self._budgeted(method) for name, method in self._smtp_methods.items()
        }

    def _budgeted(
        self, method: Callable[[str | None], Awaitable[None]]
    ) -> Callable[[str | None], Awaitable[None]]:
        @functools.wraps(method)
        async def call(arg: str | None) -> None:
            self.commands += 1
            if self.commands > self.max_commands:
                log.info("peer=%s closed after %d commands", self._peer_address, self.max_commands)
                await self.push(replies.TOO_MANY_COMMANDS)
                if self.transport is not None:
                    self.transport.close()
                return
            await method(arg)

        return call

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd 1.4 builds a class and a token tree for every address.
        # The usual form is read with one regular expression instead, and
        # every other form still goes to aiosmtpd's parser.
        simple = None if self.local_part_limit else parse_simple_address(arg)
        if simple is not None:
            return simple
        return super()._getaddr(arg)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:
            peer = transport.get_extra_info("peername")
            address = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
            refusal = self.limiter.acquire(address)
            if refusal is not None:
                log.info("connection from %s refused: %s", address, refusal)
                self._rejected_on_connect = True
                transport.write(refusal.encode("ascii") + _CRLF)  # type: ignore[attr-defined]
                transport.close()
                return
            self._peer_address = address
            self._deadline = self.loop.call_later(self.max_session_seconds, self._session_expired)
            self._open_sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._rejected_on_connect:
            return
        self._open_sessions.discard(self)
        if self._deadline is not None:
            self._deadline.cancel()
        if self._peer_address is not None:
            self.limiter.release(self._peer_address)
            self._peer_address = None
        super().connection_lost(error)

    def _session_expired(self) -> None:
        if self.transport is None:
            return
        log.info("peer=%s closed after %.0f s", self._peer_address, self.max_session_seconds)
        self.transport.write(replies.SESSION_TOO_LONG.encode("ascii") + _CRLF)  # type: ignore[attr-defined]
        self.transport.close()

    async def smtp_DATA(self, arg: str) -> None:
        # Between "DATA" and the reply to the final dot (which is sent only
        # after the spool commit), a shutdown waits for this session.
        if self.closing:
            await self.push(replies.SHUTTING_DOWN)
            self.close_session()
            return
        self.in_data = True
        try:
            await self._receive_data(arg)
        finally:
            self.in_data = False

    def _create_envelope(self) -> ReceivedEnvelope:
        return ReceivedEnvelope()

    async def _receive_data(self, arg: str) -> None:
        """aiosmtpd 1.4.6's smtp_DATA, with each line written to a
        DataWriter instead of a list of every line."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert isinstance(self.envelope, ReceivedEnvelope)
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        data = DataWriter(self.temporary_dir)
        try:
            failure = await self._read_data_lines(data)
            if failure is not None:
                await self.push(failure)
                self._set_post_data_state()
                return
            self.envelope.data = data
            status = await self._call_handler_hook("DATA")
        finally:
            data.close()
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def _read_data_lines(self, data: DataWriter) -> str | None:
        """Read DATA up to the line ".".

        Returns the reply to a mail over the size or line length limit, or
        None. The reply is sent only after the whole DATA, as RFC 5321 4.2.5
        implies.
        """
        failure = None
        size = 0
        limit = self.data_size_limit
        fragments: list[bytes] = []
        while self.transport is not None:
            # When the client goes away, aiosmtpd's eof_received cancels this
            # coroutine, so the read ends in CancelledError.
            try:
                line = await self._reader.readuntil(_CRLF)
            except asyncio.CancelledError:
                log.info("peer=%s connection lost during DATA", self._peer_address)
                self._writer.close()
                raise
            except asyncio.LimitOverrunError as error:
                # Longer than the stream limit: drain it and reply 500 at the end.
                failure = failure or replies.DATA_LINE_TOO_LONG
                line = await self._reader.read(error.consumed)
            if not fragments and line == b".\r\n":
                break
            size += len(line)
            if failure is None and limit and size > limit:
                failure = replies.DATA_TOO_LARGE
            fragments.append(line)
            if not line.endswith(_CRLF):
                continue
            if failure is None:
                whole = b"".join(fragments)
                if len(whole) > self.line_length_limit:
                    failure = replies.DATA_LINE_TOO_LONG
                else:
                    failure = self._add_data_line(data, whole)
            fragments.clear()
        return failure

    def _add_data_line(self, data: DataWriter, line: bytes) -> str | None:
        """Add ``line`` to ``data``; return the 451 reply when its file
        cannot be written (the rest of DATA is then read and dropped)."""
        try:
            data.add_line(line)
        except OSError:
            log.exception("peer=%s DATA could not be written to a temporary file", self._peer_address)
            return replies.SPOOL_UNAVAILABLE
        return None

    def close_session(self, reply: str | None = None) -> None:
        """Send ``reply`` (e.g. 421) if given and close the connection."""
        if self.transport is None:
            return
        if reply:
            self.transport.write(reply.encode("ascii") + b"\r\n")  # type: ignore[attr-defined]
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        # The tail of the last chunk catches a pattern split between two
        # chunks; a match that ends inside the tail was counted before.
        window = self._tail + data
        for match in _BARE_LF_DOT.finditer(window):
            if match.end() > len(self._tail):
                self.bare_lf_dot_seen = True
        self._tail = window[-5:]
        super().data_received(data)


class SMTPListener:
    """The listening socket and its open sessions, for a graceful stop."""

    def __init__(
        self, server: asyncio.Server, sessions: set[GatewaySMTP], writer: SpoolWriter
    ) -> None:
        self.server = server
        self.sessions = sessions
        self.writer = writer

    @property
    def sockets(self) -> tuple[Any, ...]:
        return tuple(self.server.sockets)

    def close(self) -> None:
        """Stop accepting connections and stop the spool writer, which first
        commits the mails already handed to it."""
        self.server.close()
        self.writer.close()

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
        await loop.run_in_executor(None, self.writer.close)


# How long one reading of the free disk under home serves the checks at
# MAIL and DATA, in place of a statvfs call per command. A mail that finds
# the disk full within that time still gets 451 from its failed commit.
FREE_DISK_CHECK_SECONDS = 1.0


class SpoolHandler:
    """aiosmtpd handler that spools every accepted message."""

    def __init__(self, app: App, writer: SpoolWriter) -> None:
        self.app = app
        self.writer = writer
        # (time.monotonic() when read, free bytes under home)
        self._free_disk: tuple[float, int] = (float("-inf"), 0)

    def disk_is_short(self) -> bool:
        """True when free disk under home is below the configured margin."""
        settings = self.app.settings
        read_at, free = self._free_disk
        if time.monotonic() - read_at > FREE_DISK_CHECK_SECONDS:
            try:
                free = shutil.disk_usage(Path(settings.home)).free
            except OSError:
                log.exception("free disk under %s could not be read", settings.home)
                return True
            self._free_disk = (time.monotonic(), free)
        if free < settings.free_disk_margin_bytes:
            log.warning(
                "free disk %d bytes under %s is below the margin of %d bytes",
                free, settings.home, settings.free_disk_margin_bytes,
            )
            return True
        return False

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        mail_options: list[str],
    ) -> str:
        if not envelope.smtp_utf8 and not address.isascii():
            log.info("MAIL rejected peer=%s: non-ASCII address without SMTPUTF8", session.peer)
            return replies.NON_ASCII_ADDRESS
        if self.disk_is_short():
            return replies.INSUFFICIENT_STORAGE_MAIL
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
        served = self.app.serves_from_cache(address)
        if served is None:
            # The cache has expired: reload it on a thread, not on the loop.
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
        if getattr(server, "bare_lf_dot_seen", False):
            server.bare_lf_dot_seen = False  # type: ignore[attr-defined]
            log.warning("DATA rejected peer=%s: bare LF next to a dot line", session.peer)
            return replies.BARE_LF_DOT
        if self.disk_is_short():
            return replies.INSUFFICIENT_STORAGE_DATA
        data = getattr(envelope, "data", None)
        assert isinstance(data, DataWriter), "handle_DATA needs GatewaySMTP"
        if data.bare_line_ends:
            log.info(
                "peer=%s sent %d bare line ends, normalised to CRLF",
                session.peer, data.bare_line_ends,
            )
        problem = header_problem(data.first_content_line)
        if problem:
            log.info("DATA rejected peer=%s size=%d: %s", session.peer, data.size, problem)
            return replies.NOT_A_MESSAGE.format(problem=problem)
        raw = data.finish()
        spool_envelope = SpoolEnvelope(
            mail_from=_printable(envelope.mail_from or ""),
            rcpt_tos=tuple(_printable(rcpt) for rcpt in envelope.rcpt_tos),
            source="smtp",
            peer=_peer(session.peer),
            helo=_printable(session.host_name or "") or None,
        )
        try:
            # The writer commits this mail together with those of other
            # sessions; the future is resolved only after that commit.
            future = self.writer.submit(raw, spool_envelope)
            # Closed when the writer is done with it, which may be after
            # this session has ended.
            future.add_done_callback(lambda _: raw.close())
            spool_id = await asyncio.wrap_future(future)
        except SpoolWriterClosed:
            raw.close()
            log.warning("spool writer closed, replying 451 to peer=%s", session.peer)
            return replies.SPOOL_UNAVAILABLE
        except Exception:
            log.exception("spooling failed for peer=%s size=%d, replying 451", session.peer, len(raw))
            return replies.SPOOL_UNAVAILABLE
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
    app: App, host: str, port: int, on_spooled: Callable[[list[int]], None]
) -> SMTPListener:
    """Listen on ``host:port`` in the running loop and return the listener.

    ``on_spooled`` is called with the new spool ids of one or more
    commits, on a thread of the spool writer, once their rows are
    committed.
    """
    settings = app.settings
    settings.temporary_dir.mkdir(parents=True, exist_ok=True)
    writer = SpoolWriter(app.engine, on_committed=on_spooled)
    handler = SpoolHandler(app, writer)
    loop = asyncio.get_running_loop()
    limit = settings.max_message_bytes
    limiter = ConnectionLimiter(settings.max_connections, settings.max_connections_per_ip)
    sessions: set[GatewaySMTP] = set()

    def factory() -> GatewaySMTP:
        return GatewaySMTP(
            handler,
            limiter=limiter,
            max_commands=settings.max_commands_per_connection,
            max_session_seconds=settings.max_session_seconds,
            temporary_dir=settings.temporary_dir,
            data_size_limit=limit,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=app.settings.domain,
            ident="mailgate",
            loop=loop,
            sessions=sessions,
        )

    # The first ORM query would configure every mapper, which takes longer
    # than the query itself, in the RCPT that loads the served addresses.
    await loop.run_in_executor(None, configure_mappers)
    try:
        server = await loop.create_server(factory, host=host, port=port)
    except OSError:
        writer.close()
        raise
    return SMTPListener(server, sessions, writer)
