"""Find and decode uuencoded files inside plain-text bodies.

Old clients (Outlook with "uuencode" send format, Pine, scripts piping
``uuencode`` into ``mail``) put files into the text body instead of a MIME
part:

    begin 644 notes.txt
    M3F]T:7IE;B!Z=6T@5&5R;6EN"BT@...
    `
    end

``begin-base64`` blocks, written by ``uuencode -m``, end with "====".
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

from mailgate.parsing.encoded_words import decode_base64_lenient

_BEGIN = re.compile(r"^begin(?P<base64>-base64)? [0-7]{3,4} (?P<name>\S.*?)\s*$")
_BASE64_LINE = re.compile(r"^[A-Za-z0-9+/=]*$")


@dataclass(frozen=True)
class UuencodedFile:
    """A file decoded from a uuencoded block."""

    filename: str  # as written on the begin line
    data: bytes


def _decode_uu_line(line: str) -> bytes | None:
    """Decode one uuencoded line; None when it is not one.

    Mailers strip trailing spaces, so short lines are padded; extra
    characters after the length the first character announces are ignored.
    """
    if not line or not line.isascii():
        return None
    length = (ord(line[0]) - 32) & 63
    needed = 1 + (length * 4 + 2) // 3
    raw = line.encode("ascii")
    if len(raw) < needed:
        raw = raw.ljust(needed, b" ")
    try:
        return binascii.a2b_uu(raw[:needed])
    except binascii.Error:
        return None


def decode_uuencoded_lines(lines: list[str]) -> bytes | None:
    """Decode the data lines of a uuencoded block; None when one is invalid.

    A "begin" line is skipped, and decoding stops at the "end" line.
    """
    chunks: list[bytes] = []
    for line in lines:
        stripped = line.rstrip("\r\n")
        if stripped.startswith("begin "):
            continue
        if stripped.strip() == "end":
            break
        if not stripped.strip():
            continue
        chunk = _decode_uu_line(stripped)
        if chunk is None:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _block_end(lines: list[str], start: int, is_base64: bool) -> int | None:
    """Return the index of the line that closes the block, or None."""
    end_marker = "====" if is_base64 else "end"
    for index in range(start + 1, len(lines)):
        if lines[index].strip() == end_marker:
            return index
    return None


def _decode_block(lines: list[str], is_base64: bool) -> bytes | None:
    """Decode the data lines between a begin line and its end marker."""
    if not is_base64:
        return decode_uuencoded_lines(lines)
    if not all(_BASE64_LINE.match(line.strip()) for line in lines):
        return None
    return decode_base64_lenient("".join(lines).encode("ascii"))


def _decode_block_at(lines: list[str], index: int) -> tuple[UuencodedFile, int] | None:
    """Decode the block that begins at ``lines[index]``.

    Returns the file and the index of the block's last line, or None when
    no complete, valid block begins there.
    """
    match = _BEGIN.match(lines[index])
    if match is None:
        return None
    is_base64 = match["base64"] is not None
    end = _block_end(lines, index, is_base64)
    if end is None:
        return None
    data = _decode_block(lines[index + 1 : end], is_base64)
    if data is None:
        return None
    return UuencodedFile(filename=match["name"], data=data), end


def extract_uuencoded(text: str) -> tuple[str, list[UuencodedFile]]:
    """Remove uuencoded blocks from ``text`` and return them decoded.

    ``text`` uses LF line endings. A block whose data lines do not decode
    stays in the text. One blank line is dropped where a block was cut out
    between two blank lines.
    """
    if "begin" not in text:
        return text, []
    lines = text.split("\n")
    kept_lines: list[str] = []
    files: list[UuencodedFile] = []
    index = 0
    while index < len(lines):
        found = _decode_block_at(lines, index)
        if found is None:
            kept_lines.append(lines[index])
            index += 1
            continue
        files.append(found[0])
        index = found[1] + 1
        between_blank_lines = bool(kept_lines) and not kept_lines[-1].strip()
        if between_blank_lines and index < len(lines) and not lines[index].strip():
            index += 1
    return "\n".join(kept_lines), files
