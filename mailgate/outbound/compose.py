"""Build the RFC 5322 bytes of the mail we send.

Every header value is built from text with CR, LF and the other control
characters removed, and every address is validated again here, because
the values come from mail that anyone can send. This does not rely on the
``email`` package's folding: CPython 3.11 before 3.11.10 could fold a line
break inside an encoded word into a real one (CVE-2024-6923), which let a
value add header fields, and later releases fixed more newline bugs of
the generator (CVE-2026-1299). The composed header block is parsed again
and must contain exactly the fields written.

The MIME structure is written here too, not by ``EmailMessage``: its
header registry parsed every field again and took about 4 ms for each
mail composed. A new ticket composes two, and those took about two
thirds of the CPU that processing the ticket's mail spent.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from email.parser import BytesHeaderParser
from email.utils import format_datetime, formataddr
from urllib.parse import quote

from mailgate.automatic import OWN_MESSAGE_ID_PREFIX
from mailgate.outbound.rendering import RenderedMail
from store.models import utcnow

# Line breaks and tabs become spaces; every other C0 and C1 control and
# DEL is removed.
_LINE_BREAKS = re.compile(r"[\t\n\v\f\r\x85\u2028\u2029]")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A deliberately plain addr-spec: dot-atom local part and domain, as we
# issue and accept them (RFC 5321 4.1.2 without quoted local parts, and
# RFC 6531 non-ASCII letters allowed).
_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+"
    r"(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+)*"
    r"@[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\u0080-\U0010ffff-]*[A-Za-z0-9\u0080-\U0010ffff])?"
    r"(?:\.[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\u0080-\U0010ffff-]*[A-Za-z0-9\u0080-\U0010ffff])?)*"
)
_MESSAGE_ID = re.compile(r"[!-;=?-~]+@[!-;=?-~]+")  # printable ASCII without <, >, space
# RFC 5321 4.5.3.1: 64 octets of local part, 254 of a whole path.
MAX_LOCAL_PART = 64
MAX_ADDRESS = 254
# Maximum length of a header value we write; longer values are cut.
MAX_HEADER_VALUE_CHARS = 900


class InvalidAddress(ValueError):
    """Raised when an address is not a plain ``local@domain`` we can send to."""


class HeaderInjection(RuntimeError):
    """Raised when a composed mail does not have exactly the fields written.

    It means a value escaped the cleaning above; nothing is sent.
    """


def clean_header_text(value: str) -> str:
    """Return ``value`` on one line: line breaks and tabs become spaces,
    other control characters are removed, runs of spaces collapse, and the
    result is cut to MAX_HEADER_VALUE_CHARS."""
    text = _CONTROL_CHARACTERS.sub("", _LINE_BREAKS.sub(" ", value))
    return " ".join(text.split())[:MAX_HEADER_VALUE_CHARS]


def validate_address(address: str) -> str:
    """Return ``address`` stripped when it is a plain addr-spec.

    Raise InvalidAddress naming it otherwise. Line breaks, spaces, angle
    brackets, quotes, comments, an empty part and lengths over RFC 5321's
    are all invalid.
    """
    candidate = address.strip()
    if not _ADDRESS.fullmatch(candidate):
        raise InvalidAddress(f"{candidate[:100]!r} is not a plain address local@domain")
    local = candidate.rpartition("@")[0]
    if len(local.encode("utf-8")) > MAX_LOCAL_PART or len(candidate.encode("utf-8")) > MAX_ADDRESS:
        raise InvalidAddress(f"{candidate[:100]!r} is longer than RFC 5321 allows")
    return candidate


def is_valid_address(address: str) -> bool:
    """True when ``validate_address`` accepts ``address``."""
    try:
        validate_address(address)
    except InvalidAddress:
        return False
    return True


def _format_mailbox(mailbox: tuple[str, str]) -> str:
    name, address = mailbox
    name, address = clean_header_text(name), validate_address(address)
    if name.isascii() and "=?" not in name:
        # formataddr quotes a name that contains specials such as a comma.
        return formataddr((name, address))
    address.encode("ascii")  # as formataddr does: no SMTPUTF8 address here
    return f"{_encoded_words(name)} <{address}>"


def _unstructured(text: str) -> str:
    """Return cleaned ``text`` as an unstructured field value: as it is when
    it is ASCII, else as RFC 2047 encoded words. Text that looks like an
    encoded word is encoded too, so it cannot decode into something else."""
    if text.isascii() and "=?" not in text:
        return text
    return _encoded_words(text)


# An encoded word is at most 75 characters (RFC 2047 2): "=?utf-8?b?" and
# "?=" leave 63 for base64, so 45 bytes of UTF-8 (60 characters) per word.
_WORD_BYTES = 45


def _encoded_words(text: str) -> str:
    """Return ``text`` as base64 encoded words on folded lines, never
    splitting a character between two words."""
    words, chunk = [], b""
    for character in text:
        encoded = character.encode("utf-8")
        if len(chunk) + len(encoded) > _WORD_BYTES:
            words.append(chunk)
            chunk = b""
        chunk += encoded
    words.append(chunk)
    return "\r\n ".join(
        f"=?utf-8?b?{base64.b64encode(word).decode('ascii')}?=" for word in words
    )


def _message_id(value: str) -> str:
    if not _MESSAGE_ID.fullmatch(value):
        raise InvalidAddress(f"{value[:100]!r} is not a Message-ID we can write")
    return f"<{value}>"


# A MIME type and subtype: RFC 2045 tokens.
_MIME_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Characters of a filename that go into a quoted-string as they are.
_PLAIN_FILENAME = re.compile(r'[ !#-\[\]-~]*')
# RFC 5322 2.1.1: a line is at most 998 characters without its CRLF.
MAX_LINE = 998
# Encoded filename characters per RFC 2231 continuation line.
_FILENAME_CHUNK = 60


def make_message_id(domain: str, tail: str = "") -> str:
    """Return a new Message-ID (without angle brackets) that we recognise as ours."""
    local = OWN_MESSAGE_ID_PREFIX + secrets.token_hex(8)
    if tail:
        local += "." + tail
    return f"{local}@{domain}"


def compose_mail(
    rendered: RenderedMail,
    *,
    from_address: tuple[str, str],
    to_address: tuple[str, str],
    message_id: str,
    domain: str,
    auto_submitted: str | None,
    reply_to: str | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    attachments: list[tuple[str, str, bytes]] = (),
) -> bytes:
    """Return a multipart/alternative mail, with ``attachments`` if any.
    ``auto_submitted`` marks mail that no person wrote (RFC 3834); None
    leaves the field out, for a person's answer.

    Raises InvalidAddress when an address or Message-ID is not one we can
    write, and HeaderInjection if the result has other fields than these.
    """
    fields: list[tuple[str, str]] = [
        ("From", _format_mailbox(from_address)),
        ("To", _format_mailbox(to_address)),
        ("Subject", _unstructured(clean_header_text(rendered.subject))),
        ("Date", format_datetime(utcnow())),
        ("Message-ID", _message_id(message_id)),
    ]
    if reply_to:
        fields.append(("Reply-To", validate_address(reply_to)))
    if in_reply_to and _MESSAGE_ID.fullmatch(in_reply_to):
        fields.append(("In-Reply-To", _message_id(in_reply_to)))
    valid_references = [value for value in references or () if _MESSAGE_ID.fullmatch(value)]
    if valid_references:
        fields.append(("References", " ".join(_message_id(value) for value in valid_references)))
    if auto_submitted:
        fields.append(("Auto-Submitted", _unstructured(clean_header_text(auto_submitted))))
    fields += [
        # Ask Exchange and Outlook not to send out-of-office replies to it.
        ("X-Auto-Response-Suppress", "All"),
        ("X-Loop", _unstructured(clean_header_text(domain))),
    ]
    alternative = _multipart("alternative", [_text_part("plain", rendered.text),
                                              _text_part("html", rendered.html)])
    body = alternative
    if attachments:
        body = _multipart("mixed", [alternative] + [
            _attachment_part(filename, content_type, data)
            for filename, content_type, data in attachments
        ])
    head = "".join(f"{name}: {value}\r\n" for name, value in fields)
    raw = head.encode("utf-8") + b"MIME-Version: 1.0\r\n" + body
    _check_header_names(raw, [name for name, _ in fields])
    return raw


def _boundary() -> str:
    # "=_" never occurs in quoted-printable or base64 text, and the random
    # part makes a clash with a 7bit part unlikely; _multipart checks anyway.
    return f"=_mailgate_{secrets.token_hex(12)}"


def _multipart(subtype: str, parts: list[bytes]) -> bytes:
    """Return a multipart entity, its Content-Type field first, of ``parts``."""
    boundary = _boundary()
    while any(boundary.encode("ascii") in part for part in parts):
        boundary = _boundary()
    delimiter = f"--{boundary}\r\n".encode("ascii")
    return b"".join([
        f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode("ascii"),
        *(delimiter + part + b"\r\n" for part in parts),
        f"--{boundary}--\r\n".encode("ascii"),
    ])


def _text_part(subtype: str, text: str) -> bytes:
    """Return a text/``subtype`` entity in UTF-8: 7bit when the text is
    ASCII in short lines, quoted-printable otherwise."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if text.isascii() and all(len(line) <= MAX_LINE for line in lines):
        encoding, body = "7bit", "\r\n".join(lines).encode("ascii")
    else:
        encoding = "quoted-printable"
        body = binascii.b2a_qp("\n".join(lines).encode("utf-8")).replace(b"\n", b"\r\n")
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    head = (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    )
    return head.encode("ascii") + body


def _attachment_part(filename: str, content_type: str, data: bytes) -> bytes:
    """Return a base64 attachment entity. A type that is not two MIME tokens
    is sent as application/octet-stream."""
    maintype, _, subtype = content_type.partition("/")
    if not (_MIME_TOKEN.fullmatch(maintype) and _MIME_TOKEN.fullmatch(subtype)):
        maintype, subtype = "application", "octet-stream"
    head = (
        f"Content-Type: {maintype.lower()}/{subtype.lower()}\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        f"Content-Disposition: attachment;{_filename_parameter(clean_header_text(filename))}\r\n\r\n"
    )
    body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return head.encode("ascii") + body


def _filename_parameter(filename: str) -> str:
    """Return the filename parameter, folded onto lines of its own: a
    quoted-string for printable ASCII, else RFC 2231 UTF-8 in continuations."""
    if not filename:
        return ' filename="attachment"'
    if _PLAIN_FILENAME.fullmatch(filename) and len(filename) <= _FILENAME_CHUNK:
        return f'\r\n filename="{filename}"'
    encoded = quote(filename, safe="")
    # Never split a %XX escape between two continuations.
    chunks, start = [], 0
    while start < len(encoded):
        end = min(start + _FILENAME_CHUNK, len(encoded))
        while end < len(encoded) and "%" in encoded[end - 2:end]:
            end -= 1
        chunks.append(encoded[start:end])
        start = end
    if len(chunks) == 1:
        return f"\r\n filename*=utf-8''{chunks[0]}"
    chunks[0] = "utf-8''" + chunks[0]
    return ";".join(
        f"\r\n filename*{index}*={chunk}" for index, chunk in enumerate(chunks)
    )


def _check_header_names(raw: bytes, written: list[str]) -> None:
    """Raise HeaderInjection unless the top-level fields of ``raw`` are the
    ``written`` ones plus those ``set_content`` adds."""
    parsed = BytesHeaderParser().parsebytes(raw)
    found = sorted(name.lower() for name in parsed.keys())
    expected = sorted(
        [name.lower() for name in written] + ["content-type", "mime-version"]
    )
    if found != expected:
        raise HeaderInjection(
            f"composed mail has header fields {found}, expected {expected}"
        )
