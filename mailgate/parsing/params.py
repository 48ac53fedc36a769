"""Parse MIME header parameters (Content-Type, Content-Disposition) leniently.

Beyond RFC 2045 and RFC 2231 this accepts what clients really send:
RFC 2231 extended values wrapped in quotes, RFC 2047 encoded-words inside
quoted values, backslashes of Windows paths inside quotes, and values with
unquoted spaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from mailgate.parsing.charsets import decode_text
from mailgate.parsing.encoded_words import decode_encoded_words

# name*, name*0, name*0* and so on (RFC 2231 sections 3 and 4).
_SECTION = re.compile(r"^(?P<base>[^*]+)\*(?:(?P<index>\d+)\*?|)$")


@dataclass(frozen=True)
class HeaderParameters:
    """A MIME header value split into its main value and its parameters."""

    value: str  # lower-case main value, such as "text/plain" or "attachment"
    params: dict[str, str] = field(default_factory=dict)  # decoded values

    def get(self, name: str) -> str | None:
        """Return the decoded parameter ``name`` (lower-case), or None."""
        return self.params.get(name)


def _split_segments(text: str) -> list[str]:
    """Split on semicolons that are outside double quotes."""
    segments: list[str] = []
    current: list[str] = []
    in_quotes = False
    for char in text:
        if char == '"':
            in_quotes = not in_quotes
        if char == ";" and not in_quotes:
            segments.append("".join(current))
            current = []
            continue
        current.append(char)
    segments.append("".join(current))
    return segments


def _unquote(value: str) -> str:
    """Remove the double quotes around ``value`` and resolve its escapes.

    A backslash escapes only a double quote or another backslash. Clients
    write Windows paths such as "C:\\TEMP\\a.png" without escaping them, so
    any other backslash stays literal. Text after the closing quote is
    dropped, and an unterminated quote runs to the end.
    """
    value = value.strip()
    if not value.startswith('"'):
        return value
    output: list[str] = []
    index = 1
    while index < len(value):
        char = value[index]
        if char == "\\" and index + 1 < len(value) and value[index + 1] in '"\\':
            output.append(value[index + 1])
            index += 2
            continue
        if char == '"':
            break
        output.append(char)
        index += 1
    return "".join(output)


def _decode_extended(sections: list[tuple[int, bool, str]]) -> str:
    """Join RFC 2231 sections and decode them with their declared charset.

    The first encoded section starts with charset'language'. Percent escapes
    are undone in encoded sections only.
    """
    charset: str | None = None
    data = b""
    for position, (_, encoded, value) in enumerate(sorted(sections)):
        text = value
        if encoded and position == 0 and text.count("'") >= 2:
            charset, _, text = text.split("'", 2)
        if encoded:
            data += unquote_to_bytes(text)
        else:
            data += text.encode("utf-8", "surrogateescape")
    return decode_text(data, charset or None).text


def _collect_extended(raw_params: list[tuple[str, str]]) -> dict[str, str]:
    """Group the RFC 2231 sections of each parameter and decode them."""
    grouped: dict[str, list[tuple[int, bool, str]]] = {}
    for name, value in raw_params:
        match = _SECTION.match(name)
        if match is None:
            continue
        index = int(match["index"]) if match["index"] is not None else 0
        encoded = name.endswith("*")
        grouped.setdefault(match["base"], []).append((index, encoded, value))
    return {name: _decode_extended(sections) for name, sections in grouped.items()}


def parse_parameters(text: str) -> HeaderParameters:
    """Split a decoded header value into its main value and parameters.

    ``text`` must already be unfolded and free of raw 8-bit bytes
    (``encoded_words.decode_raw_header`` does both). Parameter names are
    lower-cased. An RFC 2231 value wins over a plain value of the same name,
    and encoded-words in plain values are decoded.
    """
    segments = _split_segments(text)
    main_value = segments[0].strip().lower()
    raw_params: list[tuple[str, str]] = []
    for segment in segments[1:]:
        name, separator, value = segment.partition("=")
        name = name.strip().lower()
        if not separator or not name:
            continue
        raw_params.append((name, _unquote(value)))

    params: dict[str, str] = {}
    for name, value in raw_params:
        if "*" not in name and name not in params:
            params[name] = decode_encoded_words(value).strip()
    params.update(_collect_extended(raw_params))
    return HeaderParameters(main_value, params)
