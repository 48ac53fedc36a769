"""The entry point of reply trimming: choose the HTML or plain-text rules."""

from __future__ import annotations

from mailgate.trimming.html import render_html, trim_html
from mailgate.trimming.result import TrimmedReply
from mailgate.trimming.text import trim_text


def trim_reply(text: str, html: str | None = None) -> TrimmedReply:
    """Split a reply into what its author wrote and what was quoted or signed.

    ``text`` is the decoded plain-text body; ``html`` is the decoded HTML part
    when the mail had one. The HTML structure of known clients is used when it
    is found and leaves a non-empty body. Otherwise the plain-text rules run
    on ``text``, or on ``html`` rendered as text when ``text`` is blank.
    Malformed HTML does not raise: HTML that lxml cannot parse is ignored.
    """
    if html:
        trimmed = trim_html(html)
        if trimmed is not None and (trimmed.body or not text.strip()):
            return trimmed
        # NOTE: when ``text`` was rendered from the HTML by the caller, it has
        # no quote marks, so a reply that is only a quote keeps that quote here.
        if not text.strip():
            text = render_html(html)
    return trim_text(text)
