"""Alerts: events on tickets delivered to subscribers by email, push and tray.

Events are read from the history rows a unit of work wrote, so every entry
point (mail, CLI, API) raises the same alerts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.app import App
from mailgate.outbound.compose import compose_mail, make_message_id
from mailgate.outbound.rendering import render_mail
from mailgate.subjects import format_tag
from store.history import history_since
from store.models import AlertSubscription, HistoryEntry, OutboxEntry, Ticket, TrayItem, User
from store.permissions import TICKET_ALL_QUEUES, has_permission
from store.outbox import OutgoingMail, add_to_outbox

log = logging.getLogger(__name__)

EVENTS = ("ticket_created", "escalation", "stage", "queue", "tags", "comment", "attachment")
CHANNELS = ("email", "push", "tray")
KIND_ALERT = "alert"
KIND_PUSH = "push"
SIGNATURE_HEADER = "X-Mailgate-Signature"
FIELD_EVENTS = {"escalation_level": "escalation", "stage": "stage", "queue": "queue", "tags": "tags"}
ACTION_EVENTS = {
    "ticket_created": "ticket_created",
    "ticket_created_by_hand": "ticket_created",
    "closed": "stage",
    "reopened": "stage",
    "note_added": "comment",
    "message_added": "comment",
    "public_reply_added": "comment",
    "attachment_added": "attachment",
    "attachment_removed": "attachment",
}


class AlertError(ValueError):
    """Raised for an invalid subscription."""


def event_of(entry: HistoryEntry) -> str | None:
    """Return the alert event a history row is, or None."""
    if entry.action == "field_changed":
        return FIELD_EVENTS.get(entry.field or "")
    if entry.action == "message_added" and (entry.details or {}).get("automatic"):
        return None
    return ACTION_EVENTS.get(entry.action)


def describe(entry: HistoryEntry, event: str) -> str:
    who = entry.actor.partition(":")[2] or entry.actor
    if entry.field and entry.action in ("field_changed", "closed", "reopened"):
        return f"{who} changed {entry.field} from {entry.old_value or '(none)'} to {entry.new_value or '(none)'}"
    return f"{who}: {entry.action.replace('_', ' ')}"


def subscribe(
    session: Session, user_id: int, *, queue_id: int | None, events: list[str],
    channels: list[str], push_url: str | None = None,
) -> AlertSubscription:
    """Add a subscription; a push channel needs an http(s) URL and gets a
    new signing secret."""
    unknown = set(events) - set(EVENTS)
    if unknown or not events:
        raise AlertError(f"events must be some of {', '.join(EVENTS)}; got {sorted(unknown) or 'none'}")
    bad = set(channels) - set(CHANNELS)
    if bad or not channels:
        raise AlertError(f"channels must be some of {', '.join(CHANNELS)}; got {sorted(bad) or 'none'}")
    secret = None
    if "push" in channels:
        if not push_url or urlsplit(push_url).scheme not in ("http", "https"):
            raise AlertError(f"push needs an http or https URL, got {push_url!r}")
        secret = secrets.token_hex(32)
    subscription = AlertSubscription(
        user_id=user_id, queue_id=queue_id, events=sorted(set(events)),
        channels=sorted(set(channels)), push_url=push_url, push_secret=secret,
    )
    session.add(subscription)
    session.flush()
    return subscription


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def queue_alerts(
    app: App, session: Session, since_history_id: int, *, ticket_ids: set[int] | None = None,
    actor: str | None = None,
) -> list[OutboxEntry]:
    """Deliver alerts for the history rows this session wrote after the mark
    ``since_history_id``: tray items now, email and push through the
    outbox. Returns the outbox rows."""
    written = [
        entry for entry in history_since(session, since_history_id)
        if (actor is None or entry.actor == actor)
        and (ticket_ids is None or entry.ticket_id in ticket_ids)
    ]
    entries = [(entry, event_of(entry)) for entry in written]
    entries = [(entry, event) for entry, event in entries if event]
    if not entries:
        return []
    subscriptions = list(session.scalars(select(AlertSubscription)))
    queued = []
    for entry, event in entries:
        ticket = session.get(Ticket, entry.ticket_id)
        for subscription in subscriptions:
            if event not in subscription.events:
                continue
            if subscription.queue_id is not None and subscription.queue_id != ticket.queue_id:
                continue
            if entry.actor == f"user:{subscription.user.username}":
                continue
            if not _may_see(subscription.user, ticket):
                continue
            queued.extend(_deliver(app, session, subscription, entry, event, ticket))
    return queued


def _may_see(user: User, ticket: Ticket) -> bool:
    """Return whether ``user`` works on the ticket's queue, or on every queue.
    A subscription to every queue alerts only on tickets the user may open."""
    if has_permission(user.role, TICKET_ALL_QUEUES):
        return True
    return ticket.queue_id in {queue.id for queue in user.queues}


def _deliver(
    app: App, session: Session, subscription: AlertSubscription, entry: HistoryEntry,
    event: str, ticket: Ticket,
) -> list[OutboxEntry]:
    text = describe(entry, event)
    tag = format_tag(app.settings.ticket_tag_prefix, ticket.id)
    title = f"{event.replace('_', ' ').capitalize()}: {ticket.subject or '(no subject)'}"
    rows = []
    if "tray" in subscription.channels:
        session.add(TrayItem(
            user_id=subscription.user_id, subscription_id=subscription.id, history_id=entry.id,
            ticket_id=ticket.id, event=event, text=f"{tag} {text}",
        ))
    if "email" in subscription.channels:
        message_id = make_message_id(app.settings.domain, f"a{entry.id}")
        rendered = render_mail(app.templates, KIND_ALERT, ticket=ticket, queue=ticket.queue, tag=tag,
                               title=title, text=text, event=event)
        user = subscription.user
        raw = compose_mail(
            rendered, from_address=(f"{ticket.queue.name} via mailgate", ticket.queue.address),
            to_address=(user.name or user.username, user.email), message_id=message_id,
            domain=app.settings.domain, auto_submitted="auto-generated",
        )
        rows.append(add_to_outbox(session, OutgoingMail(
            kind=KIND_ALERT, mail_from="", rcpt_to=user.email, message_id=message_id, raw=raw,
            ticket_id=ticket.id,
        )))
    if "push" in subscription.channels and subscription.push_url:
        topic = urlsplit(subscription.push_url).path.rstrip("/").rpartition("/")[2]
        body = json.dumps({
            "topic": topic, "title": f"{tag} {title}", "message": text, "tags": [event],
            "mailgate": {"ticket_id": ticket.id, "event": event, "history_id": entry.id,
                         "field": entry.field, "old": entry.old_value, "new": entry.new_value},
        }, ensure_ascii=False).encode()
        head = f"{SIGNATURE_HEADER}: {sign(subscription.push_secret or '', body)}\n\n".encode()
        rows.append(add_to_outbox(session, OutgoingMail(
            kind=KIND_PUSH, mail_from="", rcpt_to=subscription.push_url,
            message_id=f"push.{subscription.id}.{entry.id}", raw=head + body, ticket_id=ticket.id,
        )))
    return rows
