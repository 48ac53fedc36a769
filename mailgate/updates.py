""""Ticket Updated" mail: one per recipient for the changes a unit of work
made together, to the ticket's assignee and watchers, leaving out the user
who made the changes."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailgate.app import App
from mailgate.notifications import excerpt, reply_address, thread_root
from mailgate.outbound.compose import compose_mail, make_message_id
from mailgate.outbound.rendering import render_mail
from mailgate.subjects import format_tag
from mailgate.tokens import issue_token
from store.history import history_mark, history_since, user_actor
from store.models import HistoryEntry, Note, OutboxEntry, Ticket, Message
from store.outbox import OutgoingMail, add_to_outbox

log = logging.getLogger(__name__)

KIND_TICKET_UPDATED = "ticket_updated"
# Field changes that are worth a mail, with the names agents read.
WATCHED_FIELDS = {
    "stage": "Stage", "queue": "Queue", "tags": "Tags", "assignee": "Assignee",
    "escalation_level": "Escalation", "attachments": "Attachments",
}
EVENTS = {
    "note_added": "A note was added.",
    "message_added": "The customer wrote.",
    "public_reply_added": "An agent answered the customer.",
    "attachment_added": "An attachment was added.",
    "attachment_removed": "An attachment was removed.",
    "closed": "The ticket was closed.",
    "reopened": "The ticket was reopened.",
}


@dataclass(frozen=True)
class Change:
    field: str
    old: str | None
    new: str | None


def last_history_id(session: Session) -> int:
    """Return the mark from which ``queue_ticket_updates`` and
    ``queue_alerts`` read the history rows this session writes."""
    return history_mark(session)


def queue_ticket_updates(
    app: App, session: Session, since_history_id: int, *, ticket_ids: set[int] | None = None,
    actor: str | None = None,
) -> list[OutboxEntry]:
    """Queue "Ticket Updated" mail for the history rows this session wrote
    after the mark ``since_history_id`` (only those of ``actor`` and
    ``ticket_ids`` when given)."""
    written = [
        entry for entry in history_since(session, since_history_id)
        if (actor is None or entry.actor == actor)
        and (ticket_ids is None or entry.ticket_id in ticket_ids)
    ]
    by_ticket: dict[int, list[HistoryEntry]] = defaultdict(list)
    for entry in written:
        by_ticket[entry.ticket_id].append(entry)
    queued = []
    for ticket_id, entries in by_ticket.items():
        queued.extend(_queue_for_ticket(app, session, session.get(Ticket, ticket_id), entries))
    return queued


def _queue_for_ticket(
    app: App, session: Session, ticket: Ticket, entries: list[HistoryEntry]
) -> list[OutboxEntry]:
    changes = [
        Change(WATCHED_FIELDS[e.field], e.old_value, e.new_value)
        for e in entries
        if e.action in ("field_changed", "closed", "reopened") and e.field in WATCHED_FIELDS
    ]
    events = [
        EVENTS[e.action] for e in entries
        if e.action in EVENTS and not (e.details or {}).get("automatic")
    ]
    if not changes and not events:
        return []
    actors = {e.actor for e in entries}
    recipients = [user for user in _interested(ticket) if user_actor(user.username) not in actors]
    if not recipients:
        return []
    settings = app.settings
    tag = format_tag(settings.ticket_tag_prefix, ticket.id)
    latest = _latest_text(session, entries)
    changed_by = ", ".join(sorted(actor.partition(":")[2] or actor for actor in actors))
    queued = []
    for user in recipients:
        token = issue_token(app.signing_keys[0], ticket.id, user.id, ttl_days=settings.reply_token_ttl_days)
        message_id = make_message_id(settings.domain, token)
        root = thread_root(session, ticket.id, user.email)
        rendered = render_mail(
            app.templates, KIND_TICKET_UPDATED, ticket=ticket, queue=ticket.queue, tag=tag,
            changes=changes, events=list(dict.fromkeys(events)), latest=latest, changed_by=changed_by,
        )
        raw = compose_mail(
            rendered,
            from_address=(f"{ticket.queue.name} via mailgate", ticket.queue.address),
            to_address=(user.name or user.username, user.email),
            message_id=message_id,
            domain=settings.domain,
            auto_submitted="auto-generated",
            reply_to=reply_address(app, ticket.queue, token),
            in_reply_to=root,
            references=[root] if root else None,
        )
        queued.append(add_to_outbox(session, OutgoingMail(
            kind=KIND_TICKET_UPDATED, mail_from=ticket.queue.address, rcpt_to=user.email,
            message_id=message_id, raw=raw, ticket_id=ticket.id,
        )))
    log.info("ticket=%s: Ticket Updated queued for %d recipients", ticket.id, len(queued))
    return queued


def _interested(ticket: Ticket) -> list:
    """Return the assignee and watchers, plus the queue's agents while the
    ticket is unassigned, so a customer's reply always reaches an agent."""
    users = list(ticket.watchers)
    if ticket.assignee is not None:
        if ticket.assignee not in users:
            users.insert(0, ticket.assignee)
        return users
    return users + [agent for agent in ticket.queue.agents if agent not in users]


@dataclass(frozen=True)
class Latest:
    heading: str
    text: str


def _latest_text(session: Session, entries: list[HistoryEntry]) -> Latest | None:
    for entry in reversed(entries):
        details = entry.details or {}
        if entry.action == "note_added" and details.get("note_id"):
            note = session.get(Note, details["note_id"])
            return Latest(f"Note by {note.author.username}", excerpt(note.body))
        if entry.action in ("message_added", "public_reply_added") and details.get("message_id"):
            message = session.get(Message, details["message_id"])
            if message is not None and not message.automatic:
                heading = "Answer to the customer" if message.direction == "out" else (
                    f"Message from {message.from_email}")
                return Latest(heading, excerpt(message.text))
    return None
