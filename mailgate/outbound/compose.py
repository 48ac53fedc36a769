"""Build the RFC 5322 bytes of the mail we send.

Every header value is built from text with CR, LF and the other control
characters removed, and every address is validated again here, because
the values come from mail that anyone can send. This does not rely on the
``email`` package's folding: CPython 3.11 before 3.11.10 could fold a line
break inside an encoded word into a real one (CVE-2024-6923), which let a
value add header fields, and later releases fixed more newline bugs of
the generator (CVE-2026-1299). The composed header block is parsed again
and must contain exactly the fields written.
"""

from __future__ import annotations

import re
import secrets
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import SMTP
from email.utils import format_datetime, formataddr

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
    return formataddr((clean_header_text(name), validate_address(address)))


def _message_id(value: str) -> str:
    if not _MESSAGE_ID.fullmatch(value):
        raise InvalidAddress(f"{value[:100]!r} is not a Message-ID we can write")
    return f"<{value}>"


# RFC 5322 allows lines of 998 characters. With the default of 78 the email
# package turns a long Message-ID in In-Reply-To into an encoded word, which
# breaks threading.
OUTBOUND_POLICY = SMTP.clone(max_line_length=998)


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
        ("Subject", clean_header_text(rendered.subject)),
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
        fields.append(("Auto-Submitted", clean_header_text(auto_submitted)))
    fields += [
        # Ask Exchange and Outlook not to send out-of-office replies to it.
        ("X-Auto-Response-Suppress", "All"),
        ("X-Loop", clean_header_text(domain)),
    ]
    message = EmailMessage(policy=OUTBOUND_POLICY)
    for name, value in fields:
        message[name] = value
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    for filename, content_type, data in attachments:
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(
            data, maintype=maintype or "application", subtype=subtype or "octet-stream",
            filename=clean_header_text(filename),
        )
    raw = message.as_bytes()
    _check_header_names(raw, [name for name, _ in fields])
    return raw


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
