"""Turn HTML bodies into readable text, and clean them for display.

``html_to_text`` walks the lxml tree itself instead of using inscriptis.
inscriptis 2.7.6 indents text by the CSS margins it emulates (each line of
a plain <body><p> message starts with two spaces) and drops the quoting of
<blockquote>, which plain-text quote detection needs as "> " marks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import lxml.etree
import lxml.html
import nh3

# Elements whose content is never shown as text.
_SKIPPED = frozenset(
    {"head", "script", "style", "title", "template", "noscript", "object", "svg"}
)

# Elements that start and end on their own line.
_LINE_BLOCKS = frozenset(
    {
        "address", "article", "aside", "center", "dd", "details", "div", "dl",
        "dt", "fieldset", "figcaption", "figure", "footer", "form", "header",
        "hr", "li", "main", "nav", "section", "summary", "tr",
    }
)  # fmt: skip

# Elements set off by a blank line.
_PARAGRAPH_BLOCKS = frozenset(
    {"blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "ol", "p", "pre", "table", "ul"}
)

# Outlook writes each line as <p class=MsoNormal> with zero margins, so
# these paragraphs are lines, and its empty ones are the blank lines.
_OUTLOOK_LINE_CLASSES = ("msonormal", "msoplaintext", "msolistparagraph")

_WHITESPACE = re.compile(r"[ \t\r\n\f]+")
_EXCESS_BLANK_LINES = re.compile(r"\n{3,}")

# nh3 keeps its default tags and attributes (no style, no on* handlers,
# no forms). "cid" and "data" are added for images only: inline images
# keep their reference to the attachment, and _filter_attribute drops
# every other image source (a remote image reports to its sender when
# and where the mail is read) and data: URLs outside images.
_URL_SCHEMES = nh3.ALLOWED_URL_SCHEMES | {"cid", "data"}
_URL_ATTRIBUTES = frozenset({"href", "src", "cite", "longdesc", "action", "background"})
_CONTENT_DROPPED_TAGS = {"script", "style", "title", "head", "template", "noscript"}


class _TextWriter:
    """Accumulates rendered text, merging the line breaks blocks request."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.at_line_start = True
        self.trailing_newlines = 0
        self.written = False

    def text(self, text: str, preformatted: bool = False) -> None:
        """Append text; outside <pre>, whitespace runs become one space.

        No-break spaces are kept until ``result``, so a paragraph holding
        only &nbsp; still makes a blank line, as it does in a browser.
        """
        if not preformatted:
            text = _WHITESPACE.sub(" ", text)
            if self.at_line_start:
                text = text.lstrip(" ")
        if not text:
            return
        self.parts.append(text)
        self.written = True
        self.at_line_start = text.endswith("\n")
        stripped = text.rstrip("\n")
        if stripped:
            self.trailing_newlines = len(text) - len(stripped)
        else:
            self.trailing_newlines += len(text)

    def raw_newline(self) -> None:
        """Append one line break unconditionally, as <br> does."""
        self.parts.append("\n")
        self.written = True
        self.at_line_start = True
        self.trailing_newlines += 1

    def ensure_newlines(self, count: int) -> None:
        """End the current line and add blank lines up to ``count`` breaks.

        Nothing is added before the first text, so output never starts
        with blank lines.
        """
        if not self.written:
            return
        while self.trailing_newlines < count:
            self.raw_newline()

    def result(self) -> str:
        """Return the text with trailing spaces and surplus blank lines removed."""
        text = "".join(self.parts).replace("\xa0", " ")
        lines = [line.rstrip() for line in text.split("\n")]
        text = "\n".join(lines)
        return _EXCESS_BLANK_LINES.sub("\n\n", text).strip("\n")


@dataclass
class _OpenList:
    """A <ul> or <ol> being rendered, with the number of items seen."""

    ordered: bool
    items: int = 0


class _Renderer:
    """Renders an lxml tree into a ``_TextWriter``, without recursion.

    The explicit stack keeps deeply nested markup from hitting Python's
    recursion limit.
    """

    def __init__(self) -> None:
        self.writers = [_TextWriter()]
        self.lists: list[_OpenList] = []
        self.preformatted = 0

    @property
    def writer(self) -> _TextWriter:
        return self.writers[-1]

    def render(self, root: lxml.etree._Element) -> str:
        stack: list[tuple[lxml.etree._Element, bool]] = [(root, False)]
        while stack:
            element, closing = stack.pop()
            if closing:
                self.close(element)
                self.tail(element)
                continue
            tag = element.tag.lower() if isinstance(element.tag, str) else None
            if tag is None or tag in _SKIPPED:
                self.tail(element)
                continue
            self.open(element, tag)
            if element.text:
                self.writer.text(element.text, self.preformatted > 0)
            stack.append((element, True))
            stack.extend((child, False) for child in reversed(element))
        return self.writers[0].result()

    def tail(self, element: lxml.etree._Element) -> None:
        if element.tail:
            self.writer.text(element.tail, self.preformatted > 0)

    def open(self, element: lxml.etree._Element, tag: str) -> None:
        self.writer.ensure_newlines(self.breaks_around(element, tag))
        if tag == "br":
            self.writer.raw_newline()
        elif tag == "blockquote":
            self.writers.append(_TextWriter())
        elif tag == "pre":
            self.preformatted += 1
        elif tag in ("ul", "ol"):
            self.lists.append(_OpenList(ordered=tag == "ol"))
        elif tag == "li":
            self.writer.text(self.list_marker(), preformatted=True)
        elif tag in ("td", "th") and element.getprevious() is not None:
            self.writer.text("\t", preformatted=True)

    def close(self, element: lxml.etree._Element) -> None:
        tag = element.tag.lower()
        if tag == "blockquote":
            quoted = self.writers.pop().result()
            self.writer.ensure_newlines(2)
            self.writer.text(_quote(quoted), preformatted=True)
        elif tag == "pre":
            self.preformatted -= 1
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        self.writer.ensure_newlines(self.breaks_around(element, tag))

    def breaks_around(self, element: lxml.etree._Element, tag: str) -> int:
        """Return the line breaks around ``element``; a nested list gets one."""
        if tag in ("ul", "ol") and self.lists:
            return 1
        return _breaks_around(element, tag)

    def list_marker(self) -> str:
        if not self.lists:
            return "- "
        current = self.lists[-1]
        current.items += 1
        indent = "  " * (len(self.lists) - 1)
        if current.ordered:
            return f"{indent}{current.items}. "
        return f"{indent}- "


def _breaks_around(element: lxml.etree._Element, tag: str) -> int:
    """Return how many line breaks must separate ``element`` from its siblings."""
    if tag == "p":
        classes = (element.get("class") or "").lower()
        return 1 if any(name in classes for name in _OUTLOOK_LINE_CLASSES) else 2
    if tag in _PARAGRAPH_BLOCKS:
        return 2
    if tag in _LINE_BLOCKS:
        return 1
    return 0


def _quote(text: str) -> str:
    """Prefix every line of ``text`` with "> ", or ">" when it is blank."""
    return "\n".join(f"> {line}" if line else ">" for line in text.split("\n"))


def html_to_text(html: str) -> str:
    """Convert an HTML document or fragment into readable plain text.

    Paragraphs and headings are separated by blank lines; div, br, list
    items and table rows end lines; list items get "- " or "1. " marks;
    table cells are separated by tabs; blockquote lines are prefixed with
    "> ". Entities are decoded, and script, style and head content is
    dropped. Returns "" for empty or unparsable input.
    """
    if not html or not html.strip():
        return ""
    parser = lxml.html.HTMLParser(
        encoding="utf-8", remove_comments=True, remove_pis=True
    )
    try:
        root = lxml.html.document_fromstring(
            html.encode("utf-8", "replace"), parser=parser
        )
    except (lxml.etree.ParserError, ValueError):
        return ""
    return _Renderer().render(root)


def _filter_attribute(element: str, attribute: str, value: str) -> str | None:
    """Keep only cid: and data:image/ sources on images, and no data: URLs
    elsewhere; returning None drops the attribute."""
    if attribute not in _URL_ATTRIBUTES:
        return value
    url = "".join(value.split()).lower()
    if element == "img" and attribute == "src":
        return value if url.startswith(("cid:", "data:image/")) else None
    if url.startswith("data:") or url.startswith("cid:"):
        return None
    return value


def sanitize_html(html: str) -> str:
    """Clean HTML with nh3 so that it is safe to show in a browser.

    Scripts, styles, forms, event handler attributes, javascript: URLs and
    unknown tags are removed, and links get rel="noopener noreferrer".
    Images keep only cid: and data:image/ sources, so showing the mail
    loads nothing from the network.
    """
    return nh3.clean(
        html,
        clean_content_tags=_CONTENT_DROPPED_TAGS,
        url_schemes=_URL_SCHEMES,
        attribute_filter=_filter_attribute,
    )
