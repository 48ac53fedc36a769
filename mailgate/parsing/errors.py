"""The exceptions of the parsing package.

::

    ParseError          the input cannot be turned into a ParsedMail
    ├── LimitExceeded       over a size or structure limit, before parsing
    ├── ParseTimeout        parsing took longer than its time limit
    └── ParserCrashed       the parsing process died
"""


class ParseError(ValueError):
    """Raised when the input bytes are not a mail message at all.

    That is: the input is empty, or it has no header field (binary data or
    plain text). A message with broken parts, charsets or headers is still a
    mail and parses with its problems listed in ``ParsedMail.defects``.
    """


class LimitExceeded(ParseError):
    """Raised before parsing when the raw bytes exceed a size or structure
    limit (see ``mailgate.parsing.limits``); the message names the limit."""


class ParseTimeout(ParseError):
    """Raised when parsing one message took longer than its time limit."""


class ParserCrashed(ParseError):
    """Raised when the process parsing a message died, e.g. over its memory limit."""
