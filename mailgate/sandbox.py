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

The gateway process never needs a mail whole. It sends the raw mail in
the chunks it reads from the spool. The child writes each large
attachment to a file in a directory the caller names and returns only
the file's name, so decoded attachments are never pickled back.
"""

from __future__ import annotations

import logging
import multiprocessing
import resource
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
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
    check_message_size,
    parse_message,
)
from mailgate.parsing.dedupe import dedupe_key

log = logging.getLogger(__name__)

# How long a killed child gets to exit before it is left to the forkserver.
KILL_WAIT_SECONDS = 5.0

# Attachments up to this size come back in the result; larger ones are
# written to a file when the caller names a directory.
INLINE_PAYLOAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class ParsedSpoolMail:
    """A parsed mail, the delivery report it carries when it is one, and
    its key for deduplication (``mailgate.parsing.dedupe``)."""

    mail: ParsedMail
    report: DeliveryReport | None
    dedupe_key: str


@dataclass(frozen=True)
class _Request:
    """The request the parent sends before the raw mail's chunks."""

    size: int
    limits: MessageLimits | None
    payload_directory: Path | None


def parse_and_read_report(
    raw: bytes, limits: MessageLimits | None = None, payload_directory: Path | None = None
) -> ParsedSpoolMail:
    """Check ``raw`` against ``limits``, parse it and read its delivery
    report; runs inside a child. With ``payload_directory``, attachments
    larger than INLINE_PAYLOAD_BYTES are written there."""
    if limits is not None:
        check_message_limits(raw, limits)
    mail = parse_message(raw)
    key = dedupe_key(mail.message_id, raw)
    report = read_delivery_report(raw)
    if payload_directory is not None:
        mail = _write_payloads(mail, payload_directory)
    return ParsedSpoolMail(mail, report, key)


def _write_payloads(mail: ParsedMail, directory: Path) -> ParsedMail:
    """Move the payloads of large attachments to files in ``directory``,
    named by their position."""
    attachments = []
    for index, item in enumerate(mail.attachments):
        if len(item.data) > INLINE_PAYLOAD_BYTES:
            path = directory / f"attachment-{index}"
            with path.open("xb") as file:
                file.write(item.data)
            item = replace(item, data=b"", payload_file=str(path), payload_size=len(item.data))
        attachments.append(item)
    return replace(mail, attachments=tuple(attachments))


def _receive_raw(connection: Connection, size: int) -> bytes:
    """Receive the chunks of a raw mail of ``size`` bytes."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        received += connection.recv_bytes_into(view[received:])
    view.release()
    return bytes(buffer)


def _child_main(connection: Connection, memory_limit_bytes: int | None) -> None:
    """Serve parse requests on ``connection`` until the parent closes it.

    Every exception a parse raises, RecursionError and MemoryError
    included, is sent back as a result, so one mail never ends the child.
    A child that cannot receive a whole mail exits, because the chunks
    left in the pipe would be taken for the next request.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_limit_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    while True:
        try:
            request: _Request = connection.recv()
            raw = _receive_raw(connection, request.size)
        except (EOFError, OSError, MemoryError):
            return
        result: tuple[str, Any]
        try:
            result = ("ok", parse_and_read_report(raw, request.limits, request.payload_directory))
        except ParseError as error:
            result = ("parse_error", error)
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

    def parse(
        self,
        raw: bytes | Iterable[bytes],
        size: int | None = None,
        *,
        limits: MessageLimits | None = None,
        payload_directory: Path | None = None,
    ) -> ParsedSpoolMail:
        """Parse a raw mail in a child; raise a ParseError subclass when it fails.

        ``raw`` is the mail, or its chunks in order when ``size`` (their
        total in bytes) is given. The child checks ``limits`` first when
        given, and writes large attachments to ``payload_directory`` when
        given (see ``parse_and_read_report``).

        Raises:
            ParseError: the bytes are not a mail, or parsing raised.
            LimitExceeded: the mail is over one of ``limits``.
            ParseTimeout: the parse ran longer than ``timeout_seconds``.
            ParserCrashed: the child died, e.g. over its memory limit.
        """
        if isinstance(raw, bytes):
            chunks: Iterable[bytes] = (raw,)
            size = len(raw)
        elif size is None:
            raise TypeError("size is required with chunks")
        else:
            chunks = raw
        request = _Request(size, limits, payload_directory)
        with self._slots:
            child = self._take()
            started = time.monotonic()
            try:
                self._send(child, request, chunks)
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
        log.debug("parsed %d bytes in %.3f s", size, time.monotonic() - started)
        if status == "ok":
            return payload
        if status == "parse_error":
            raise payload
        raise ParseError(f"message could not be parsed: {payload}")

    @staticmethod
    def _send(child: _Child, request: _Request, chunks: Iterable[bytes]) -> None:
        """Send ``request`` and the chunks of its mail.

        A child that did not get exactly ``request.size`` bytes is killed,
        because it would wait for the rest or read the next request as chunks.
        """
        sent = 0
        try:
            child.connection.send(request)
            for chunk in chunks:
                if sent + len(chunk) > request.size:
                    raise ValueError(f"the raw mail is longer than {request.size} bytes")
                child.connection.send_bytes(chunk)
                sent += len(chunk)
            if sent != request.size:
                raise ValueError(f"the raw mail is {sent} bytes, not {request.size}")
        except (EOFError, OSError):
            raise
        except BaseException:
            child.kill()
            raise

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


@contextmanager
def payload_directory(settings: Settings) -> Iterator[Path]:
    """Yield a new directory for the attachments of one parse; it is
    removed with its files on exit."""
    # NOTE: a process killed while it processes a mail leaves the directory
    # under temporary_dir, and nothing removes it later.
    settings.temporary_dir.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="parse-", dir=settings.temporary_dir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


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


def parse_spooled_mail(
    raw: bytes | Iterable[bytes],
    settings: Settings,
    *,
    size: int | None = None,
    payload_directory: Path | None = None,
) -> ParsedSpoolMail:
    """Check a raw mail against the configured limits and parse it in a
    child process of this process's pool (one child per worker thread).

    ``raw``, ``size`` and ``payload_directory`` are as for
    ``ParserPool.parse``. Raises ParseError (or a subclass naming the
    limit, the timeout or the crash) when the mail cannot be parsed.
    """
    limits = message_limits(settings)
    total = len(raw) if isinstance(raw, bytes) else size
    if total is not None:
        # Checked here too, so an oversized mail is never sent to a child.
        check_message_size(total, limits)
    pool = parser_pool(
        settings.worker_threads, settings.parse_timeout_seconds, settings.parse_memory_limit_bytes
    )
    return pool.parse(raw, size, limits=limits, payload_directory=payload_directory)
