"""Build the stdlib's compat32 message tree from raw bytes, piece by piece.

``email.message_from_bytes`` (CPython 3.11) decodes the whole input to
one string and reads it through ``io.StringIO``, which widens it to four
bytes a character. A 25 MB mail costs over 100 MB before the first line
is parsed. Here the bytes are read through a text stream that decodes
them the same way (ASCII with ``surrogateescape``) and translates no line
ends. ``Parser.parse`` reads it in pieces of 8 KiB, so the parser gets
the same text and builds the same tree, without the wide copy.
"""

from __future__ import annotations

import io
from email.message import Message
from email.parser import HeaderParser, Parser
from email.policy import compat32


def _text_stream(data: bytes) -> io.TextIOWrapper:
    # newline="" hands "\r\n" and "\r" to the parser as they are, as
    # message_from_bytes does; BytesParser.parse would translate them.
    return io.TextIOWrapper(
        io.BytesIO(data), encoding="ascii", errors="surrogateescape", newline=""
    )


def parse_tree(data: bytes) -> Message:
    """Return the message tree of ``data``, as ``email.message_from_bytes``
    does; raises what the parser raises (RecursionError on deep nesting)."""
    return Parser(policy=compat32).parse(_text_stream(data))


def parse_header_tree(data: bytes) -> Message:
    """Return the header fields of ``data`` and its body as one string, as
    ``email.parser.BytesHeaderParser().parsebytes`` does."""
    return HeaderParser(policy=compat32).parse(_text_stream(data))
