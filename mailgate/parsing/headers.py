"""Read the top-level header fields: text, addresses, message ids and dates.

Every function takes raw field values as the compat32 ``email`` parser
stores them, with 8-bit bytes kept as surrogates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timezone
from email.message import Message
from email.utils import parsedate_to_datetime

from mailparser.utils import get_addresses

from mailgate.parsing.charsets import remove_control_characters
from mailgate.parsing.encoded_words import (
    decode_encoded_words,
    decode_header_text,
    decode_raw_header,
    to_raw_bytes,
)
from mailgate.parsing.model import Address

_WHITESPACE = re.compile(r"[ \t\r\n\f\v]+")
_LINE_BREAK = re.compile(r"\r\n|[\r\n]")
_BRACKETED_ID = re.compile(r"<([^<>]*)>")

# A group with no members, such as "undisclosed-recipients:;".
_EMPTY_GROUP = re.compile(r"^[^:<>@\"]*:\s*;?\s*$")

# The leading RFC 5322 date-time of a value followed by other text. The
# zone is optional because some clients omit it.
_LEADING_DATE = re.compile(
    r"^\s*(?:[A-Za-z]{3},?\s*)?\d{1,2}\s+[A-Za-z]{3}\s+\d{2,4}\s+"
    r"\d{1,2}:\d{2}(?::\d{2})?(?:\s*(?:[+-]\d{4}|[A-Za-z]{1,5}\b))?"
)


def fold_whitespace(text: str) -> str:
    """Collapse runs of ASCII whitespace to one space and strip the ends.

    Unicode spaces such as U+3000 are kept, because they are text.
    """
    return _WHITESPACE.sub(" ", text).strip()


def decode_value(raw_value: object) -> str:
    """Decode one raw header value to text without line breaks.

    Line breaks that encoded-words decode to become spaces too, so a value
    can be written into a log line as it is.
    """
    text = decode_header_text(to_raw_bytes(raw_value))
    text = _LINE_BREAK.sub(" ", text)
    return remove_control_characters(text).strip()


def decode_all_headers(message: Message) -> tuple[tuple[str, str], ...]:
    """Return every header field of ``message`` as (name, decoded value)."""
    fields: list[tuple[str, str]] = []
    for name, raw_value in message.raw_items():
        fields.append((str(name), decode_value(raw_value)))
    return tuple(fields)


def first_raw_value(message: Message, name: str) -> str | None:
    """Return the raw value of the first header field ``name``, or None."""
    key = name.lower()
    for field_name, raw_value in message.raw_items():
        if str(field_name).lower() == key:
            return str(raw_value)
    return None


def all_raw_values(message: Message, name: str) -> list[str]:
    """Return the raw values of every header field ``name``, in order."""
    key = name.lower()
    return [
        str(raw_value)
        for field_name, raw_value in message.raw_items()
        if str(field_name).lower() == key
    ]


def decode_subject(raw_value: str | None) -> str:
    """Decode a Subject value to one line with whitespace collapsed."""
    if raw_value is None:
        return ""
    return fold_whitespace(decode_value(raw_value))


def _addresses_in(raw_value: str) -> list[Address]:
    """Parse one address header value into mailboxes.

    mail-parser splits the list. Display names are decoded afterwards, so a
    comma or quote inside an encoded-word cannot split a mailbox. A value
    without any parsable address gives one Address whose email is "".
    """
    text = remove_control_characters(decode_raw_header(to_raw_bytes(raw_value)))
    if not text.strip() or _EMPTY_GROUP.match(text):
        return []
    addresses: list[Address] = []
    for name, email in get_addresses(text, decode_names=False):
        if not name and not email:
            continue
        display_name = fold_whitespace(decode_encoded_words(name))
        addresses.append(Address(name=display_name, email=email.strip()))
    if not addresses:
        addresses.append(
            Address(name=fold_whitespace(decode_encoded_words(text)), email="")
        )
    return addresses


def parse_addresses(raw_values: Iterable[str]) -> tuple[Address, ...]:
    """Parse the mailboxes of all given address header values, in order."""
    addresses: list[Address] = []
    for raw_value in raw_values:
        addresses.extend(_addresses_in(raw_value))
    return tuple(addresses)


def parse_first_address(raw_value: str | None) -> Address | None:
    """Return the first mailbox of an address header value, or None."""
    if raw_value is None:
        return None
    addresses = _addresses_in(raw_value)
    return addresses[0] if addresses else None


def parse_message_ids(raw_value: str | None) -> tuple[str, ...]:
    """Return the message ids of a References or In-Reply-To value.

    Ids are taken from angle brackets. A value without brackets falls back
    to its whitespace-separated words that contain "@". Duplicates are
    dropped, keeping the first.
    """
    if raw_value is None:
        return ()
    text = decode_raw_header(to_raw_bytes(raw_value))
    ids = [found.strip() for found in _BRACKETED_ID.findall(text)]
    if not ids:
        ids = [word.strip("<>,;") for word in text.split() if "@" in word]
    return tuple(dict.fromkeys(found for found in ids if found))


def parse_message_id(raw_value: str | None) -> str | None:
    """Return the Message-ID without angle brackets, or None when empty.

    A value without brackets is returned whole, stripped, because some
    senders write bare ids.
    """
    if raw_value is None:
        return None
    text = decode_raw_header(to_raw_bytes(raw_value)).strip()
    match = _BRACKETED_ID.search(text)
    found = match.group(1).strip() if match else text.strip("<> \t")
    return found or None


def _to_datetime(text: str) -> datetime | None:
    """Parse an RFC 5322 date-time with the stdlib; None when invalid.

    A date in zone -0000 (local time unknown) is returned as UTC.
    """
    try:
        value = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


def parse_date(raw_value: str | None) -> datetime | None:
    """Return the aware datetime of a Date value, or None when invalid.

    When the value has text after a valid date-time (a folded line of
    other headers, a comment in words), the leading date-time is used.
    """
    if raw_value is None:
        return None
    text = fold_whitespace(decode_raw_header(to_raw_bytes(raw_value)))
    value = _to_datetime(text)
    if value is not None:
        return value
    match = _LEADING_DATE.match(text)
    if match is None:
        return None
    return _to_datetime(match.group(0))
