"""Render an lxml HTML tree as plain text, the way a mail client shows it.

Block elements start new lines, paragraphs are separated by a blank line,
``<br>`` breaks a line, and runs of white space collapse except inside
``<pre>``. A cited ``<blockquote>`` (``type="cite"`` or Gmail's
``class="gmail_quote"``) comes out with "> " before each line, so the
plain-text rules can cut it together with the attribution above it.

NOTE: this converter exists so trimming does not wait for the parsing
package; use the parsing package's converter once it is there.
"""

from __future__ import annotations

import re

from lxml import html as lxml_html

_SKIPPED_TAGS = frozenset(
    {"head", "style", "script", "title", "template", "noscript", "object"}
)
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "div",
        "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
        "header", "hr", "li", "main", "nav", "p", "section", "tr",
    }
)
# Blocks that browsers show with a margin, rendered with a blank line around
# them; they take precedence over _BLOCK_TAGS.
_PARAGRAPH_TAGS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "pre"}
)
_COLLAPSIBLE_SPACE = re.compile(r"[ \t\n\r\f]+")


def is_cited_quote(element: lxml_html.HtmlElement) -> bool:
    """Tell whether ``element`` is a blockquote a client made for a quote."""
    if element.tag != "blockquote":
        return False
    if (element.get("type") or "").lower() == "cite":
        return True
    return "gmail_quote" in class_names(element)


def class_names(element: lxml_html.HtmlElement) -> set[str]:
    """Return the element's classes, with Exchange's "x_" prefix removed.

    Exchange prefixes ids and classes with "x_" when it rewrites a quoted
    HTML body, so "x_gmail_quote" is Gmail's "gmail_quote".
    """
    names = (element.get("class") or "").split()
    return {name.removeprefix("x_") for name in names}


def render_text(element: lxml_html.HtmlElement) -> str:
    """Return the text of ``element`` and its descendants, without its tail."""
    writer = _TextWriter()
    _render(element, writer)
    return writer.text()


def render_tail(element: lxml_html.HtmlElement) -> str:
    """Return the text that follows ``element`` inside its parent."""
    return _COLLAPSIBLE_SPACE.sub(" ", element.tail or "").strip()


class _TextWriter:
    """Collects lines of text; the last line is still open for writing."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.current = ""
        self.preformatted = 0

    def write(self, text: str) -> None:
        if self.preformatted:
            first, *rest = text.split("\n")
            self.current += first
            for line in rest:
                self.end_line()
                self.current = line
            return
        text = _COLLAPSIBLE_SPACE.sub(" ", text)
        if not self.current or self.current.endswith(" "):
            text = text.lstrip(" ")
        self.current += text

    def end_line(self) -> None:
        """End the open line even when it is empty, as ``<br>`` does."""
        self.lines.append(self.current)
        self.current = ""

    def break_line(self) -> None:
        """Start a new line unless the open one is empty."""
        if self.current.strip(" "):
            self.end_line()
        self.current = ""

    def break_paragraph(self) -> None:
        """Start a new line with one blank line above it."""
        self.break_line()
        if self.lines and self.lines[-1].strip():
            self.lines.append("")

    def add_lines(self, lines: list[str]) -> None:
        self.break_line()
        self.lines.extend(lines)

    def text(self) -> str:
        lines = [*self.lines, self.current]
        return "\n".join(line.replace("\xa0", " ").rstrip() for line in lines)


def _render(element: lxml_html.HtmlElement, writer: _TextWriter) -> None:
    tag = element.tag
    if not isinstance(tag, str) or tag in _SKIPPED_TAGS:
        return
    if is_cited_quote(element):
        writer.add_lines(_quote_lines(element))
        return
    _open(element, writer)
    writer.write(element.text or "")
    for child in element:
        _render(child, writer)
        writer.write(child.tail or "")
    _close(element, writer)


def _open(element: lxml_html.HtmlElement, writer: _TextWriter) -> None:
    tag = element.tag
    if tag == "br":
        writer.end_line()
    elif _is_paragraph(element):
        writer.break_paragraph()
    elif tag in _BLOCK_TAGS:
        writer.break_line()
    if tag == "li":
        writer.write("- ")
    elif tag in ("td", "th"):
        writer.write(" ")
    elif tag == "pre":
        writer.preformatted += 1


def _close(element: lxml_html.HtmlElement, writer: _TextWriter) -> None:
    tag = element.tag
    if tag == "pre":
        writer.preformatted -= 1
    if _is_paragraph(element):
        writer.break_paragraph()
    elif tag in _BLOCK_TAGS:
        writer.break_line()


def _is_paragraph(element: lxml_html.HtmlElement) -> bool:
    # Outlook writes every line as <p class="MsoNormal"> with no margin, so
    # those paragraphs are single lines.
    if element.tag == "p":
        return not any(name.startswith("Mso") for name in class_names(element))
    return element.tag in _PARAGRAPH_TAGS


def _quote_lines(element: lxml_html.HtmlElement) -> list[str]:
    writer = _TextWriter()
    writer.write(element.text or "")
    for child in element:
        _render(child, writer)
        writer.write(child.tail or "")
    lines = writer.text().strip("\n").split("\n")
    return [f"> {line}" if line.strip() else ">" for line in lines]
