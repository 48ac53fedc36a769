"""Build the RFC 5322 bytes of the mail we send."""

from __future__ import annotations

import secrets
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr

from mailgate.automatic import OWN_MESSAGE_ID_PREFIX
from mailgate.outbound.rendering import RenderedMail
from store.models import utcnow


# RFC 5322 allows lines of 998 characters. With the default of 78 the email
# package turns a long Message-ID in In-Reply-To into an encoded word, which
# breaks threading.
OUTBOUND_POLICY = SMTP.clone(max_line_length=998)


def make_message_id(domain: str, tail: str = "") -> str:
    """Return a new Message-ID (without angle brackets) that we recognise as ours."""
    local = OWN_MESSAGE_ID_PREFIX + secrets.token_hex(8)
    if tail:
        local += "." + tail
    return f"{local}@{domain}"


def compose_mail(
    rendered: RenderedMail,
    *,
    from_address: tuple[str, str],
    to_address: tuple[str, str],
    message_id: str,
    domain: str,
    auto_submitted: str | None,
    reply_to: str | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    attachments: list[tuple[str, str, bytes]] = (),
) -> bytes:
    """Return a multipart/alternative mail; ``auto_submitted`` marks mail
    that no person wrote (RFC 3834), None a person's answer."""
    message = EmailMessage(policy=OUTBOUND_POLICY)
    message["From"] = formataddr(from_address)
    message["To"] = formataddr(to_address)
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = f"<{message_id}>"
    if reply_to:
        message["Reply-To"] = reply_to
    if in_reply_to:
        message["In-Reply-To"] = f"<{in_reply_to}>"
    if references:
        message["References"] = " ".join(f"<{value}>" for value in references)
    if auto_submitted:
        message["Auto-Submitted"] = auto_submitted
    # Ask Exchange and Outlook not to answer with out-of-office replies.
    message["X-Auto-Response-Suppress"] = "All"
    message["X-Loop"] = domain
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    for filename, content_type, data in attachments:
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(
            data, maintype=maintype or "application", subtype=subtype or "octet-stream",
            filename=filename,
        )
    return message.as_bytes()
