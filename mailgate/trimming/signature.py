"""Find where the signature starts in the author's part of a reply.

A signature is cut from its first line to the end. Three forms are found:
the "-- " delimiter, a mobile client's line ("Sent from my iPhone", "Get
Outlook for iOS"), and a contact block after a closing. The closing itself
and the name right after it ("Thanks, Ana" or "Best regards" then "Vera")
stay, because agents write them as part of the message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

_DELIMITER = re.compile(r"^--\s*$")

# A mobile client's line, alone on its line, maybe followed by a link that
# Outlook appends ("Get Outlook for iOS<https://aka.ms/...>").
_MOBILE = re.compile(
    r"^\s*(?:"
    r"sent from (?:my \S+(?: \S+){0,3}|(?:outlook|mail)(?: for \S+)?)"
    r"|get outlook for \S+"
    r"|von meinem \S+(?: \S+){0,2} gesendet"
    r"|gesendet von (?:meinem \S+(?: \S+){0,2}|(?:outlook|mail)(?: für \S+)?)"
    r"|envoyé (?:de|à partir de) (?:mon \S+(?: \S+){0,2}|outlook(?: pour \S+)?)"
    r"|obtenir outlook pour \S+"
    r"|enviado desde mi \S+(?: \S+){0,2}|enviado do meu \S+(?: \S+){0,2}"
    r"|inviato da(?:l mio)? (?:iphone|ipad|android|smartphone|outlook)\b.*"
    r"|verzonden (?:vanaf|met) (?:mijn )?\S+(?: \S+){0,2}"
    r"|skickat från min \S+|sendt fra min \S+"
    r"|wysłane z (?:mojego )?\S+|отправлено с (?:моего )?\S+"
    r"|发自我的\S+|从我的\S+发送|\S+から送信"
    r")\s*(?:<[^>]*>|\[[^\]]*\])?\s*$",
    re.IGNORECASE,
)

_CLOSINGS = (
    "thanks", "thank you", "many thanks", "thanks a lot", "thanks again", "thx",
    "cheers", "best", "best regards", "kind regards", "warm regards", "regards",
    "best wishes", "all the best", "sincerely", "yours", "yours sincerely",
    "br", "viele grüße", "viele grüsse", "beste grüße", "liebe grüße",
    "freundliche grüße", "mit freundlichen grüßen", "mit freundlichen grüssen",
    "mfg", "lg", "vg", "gruß", "grüße", "danke", "vielen dank",
    "cordialement", "bien cordialement", "merci", "bien à vous", "salutations",
    "saludos", "un saludo", "atentamente", "gracias",
    "met vriendelijke groet", "vriendelijke groeten", "groeten", "groet",
    "cordiali saluti", "saluti", "grazie", "atenciosamente", "obrigado",
    "obrigada", "abraços", "med vänlig hälsning", "vänliga hälsningar",
    "hälsningar", "mvh", "med venlig hilsen", "venlig hilsen", "hilsen",
    "pozdrawiam", "z poważaniem", "с уважением", "спасибо",
    "敬具", "よろしくお願いします", "谢谢", "此致", "祝好",
)
# The closing words, then what follows them on the same line.
_CLOSING = re.compile(
    # Longest first, so "best regards" is not read as "best" and a name.
    r"^\s*(?:"
    + "|".join(re.escape(word) for word in sorted(_CLOSINGS, key=len, reverse=True))
    + r")(?=$|[\s,.!])(.*)$",
    re.IGNORECASE,
)
_MAX_NAME_WORDS = 4
_MAX_NAME_CHARS = 40

_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"https?://|www\.", re.IGNORECASE)
_PHONE = re.compile(r"\+?\d[\d ()./-]{5,}\d")
_CONTACT_LABEL = re.compile(
    r"^\s*(?:tel|phone|mobile|mob|cell|fax|handy|telefon|tél)\s*[.:]",
    re.IGNORECASE,
)
# A contact block is short; a longer tail after a closing is more text.
# The line limit also keeps _PHONE linear.
_MAX_CONTACT_LINES = 12
_MAX_CONTACT_LINE_CHARS = 120
# Lines with this many lower-case words read as sentences ("PS: call me at
# ..."), which contact lines ("Support Lead | Example Ltd.") do not.
_PROSE_LOWERCASE_WORDS = 3


def find_signature_start(lines: Sequence[str]) -> int | None:
    """Return the index in ``lines`` where the signature starts, or None.

    ``lines`` are the author's lines, quotes already removed. Each rule looks
    only at the lines above what an earlier rule cut.
    """
    rules: tuple[Callable[[Sequence[str]], int | None], ...] = (
        _find_delimiter,
        _find_mobile_line,
        _find_contact_block,
    )
    end = len(lines)
    for rule in rules:
        start = rule(lines[:end])
        if start is not None:
            end = start
    return end if end < len(lines) else None


def _find_delimiter(lines: Sequence[str]) -> int | None:
    return _first_index(lines, lambda line: _DELIMITER.match(line) is not None)


def _find_mobile_line(lines: Sequence[str]) -> int | None:
    return _first_index(lines, lambda line: _MOBILE.match(line) is not None)


def _find_contact_block(lines: Sequence[str]) -> int | None:
    """Return where the contact block after the last closing starts."""
    closing = _last_closing(lines)
    if closing is None:
        return None
    index, named = closing
    start = index + 1
    if not named:
        name_index = _first_index(lines[start:], str.strip)
        if name_index is None:
            return None
        if _is_name(lines[start + name_index]):
            start += name_index + 1
    return start if _is_contact_block(lines[start:]) else None


def _last_closing(lines: Sequence[str]) -> tuple[int, bool] | None:
    """Return the index of the last closing line and whether it names someone."""
    for index in range(len(lines) - 1, -1, -1):
        match = _CLOSING.match(lines[index])
        if match is None:
            continue
        rest = match.group(1).strip(" \t,.!")
        if not rest:
            return index, False
        if _is_name(rest) and not any(word[0].islower() for word in rest.split()):
            return index, True
    return None


def _is_name(line: str) -> bool:
    text = line.strip()
    return (
        0 < len(text) <= _MAX_NAME_CHARS
        and len(text.split()) <= _MAX_NAME_WORDS
        and not any(char.isdigit() for char in text)
        and not _EMAIL.search(text)
        and not _URL.search(text)
        and not text.endswith((".", ":", "?", "!"))
    )


def _is_contact_block(lines: Sequence[str]) -> bool:
    content = [line.strip() for line in lines if line.strip()]
    if not content or len(content) > _MAX_CONTACT_LINES:
        return False
    if any(len(line) > _MAX_CONTACT_LINE_CHARS for line in content):
        return False
    if any(_reads_as_prose(line) for line in content):
        return False
    return any(_has_contact_detail(line) for line in content)


def _reads_as_prose(line: str) -> bool:
    lowercase = [word for word in line.split() if word.isalpha() and word.islower()]
    return len(lowercase) >= _PROSE_LOWERCASE_WORDS


def _has_contact_detail(line: str) -> bool:
    patterns = (_EMAIL, _URL, _PHONE, _CONTACT_LABEL)
    return any(pattern.search(line) for pattern in patterns)


def _first_index(
    lines: Sequence[str], predicate: Callable[[str], object]
) -> int | None:
    for index, line in enumerate(lines):
        if predicate(line):
            return index
    return None
