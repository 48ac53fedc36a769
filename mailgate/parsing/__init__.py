"""Turn raw mail bytes into plain data: the pure parsing layer.

Nothing here does I/O, touches the database or logs message bodies. See
README.md for the rule and ``parse_message`` for the entry point.
"""

from mailgate.parsing.errors import LimitExceeded, ParseError, ParserCrashed, ParseTimeout
from mailgate.parsing.html import html_to_text, sanitize_html
from mailgate.parsing.limits import MessageLimits, check_message_limits, check_message_size
from mailgate.parsing.message import parse_message
from mailgate.parsing.model import Address, Attachment, ParsedMail

__all__ = [
    "Address",
    "Attachment",
    "LimitExceeded",
    "MessageLimits",
    "ParseError",
    "ParseTimeout",
    "ParserCrashed",
    "ParsedMail",
    "check_message_limits",
    "check_message_size",
    "html_to_text",
    "parse_message",
    "sanitize_html",
]
