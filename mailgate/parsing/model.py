"""The plain data objects that ``parse_message`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Address:
    """One mailbox from an address header."""

    name: str  # decoded display name, "" when absent
    email: str  # addr-spec as written, "" when it cannot be parsed


@dataclass(frozen=True)
class Attachment:
    """One file of a message: a non-body MIME part or a uuencoded block."""

    filename: str  # decoded base name; generated when the part names none
    content_type: str  # lower-case "type/subtype"
    data: bytes = field(repr=False)  # payload with its transfer encoding undone
    content_id: str | None  # Content-ID without angle brackets
    inline: bool  # disposition inline, or referenced by a cid: URL in the HTML
    # Set when the parser process wrote the payload to this file instead of
    # returning it (mailgate/sandbox.py); ``data`` is then empty.
    payload_file: str | None = None
    payload_size: int = 0  # length of the payload in payload_file

    @property
    def size(self) -> int:
        """Length of the decoded payload in bytes."""
        return self.payload_size if self.payload_file is not None else len(self.data)


@dataclass(frozen=True)
class ParsedMail:
    """The fields of one parsed message, decoded to Unicode.

    Message ids are stored without angle brackets. ``text`` is the plain-text
    body, converted from HTML when the message has no text/plain body part.
    ``html`` is the HTML body cleaned by nh3, and ``html_source`` the same HTML
    as decoded, before cleaning. ``headers`` lists every top-level header
    field in order, with names as written and values decoded. ``defects`` are
    short descriptions of what was malformed, meant for logs.
    """

    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    subject: str
    from_: Address | None
    sender: Address | None
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    date: datetime | None
    # Bodies stay out of repr() so that logging a ParsedMail never logs them.
    text: str = field(repr=False)
    html: str | None = field(repr=False)
    html_source: str | None = field(repr=False)
    attachments: tuple[Attachment, ...]
    headers: tuple[tuple[str, str], ...]
    defects: tuple[str, ...]

    def header(self, name: str) -> str | None:
        """Return the first decoded value of header ``name``, or None.

        The name is compared case-insensitively.
        """
        key = name.lower()
        for field_name, value in self.headers:
            if field_name.lower() == key:
                return value
        return None
