"""The mails the end-to-end cases send, besides the 2 KB plain ones of
``benchmarks.clients.plain_mail``."""

from __future__ import annotations

import re
import time
from email.utils import parseaddr
from pathlib import Path

from benchmarks.gateway import QUEUE_ADDRESS

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
# A header line with a Message-ID and the folded lines that continue it.
_MESSAGE_ID_FIELD = re.compile(rb"^message-id:[^\n]*\n(?:[ \t][^\n]*\n)*", re.IGNORECASE | re.MULTILINE)
_HTML_PARAGRAPH = (
    "<p>The printer on floor 3 shows error E42 each morning after the first "
    "job of the day. We restarted it and replaced the drum, and the error "
    "came back within the hour.</p>\r\n"
)


def html_reply_mail(number: int, size: int = 50_000) -> bytes:
    """Return a customer's HTML reply of about ``size`` bytes: a short new
    text above a long Gmail-style quote of the earlier mail, which reply
    trimming removes, with a plain-text alternative."""
    quoted_html = _HTML_PARAGRAPH * max(1, (size // 2) // len(_HTML_PARAGRAPH))
    quoted_text = "".join(
        "> " + line + "\r\n"
        for line in re.sub(r"<[^>]+>", "", quoted_html).splitlines()
        if line
    )
    boundary = f"bench-alt-{number}"
    return (
        f"From: Customer {number} <customer{number}@example.com>\r\n"
        f"To: {QUEUE_ADDRESS}\r\n"
        f"Subject: Re: Printer {number} is jammed\r\n"
        f"Message-ID: <bench-html-{number}-{time.time_ns()}@example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "It happened again this morning, photo of the panel to follow.\r\n\r\n"
        f"On Mon, 30 Nov 2026 at 09:12, Support <{QUEUE_ADDRESS}> wrote:\r\n"
        f"{quoted_text}"
        f"--{boundary}\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n"
        "<html><body><div dir=\"ltr\">It happened again this morning, photo of "
        "the panel to follow.</div><br>\r\n"
        '<div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, 30 Nov '
        f"2026 at 09:12, Support &lt;{QUEUE_ADDRESS}&gt; wrote:<br></div>\r\n"
        '<blockquote class="gmail_quote" style="margin:0 0 0 .8ex;'
        'border-left:1px #ccc solid;padding-left:1ex">\r\n'
        f"{quoted_html}</blockquote></div></body></html>\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def corpus_files() -> list[Path]:
    """Return the .eml files of the sample corpus, sorted; empty when absent."""
    return sorted(CORPUS.glob("*/*.eml"))


def corpus_set(count: int) -> list[tuple[str, str, bytes]]:
    """Return ``count`` mails (sender, recipient, raw) cycling through the
    corpus, each with a Message-ID of its own so none is a duplicate.

    Raises FileNotFoundError when the corpus is absent.
    """
    files = corpus_files()
    if not files:
        raise FileNotFoundError(f"no .eml files under {CORPUS}")
    originals = [path.read_bytes().replace(b"\r\n", b"\n") for path in files]
    mails = []
    for number in range(count):
        raw = _MESSAGE_ID_FIELD.sub(b"", originals[number % len(originals)], count=1)
        header = f"Message-ID: <bench-corpus-{number}-{time.time_ns()}@example.com>\n".encode()
        sender = _sender_of(raw) or f"customer{number}@example.com"
        mails.append((sender, QUEUE_ADDRESS, (header + raw).replace(b"\n", b"\r\n")))
    return mails


def _sender_of(raw: bytes) -> str | None:
    match = re.search(rb"^from:[ \t]*([^\n]*)", raw, re.IGNORECASE | re.MULTILINE)
    if not match:
        return None
    address = parseaddr(match.group(1).decode("ascii", "replace"))[1]
    return address if address.isascii() and "@" in address else None


def agent_reply(notification: bytes, agent: str, number: int) -> tuple[str, bytes]:
    """Return (recipient, raw) of an agent's reply to a New Ticket
    ``notification``: to its Reply-To address, threaded on its Message-ID,
    with a quote of it below the new text."""
    reply_to = _header(notification, "Reply-To")
    message_id = _header(notification, "Message-ID")
    subject = _header(notification, "Subject")
    if not reply_to or not message_id:
        raise ValueError("the notification has no Reply-To or Message-ID header")
    recipient = parseaddr(reply_to)[1]
    raw = (
        f"From: Agent <{agent}>\r\n"
        f"To: {reply_to}\r\n"
        f"Subject: Re: {subject}\r\n"
        f"Message-ID: <bench-reply-{number}-{time.time_ns()}@example.org>\r\n"
        f"In-Reply-To: {message_id}\r\n"
        f"References: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Checked the printer, the drum needs replacing (reply {number}).\r\n\r\n"
        "On Fri, 4 Dec 2026 at 10:00, Support wrote:\r\n"
        "> New ticket in queue Support\r\n"
    ).encode()
    return recipient, raw


def _header(raw: bytes, name: str) -> str | None:
    match = re.search(
        rb"^" + name.encode() + rb":[ \t]*([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)",
        raw, re.IGNORECASE | re.MULTILINE,
    )
    if not match:
        return None
    return re.sub(r"\r?\n[ \t]+", " ", match.group(1).decode("utf-8", "replace")).strip()
