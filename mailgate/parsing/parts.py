"""Read one MIME part: its content headers and its decoded payload."""

from __future__ import annotations

import binascii
import ntpath
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message

from mailgate.parsing.charsets import remove_control_characters
from mailgate.parsing.encoded_words import (
    BASE64_PIECE_BYTES,
    decode_base64_pieces,
    decode_raw_header,
    to_raw_bytes,
)
from mailgate.parsing.headers import first_raw_value
from mailgate.parsing.params import HeaderParameters, parse_parameters
from mailgate.parsing.uuencode import decode_uuencoded_lines

_UUENCODE_NAMES = frozenset({"x-uuencode", "uuencode", "x-uue", "uue"})
_MIME_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+*-]+$")
_CONTENT_ID = re.compile(r"<([^<>]*)>")
_CRLF = b"\r\n"


@dataclass(frozen=True)
class PartHeaders:
    """The content headers of one MIME part, decoded."""

    content_type: str  # lower-case "type/subtype"
    type_params: HeaderParameters  # parameters of Content-Type
    disposition: str  # lower-case disposition type, "" when absent
    filename: str | None  # decoded base name, None when the part names none
    content_id: str | None  # without angle brackets
    transfer_encoding: str  # lower-case, "" when absent

    @property
    def maintype(self) -> str:
        """The part before the slash of the content type."""
        return self.content_type.split("/", 1)[0]

    @property
    def charset(self) -> str | None:
        """The charset parameter as written, or None."""
        return self.type_params.get("charset")


def _header_parameters(part: Message, name: str) -> HeaderParameters:
    """Parse the first header ``name`` of ``part``; empty when absent."""
    raw_value = first_raw_value(part, name)
    if raw_value is None:
        return HeaderParameters("")
    return parse_parameters(decode_raw_header(to_raw_bytes(raw_value)))


def clean_filename(name: str | None) -> str | None:
    """Return the base name of a file name, or None when nothing is left.

    Directories are removed, because Netscape 4 sends full Windows paths
    and a stored name must never contain a path. ``ntpath`` splits on both
    slashes and backslashes.
    """
    if not name:
        return None
    base = ntpath.basename(name)
    base = remove_control_characters(base).strip()
    if base in ("", ".", ".."):
        return None
    return base


def _content_type(params: HeaderParameters, part: Message) -> str:
    """Return the declared content type, or the default of the container.

    An invalid value falls back as RFC 2045 section 5.2 recommends: to
    text/plain, or to message/rfc822 inside multipart/digest (RFC 2046
    section 5.1.5).
    """
    if _MIME_TYPE.match(params.value):
        return params.value
    return part.get_default_type()


def _content_id(part: Message) -> str | None:
    """Return the Content-ID without angle brackets, or None."""
    raw_value = first_raw_value(part, "content-id")
    if raw_value is None:
        return None
    text = decode_raw_header(to_raw_bytes(raw_value)).strip()
    match = _CONTENT_ID.search(text)
    found = match.group(1).strip() if match else text
    return found or None


def read_part_headers(part: Message) -> PartHeaders:
    """Decode the content headers of ``part``.

    The file name comes from Content-Disposition ``filename``, else from
    Content-Type ``name``.
    """
    type_params = _header_parameters(part, "content-type")
    disposition = _header_parameters(part, "content-disposition")
    filename = clean_filename(disposition.get("filename")) or clean_filename(
        type_params.get("name")
    )
    transfer_encoding = _header_parameters(part, "content-transfer-encoding").value
    return PartHeaders(
        content_type=_content_type(type_params, part),
        type_params=type_params,
        disposition=disposition.value,
        filename=filename,
        content_id=_content_id(part),
        transfer_encoding=transfer_encoding.strip("\"'"),
    )


def _stored_payload(part: Message) -> object:
    """Return the payload of ``part`` as the parser stored it.

    get_payload() decodes a payload holding 8-bit bytes with the declared
    charset and replaces what does not fit, or raises on a bad charset
    label (CPython 3.11, Lib/email/message.py). The stored payload keeps
    8-bit bytes as surrogates; mail-parser reads it the same way.
    """
    payload = getattr(part, "_payload", None)
    return part.get_payload() if payload is None else payload


def raw_body(part: Message) -> bytes:
    """Return the body of ``part`` as sent, before any decoding.

    The body of a parsed container (multipart, message/*) is rebuilt with
    ``serialize_body``.
    """
    payload = _stored_payload(part)
    if isinstance(payload, list):
        return serialize_body(part)
    if isinstance(payload, bytes):
        return payload
    return to_raw_bytes(payload or "")


def _raw_body_pieces(part: Message) -> Iterator[bytes]:
    """Yield the body of a leaf part as ``raw_body`` returns it, in pieces,
    so a large body is never copied whole."""
    payload = _stored_payload(part)
    if not isinstance(payload, str):
        yield raw_body(part)
        return
    # Each character encodes on its own (ASCII, or a surrogate standing for
    # one byte), so the pieces join to what to_raw_bytes returns.
    for start in range(0, len(payload), BASE64_PIECE_BYTES):
        yield to_raw_bytes(payload[start : start + BASE64_PIECE_BYTES])


def decode_payload(part: Message, headers: PartHeaders) -> bytes:
    """Return the payload of a leaf part with its transfer encoding undone.

    base64 and quoted-printable are decoded leniently, uuencode with
    ``uuencode.decode_uuencoded_lines``. Other encodings (7bit, 8bit,
    binary, unknown) give the bytes as sent.
    """
    encoding = headers.transfer_encoding
    if encoding == "base64":
        return decode_base64_pieces(_raw_body_pieces(part))
    data = raw_body(part)
    if encoding == "quoted-printable":
        try:
            return quopri.decodestring(data)
        except (ValueError, binascii.Error):
            return data
    if encoding in _UUENCODE_NAMES:
        decoded = decode_uuencoded_lines(data.decode("latin-1").splitlines())
        return decoded if decoded is not None else data
    return data


def serialize_part(part: Message) -> bytes:
    """Rebuild ``part`` from its header fields as stored and its raw body."""
    head = b"".join(
        to_raw_bytes(f"{name}: {value}") + _CRLF for name, value in part.raw_items()
    )
    return head + _CRLF + raw_body(part)


def serialize_body(part: Message) -> bytes:
    """Rebuild the body of a parsed container part from its sub-parts.

    For message/rfc822 this gives the enclosed message. Header fields and
    bodies are kept as stored, and the lines added here end in CRLF.
    Unlike ``email.generator``, this never re-encodes a payload with its
    declared charset, which fails on 8-bit bytes the charset cannot hold.
    """
    payload = _stored_payload(part)
    if not isinstance(payload, list):
        return raw_body(part)
    boundary = (
        part.get_boundary() if part.get_content_maintype() == "multipart" else None
    )
    if boundary is None:
        return b"".join(serialize_part(sub_part) for sub_part in payload)

    # The line break before each delimiter line belongs to the delimiter
    # (RFC 2046 section 5.1.1). The parser stripped it from the preamble and
    # from each sub-part, so it is written back here.
    delimiter = b"--" + to_raw_bytes(boundary)
    pieces: list[bytes] = []
    if part.preamble is not None:
        pieces += [to_raw_bytes(part.preamble), _CRLF]
    for index, sub_part in enumerate(payload):
        if index:
            pieces.append(_CRLF)
        pieces += [delimiter, _CRLF, serialize_part(sub_part)]
    pieces += [_CRLF, delimiter, b"--"]
    if part.epilogue is not None:
        pieces += [_CRLF, to_raw_bytes(part.epilogue)]
    return b"".join(pieces)
