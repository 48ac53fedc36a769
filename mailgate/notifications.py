"""The mail a new ticket causes: New Ticket to the queue's agents and an
acknowledgement to the customer. Rendered now, sent later from the outbox."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.app import App
from mailgate.outbound.compose import compose_mail, make_message_id
from mailgate.outbound.rendering import render_mail
from mailgate.subjects import format_tag
from mailgate.tokens import CUSTOMER_USER_ID, issue_token
from store.models import Attachment, OutboxEntry, Queue, Ticket, User, utcnow
from store.outbox import OutgoingMail, add_to_outbox, count_recent

log = logging.getLogger(__name__)

KIND_NEW_TICKET = "new_ticket"
KIND_ACKNOWLEDGEMENT = "acknowledgement"


# A notification quotes at most this much of a mail; the ticket keeps all of it.
NOTIFICATION_TEXT_CHARS = 20_000


def excerpt(text: str, limit: int = NOTIFICATION_TEXT_CHARS) -> str:
    """Return ``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n\n[... {len(text) - limit} more characters on the ticket]"


def thread_root(session: Session, ticket_id: int, rcpt_to: str) -> str | None:
    """Return the Message-ID of the first mail we sent ``rcpt_to`` about the
    ticket; later mail refers to it, so a mail client shows one thread."""
    return session.scalar(
        select(OutboxEntry.message_id)
        .where(OutboxEntry.ticket_id == ticket_id, OutboxEntry.rcpt_to == rcpt_to)
        .order_by(OutboxEntry.id)
        .limit(1)
    )


def reply_address(app: App, queue: Queue, token: str) -> str:
    """Return ``<queue local part>+<token>@<MAILGATE_DOMAIN>``."""
    local = queue.address.rpartition("@")[0].partition("+")[0]
    return f"{local}+{token}@{app.settings.domain}"


def queue_new_ticket_notifications(
    app: App,
    session: Session,
    ticket: Ticket,
    queue: Queue,
    text: str,
    attachments: list[Attachment],
) -> list[OutboxEntry]:
    """Add one "New Ticket" mail per agent of the queue to the outbox.

    Each carries a reply token for that agent in its Reply-To address and
    its Message-ID, so the agent's reply can become a note.
    """
    settings = app.settings
    tag = format_tag(settings.ticket_tag_prefix, ticket.id)
    entries = []
    for agent in queue.agents:
        if agent.email == ticket.requester_email:
            continue
        token = issue_token(
            app.signing_keys[0], ticket.id, agent.id, ttl_days=settings.reply_token_ttl_days
        )
        message_id = make_message_id(settings.domain, token)
        rendered = render_mail(
            app.templates, KIND_NEW_TICKET,
            ticket=ticket, queue=queue, tag=tag, text=excerpt(text), attachments=attachments,
            agent=agent,
        )
        raw = compose_mail(
            rendered,
            from_address=(f"{queue.name} via mailgate", queue.address),
            to_address=(agent.name or agent.username, agent.email),
            message_id=message_id,
            domain=settings.domain,
            auto_submitted="auto-generated",
            reply_to=reply_address(app, queue, token),
        )
        entries.append(
            add_to_outbox(session, OutgoingMail(
                kind=KIND_NEW_TICKET, mail_from=queue.address, rcpt_to=agent.email,
                message_id=message_id, raw=raw, ticket_id=ticket.id,
            ))
        )
    return entries


def queue_acknowledgement(
    app: App, session: Session, ticket: Ticket, queue: Queue, customer_message_id: str | None
) -> OutboxEntry | None:
    """Add the acknowledgement for a new ticket, unless the customer got too
    many of them lately (a loop with another auto-responder)."""
    settings = app.settings
    recipient = ticket.requester_email
    since = utcnow() - timedelta(hours=1)
    if count_recent(session, KIND_ACKNOWLEDGEMENT, recipient, since) >= settings.ack_limit_per_hour:
        log.warning(
            "acknowledgement for ticket=%s not sent: %s got %d in the last hour",
            ticket.id, recipient, settings.ack_limit_per_hour,
        )
        return None
    tag = format_tag(settings.ticket_tag_prefix, ticket.id)
    # The customer's reply comes back to a reply address naming the ticket,
    # so it threads even when the client drops In-Reply-To and the tag.
    token = issue_token(
        app.signing_keys[0], ticket.id, CUSTOMER_USER_ID, ttl_days=settings.reply_token_ttl_days
    )
    message_id = make_message_id(settings.domain, f"t{ticket.id}")
    rendered = render_mail(app.templates, KIND_ACKNOWLEDGEMENT, ticket=ticket, queue=queue, tag=tag)
    raw = compose_mail(
        rendered,
        from_address=(queue.name, queue.address),
        to_address=(ticket.requester_name, recipient),
        message_id=message_id,
        domain=settings.domain,
        auto_submitted="auto-replied",
        reply_to=reply_address(app, queue, token),
        in_reply_to=customer_message_id,
        references=[customer_message_id] if customer_message_id else None,
    )
    # RFC 3834: an automatic reply goes out with the null return path, so no
    # bounce of it comes back to us.
    return add_to_outbox(session, OutgoingMail(
        kind=KIND_ACKNOWLEDGEMENT, mail_from="", rcpt_to=recipient,
        message_id=message_id, raw=raw, ticket_id=ticket.id,
    ))


KIND_PUBLIC_REPLY = "public_reply"
KIND_COMMAND_FAILED = "command_failed"


def queue_public_reply(
    app: App, session: Session, ticket: Ticket, text: str
) -> OutboxEntry:
    """Send an agent's public answer to the requester from the queue address,
    threaded into the customer's conversation. The agent's own address
    appears nowhere in it."""
    settings = app.settings
    queue = ticket.queue
    tag = format_tag(settings.ticket_tag_prefix, ticket.id)
    token = issue_token(
        app.signing_keys[0], ticket.id, CUSTOMER_USER_ID, ttl_days=settings.reply_token_ttl_days
    )
    thread = [message.message_id for message in ticket.messages if message.message_id]
    root = thread_root(session, ticket.id, ticket.requester_email)
    if root:
        thread.insert(1 if thread else 0, root)
    message_id = make_message_id(settings.domain, f"t{ticket.id}")
    rendered = render_mail(
        app.templates, KIND_PUBLIC_REPLY, ticket=ticket, queue=queue, tag=tag, text=text
    )
    raw = compose_mail(
        rendered,
        from_address=(queue.name, queue.address),
        to_address=(ticket.requester_name, ticket.requester_email),
        message_id=message_id,
        domain=settings.domain,
        auto_submitted=None,
        reply_to=reply_address(app, queue, token),
        in_reply_to=thread[-1] if thread else None,
        references=thread[-10:] or None,
    )
    return add_to_outbox(session, OutgoingMail(
        kind=KIND_PUBLIC_REPLY, mail_from=queue.address, rcpt_to=ticket.requester_email,
        message_id=message_id, raw=raw, ticket_id=ticket.id,
    ))


def queue_command_failures(
    app: App,
    session: Session,
    ticket: Ticket,
    agent: User,
    failed: list[tuple[str, str]],
    done: list[str],
) -> OutboxEntry:
    """Tell the agent which command lines of their reply failed and why."""
    settings = app.settings
    tag = format_tag(settings.ticket_tag_prefix, ticket.id)
    message_id = make_message_id(settings.domain, f"t{ticket.id}")
    rendered = render_mail(
        app.templates, KIND_COMMAND_FAILED, ticket=ticket, queue=ticket.queue, tag=tag,
        failed=failed, done=done,
    )
    root = thread_root(session, ticket.id, agent.email)
    raw = compose_mail(
        rendered,
        from_address=(f"{ticket.queue.name} via mailgate", ticket.queue.address),
        to_address=(agent.name or agent.username, agent.email),
        message_id=message_id,
        domain=settings.domain,
        auto_submitted="auto-replied",
        in_reply_to=root,
        references=[root] if root else None,
    )
    return add_to_outbox(session, OutgoingMail(
        kind=KIND_COMMAND_FAILED, mail_from="", rcpt_to=agent.email,
        message_id=message_id, raw=raw, ticket_id=ticket.id,
    ))
