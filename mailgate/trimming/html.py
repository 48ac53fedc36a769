"""Trim an HTML reply by the structure that known mail clients write.

- Outlook starts the original with ``div#divRplyFwdMsg`` (Outlook on the web
  and mobile, after ``#appendonsend`` and an ``<hr>``), a ``div`` with a
  ``border-top`` above a "From:" header block (Outlook for Windows), or
  ``div.OutlookMessageHeader`` (older Outlook). Everything from there to the
  end of the body is cut.
- Gmail's ``div.gmail_attr``, Thunderbird's ``div.moz-cite-prefix`` (the
  attribution lines), Gmail's ``div.gmail_signature``, and Yahoo's
  ``div.yahoo_quoted`` and ProtonMail's ``.protonmail_quote`` (attribution
  and quote together) are cut where they are.
- Cited blockquotes (Apple Mail, Thunderbird, Gmail) are rendered with quote
  marks, so the plain-text rules cut them and keep text written below.

The kept HTML is then rendered as text and trimmed by the plain-text rules,
which also cut the signature.
"""

from __future__ import annotations

import re

from lxml import etree
from lxml import html as lxml_html

from mailgate.trimming.htmltext import (
    class_names,
    is_cited_quote,
    render_tail,
    render_text,
)
from mailgate.trimming.result import TrimmedReply, join_parts
from mailgate.trimming.text import starts_with_header_block, trim_text

_ORIGINAL_IDS = frozenset(
    {"divRplyFwdMsg", "appendonsend", "mail-editor-reference-message-container"}
)
_ORIGINAL_CLASSES = frozenset({"OutlookMessageHeader"})
_DROPPED_CLASSES = frozenset(
    {
        "gmail_attr",
        "gmail_signature",
        "gmail_signature_prefix",
        "moz-cite-prefix",
        "yahoo_quoted",
        "protonmail_quote",
    }
)
_BORDER_TOP = re.compile(r"border-top\s*:\s*solid", re.IGNORECASE)
# lxml rejects str input that declares an encoding; the text is decoded.
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
# lxml parses text with these characters but raises ValueError when a tree
# edit copies it, because XML forbids them. HTML counts form feed as space.
_SPACE_LIKE_CONTROLS = re.compile(r"[\x0b\x0c]")
_XML_FORBIDDEN = re.compile(r"[\x00-\x08\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def trim_html(html: str) -> TrimmedReply | None:
    """Trim ``html`` by client structure and return the kept part as text.

    Returns None when the HTML is empty, cannot be parsed, or has none of the
    structures described in this module, so the caller can use the plain
    text instead.
    """
    body = _parse_body(html)
    if body is None:
        return None
    removed: list[str] = []
    found = _cut_original(body, removed)
    found = _drop_client_parts(body, removed) or found
    quotes = body.iter("blockquote")
    found = found or any(is_cited_quote(element) for element in quotes)
    if not found:
        return None
    trimmed = trim_text(render_text(body))
    return TrimmedReply(
        body=trimmed.body, removed=join_parts([*removed, trimmed.removed])
    )


def render_html(html: str) -> str:
    """Render ``html`` as plain text, or return "" when it cannot be parsed."""
    body = _parse_body(html)
    return "" if body is None else render_text(body)


def _parse_body(html: str) -> lxml_html.HtmlElement | None:
    source = _XML_DECLARATION.sub("", html, count=1)
    source = _SPACE_LIKE_CONTROLS.sub(" ", source)
    source = _XML_FORBIDDEN.sub("", source)
    if not source.strip():
        return None
    try:
        document = lxml_html.document_fromstring(source)
    except (etree.ParserError, ValueError):
        return None
    return document.find("body")


def _cut_original(body: lxml_html.HtmlElement, removed: list[str]) -> bool:
    """Cut from the first Outlook original marker to the end of ``body``.

    Markers inside another client's quote belong to an older message in the
    thread and are left to that quote's own rule.
    """
    for element in body.iterdescendants():
        if not isinstance(element.tag, str) or not _starts_original(element):
            continue
        if any(_is_quote_container(parent) for parent in element.iterancestors()):
            continue
        removed.extend(_cut_to_end(body, _include_rule_above(element)))
        return True
    return False


def _starts_original(element: lxml_html.HtmlElement) -> bool:
    if (element.get("id") or "").removeprefix("x_") in _ORIGINAL_IDS:
        return True
    if class_names(element) & _ORIGINAL_CLASSES:
        return True
    if element.tag != "div" or not _BORDER_TOP.search(element.get("style") or ""):
        return False
    return starts_with_header_block(render_text(element).split("\n"))


def _include_rule_above(element: lxml_html.HtmlElement) -> lxml_html.HtmlElement:
    """Return the ``<hr>`` right above ``element`` if there is one, else it."""
    previous = element.getprevious()
    if previous is not None and previous.tag == "hr":
        if not (previous.tail or "").strip():
            return previous
    return element


def _cut_to_end(
    body: lxml_html.HtmlElement, start: lxml_html.HtmlElement
) -> list[str]:
    """Remove ``start`` and everything after it in document order.

    Returns the text of what was removed.
    """
    removed: list[str] = []
    node = start
    siblings = [start, *start.itersiblings()]
    while True:
        parent = node.getparent()
        for sibling in siblings:
            removed.extend([render_text(sibling), render_tail(sibling)])
            parent.remove(sibling)
        if parent is body:
            return removed
        removed.append(render_tail(parent))
        parent.tail = None
        node = parent
        siblings = list(parent.itersiblings())


def _drop_client_parts(body: lxml_html.HtmlElement, removed: list[str]) -> bool:
    """Remove attribution, signature and quote containers of known clients."""
    found = False
    for element in list(body.iterdescendants()):
        if not isinstance(element.tag, str) or not _is_client_part(element):
            continue
        if not _is_inside(element, body):
            continue
        removed.append(render_text(element))
        element.drop_tree()
        found = True
    return found


def _is_client_part(element: lxml_html.HtmlElement) -> bool:
    classes = class_names(element)
    if classes & _DROPPED_CLASSES:
        return True
    # Gmail puts a forwarded message in div.gmail_quote with no blockquote;
    # a reply's div.gmail_quote holds a blockquote that is rendered as quoted.
    if "gmail_quote" in classes and element.tag != "blockquote":
        return element.find(".//blockquote") is None
    return False


def _is_quote_container(element: lxml_html.HtmlElement) -> bool:
    return is_cited_quote(element) or _is_client_part(element)


def _is_inside(element: lxml_html.HtmlElement, body: lxml_html.HtmlElement) -> bool:
    return any(ancestor is body for ancestor in element.iterancestors())
