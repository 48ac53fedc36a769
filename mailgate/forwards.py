"""Forward a ticket to users, roles and outside addresses."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from mailgate.app import App
from mailgate.notifications import reply_address, thread_root
from mailgate.outbound.compose import compose_mail, make_message_id
from mailgate.outbound.rendering import render_mail
from mailgate.subjects import format_tag
from mailgate.tokens import issue_token
from store import operations as ops
from store.blobs import blob_chunks
from store.models import OutboxEntry, Ticket
from store.outbox import OutgoingMail, add_to_outbox

log = logging.getLogger(__name__)

KIND_FORWARD = "forward"


def forward_ticket(
    app: App,
    session: Session,
    actor: ops.Actor,
    ticket: Ticket,
    recipients: list[str],
    options: ops.ForwardOptions,
) -> list[OutboxEntry]:
    """Record the forward and queue one copy per recipient, each with a reply
    token bound to that recipient, so a reply comes back as their note."""
    users = ops.forward(session, actor, ticket, recipients, options)
    settings = app.settings
    tag = format_tag(settings.ticket_tag_prefix, ticket.id)
    incoming = [message for message in ticket.messages if message.direction == "in"]
    original = incoming[0] if incoming and options.include_original else None
    attachments = []
    if original is not None and options.include_attachments:
        for item in original.attachments:
            if item.removed_at is None:
                content = b"".join(blob_chunks(session, item.blob_sha256))
                attachments.append((item.filename, item.content_type, content))
    queued = []
    for user in users:
        token = issue_token(app.signing_keys[0], ticket.id, user.id, ttl_days=settings.reply_token_ttl_days)
        message_id = make_message_id(settings.domain, token)
        root = thread_root(session, ticket.id, user.email)
        rendered = render_mail(
            app.templates, KIND_FORWARD, ticket=ticket, queue=ticket.queue, tag=tag,
            subject=options.subject, message=options.message, sender=actor.user.username,
            original=original,
            history=list(ticket.history) if options.include_history else [],
            notes=list(ticket.notes) if options.include_notes else [],
        )
        raw = compose_mail(
            rendered,
            from_address=(f"{ticket.queue.name} via mailgate", ticket.queue.address),
            to_address=(user.name or user.username, user.email),
            message_id=message_id,
            domain=settings.domain,
            auto_submitted=None,
            reply_to=reply_address(app, ticket.queue, token),
            in_reply_to=root,
            references=[root] if root else None,
            attachments=attachments,
        )
        queued.append(add_to_outbox(session, OutgoingMail(
            kind=KIND_FORWARD, mail_from=ticket.queue.address, rcpt_to=user.email,
            message_id=message_id, raw=raw, ticket_id=ticket.id,
        )))
    log.info("ticket=%s forwarded by %s to %d recipients", ticket.id, actor.user.username, len(queued))
    return queued
