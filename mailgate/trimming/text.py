"""Trim a plain-text reply by its quote marks, attribution lines and headers.

Two kinds of quoted text are distinguished:

- A quoted block: lines marked with ">" (or "C>"), with the attribution line
  right above it. Only the block is cut, so text written below it stays
  (bottom-posting and inline replies).
- The start of the original: a separator such as "-----Original Message-----",
  an Outlook header block ("From:" followed by "Sent:", "To:" or "Subject:"),
  or an attribution with a date or address and no quote marks below it.
  Everything from there to the end is cut, because clients that write these
  put the author's text above them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mailgate.trimming import markers
from mailgate.trimming.markers import Strength
from mailgate.trimming.result import TrimmedReply, split_by_mask
from mailgate.trimming.signature import find_signature_start

# Lines after "From:" in which another header field must appear. Outlook
# wraps a long To: or Cc: list, so the fields need not be adjacent.
HEADER_LOOKAHEAD_LINES = 6
# Gmail wraps a long attribution once; some clients wrap it before the
# address and again before "wrote:".
MAX_ATTRIBUTION_LINES = 3
# A quoted line at least this long may have been wrapped after the quote
# marks were added; common clients wrap at 72 to 78 characters.
WRAPPED_QUOTE_MIN_CHARS = 60


def trim_text(text: str) -> TrimmedReply:
    """Split plain ``text`` into the author's lines and the cut ones.

    Quoted blocks, attribution lines, everything from the start of a quoted
    original to the end, and a trailing signature are cut. Line breaks may be
    LF, CRLF or CR.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    keep = _mark_author_lines(lines)
    visible = [index for index, kept in enumerate(keep) if kept]
    signature_start = find_signature_start([lines[i] for i in visible])
    if signature_start is not None:
        for index in visible[signature_start:]:
            keep[index] = False
    return split_by_mask(lines, keep)


def starts_with_header_block(lines: Sequence[str]) -> bool:
    """Tell whether the first non-blank line of ``lines`` opens a header block."""
    first = _next_non_blank(lines, 0)
    return first is not None and _is_header_block(lines, first)


def _mark_author_lines(lines: Sequence[str]) -> list[bool]:
    """Return one flag per line: True for the author's, False for quoted."""
    keep = [True] * len(lines)
    index = 0
    while index < len(lines):
        end = _quoted_block_end(lines, index)
        if end is not None:
            keep[index:end] = [False] * (end - index)
            index = end
        elif _starts_original(lines, index):
            start = _header_block_top(lines, keep, index)
            keep[start:] = [False] * (len(lines) - start)
            break
        else:
            index += 1
    return keep


def _quoted_block_end(lines: Sequence[str], index: int) -> int | None:
    """Return the end of a quoted block that starts at ``index``, if any.

    The block is either quote-marked lines or an attribution followed by
    them. It includes blank lines inside and right after it.
    """
    start = index
    if not markers.is_quoted(lines[index]):
        span, _ = _attribution_at(lines, index)
        following = _next_non_blank(lines, index + span) if span else None
        if following is None or not markers.is_quoted(lines[following]):
            return None
        start = following
    end = start
    while end < len(lines) and (
        markers.is_quoted(lines[end])
        or not lines[end].strip()
        or _continues_quoted_line(lines[end - 1], lines[end])
    ):
        end += 1
    return end


def _continues_quoted_line(previous: str, line: str) -> bool:
    """Tell whether ``line`` is the rest of the long quoted line above it.

    Clients that wrap text after adding quote marks leave the overflow of a
    long quoted line unmarked ("> ... pharetra d" then "ignissim odio?").
    Only a line that starts in lower case counts, so a reply written right
    below a quote, without a blank line, stays.
    """
    if not markers.is_quoted(previous) or len(previous) < WRAPPED_QUOTE_MIN_CHARS:
        return False
    text = line.lstrip()
    return bool(text) and text[0].islower()


def _starts_original(lines: Sequence[str], index: int) -> bool:
    """Tell whether the quoted original starts at ``index`` and runs to the end."""
    line = lines[index]
    if markers.is_separator(line) or _is_header_block(lines, index):
        return True
    if markers.is_rule_line(line):
        following = _next_non_blank(lines, index + 1)
        return following is not None and _is_header_block(lines, following)
    _, strength = _attribution_at(lines, index)
    return strength is Strength.STRONG


def _attribution_at(lines: Sequence[str], index: int) -> tuple[int, Strength]:
    """Return how many lines an attribution at ``index`` spans, and its strength.

    An attribution wrapped over several lines counts only when it is strong,
    because joining a line of text with a short "Ana wrote:" below it would
    cut that text too.
    """
    line = lines[index]
    if not line.strip() or markers.is_quoted(line):
        return 0, Strength.NONE
    strength = markers.attribution_strength(line)
    if strength:
        return 1, strength
    following = lines[index + 1 : index + MAX_ATTRIBUTION_LINES]
    if not following or not markers.is_wrapped_attribution(line, following[0]):
        return 0, Strength.NONE
    joined = line
    for span, part in enumerate(following, start=2):
        if not part.strip():
            break
        if markers.is_quoted(part) and not markers.is_wrapped_address_end(part):
            break
        joined = markers.join_wrapped(joined, part)
        if markers.attribution_strength(joined) is Strength.STRONG:
            return span, Strength.STRONG
    return 0, Strength.NONE


def _header_block_top(
    lines: Sequence[str], keep: Sequence[bool], index: int
) -> int:
    """Return where the original starting at ``index`` really starts.

    A header block may have a dated line right above it ("Message du :
    12/12/2016 13:20") and a rule above that, separated by blank lines.
    Lines already cut are never crossed.
    """
    if not _is_header_block(lines, index):
        return index
    start = index
    while _is_kept_and(lines, keep, start - 1, markers.is_header_preamble):
        start -= 1
    above = start
    while _is_kept_and(lines, keep, above - 1, _is_blank):
        above -= 1
    if _is_kept_and(lines, keep, above - 1, markers.is_header_rule):
        return above - 1
    return start


def _is_kept_and(
    lines: Sequence[str],
    keep: Sequence[bool],
    index: int,
    predicate: Callable[[str], bool],
) -> bool:
    return index >= 0 and keep[index] and predicate(lines[index])


def _is_blank(line: str) -> bool:
    return not line.strip()


def _is_header_block(lines: Sequence[str], index: int) -> bool:
    if not markers.is_from_field(lines[index]):
        return False
    following = lines[index + 1 : index + 1 + HEADER_LOOKAHEAD_LINES]
    return any(markers.is_other_field(line) for line in following)


def _next_non_blank(lines: Sequence[str], index: int) -> int | None:
    for position in range(index, len(lines)):
        if lines[position].strip():
            return position
    return None
