"""Small builders of test mail (example.com and example.org only)."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from datetime import datetime, timezone


def customer_mail(
    subject: str = "Printer on floor 3 is jammed",
    body: str = "Hello,\n\nthe printer on floor 3 shows a paper jam.\n\nThanks, Ana\n",
    sender: str = "Ana Customer <ana@example.com>",
    to: str = "support@support.example.org",
    message_id: str | None = None,
    **headers: str,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc))
    message["Message-ID"] = message_id or make_msgid(domain="example.com")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def agent_reply(
    notification: EmailMessage,
    new_text: str,
    sender: str,
    *,
    to: str | None = None,
    in_reply_to: bool = True,
) -> EmailMessage:
    """Reply to ``notification`` the way a mail client does: the new text on
    top, then an attribution line and the original quoted with ``>``."""
    original = notification.get_body(("plain",)).get_content()
    quoted = "\n".join(f"> {line}" if line else ">" for line in original.splitlines())
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to or str(notification["Reply-To"])
    message["Subject"] = "Re: " + str(notification["Subject"])
    message["Date"] = format_datetime(datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc))
    message["Message-ID"] = make_msgid(domain="example.org")
    if in_reply_to:
        message["In-Reply-To"] = str(notification["Message-ID"])
        message["References"] = str(notification["Message-ID"])
    attribution = "On Mon, 2 Mar 2026 at 09:31, Support via mailgate <support@support.example.org> wrote:"
    message.set_content(f"{new_text}\n\n{attribution}\n{quoted}\n")
    return message
