"""The one exception of the parsing package."""


class ParseError(ValueError):
    """Raised when the input bytes are not a mail message at all.

    That is: the input is empty, or it has no header field (binary data or
    plain text). A message with broken parts, charsets or headers is still a
    mail and parses with its problems listed in ``ParsedMail.defects``.
    """
