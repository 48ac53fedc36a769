"""Walk a parsed MIME tree: choose the body parts and collect attachments.

Two views of the body are built at once. In multipart/alternative the text
view takes the first alternative with a text/plain part and the HTML view
the last one with a text/html part. In multipart/related only the root part
is body. Every other container contributes all its children in order.

Each part is read under a guard: when the stdlib or a codec fails on one
part, that part's raw bytes become an attachment and the walk goes on.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from email.message import Message

from mailgate.parsing.attachments import AttachmentList, content_type_for
from mailgate.parsing.charsets import (
    decode_text,
    normalize_label,
    normalize_newlines,
    remove_control_characters,
)
from mailgate.parsing.parts import (
    PartHeaders,
    decode_payload,
    raw_body,
    read_part_headers,
    serialize_body,
)
from mailgate.parsing.tree import parse_tree
from mailgate.parsing.uuencode import extract_uuencoded

log = logging.getLogger(__name__)

# Deeper parts are kept as one attachment each. The limit is far above the
# nesting mail clients produce (four levels in the test corpus) and bounds
# the work a crafted message causes.
MAX_NESTING_DEPTH = 32

_BODY_TYPES = frozenset({"text/plain", "text/html"})

# Alternatives that are neither a text view nor a file.
_RICH_TEXT_TYPES = frozenset({"text/enriched", "text/richtext"})

# A delimiter line: "--" and a boundary of 1 to 70 characters that does
# not end in a space (RFC 2046 section 5.1.1). A closing delimiter line
# shows up as the boundary followed by "--".
_DELIMITER_LINE = re.compile(rb"^--(\S(?:[^\r\n]{0,70}\S)?)[ \t]*\r?$", re.MULTILINE)

_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)


@dataclass(frozen=True)
class BodyPart:
    """One decoded body part."""

    subtype: str  # "plain" or "html"
    text: str


@dataclass
class WalkResult:
    """The body views, attachments and defects found in a MIME tree."""

    text_view: list[BodyPart] = field(default_factory=list)
    html_view: list[BodyPart] = field(default_factory=list)
    attachments: AttachmentList = field(default_factory=AttachmentList)
    defects: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Views:
    """The body parts one subtree adds to the text and the HTML view."""

    text: tuple[BodyPart, ...] = ()
    html: tuple[BodyPart, ...] = ()

    def has(self, view: str, subtype: str) -> bool:
        parts = self.text if view == "text" else self.html
        return any(part.subtype == subtype for part in parts)

    def __add__(self, other: _Views) -> _Views:
        return _Views(self.text + other.text, self.html + other.html)


def walk_message(root: Message) -> WalkResult:
    """Walk the MIME tree under ``root`` and return its body and attachments."""
    result = WalkResult()
    views = _Walker(result).visit(root, depth=0, as_attachment=False)
    result.text_view = list(views.text)
    result.html_view = list(views.html)
    return result


def keep_unparsed(root: Message, reason: str) -> WalkResult:
    """Return a result that keeps the whole body of ``root`` as one attachment.

    Used when the MIME structure cannot be walked at all.
    """
    result = WalkResult(defects=[reason])
    _Walker(result).keep_raw(root)
    return result


class _Walker:
    """Visits parts depth first and fills one ``WalkResult``."""

    def __init__(self, result: WalkResult) -> None:
        self.result = result

    def visit(self, part: Message, depth: int, as_attachment: bool) -> _Views:
        """Visit one part and return the body parts its subtree adds.

        With ``as_attachment`` set, body-like parts become attachments
        too, as for the non-root parts of multipart/related.
        """
        try:
            headers = read_part_headers(part)
            if depth > MAX_NESTING_DEPTH:
                self.result.defects.append(
                    f"MIME nesting deeper than {MAX_NESTING_DEPTH}"
                )
                self.keep_raw(part, headers)
                return _Views()
            if part.is_multipart():
                return self.visit_container(part, headers, depth, as_attachment)
            if headers.maintype == "multipart":
                return self.visit_broken_multipart(part, headers, depth, as_attachment)
            return self.visit_leaf(part, headers, depth, as_attachment)
        except Exception as error:  # noqa: BLE001 - see the module docstring
            log.warning(
                "MIME part could not be read, kept raw: %s: %s",
                type(error).__name__,
                error,
            )
            self.result.defects.append(
                f"part could not be read ({type(error).__name__}); kept raw"
            )
            self.keep_raw(part)
            return _Views()

    def visit_container(
        self, part: Message, headers: PartHeaders, depth: int, as_attachment: bool
    ) -> _Views:
        """Visit a part whose payload the parser split into sub-parts."""
        if headers.maintype != "multipart":
            # message/rfc822 and other message/* parts are files here.
            self.add_attachment(headers, serialize_body(part))
            return _Views()
        children = list(part.get_payload())
        subtype = headers.content_type.split("/", 1)[1]
        if subtype == "alternative" and not as_attachment:
            return self.visit_alternative(children, depth)
        if subtype == "related" and not as_attachment and children:
            return self.visit_related(children, headers, depth)
        views = _Views()
        for child in children:
            views += self.visit(child, depth + 1, as_attachment)
        return views

    def visit_alternative(self, children: list[Message], depth: int) -> _Views:
        """Choose the text and HTML views among alternatives.

        Body parts of alternatives that neither view chose are dropped,
        because they repeat the body. Other parts become attachments.
        """
        outcomes = [
            self.visit(child, depth + 1, False)
            for child in children
            if not _is_dropped_alternative(child)
        ]
        text = next((o.text for o in outcomes if o.has("text", "plain")), None)
        if text is None:
            text = next((o.text for o in reversed(outcomes) if o.text), ())
        html = next((o.html for o in reversed(outcomes) if o.has("html", "html")), ())
        return _Views(text, html)

    def visit_related(
        self, children: list[Message], headers: PartHeaders, depth: int
    ) -> _Views:
        """Visit the root of multipart/related as body, the rest as files.

        The root is the child whose Content-ID the ``start`` parameter
        names (RFC 2387), else the first child.
        """
        root_index = _related_root_index(children, headers.type_params.get("start"))
        views = _Views()
        for index, child in enumerate(children):
            views += self.visit(child, depth + 1, index != root_index)
        return views

    def visit_broken_multipart(
        self, part: Message, headers: PartHeaders, depth: int, as_attachment: bool
    ) -> _Views:
        """Resynchronise a multipart whose boundary the parser did not find.

        ``find_boundary`` picks the boundary from the delimiter lines of
        the body. Without one, the body is kept as an attachment.
        """
        body = raw_body(part)
        boundary = find_boundary(body, headers.type_params.get("boundary"))
        if boundary is None:
            self.result.defects.append(
                f"{headers.content_type}: boundary not found; body kept as attachment"
            )
            self.keep_raw(part, headers)
            return _Views()
        self.result.defects.append(
            f"{headers.content_type}: boundary missing or wrong; resynchronised"
            " on the delimiter lines of the body"
        )
        rebuilt = parse_tree(
            b'Content-Type: %s; boundary="%s"\r\n\r\n%s'
            % (headers.content_type.encode("ascii"), boundary, body)
        )
        if not rebuilt.is_multipart():
            self.keep_raw(part, headers)
            return _Views()
        return self.visit_container(rebuilt, headers, depth, as_attachment)

    def visit_leaf(
        self, part: Message, headers: PartHeaders, depth: int, as_attachment: bool
    ) -> _Views:
        """Decode a leaf part as a body part or add it as an attachment."""
        data = decode_payload(part, headers)
        if as_attachment or not _is_body(headers, depth):
            self.add_attachment(headers, data)
            return _Views()
        subtype = headers.content_type.split("/", 1)[1]
        text = self.decode_body_text(data, headers)
        if subtype == "plain":
            text, files = extract_uuencoded(text)
            for found in files:
                content_type = content_type_for(found.filename)
                self.result.attachments.add(found.data, content_type, found.filename)
        body = BodyPart(subtype, text)
        return _Views((body,), (body,))

    def decode_body_text(self, data: bytes, headers: PartHeaders) -> str:
        """Decode body bytes to text with LF line endings."""
        # NOTE: format=flowed text (RFC 3676) is returned as sent: its soft
        # line breaks are not joined, and its quote marks are left as they are.
        label = headers.charset
        if label is None and headers.content_type == "text/html":
            label = _meta_charset(data)
        decoded = decode_text(data, label)
        if not decoded.label_used and normalize_label(label) is not None:
            self.result.defects.append(
                f"{headers.content_type}: charset {label!r} does not fit the body;"
                f" decoded as {decoded.codec}"
            )
        return normalize_newlines(remove_control_characters(decoded.text))

    def add_attachment(self, headers: PartHeaders, data: bytes) -> None:
        self.result.attachments.add(
            data,
            headers.content_type,
            headers.filename,
            headers.content_id,
            inline=headers.disposition == "inline",
        )

    def keep_raw(self, part: Message, headers: PartHeaders | None = None) -> None:
        """Add the undecoded body of ``part`` as an attachment; never raises."""
        try:
            data = raw_body(part)
        except Exception:  # noqa: BLE001 - last resort for an unreadable part
            data = b""
        content_type = headers.content_type if headers else "application/octet-stream"
        filename = headers.filename if headers else None
        self.result.attachments.add(data, content_type, filename)


def _is_body(headers: PartHeaders, depth: int) -> bool:
    """Tell whether a leaf part is body text rather than a file.

    A text/plain or text/html part is body unless it is an attachment by
    disposition or carries a file name. The top-level part is body even
    with a file name, since it is the whole message.
    """
    if headers.content_type not in _BODY_TYPES:
        return False
    if headers.disposition == "attachment":
        return False
    return headers.filename is None or depth == 0


def _is_dropped_alternative(part: Message) -> bool:
    """Tell whether an alternative is rich text that repeats the body.

    text/enriched and text/richtext alternatives are never shown, so they
    would only add a useless attachment.
    """
    headers = read_part_headers(part)
    return headers.content_type in _RICH_TEXT_TYPES and headers.filename is None


def _related_root_index(children: list[Message], start: str | None) -> int:
    """Return the index of the root part of a multipart/related."""
    if start:
        start_id = start.strip().strip("<>").strip()
        for index, child in enumerate(children):
            content_id = read_part_headers(child).content_id
            if content_id == start_id:
                return index
    return 0


def find_boundary(body: bytes, declared: str | None = None) -> bytes | None:
    """Return the boundary the delimiter lines of ``body`` use, or None.

    The declared boundary is tried first, as this package reads it: the
    stdlib misses a boundary that was folded inside its quotes. Otherwise
    the first delimiter line counts that occurs twice or is closed
    ("--boundary--"), so a single ruler line such as "-----" is not taken
    for a boundary.
    """
    tokens = [match.group(1) for match in _DELIMITER_LINE.finditer(body)]
    counts: dict[bytes, int] = {}
    for token in tokens:
        counts[token] = counts.get(token, 0) + 1
    if declared:
        declared_token = declared.encode("utf-8", "surrogateescape")
        if declared_token in counts:
            return declared_token
    for token, count in counts.items():
        if count >= 2 or token + b"--" in counts:
            return token
    return None


def _meta_charset(data: bytes) -> str | None:
    """Return the charset an HTML document declares in a <meta> tag."""
    match = _META_CHARSET.search(data[:4096])
    return match.group(1).decode("ascii") if match else None
