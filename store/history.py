"""History rows: every change to a ticket writes one in the same transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from store.models import HistoryEntry

SYSTEM_ACTOR = "system"


def user_actor(username: str) -> str:
    return f"user:{username}"


def customer_actor(email: str) -> str:
    return f"customer:{email}"


def record_history(
    session: Session,
    ticket_id: int,
    *,
    actor: str,
    channel: str,
    action: str,
    field: str | None = None,
    old_value: str | None = None,
    new_value: str | None = None,
    **details: Any,
) -> HistoryEntry:
    entry = HistoryEntry(
        ticket_id=ticket_id,
        actor=actor,
        channel=channel,
        action=action,
        field=field,
        old_value=old_value,
        new_value=new_value,
        details=details,
    )
    session.add(entry)
    return entry
