"""Mail to the admins when a mailbox has failed for a while, and when it
recovers. Written to the outbox in the caller's transaction."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.app import App
from mailgate.outbound.compose import compose_mail, make_message_id
from mailgate.outbound.rendering import render_mail
from store.mailboxes import Mailbox
from store.models import OutboxEntry, Role, User
from store.outbox import OutgoingMail, add_to_outbox

log = logging.getLogger(__name__)

KIND_FAILING = "mailbox_failing"
KIND_RECOVERED = "mailbox_recovered"


def queue_mailbox_alert(
    app: App, session: Session, mailbox: Mailbox, kind: str, error: str
) -> list[OutboxEntry]:
    """Add one ``kind`` mail per admin about ``mailbox`` to the outbox.

    ``mailbox.failing_since`` must be set. Returns the new rows, none when
    there is no admin.
    """
    # NOTE: admins get this by mail only; there is no notification tray
    # until the web interface exists.
    admins = list(session.scalars(select(User).where(User.role == Role.ADMIN.value)))
    if not admins:
        log.warning(
            "mailbox id=%s: no admin to tell (%s); add one with "
            "'mailgate users add NAME --email ADDR --role admin'",
            mailbox.id, kind,
        )
        return []
    domain = app.settings.domain
    since = f"{mailbox.failing_since:%Y-%m-%d %H:%M} UTC" if mailbox.failing_since else "now"
    rendered = render_mail(app.templates, kind, mailbox=mailbox, error=error, since=since)
    entries = []
    for admin in admins:
        message_id = make_message_id(domain)
        raw = compose_mail(
            rendered,
            from_address=("mailgate", f"mailgate@{domain}"),
            to_address=(admin.name or admin.username, admin.email),
            message_id=message_id,
            domain=domain,
            auto_submitted="auto-generated",
        )
        # RFC 3834: automatic mail goes out with the null return path.
        entries.append(add_to_outbox(session, OutgoingMail(
            kind=kind, mail_from="", rcpt_to=admin.email, message_id=message_id, raw=raw,
            ticket_id=None,
        )))
    session.flush()
    log.info(
        "mailbox id=%s: %s mail to %d admins queued as outbox ids=%s",
        mailbox.id, kind, len(entries), ",".join(str(entry.id) for entry in entries),
    )
    return entries
