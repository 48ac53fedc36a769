"""History rows: every change to a ticket writes one in the same transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from store.models import HistoryEntry

SYSTEM_ACTOR = "system"
# Key in ``Session.info`` of the history rows written through the session,
# so the mail a unit of work causes is derived from exactly its own rows.
WRITTEN_KEY = "mailgate.history_written"


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
    session.info.setdefault(WRITTEN_KEY, []).append(entry)
    return entry


def history_mark(session: Session) -> int:
    """Return a mark for ``history_since``: how many rows this session wrote."""
    return len(session.info.get(WRITTEN_KEY, []))


def history_since(session: Session, mark: int) -> list[HistoryEntry]:
    """Return the history rows this session wrote after ``mark``, still
    pending (a rolled-back savepoint takes its rows away)."""
    session.flush()
    written = session.info.get(WRITTEN_KEY, [])[mark:]
    return [entry for entry in written if entry in session and entry.id is not None]
