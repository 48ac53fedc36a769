"""The key under which a mail counts as seen before.

It hashes the Message-ID, the header fields the sender wrote and the body.
Trace fields and X- fields that relays add are left out. So the same mail
relayed twice is one mail, while two mails that share a Message-ID but
differ in Date, Subject or body are two. The body is hashed a piece at a
time, so a large mail costs no copy of itself.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

# Header fields that relays and filters add on the way. The same mail that
# reached us twice by two paths differs only in these and in X- fields.
TRANSIT_FIELDS = frozenset({
    "received", "return-path", "delivered-to", "x-original-to", "envelope-to",
    "dkim-signature", "arc-seal", "arc-message-signature", "arc-authentication-results",
    "authentication-results", "received-spf",
})

_FIELD_SPLIT = re.compile(rb"\r?\n(?![ \t])")
_PIECE_BYTES = 1024 * 1024


def dedupe_key(message_id: str | None, raw: bytes) -> str:
    """Return the hex SHA-256 key of a mail with this parsed Message-ID.

    The body counts with CRLF line ends read as LF and trailing white
    space left out, so a relay that changes either makes no new mail.
    """
    separator = b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n"
    end = raw.find(separator)
    head_end, body_start = (len(raw), len(raw)) if end < 0 else (end, end + len(separator))
    digest = hashlib.sha256((message_id or "").encode("utf-8", "surrogateescape"))
    for field in _FIELD_SPLIT.split(raw[:head_end]):
        name = field.split(b":", 1)[0].strip().lower().decode("ascii", "replace")
        if name in TRANSIT_FIELDS or name.startswith("x-"):
            continue
        digest.update(b"\0" + b" ".join(field.split()))
    digest.update(b"\0\0")
    _hash_body(digest, memoryview(raw)[body_start:])
    return digest.hexdigest()


def _hash_body(digest: Any, body: memoryview) -> None:
    """Add ``body.replace(b"\\r\\n", b"\\n").rstrip()`` to ``digest``, a piece
    at a time."""
    # A CR that ends a piece may start a CRLF with the next one, and white
    # space that ends a piece counts only if something else follows it.
    carry = b""
    pending_space = b""
    for start in range(0, len(body), _PIECE_BYTES):
        piece = carry + bytes(body[start : start + _PIECE_BYTES])
        carry = b""
        if piece.endswith(b"\r"):
            piece, carry = piece[:-1], b"\r"
        piece = piece.replace(b"\r\n", b"\n")
        kept = piece.rstrip()
        if kept:
            digest.update(pending_space)
            digest.update(kept)
            pending_space = piece[len(kept):]
        else:
            pending_space += piece
