"""Parse spooled mail in child processes, each parse under a time limit.

Why processes and not a thread with a timeout: Python cannot stop a
thread. A parse that runs away would keep running, and holding the GIL,
after its caller gave up, so a hostile mail sent a hundred times would
leave a hundred such threads. A child process is killed when its time is
up, runs under an address-space limit (``RLIMIT_AS``), and takes a crash
in a C extension (lxml, nh3) down with it alone.

Children are forked from a ``forkserver`` that imports the parser once,
so the gateway's own threads are never forked, and they are kept and
reused: a parse costs a pipe round trip, not a process start. A child
that timed out or died is replaced on the next parse.
"""

from __future__ import annotations

import logging
import multiprocessing
import resource
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from mailgate.bounces import DeliveryReport, read_delivery_report
from mailgate.settings import Settings
from mailgate.parsing import (
    MessageLimits,
    ParsedMail,
    ParseError,
    ParserCrashed,
    ParseTimeout,
    check_message_limits,
    parse_message,
)

log = logging.getLogger(__name__)

# How long a killed child gets to exit before it is left to the forkserver.
KILL_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class ParsedSpoolMail:
    """A parsed mail and, when it is one, the delivery report it carries."""

    mail: ParsedMail
    report: DeliveryReport | None


def parse_and_read_report(raw: bytes) -> ParsedSpoolMail:
    """Parse ``raw`` and read its delivery report; runs inside a child."""
    return ParsedSpoolMail(parse_message(raw), read_delivery_report(raw))


def _child_main(connection: Connection, memory_limit_bytes: int | None) -> None:
    """Serve parse requests on ``connection`` until the parent closes it.

    Every exception a parse raises, RecursionError and MemoryError
    included, is sent back as a result, so one mail never ends the child.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_limit_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    while True:
        try:
            raw = connection.recv_bytes()
        except (EOFError, OSError):
            return
        result: tuple[str, Any]
        try:
            result = ("ok", parse_and_read_report(raw))
        except ParseError as error:
            result = ("parse_error", str(error))
        except BaseException as error:  # noqa: BLE001 - report it, keep serving
            result = ("error", f"{type(error).__name__}: {error}")
        del raw
        try:
            connection.send(result)
        except Exception as error:  # noqa: BLE001 - e.g. a result that cannot be pickled
            connection.send(("error", f"result could not be returned: {error}"))


class _Child:
    """One parser process and the parent's end of its pipe."""

    def __init__(self, context: Any, memory_limit_bytes: int | None) -> None:
        self.connection, child_end = context.Pipe()
        self.process = context.Process(
            target=_child_main, args=(child_end, memory_limit_bytes),
            name="mailgate-parser", daemon=True,
        )
        self.process.start()
        child_end.close()

    def kill(self) -> None:
        self.connection.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(KILL_WAIT_SECONDS)


class ParserPool:
    """At most ``size`` parser processes, shared by the threads of one process."""

    def __init__(
        self, size: int, timeout_seconds: float, memory_limit_bytes: int | None
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.memory_limit_bytes = memory_limit_bytes
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["mailgate.sandbox"])
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[_Child] = []
        self._lock = threading.Lock()
        self._closed = False

    def parse(self, raw: bytes) -> ParsedSpoolMail:
        """Parse ``raw`` in a child; raise a ParseError subclass when it fails.

        Raises:
            ParseError: the bytes are not a mail, or parsing raised.
            ParseTimeout: the parse ran longer than ``timeout_seconds``.
            ParserCrashed: the child died, e.g. over its memory limit.
        """
        with self._slots:
            child = self._take()
            started = time.monotonic()
            try:
                child.connection.send_bytes(raw)
                if not child.connection.poll(self.timeout_seconds):
                    child.kill()
                    raise ParseTimeout(
                        f"parsing took longer than {self.timeout_seconds:g} s"
                        " (MAILGATE_PARSE_TIMEOUT_SECONDS)"
                    )
                status, payload = child.connection.recv()
            except (EOFError, OSError) as error:
                child.kill()
                raise ParserCrashed(
                    f"the parser process died (exit code {child.process.exitcode}):"
                    f" {type(error).__name__}"
                ) from None
            self._give_back(child)
        log.debug("parsed %d bytes in %.3f s", len(raw), time.monotonic() - started)
        if status == "ok":
            return payload
        if status == "parse_error":
            raise ParseError(payload)
        raise ParseError(f"message could not be parsed: {payload}")

    def _take(self) -> _Child:
        with self._lock:
            while self._idle:
                child = self._idle.pop()
                if child.process.is_alive():
                    return child
                child.kill()
        return _Child(self._context, self.memory_limit_bytes)

    def _give_back(self, child: _Child) -> None:
        with self._lock:
            if self._closed:
                child.kill()
            else:
                self._idle.append(child)

    def close(self) -> None:
        """Stop every idle child; children in use stop when given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for child in idle:
            child.kill()


_pools: dict[tuple[int, float, int | None], ParserPool] = {}
_pools_lock = threading.Lock()


def parser_pool(size: int, timeout_seconds: float, memory_limit_bytes: int | None) -> ParserPool:
    """Return this process's pool for these limits, creating it on first use."""
    key = (size, timeout_seconds, memory_limit_bytes)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = ParserPool(size, timeout_seconds, memory_limit_bytes)
        return pool


def message_limits(settings: Settings) -> MessageLimits:
    """Return the pre-parse limits the settings configure."""
    return MessageLimits(
        max_message_bytes=settings.max_message_bytes,
        max_header_bytes=settings.max_header_bytes,
        max_header_field_bytes=settings.max_header_field_bytes,
        max_line_bytes=settings.max_line_bytes,
        max_mime_depth=settings.max_mime_depth,
        max_mime_parts=settings.max_mime_parts,
        max_attachments=settings.max_attachments,
        max_attachment_bytes=settings.max_attachment_bytes,
    )


def parse_spooled_mail(raw: bytes, settings: Settings) -> ParsedSpoolMail:
    """Check ``raw`` against the configured limits, then parse it in a
    child process of this process's pool (one child per worker thread).

    Raises ParseError (or a subclass naming the limit, the timeout or the
    crash) when the mail cannot be parsed.
    """
    check_message_limits(raw, message_limits(settings))
    pool = parser_pool(
        settings.worker_threads, settings.parse_timeout_seconds, settings.parse_memory_limit_bytes
    )
    return pool.parse(raw)
