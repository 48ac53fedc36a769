"""Ticket lists with filters, sorting and pages, limited to what the
actor may see; the HTTP API and the web dashboard share it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload

from store.models import Queue, Stage, Ticket, TicketTag, User, utcnow
from store.permissions import TICKET_ALL_QUEUES, has_permission

SORT_COLUMNS = {
    "id": Ticket.id,
    "updated": Ticket.updated_at,
    "due": Ticket.due_at,
    "subject": Ticket.subject,
    "stage": Ticket.stage,
}


@dataclass(frozen=True)
class TicketFilter:
    queue: str | None = None
    stage: str | None = None
    tag: str | None = None
    assignee: str | None = None
    due_before: datetime | None = None
    overdue: bool = False
    text: str | None = None  # found in the subject, case-insensitive


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def visible_tickets(user: User, filters: TicketFilter) -> Select[tuple[Ticket]]:
    """Return the query of tickets ``user`` may see that match ``filters``."""
    query = select(Ticket)
    if not has_permission(user.role, TICKET_ALL_QUEUES):
        query = query.where(Ticket.queue_id.in_([queue.id for queue in user.queues]))
    if filters.queue:
        query = query.where(Ticket.queue_id.in_(select(Queue.id).where(Queue.name == filters.queue)))
    if filters.stage:
        query = query.where(Ticket.stage == filters.stage)
    if filters.tag:
        tagged = select(TicketTag.ticket_id).where(TicketTag.tag == filters.tag.lower())
        query = query.where(Ticket.id.in_(tagged))
    if filters.assignee:
        assigned = select(User.id).where(User.username == filters.assignee)
        query = query.where(Ticket.assignee_id.in_(assigned))
    if filters.due_before:
        query = query.where(Ticket.due_at < filters.due_before)
    if filters.overdue:
        closed = select(Stage.name).where(Stage.is_closed)
        query = query.where(Ticket.due_at < utcnow(), Ticket.stage.not_in(closed))
    if filters.text:
        query = query.where(Ticket.subject.ilike(f"%{_escape_like(filters.text)}%", escape="\\"))
    return query


def find_tickets(
    session: Session,
    user: User,
    filters: TicketFilter,
    *,
    sort: str = "id",
    descending: bool = True,
    limit: int = 50,
    offset: int = 0,
) -> tuple[int, list[Ticket]]:
    """Return the number of matching tickets and one page of them."""
    if sort not in SORT_COLUMNS:
        raise ValueError(f"unknown sort column {sort!r}; use one of {', '.join(SORT_COLUMNS)}")
    query = visible_tickets(user, filters)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    column = SORT_COLUMNS[sort]
    order = column.desc().nulls_last() if descending else column.asc().nulls_last()
    page = (
        query.options(selectinload(Ticket.queue), selectinload(Ticket.assignee),
                      selectinload(Ticket.tags))
        .order_by(order, Ticket.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return total, list(session.scalars(page))
