"""Parse raw RFC 5322 bytes into a ``ParsedMail``.

The stdlib ``email`` package (compat32 policy) builds the MIME tree from
the bytes read in pieces (``tree.py``), and mail-parser walks it and
reports the parser's defects. Everything read from the tree
goes through this package's own lenient decoders, because both libraries
get real mail wrong: split encoded-words, 8-bit headers, bogus charset
labels, encoded-words in file names, lost boundaries, uuencoded files.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from email.message import Message
from typing import TypeVar
from urllib.parse import unquote

from mailparser import MailParser

from mailgate.parsing.attachments import reference_key
from mailgate.parsing.errors import ParseError
from mailgate.parsing.headers import (
    all_raw_values,
    decode_all_headers,
    decode_subject,
    first_raw_value,
    parse_addresses,
    parse_date,
    parse_first_address,
    parse_message_id,
    parse_message_ids,
)
from mailgate.parsing.html import html_to_text, sanitize_html
from mailgate.parsing.mime import BodyPart, WalkResult, keep_unparsed, walk_message
from mailgate.parsing.model import ParsedMail
from mailgate.parsing.tree import parse_header_tree, parse_tree

log = logging.getLogger(__name__)

# Defect descriptions are for log lines: each is cut to this many
# characters, and at most this many are kept per message.
MAX_DEFECT_CHARS = 200
MAX_DEFECTS = 50

_CID_URL = re.compile(r"cid:([^\s\"'<>()]+)", re.IGNORECASE)

# mail-parser reports how its own body decoding fell back; this package
# decodes bodies itself and reports its own fallbacks instead.
_IGNORED_MAILPARSER_DEFECTS = ("CharsetDecodeDefect",)

T = TypeVar("T")


def parse_message(raw: bytes) -> ParsedMail:
    """Parse the raw bytes of one message.

    Leading blank lines are skipped. Malformed headers, charsets and MIME
    parts are decoded leniently and listed in ``ParsedMail.defects``
    instead of raising.

    Raises:
        ParseError: the input is empty, or has no header field, so it is
            not a mail message. Also raised, with the error named, if an
            unexpected failure escapes the guards around each part.
    """
    data = bytes(raw).lstrip(b"\r\n")
    if not data.strip():
        raise ParseError("message is empty")
    try:
        return _parse(data)
    except ParseError:
        raise
    except Exception as error:
        log.exception("message could not be parsed")
        raise ParseError(
            f"message could not be parsed: {type(error).__name__}: {error}"
        ) from error


def _parse(data: bytes) -> ParsedMail:
    root, defects, walkable = _build_tree(data)
    if not root.keys():
        raise ParseError(
            "no header field found: the input is binary data or plain text,"
            " not a mail message"
        )
    if walkable:
        walk = walk_message(root)
    else:
        walk = keep_unparsed(root, "MIME structure too deeply nested; body kept raw")
    defects.extend(walk.defects)
    return _assemble(root, walk, defects)


def _build_tree(data: bytes) -> tuple[Message, list[str], bool]:
    """Parse ``data`` into a compat32 message tree.

    Returns the root, the parser's defects, and whether the MIME structure
    can be walked. A structure nested too deeply for Python's recursion
    limit is parsed for its headers only.
    """
    # The tree is built here rather than by MailParser.from_bytes, which
    # uses email.message_from_bytes (see tree.py for its memory cost).
    try:
        root = parse_tree(data)
        parser = MailParser(root)
    except RecursionError:
        return parse_header_tree(data), [], False
    except Exception as error:  # noqa: BLE001 - fall back to the stdlib alone
        log.warning(
            "mail-parser failed, parsing with the email package alone: %s: %s",
            type(error).__name__,
            error,
        )
        defects = [f"mail-parser failed ({type(error).__name__})"]
        try:
            return parse_tree(data), defects, True
        except RecursionError:
            return parse_header_tree(data), defects, False
    return parser.message, _mailparser_defects(parser.defects), True


def _mailparser_defects(reported: list[dict[str, list[str]]]) -> list[str]:
    """Flatten mail-parser's defect records to "where: what" strings."""
    flattened: list[str] = []
    for record in reported:
        for where, descriptions in record.items():
            for description in descriptions:
                if not description.startswith(_IGNORED_MAILPARSER_DEFECTS):
                    flattened.append(f"{where}: {description}")
    return flattened


def _read_field(
    defects: list[str], name: str, reader: Callable[[], T], default: T
) -> T:
    """Call ``reader``; on any error record a defect and return ``default``."""
    try:
        return reader()
    except Exception as error:  # noqa: BLE001 - one bad header must not fail the mail
        log.warning("header %s could not be decoded: %s", name, type(error).__name__)
        defects.append(f"{name}: could not be decoded ({type(error).__name__})")
        return default


def _assemble(root: Message, walk: WalkResult, defects: list[str]) -> ParsedMail:
    """Build the ParsedMail from the header fields and the walked body."""

    def first(name: str) -> str | None:
        return first_raw_value(root, name)

    html_source = _join_html(walk.html_view)
    text = _body_text(walk.text_view)
    html = sanitize_html(html_source) if html_source is not None else None
    attachments = walk.attachments.finish(_referenced_content_ids(html_source))
    return ParsedMail(
        message_id=_read_field(
            defects, "Message-ID", lambda: parse_message_id(first("message-id")), None
        ),
        in_reply_to=_read_field(
            defects, "In-Reply-To", lambda: parse_message_ids(first("in-reply-to")), ()
        ),
        references=_read_field(
            defects, "References", lambda: parse_message_ids(first("references")), ()
        ),
        subject=_read_field(
            defects, "Subject", lambda: decode_subject(first("subject")), ""
        ),
        from_=_read_field(
            defects, "From", lambda: parse_first_address(first("from")), None
        ),
        sender=_read_field(
            defects, "Sender", lambda: parse_first_address(first("sender")), None
        ),
        reply_to=_read_field(
            defects,
            "Reply-To",
            lambda: parse_addresses(all_raw_values(root, "reply-to")),
            (),
        ),
        to=_read_field(
            defects, "To", lambda: parse_addresses(all_raw_values(root, "to")), ()
        ),
        cc=_read_field(
            defects, "Cc", lambda: parse_addresses(all_raw_values(root, "cc")), ()
        ),
        date=_read_field(defects, "Date", lambda: parse_date(first("date")), None),
        text=text,
        html=html,
        html_source=html_source,
        attachments=attachments,
        headers=_read_field(defects, "headers", lambda: decode_all_headers(root), ()),
        defects=_limit_defects(defects),
    )


def _body_text(parts: list[BodyPart]) -> str:
    """Join the text view, converting HTML parts to text."""
    pieces = [
        part.text if part.subtype == "plain" else html_to_text(part.text)
        for part in parts
    ]
    pieces = [piece for piece in pieces if piece.strip()]
    if len(pieces) == 1:
        return pieces[0]
    return "\n".join(piece.rstrip("\n") for piece in pieces)


def _join_html(html_view: list[BodyPart]) -> str | None:
    """Join the HTML parts of the HTML view; None when all are empty."""
    sources = [part.text for part in html_view if part.subtype == "html"]
    if not any(source.strip() for source in sources):
        return None
    return "\n".join(sources)


def _referenced_content_ids(html_source: str | None) -> set[str]:
    """Return the Content-IDs that cid: URLs in the HTML refer to."""
    if not html_source:
        return set()
    return {reference_key(unquote(found)) for found in _CID_URL.findall(html_source)}


def _limit_defects(defects: list[str]) -> tuple[str, ...]:
    """Drop duplicate defects, shorten long ones and cap their number."""
    unique = dict.fromkeys(defect[:MAX_DEFECT_CHARS] for defect in defects)
    return tuple(list(unique)[:MAX_DEFECTS])
