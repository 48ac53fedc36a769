"""Decode text bytes whose charset label may be wrong, missing or unknown.

Mail in the wild labels 8-bit Latin-1 as us-ascii, writes labels Python
does not know ("unknown", "x-sjis", "") and sends ISO-2022-JP unlabelled.
``decode_text`` tries the label, then ISO-2022-JP when the bytes contain
ESC, then UTF-8 strictly, then windows-1252, which never fails.
"""

from __future__ import annotations

import codecs
import re
from typing import NamedTuple

WINDOWS_1252 = "windows-1252"

# Labels that name no charset at all. They are treated as missing.
_MEANINGLESS_LABELS = frozenset(
    {
        "",
        "unknown",
        "unknown-8bit",
        "x-unknown",
        "default",
        "none",
        "charset",
        "8bit",
        "7bit",
        "x-user-defined",
    }
)

# Labels that Python does not know, or that mail clients use for a superset
# of the registered charset. The WHATWG Encoding Standard maps the Latin-1
# labels to windows-1252 for the same reason: the 0x80-0x9F bytes in such
# text are almost always windows-1252 punctuation, never C1 controls.
_LABEL_ALIASES: dict[str, tuple[str, ...]] = {
    "iso-8859-1": (WINDOWS_1252,),
    "iso8859-1": (WINDOWS_1252,),
    "latin1": (WINDOWS_1252,),
    "latin-1": (WINDOWS_1252,),
    "l1": (WINDOWS_1252,),
    "cp-1252": (WINDOWS_1252,),
    "win-1252": (WINDOWS_1252,),
    "windows1252": (WINDOWS_1252,),
    "iso-8859-9": ("cp1254",),
    "iso-8859-11": ("cp874",),
    "tis-620": ("cp874",),
    "iso-8859-8-i": ("iso-8859-8",),
    "ks_c_5601-1987": ("cp949",),
    "euc-kr": ("cp949",),
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "x-gbk": ("gb18030",),
    "big5": ("cp950", "big5hkscs"),
    "shift_jis": ("cp932",),
    "shift-jis": ("cp932",),
    "sjis": ("cp932",),
    "x-sjis": ("cp932",),
    "ms_kanji": ("cp932",),
    "x-euc-jp": ("euc-jp",),
    "iso-2022-jp": ("iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2"),
    "x-mac-roman": ("mac-roman",),
    "utf8mb4": ("utf-8",),
}

# Python codecs that accept bytes but do not decode text in a charset, or
# that turn ASCII into something else. A label naming one is ignored.
_UNSAFE_CODECS = frozenset(
    {"idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape"}
)

# Tried when the bytes contain ESC and the label did not decode them.
# NOTE: Python's ISO-2022-JP codecs lack the NEC and IBM extensions of
# Microsoft's CP50220; text using those characters falls through to the
# next candidates and its escape sequences are removed as control codes.
_ISO_2022_CODECS = ("iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2", "iso2022_kr")

_ESC = "\x1b"

# C0 controls and DEL, except tab, line feed and carriage return.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f]")


def _build_windows_1252_table() -> dict[int, str]:
    """Map each Latin-1 code point to its windows-1252 character.

    The five bytes windows-1252 leaves undefined keep their Latin-1 meaning,
    which makes the decoder total.
    """
    table: dict[int, str] = {}
    for byte in range(0x80, 0xA0):
        try:
            table[byte] = bytes([byte]).decode("cp1252")
        except UnicodeDecodeError:
            continue
    return table


_WINDOWS_1252_TABLE = _build_windows_1252_table()


def decode_windows_1252(data: bytes) -> str:
    """Decode ``data`` as windows-1252. This never raises."""
    return data.decode("latin-1").translate(_WINDOWS_1252_TABLE)


def normalize_label(label: str | None) -> str | None:
    """Return the charset label lower-cased and unquoted, or None if empty.

    Labels that name no charset ("unknown", "unknown-8bit", "") give None.
    """
    if not label:
        return None
    cleaned = label.strip().strip("\"'").strip().lower()
    if cleaned in _MEANINGLESS_LABELS:
        return None
    return cleaned


def _codecs_for_label(label: str | None) -> tuple[str, ...]:
    """Return the Python codec names to try for a normalized label."""
    if label is None:
        return ()
    if label in _LABEL_ALIASES:
        return _LABEL_ALIASES[label]
    return (label,)


def _try_decode(data: bytes, codec_name: str) -> str | None:
    """Decode strictly with one codec; None when it fails or does not fit.

    A result that still contains ESC or a lone surrogate is rejected, because
    it means the codec did not understand the bytes.
    """
    if codec_name == WINDOWS_1252:
        text = decode_windows_1252(data)
    else:
        try:
            if codecs.lookup(codec_name).name in _UNSAFE_CODECS:
                return None
            text = data.decode(codec_name)
        except (LookupError, UnicodeError, ValueError):
            return None
    if _ESC in text:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return text


class DecodedText(NamedTuple):
    """Text decoded by ``decode_text`` and how it was decoded."""

    text: str
    codec: str  # Python codec name, or "windows-1252"
    label_used: bool  # False when the label was missing or did not fit


def decode_text(data: bytes, label: str | None) -> DecodedText:
    """Decode ``data``, trying ``label`` first and then the fallbacks.

    The order is: the codecs for ``label``, ISO-2022 codecs when the bytes
    contain ESC, UTF-8 strictly, and windows-1252 as the last resort. The
    result contains no U+FFFD unless the input itself encodes one. ESC and
    other control characters survive only in the last-resort result, so
    callers pass text through ``remove_control_characters``.
    """
    labelled = _codecs_for_label(normalize_label(label))
    for codec_name in labelled:
        text = _try_decode(data, codec_name)
        if text is not None:
            return DecodedText(text, codec_name, True)

    fallbacks = [*_ISO_2022_CODECS] if b"\x1b" in data else []
    fallbacks.append("utf-8")
    for codec_name in fallbacks:
        text = _try_decode(data, codec_name)
        if text is not None:
            return DecodedText(text, codec_name, False)
    return DecodedText(decode_windows_1252(data), WINDOWS_1252, False)


def remove_control_characters(text: str) -> str:
    """Remove C0 control characters other than tab, LF and CR, and DEL.

    NUL cannot be stored in a PostgreSQL text column, and a leftover ESC
    is a fragment of an escape sequence that no codec understood.
    """
    return _CONTROL_CHARACTERS.sub("", text)


def normalize_newlines(text: str) -> str:
    """Replace CRLF and lone CR line endings with LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")
