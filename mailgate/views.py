"""Plain dictionaries of stored records, for JSON output (CLI and API)."""

from __future__ import annotations

from typing import Any

from store.models import Attachment, OutboxEntry, SpoolEntry, Ticket


def _attachment(item: Attachment) -> dict[str, Any]:
    return {
        "id": item.id,
        "filename": item.filename,
        "content_type": item.content_type,
        "size": item.size,
        "inline": item.inline,
        "sha256": item.blob_sha256,
        "removed_at": item.removed_at.isoformat() if item.removed_at else None,
        "removed_by": item.removed_by,
    }


def ticket_summary(ticket: Ticket) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "subject": ticket.subject,
        "requester": {"name": ticket.requester_name, "email": ticket.requester_email},
        "queue": ticket.queue.name,
        "stage": ticket.stage,
        "tags": [tag.tag for tag in ticket.tags],
        "ticket_type": ticket.ticket_type,
        "assignee": ticket.assignee.username if ticket.assignee else None,
        "escalation_level": ticket.escalation_level,
        "due_at": ticket.due_at.isoformat() if ticket.due_at else None,
        "root_causes": [cause.name for cause in ticket.root_causes],
        "custom_fields": {value.field.name: value.value for value in ticket.field_values},
        "closed_at": ticket.closed_at.isoformat() if ticket.closed_at else None,
        "created_at": ticket.created_at.isoformat(),
        "updated_at": ticket.updated_at.isoformat(),
    }


def ticket_detail(ticket: Ticket) -> dict[str, Any]:
    detail = ticket_summary(ticket)
    detail["participants"] = [
        {"name": person.name, "email": person.email} for person in ticket.participants
    ]
    detail["messages"] = [
        {
            "id": message.id,
            "from": {"name": message.from_name, "email": message.from_email},
            "subject": message.subject,
            "message_id": message.message_id,
            "text": message.text,
            "trimmed": message.trimmed,
            "html": message.html,
            "automatic": message.automatic,
            "direction": message.direction,
            "spool_id": message.spool_id,
            "created_at": message.created_at.isoformat(),
            "attachments": [_attachment(item) for item in message.attachments],
        }
        for message in ticket.messages
    ]
    detail["notes"] = [
        {
            "id": note.id,
            "author": note.author.username,
            "author_role": note.author.role,
            "body": note.body,
            "trimmed": note.trimmed,
            "channel": note.channel,
            "spool_id": note.spool_id,
            "created_at": note.created_at.isoformat(),
            "attachments": [_attachment(item) for item in note.attachments],
        }
        for note in ticket.notes
    ]
    detail["history"] = history_rows(ticket)
    return detail


def history_rows(ticket: Ticket) -> list[dict[str, Any]]:
    return [
        {
            "id": entry.id,
            "actor": entry.actor,
            "channel": entry.channel,
            "action": entry.action,
            "field": entry.field,
            "old_value": entry.old_value,
            "new_value": entry.new_value,
            "details": entry.details,
            "at": entry.at.isoformat(),
        }
        for entry in ticket.history
    ]


def spool_row(entry: SpoolEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "received_at": entry.received_at.isoformat(),
        "source": entry.source,
        "peer": entry.peer,
        "mail_from": entry.mail_from,
        "rcpt_tos": entry.rcpt_tos,
        "size": entry.size,
        "state": entry.state,
        "error": entry.error,
        "attempts": entry.attempts,
        "message_id": entry.message_id,
        "ticket_id": entry.ticket_id,
    }


def outbox_row(entry: OutboxEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "ticket_id": entry.ticket_id,
        "kind": entry.kind,
        "mail_from": entry.mail_from,
        "rcpt_to": entry.rcpt_to,
        "message_id": entry.message_id,
        "state": entry.state,
        "attempts": entry.attempts,
        "last_error": entry.last_error,
        "created_at": entry.created_at.isoformat(),
        "sent_at": entry.sent_at.isoformat() if entry.sent_at else None,
    }
