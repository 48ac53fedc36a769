"""Size and structure limits checked on the raw bytes before any parser runs.

The stdlib ``email`` parser and the libraries over it are slow or recurse
on hostile input. Measured on CPython 3.11.7: a 50,000-part message takes
12 s in ``parse_message``, and a From phrase of 400 KB takes 4 s in the
``email.policy.default`` header parser, which raises RecursionError on
500 nested parentheses. These checks bound every such dimension with one
linear pass over the bytes, so a hostile mail is rejected in milliseconds
with a reason that names the limit.

The MIME scan follows boundaries the way the stdlib feed parser does
(a line ``--boundary`` of any enclosing multipart ends the inner ones) and
counts a ``message/rfc822`` part as one more level. It only counts; the
real parser still decides what the structure is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailgate.parsing.errors import LimitExceeded

KIB = 1024
MIB = 1024 * KIB

# Header fields whose text may contain parentheses as plain text; in every
# other field they open RFC 5322 comments, which parsers read recursively.
_UNSTRUCTURED_FIELDS = frozenset(
    {b"subject", b"comments", b"keywords", b"content-description", b"thread-topic"}
)
_FIELD_SPLIT = re.compile(rb"\r?\n(?![ \t])")
_LINE_END = re.compile(rb"\r\n|\n|\r")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_BOUNDARY = re.compile(rb"""boundary\s*=\s*(?:"([^"\r\n]*)"|([^\s;"]+))""", re.IGNORECASE)
_CONTENT_TYPE = re.compile(rb"\s*([a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+)", re.IGNORECASE)
_ATTACHMENT = re.compile(
    rb"content-disposition:\s*attachment|\bfilename\*?\s*=|\bname\*?\s*=", re.IGNORECASE
)


@dataclass(frozen=True)
class MessageLimits:
    """The largest message the parser is given; every size is in bytes.

    The defaults are generous for real mail (RFC 5321 allows lines of
    1,000 octets, but real mail carries much longer ones) and far below
    the sizes at which the stdlib parser slows down.
    """

    max_message_bytes: int = 25 * MIB
    max_header_bytes: int = 256 * KIB
    max_header_field_bytes: int = 64 * KIB
    max_line_bytes: int = 64 * KIB
    max_comment_depth: int = 32
    max_mime_depth: int = 20
    max_mime_parts: int = 500
    max_attachments: int = 100
    max_attachment_bytes: int = 25 * MIB


@dataclass
class _Scan:
    """The counts of the MIME scan so far."""

    parts: int = 0
    deepest: int = 0
    attachments: int = 0
    # One entry per open multipart: its boundary and its nesting depth.
    open_multiparts: list[tuple[bytes, int]] = field(default_factory=list)


def check_message_limits(raw: bytes, limits: MessageLimits) -> None:
    """Raise LimitExceeded when ``raw`` is over one of ``limits``.

    The error message names the limit, the value found and the setting
    that raises it. Runs in time linear in ``len(raw)``.
    """
    check_message_size(len(raw), limits)
    _check_lines(raw, limits)
    data = raw.lstrip(b"\r\n")
    header = _header_block(data)
    if len(header) > limits.max_header_bytes:
        raise LimitExceeded(
            f"header block is {len(header)} bytes, over the limit of"
            f" {limits.max_header_bytes} (MAILGATE_MAX_HEADER_BYTES)"
        )
    _check_header_fields(header, limits)
    _check_mime_structure(data, limits)


def check_message_size(size: int, limits: MessageLimits) -> None:
    """Raise LimitExceeded when a message of ``size`` bytes is over the limit."""
    if size > limits.max_message_bytes:
        raise LimitExceeded(
            f"message is {size} bytes, over the limit of {limits.max_message_bytes}"
            " (MAILGATE_MAX_MESSAGE_BYTES)"
        )


def _check_lines(raw: bytes, limits: MessageLimits) -> None:
    start = 0
    for match in _LINE_END.finditer(raw):
        if match.start() - start > limits.max_line_bytes:
            break
        start = match.end()
    else:
        if len(raw) - start <= limits.max_line_bytes:
            return
    raise LimitExceeded(
        f"a line is longer than {limits.max_line_bytes} bytes (MAILGATE_MAX_LINE_BYTES)"
    )


def _header_block(data: bytes) -> bytes:
    match = _BLANK_LINE.search(data)
    return data[: match.start()] if match else data


def _check_header_fields(header: bytes, limits: MessageLimits) -> None:
    for field_bytes in _FIELD_SPLIT.split(header):
        name = field_bytes.split(b":", 1)[0].strip().lower()
        shown = name[:40].decode("ascii", "replace")
        if len(field_bytes) > limits.max_header_field_bytes:
            raise LimitExceeded(
                f"header field {shown!r} is {len(field_bytes)} bytes, over the limit of"
                f" {limits.max_header_field_bytes} (MAILGATE_MAX_HEADER_FIELD_BYTES)"
            )
        if name in _UNSTRUCTURED_FIELDS:
            continue
        depth = _comment_depth(field_bytes)
        if depth > limits.max_comment_depth:
            raise LimitExceeded(
                f"header field {shown!r} nests parentheses {depth} deep, over the limit of"
                f" {limits.max_comment_depth}"
            )


def _comment_depth(value: bytes) -> int:
    """Return the deepest nesting of RFC 5322 comments, skipping quoted strings."""
    depth = deepest = 0
    quoted = escaped = False
    for byte in value:
        if escaped:
            escaped = False
        elif byte == 0x5C:  # backslash quotes the next character
            escaped = True
        elif quoted:
            quoted = byte != 0x22
        elif byte == 0x22 and depth == 0:
            quoted = True
        elif byte == 0x28:
            depth += 1
            deepest = max(deepest, depth)
        elif byte == 0x29 and depth:
            depth -= 1
    return deepest


def _check_mime_structure(data: bytes, limits: MessageLimits) -> None:
    """Count MIME parts, nesting depth and attachments in one pass over lines."""
    scan = _Scan()
    lines = data.splitlines()
    index = _enter_part(lines, 0, 0, scan, limits)
    part_start = index
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.startswith(b"--") or not scan.open_multiparts:
            continue
        matched = _match_boundary(line, scan.open_multiparts)
        if matched is None:
            continue
        position, closing = matched
        _check_attachment_size(lines, part_start, index - 1, scan, limits)
        depth = scan.open_multiparts[position][1]
        del scan.open_multiparts[position + 1 :]
        if closing:
            scan.open_multiparts.pop()
            part_start = index
            continue
        scan.parts += 1
        if scan.parts > limits.max_mime_parts:
            raise LimitExceeded(
                f"message has more than {limits.max_mime_parts} MIME parts"
                " (MAILGATE_MAX_MIME_PARTS)"
            )
        index = _enter_part(lines, index, depth, scan, limits)
        part_start = index


def _enter_part(
    lines: list[bytes], index: int, depth: int, scan: _Scan, limits: MessageLimits
) -> int:
    """Read the header block of a part at ``depth``; return the body's first line.

    A multipart part opens a new boundary one level deeper. A message/rfc822
    part is followed by the headers of the enclosed message, one level deeper.
    """
    while True:
        header, index = _read_header(lines, index)
        if depth > scan.deepest:
            scan.deepest = depth
            if depth > limits.max_mime_depth:
                raise LimitExceeded(
                    f"MIME parts nest deeper than {limits.max_mime_depth} levels"
                    " (MAILGATE_MAX_MIME_DEPTH)"
                )
        content_type = _content_type(header)
        if depth and _ATTACHMENT.search(header):
            scan.attachments += 1
            if scan.attachments > limits.max_attachments:
                raise LimitExceeded(
                    f"message has more than {limits.max_attachments} attachments"
                    " (MAILGATE_MAX_ATTACHMENTS)"
                )
        if content_type.startswith(b"multipart/"):
            boundary = _BOUNDARY.search(header)
            if boundary:
                value = boundary.group(1) if boundary.group(1) is not None else boundary.group(2)
                scan.open_multiparts.append((value.rstrip(), depth + 1))
            return index
        if content_type in (b"message/rfc822", b"message/global"):
            depth += 1
            continue
        return index


def _read_header(lines: list[bytes], index: int) -> tuple[bytes, int]:
    """Return the unfolded header block starting at ``index`` and the index after it."""
    collected = []
    while index < len(lines) and lines[index].strip():
        collected.append(lines[index])
        index += 1
    return b" ".join(collected), index + 1


def _content_type(header: bytes) -> bytes:
    for match in re.finditer(rb"(?:^|\s)content-type:", header, re.IGNORECASE):
        value = _CONTENT_TYPE.match(header, match.end())
        if value:
            return value.group(1).lower()
    return b"text/plain"


def _match_boundary(
    line: bytes, open_multiparts: list[tuple[bytes, int]]
) -> tuple[int, bool] | None:
    """Return the position of the boundary ``line`` delimits, innermost first,
    and whether it is a closing delimiter."""
    text = line[2:].rstrip()
    for position in range(len(open_multiparts) - 1, -1, -1):
        boundary = open_multiparts[position][0]
        if text == boundary:
            return position, False
        if text == boundary + b"--":
            return position, True
    return None


def _check_attachment_size(
    lines: list[bytes], start: int, end: int, scan: _Scan, limits: MessageLimits
) -> None:
    """Raise when the part body between two delimiters is over the attachment limit.

    The encoded size is compared, so base64 bodies count a third more
    than they decode to; the whole-message limit bounds them anyway.
    """
    size = sum(len(line) + 2 for line in lines[start:end])
    if size > limits.max_attachment_bytes:
        raise LimitExceeded(
            f"a MIME part is {size} bytes, over the limit of {limits.max_attachment_bytes}"
            " (MAILGATE_MAX_ATTACHMENT_BYTES)"
        )
