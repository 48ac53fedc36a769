"""Receive the DATA of one SMTP transaction into a file, line by line.

aiosmtpd 1.4.6 keeps every line of DATA as a bytearray in a list and joins
them at the end. A 25 MB mail then costs the gateway process the list
(about twice the mail's size, from the per-line objects) and the joined
copy at once. ``DataWriter`` takes each line as it arrives, undoes the
dot-stuffing, normalises bare line ends (``normalize_line``) and writes it
to a temporary file. The file stays in memory up to SPOOL_MEMORY_BYTES and
moves to disk beyond that, and the spool reads it a chunk at a time.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from store.spool import RawFile

# Mails up to this size never touch the disk before the spool commit.
SPOOL_MEMORY_BYTES = 1024 * 1024
# Normalised lines are written to the file in batches of about this size.
WRITE_BATCH_BYTES = 64 * 1024

_BARE_LINE_END = re.compile(rb"\r|\n")
_CRLF = b"\r\n"


def normalize_line(line: bytes) -> tuple[bytes, int]:
    """Return one line, without its CRLF, with bare CR and LF line ends
    made CRLF, and the number of bare ends found.

    aiosmtpd has removed the stuffed dot of the line; a line that follows
    a bare line end loses its leading dot here, as RFC 5321 4.5.2
    transparency requires of a client that treats LF as a line end.
    """
    if b"\r" not in line and b"\n" not in line:
        return line, 0
    pieces = _BARE_LINE_END.split(line)
    unstuffed = [piece[1:] if piece.startswith(b".") else piece for piece in pieces[1:]]
    return _CRLF.join([pieces[0], *unstuffed]), len(pieces) - 1


def normalize_line_ends(data: bytes) -> tuple[bytes, int]:
    """Return ``data`` with bare CR and LF line ends made CRLF, and the
    number of bare ends found; ``normalize_line`` applied to each line."""
    segments = data.split(_CRLF)
    if not any(_BARE_LINE_END.search(segment) for segment in segments):
        return data, 0
    lines: list[bytes] = []
    bare = 0
    for segment in segments:
        line, found = normalize_line(segment)
        lines.append(line)
        bare += found
    return _CRLF.join(lines), bare


class DataWriter:
    """The raw mail of one DATA command, written as its lines arrive."""

    def __init__(self, directory: Path | None) -> None:
        # The file on disk is unlinked at once, so a crash leaves nothing.
        self.file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES, dir=directory)
        self.size = 0
        self.bare_line_ends = 0
        # The first line with a byte other than white space, or b"" while
        # there is none: what ``header_problem`` needs to tell an empty mail.
        self.first_content_line = b""
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._finished = False

    def add_line(self, line: bytes) -> None:
        """Add one line of DATA as received, ending in CRLF."""
        body = line[:-2]
        if body.startswith(b"."):
            body = body[1:]
        body, bare = normalize_line(body)
        self.bare_line_ends += bare
        if not self.first_content_line and body.strip():
            self.first_content_line = body
        self._batch += (body, _CRLF)
        self._batch_bytes += len(body) + 2
        if self._batch_bytes >= WRITE_BATCH_BYTES:
            self._write_batch()

    def finish(self) -> RawFile:
        """Return the mail received; from then on the caller closes it."""
        self._write_batch()
        self.file.flush()
        self._finished = True
        return RawFile(self.file, self.size)  # type: ignore[arg-type]

    def close(self) -> None:
        """Close the file unless ``finish`` handed it over."""
        if not self._finished:
            self.file.close()

    def _write_batch(self) -> None:
        data = b"".join(self._batch)
        self.file.write(data)
        self.size += len(data)
        self._batch.clear()
        self._batch_bytes = 0
