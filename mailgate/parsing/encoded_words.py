"""Decode header text: raw 8-bit bytes and RFC 2047 encoded-words.

Decoding runs in two steps so that structured headers (addresses, MIME
parameters) can be split between them:

1. ``decode_raw_header`` turns the raw bytes of a field value into text.
   Runs of 8-bit bytes outside encoded-words are decoded as UTF-8 when
   valid, else windows-1252. Encoded-words stay in place.
2. ``decode_encoded_words`` decodes the encoded-words of that text. Adjacent
   words of the same charset are joined as bytes and decoded once, because
   senders split multibyte characters between words.

The decoder is lenient where real clients are: it decodes words inside
quoted strings and words that touch other text, and accepts spaces and raw
8-bit bytes inside the encoded text.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Iterable

from mailgate.parsing.charsets import decode_text

# charset, optionally with an RFC 2231 language suffix; encoding; text.
# The text may contain spaces, because some clients do not encode them.
_WORD_PATTERN = r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?="
_ENCODED_WORD = re.compile(_WORD_PATTERN)
_ENCODED_WORD_BYTES = re.compile(_WORD_PATTERN.encode("ascii"))

_FOLD = re.compile(r"\r?\n(?=[ \t])")
_LINE_BREAK = re.compile(r"[\r\n]+")
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# Every byte outside the alphabet, for bytes.translate to delete.
_NOT_BASE64 = bytes(sorted(set(range(256)) - set(_BASE64_ALPHABET)))
# Input is cleaned and decoded in pieces of this size, so a large payload
# costs its decoded size and one piece, not several cleaned copies.
BASE64_PIECE_BYTES = 64 * 1024


def to_raw_bytes(value: object) -> bytes:
    """Return the bytes of a header value as the ``email`` parser stored it.

    When parsing bytes, the compat32 parser keeps every 8-bit byte as a
    lone surrogate (the ``surrogateescape`` error handler), so encoding with
    that handler restores the bytes on the wire.
    """
    return str(value).encode("utf-8", "surrogateescape")


def decode_base64_lenient(data: bytes) -> bytes:
    """Decode base64 that may lack padding or contain stray characters.

    Characters outside the base64 alphabet are dropped, and the data ends
    at the first "=" (RFC 2045 section 6.8). Missing padding is added, and
    a final lone character, which cannot encode a byte, is dropped. The
    cleaned input is always valid base64, so this never raises.
    """
    view = memoryview(data)
    return decode_base64_pieces(
        bytes(view[start : start + BASE64_PIECE_BYTES])
        for start in range(0, len(data), BASE64_PIECE_BYTES)
    )


def decode_base64_pieces(pieces: Iterable[bytes]) -> bytes:
    """Decode base64 given in consecutive pieces, as ``decode_base64_lenient``
    decodes their concatenation."""
    output = io.BytesIO()
    carry = b""
    for piece in pieces:
        end = piece.find(b"=")
        if end >= 0:
            piece = piece[:end]
        cleaned = carry + piece.translate(None, _NOT_BASE64)
        whole = len(cleaned) - len(cleaned) % 4
        output.write(binascii.a2b_base64(cleaned[:whole]))
        carry = cleaned[whole:]
        if end >= 0:
            break
    if len(carry) == 1:
        carry = b""
    if carry:
        output.write(binascii.a2b_base64(carry + b"=" * (-len(carry) % 4)))
    # getvalue() hands over the buffer without a copy.
    return output.getvalue()


def _decode_word_payload(encoding: str, payload: bytes) -> bytes:
    """Undo the B or Q encoding of one encoded-word."""
    if encoding in "bB":
        return decode_base64_lenient(payload)
    return binascii.a2b_qp(payload, header=True)


def _charset_of(word_charset: str) -> str:
    """Return the charset of a word without its RFC 2231 language suffix."""
    return word_charset.split("*", 1)[0].lower()


def _normalize_8bit_word(match: re.Match[bytes]) -> str:
    """Rewrite an encoded-word that contains raw 8-bit bytes as UTF-8 B.

    Some clients (Eudora 4) put unencoded Latin-1 inside Q-encoded words.
    The bytes are decoded with the word's own charset and re-encoded, so
    the second step gets an ordinary ASCII encoded-word.
    """
    charset_label, encoding, payload = match.groups()
    charset = _charset_of(charset_label.decode("ascii", "replace"))
    data = _decode_word_payload(encoding.decode("ascii"), payload)
    text = decode_text(data, charset).text
    encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return f"=?utf-8?b?{encoded}?="


def _decode_raw_run(run: bytes) -> str:
    """Decode bytes outside encoded-words: UTF-8 if valid, else windows-1252.

    ESC in the run means unlabelled ISO-2022-JP, which ``decode_text``
    recognises.
    """
    if run.isascii() and b"\x1b" not in run:
        return run.decode("ascii")
    return decode_text(run, None).text


def decode_raw_header(raw: bytes) -> str:
    """Decode raw header bytes to text, leaving encoded-words in place.

    Folding line breaks are removed as RFC 5322 section 2.2.3 describes, and
    any other CR or LF becomes a space.
    """
    pieces: list[str] = []
    position = 0
    for match in _ENCODED_WORD_BYTES.finditer(raw):
        pieces.append(_decode_raw_run(raw[position : match.start()]))
        word = match.group(0)
        if word.isascii():
            pieces.append(word.decode("ascii"))
        else:
            pieces.append(_normalize_8bit_word(match))
        position = match.end()
    pieces.append(_decode_raw_run(raw[position:]))
    text = _FOLD.sub("", "".join(pieces))
    return _LINE_BREAK.sub(" ", text)


def decode_encoded_words(text: str) -> str:
    """Decode the RFC 2047 encoded-words in ``text``.

    Whitespace between two encoded-words is dropped (RFC 2047 section 6.2).
    Adjacent words of one charset are joined as bytes before decoding, so a
    character split between them decodes whole. A word with an unknown
    charset falls back to UTF-8 and then windows-1252.
    """
    if "=?" not in text:
        return text
    pieces: list[str] = []
    pending_charset: str | None = None
    pending_bytes = b""
    position = 0
    for match in _ENCODED_WORD.finditer(text):
        gap = text[position : match.start()]
        charset = _charset_of(match.group(1))
        payload = match.group(3).encode("utf-8", "surrogateescape")
        data = _decode_word_payload(match.group(2), payload)
        position = match.end()

        if pending_charset is not None and (gap == "" or gap.isspace()):
            if charset == pending_charset:
                pending_bytes += data
                continue
            gap = ""
        if pending_charset is not None:
            pieces.append(decode_text(pending_bytes, pending_charset).text)
        pieces.append(gap)
        pending_charset, pending_bytes = charset, data

    if pending_charset is not None:
        pieces.append(decode_text(pending_bytes, pending_charset).text)
    pieces.append(text[position:])
    return "".join(pieces)


def decode_header_text(raw: bytes) -> str:
    """Decode an unstructured header value from its raw bytes to text."""
    return decode_encoded_words(decode_raw_header(raw))
