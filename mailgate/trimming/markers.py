"""Line patterns that mail clients write around the text they quote.

Every function here takes one line without its line break. The word lists
cover English, German, French, Spanish, Italian, Portuguese, Dutch, Swedish,
Danish, Norwegian, Finnish, Polish, Czech, Russian, Turkish, Hungarian,
Chinese, Japanese and Korean. In other languages, an attribution is found
only when it ends with the sender's address, and a header block not at all.
Quote marks and HTML structure work in any language.
"""

from __future__ import annotations

import enum
import re


class Strength(enum.IntEnum):
    """Confidence that a line is an attribution ("On <date>, <name> wrote:")."""

    NONE = 0
    WEAK = 1
    """Ends like an attribution but has no date or address, so it counts only
    right before a quoted block ("Ana wrote:")."""
    STRONG = 2
    """Has a date, time or address too, so it starts the original even when
    the quoted text below it lost its quote marks."""


# A line whose first non-blank characters are ">", or Supercite-style initials
# followed by ">" ("C> ", "AB> ").
_QUOTED = re.compile(r"^[ \t]*(?:>|[A-Z]{1,3}>(?=[ \t>]|$))")

# Verbs that attribution lines put before the colon. Words that include an
# optional gender ending, such as Polish "napisał(a)", match their stem.
_WROTE_WORDS = (
    "wrote", "writes", "schrieb", "geschrieben", "a écrit", "escribió",
    "escribio", "schreef", "ha scritto", "scrisse", "escreveu", "skrev",
    "kirjoitti", "napisał", "napisała", "napsal", "napsala", "написал",
    "написала", "пишет", "yazdı", "írta",
)
# Scripts without spaces between words take no word boundaries.
_WROTE_CJK = ("写道", "寫道", "書きました", "のメール", "작성")
_WROTE = re.compile(
    r"(?<!\w)(?:" + "|".join(map(re.escape, _WROTE_WORDS)) + r")(?!\w)"
    + "|" + "|".join(_WROTE_CJK),
    re.IGNORECASE,
)
_ENDS_WITH_COLON = re.compile(r"[:：]\s*$")
# Some clients drop the colon: "On <date> Ana <ana@example.com> wrote".
_ENDS_WITH_WROTE = re.compile(r"(?:" + _WROTE.pattern + r")\s*$", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
# An address at the end of the line, then maybe a bracketed date, then the
# colon: "Ana <ana@example.com>:" or "* Ana <ana@example.com> [2024-06-03]:".
_ADDRESS_BEFORE_COLON = re.compile(
    r"@[\w-]+(?:\.[\w-]+)+[>)\]]*(?:\s*\[[^\]]*\])?\s*[:：]\s*$"
)
# "10:15", "18.06.24", "2024-03-18", "6/3/2024", "2024年6月3日", or a year.
_DATE_OR_TIME = re.compile(r"\d{1,4}[:./\-年]\d{1,2}|(?<!\d)(?:19|20)\d\d(?!\d)")
# Attributions are one sentence, so a longer line is text that ends in a colon.
_MAX_ATTRIBUTION_CHARS = 300

# First words of attribution lines that clients wrap over two lines:
# On, Am, Le, El, Op, Il (giorno), Em, Den, På, W dniu, Dnia, Dne.
_ATTRIBUTION_OPENER = re.compile(
    r"^(?:on|am|le|el|op|il|em|den|på|w dniu|dnia|dne)\s|^\d", re.IGNORECASE
)

_ADDRESS_END = re.compile(r"^\s*>\s*[:：]\s*$")

_FROM_LABELS = (
    "From", "Von", "De", "Da", "Van", "Från", "Fra", "Od", "От", "Lähettäjä",
    "Kimden", "Feladó", "发件人", "寄件者", "差出人", "보낸 사람",
)
_OTHER_LABELS = (
    # English, German
    "Sent", "Date", "To", "Cc", "Bcc", "Subject", "Reply-To",
    "Gesendet", "Datum", "An", "Kopie", "Betreff",
    # French, Spanish, Portuguese, Italian
    "Envoyé", "Envoyé le", "À", "Objet",
    "Enviado", "Enviado el", "Fecha", "Para", "Asunto", "Assunto",
    "Data", "Inviato", "A", "Oggetto",
    # Dutch, Swedish, Danish, Norwegian, Finnish
    "Verzonden", "Aan", "Onderwerp", "Skickat", "Till", "Ämne",
    "Sendt", "Til", "Emne", "Dato", "Lähetetty", "Vastaanottaja", "Aihe",
    # Polish, Czech, Russian, Turkish, Hungarian
    "Wysłano", "Do", "Temat", "DW", "Odesláno", "Komu", "Předmět",
    "Отправлено", "Дата", "Кому", "Копия", "Тема",
    "Gönderildi", "Tarih", "Kime", "Konu", "Elküldve", "Címzett", "Tárgy",
    # Chinese, Japanese, Korean
    "发送时间", "日期", "收件人", "抄送", "主题", "寄件日期", "收件者", "副本",
    "主旨", "送信日時", "日付", "宛先", "件名", "보낸 날짜", "받는 사람", "참조",
    "제목",
)


def _field_pattern(labels: tuple[str, ...]) -> re.Pattern[str]:
    # Outlook's text part may bold labels as "*From:*", and French puts a
    # space before the colon ("De :").
    names = "|".join(re.escape(label) for label in labels)
    return re.compile(
        rf"^\s*\*{{0,2}}(?:{names})\*{{0,2}}\s*[:：]", re.IGNORECASE
    )


_FROM_FIELD = _field_pattern(_FROM_LABELS)
_OTHER_FIELD = _field_pattern(_OTHER_LABELS)

# Words inside a dashed separator line such as "-----Original Message-----",
# "-------- Ursprüngliche Nachricht --------", "-------- 原始邮件 --------" or
# "---------- Forwarded message ---------".
_SEPARATOR_WORDS = (
    "original", "origine", "ursprüngliche", "ursprungligt", "oprindelig",
    "opprinnelig", "oorspronkelijk", "oryginalna", "исходное", "原始", "元の",
    "forward", "weitergeleitet", "transféré", "reenviado", "inoltrato",
    "doorgestuurd", "vidarebefordrat", "videresendt", "przekazana",
    "пересылаемое", "encaminhada", "转发", "轉寄", "転送",
)
_DASHED_LABEL = re.compile(r"^\s*-{2,}\s*([^-].*?)\s*-{2,}\s*$")
# Separators are short; the limit also keeps the pattern above linear.
_MAX_SEPARATOR_CHARS = 120
# Apple Mail's forward header ("Begin forwarded message:") and its
# translations.
_FORWARD_INTRO = re.compile(
    r"^\s*(?:begin forwarded message|anfang der weitergeleiteten nachricht"
    r"|début du message réexpédié|inicio del mensaje reenviado"
    r"|inizio messaggio inoltrato|begin doorgestuurd bericht"
    r"|vidarebefordrat brev|videresendt besked|mensagem encaminhada)\s*[:：]\s*$",
    re.IGNORECASE,
)
# Outlook puts a line of underscores above its header block.
_RULE_LINE = re.compile(r"^\s*[_\-=]{8,}\s*$")
# Lines that webmail clients put right above a header block: a short rule
# ("====") or a dated label line ("Message du : 12/12/2016 13:20").
_SHORT_RULE_LINE = re.compile(r"^\s*[_\-=*]{3,}\s*$")
_LABELLED_DATE = re.compile(r"^\s*\w+(?: \w+){0,2}\s*[:：].*\d")


def is_quoted(line: str) -> bool:
    """Tell whether ``line`` carries a quote mark (">" or "C>")."""
    return _QUOTED.match(line) is not None


def attribution_strength(line: str) -> Strength:
    """Rate ``line`` as the attribution line that introduces a quote.

    The line must end with a colon and contain a "wrote" verb, or end with the
    original sender's address (Gmail's "<date> <name> <address>:" form). A
    line that ends with the verb and no colon is strong when it has both a
    date and an address, and not an attribution otherwise.
    """
    text = line.strip()
    if len(text) > _MAX_ATTRIBUTION_CHARS:
        return Strength.NONE
    has_address = _EMAIL.search(text) is not None
    has_date = _DATE_OR_TIME.search(_EMAIL.sub(" ", text)) is not None
    if not _ENDS_WITH_COLON.search(text):
        if has_address and has_date and _ENDS_WITH_WROTE.search(text):
            return Strength.STRONG
        return Strength.NONE
    if _WROTE.search(text):
        return Strength.STRONG if has_date or has_address else Strength.WEAK
    if has_date and _ADDRESS_BEFORE_COLON.search(text):
        return Strength.STRONG
    return Strength.NONE


def is_wrapped_attribution(first: str, second: str) -> bool:
    """Tell whether ``first`` and ``second`` may be one attribution, wrapped.

    Clients wrap long attributions inside the sender's address ("... Ana <"
    then "ana@example.com> wrote:", or "... <ana@example.com" then ">:") or
    after a first line that starts like one ("On", "Am", a date).
    """
    first, second = first.strip(), second.strip()
    if first.endswith(("<", "(")) or second.startswith(("<", ">")):
        return True
    if first.endswith((".", "!", "?")):
        return False
    return _ATTRIBUTION_OPENER.match(first) is not None


def is_wrapped_address_end(line: str) -> bool:
    """Tell whether ``line`` is only the ">:" left over from a wrapped address.

    It looks like a quote mark, but it ends the attribution line above.
    """
    return _ADDRESS_END.match(line) is not None


def join_wrapped(first: str, second: str) -> str:
    """Join two halves of a wrapped line, with no space inside "<...>"."""
    first, second = first.strip(), second.strip()
    if first.endswith(("<", "(")) or second.startswith(">"):
        return first + second
    return f"{first} {second}"


def is_from_field(line: str) -> bool:
    """Tell whether ``line`` is the sender field of a quoted header block."""
    return _FROM_FIELD.match(line) is not None


def is_other_field(line: str) -> bool:
    """Tell whether ``line`` is a date, recipient or subject header field."""
    return _OTHER_FIELD.match(line) is not None


def is_separator(line: str) -> bool:
    """Tell whether ``line`` announces an original or forwarded message."""
    if len(line) > _MAX_SEPARATOR_CHARS:
        return False
    if _FORWARD_INTRO.match(line):
        return True
    match = _DASHED_LABEL.match(line)
    if match is None:
        return False
    label = match.group(1).casefold()
    return any(word in label for word in _SEPARATOR_WORDS)


def is_rule_line(line: str) -> bool:
    """Tell whether ``line`` is only a long run of "_", "-" or "="."""
    return _RULE_LINE.match(line) is not None


def is_header_preamble(line: str) -> bool:
    """Tell whether ``line`` may sit right above a header block, in it."""
    if is_header_rule(line) or is_other_field(line):
        return True
    return _LABELLED_DATE.match(line) is not None and bool(
        _DATE_OR_TIME.search(line)
    )


def is_header_rule(line: str) -> bool:
    """Tell whether ``line`` is a short rule ("====") that may top a header block."""
    return _SHORT_RULE_LINE.match(line) is not None
