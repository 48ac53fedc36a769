"""Ticket endpoints: the same operations as the CLI and emailed commands."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from mailgate.forwards import forward_ticket
from mailgate.http.auth import current_actor, transaction
from mailgate.views import history_rows, ticket_detail, ticket_summary
from store import operations as ops
from store.search import TicketFilter, find_tickets
from store.tickets import NewAttachment, load_ticket

router = APIRouter(prefix="/api/tickets", tags=["tickets"])


class TicketCreate(BaseModel):
    queue: str
    subject: str
    requester_email: str
    requester_name: str = ""
    text: str = ""


class TicketUpdate(BaseModel):
    subject: str | None = None
    queue: str | None = None
    stage: str | None = None
    tags: list[str] | None = None
    add_tags: list[str] | None = None
    remove_tags: list[str] | None = None
    ticket_type: str | None = None
    assignee: str | None = Field(None, description="Username; empty string to unassign.")
    escalation_level: int | None = None
    due_at: datetime | None = None
    root_causes: list[str] | None = None
    custom_fields: dict[str, Any] | None = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class NoteCreate(BaseModel):
    body: str


class AttachmentCreate(BaseModel):
    filename: str
    content_type: str = "application/octet-stream"
    content_base64: str


class PostponeRequest(BaseModel):
    amount: str | None = Field(None, description="4h, 3d, 2w or 1mo")
    until: str | None = Field(None, description="ISO date or date-time")
    keep_on_customer_reply: bool = False


class CloseRequest(BaseModel):
    reason: str | None = None
    comment: str = ""
    root_causes: list[str] = []


class ReopenRequest(BaseModel):
    stage: str = "open"


class ForwardRequest(BaseModel):
    recipients: list[str] = Field(description="Addresses, usernames or role names.")
    subject: str = ""
    message: str = ""
    include_original: bool = True
    include_attachments: bool = False
    include_history: bool = False
    include_notes: bool = False


class BulkRequest(BaseModel):
    ticket_ids: list[int]
    changes: TicketUpdate


def _detail(session: Session, ticket_id: int) -> dict[str, Any]:
    session.flush()
    session.expire_all()
    return ticket_detail(load_ticket(session, ticket_id))


@router.get("")
def list_tickets(
    queue: str | None = None,
    stage: str | None = None,
    tag: str | None = None,
    assignee: str | None = None,
    due_before: datetime | None = None,
    q: str | None = Query(None, description="Text to find in the subject."),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
    actor: ops.Actor = Depends(current_actor),
    session: Session = Depends(transaction, scope="function"),
) -> dict[str, Any]:
    """List tickets the user may see, newest first, with filters and pages."""
    filters = TicketFilter(queue=queue, stage=stage, tag=tag, assignee=assignee,
                           due_before=due_before, text=q)
    total, rows = find_tickets(session, actor.user, filters, limit=limit, offset=offset)
    return {"items": [ticket_summary(ticket) for ticket in rows], "total": total,
            "limit": limit, "offset": offset}


@router.post("", status_code=201)
def create_ticket(body: TicketCreate, actor: ops.Actor = Depends(current_actor),
                  session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    ticket = ops.create_ticket(session, actor, **body.model_dump())
    return _detail(session, ticket.id)


@router.get("/{ticket_id}")
def get_ticket(ticket_id: int, actor: ops.Actor = Depends(current_actor),
               session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    ops.get_ticket(session, actor, ticket_id)
    return _detail(session, ticket_id)


@router.patch("/{ticket_id}")
def update_ticket(ticket_id: int, body: TicketUpdate, actor: ops.Actor = Depends(current_actor),
                  session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    ticket = ops.get_ticket(session, actor, ticket_id)
    ops.update_ticket(session, actor, ticket, **body.changes())
    return _detail(session, ticket_id)


@router.post("/{ticket_id}/notes", status_code=201)
def add_note(ticket_id: int, body: NoteCreate, actor: ops.Actor = Depends(current_actor),
             session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    ticket = ops.get_ticket(session, actor, ticket_id)
    note = ops.add_note(session, actor, ticket, body.body)
    session.flush()
    return {"id": note.id, "ticket_id": ticket_id, "body": note.body}


@router.post("/{ticket_id}/attachments", status_code=201)
def add_attachment(ticket_id: int, body: AttachmentCreate, actor: ops.Actor = Depends(current_actor),
                   session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    try:
        data = base64.b64decode(body.content_base64, validate=True)
    except binascii.Error:
        raise HTTPException(422, "content_base64 is not valid base64") from None
    ticket = ops.get_ticket(session, actor, ticket_id)
    item = ops.add_attachment(session, actor, ticket, NewAttachment(
        filename=body.filename, content_type=body.content_type, data=data))
    return {"id": item.id, "filename": item.filename, "size": item.size}


@router.delete("/{ticket_id}/attachments/{attachment_id}")
def remove_attachment(ticket_id: int, attachment_id: int, actor: ops.Actor = Depends(current_actor),
                      session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    ticket = ops.get_ticket(session, actor, ticket_id)
    item = ops.remove_attachment(session, actor, ticket, attachment_id)
    return {"id": item.id, "removed_by": item.removed_by}


@router.post("/{ticket_id}/postpone")
def postpone(ticket_id: int, body: PostponeRequest, actor: ops.Actor = Depends(current_actor),
             session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    ticket = ops.get_ticket(session, actor, ticket_id)
    ops.postpone(session, actor, ticket, amount=body.amount, until=body.until,
                 keep_on_customer_reply=body.keep_on_customer_reply)
    return _detail(session, ticket_id)


@router.post("/{ticket_id}/close")
def close(ticket_id: int, body: CloseRequest, actor: ops.Actor = Depends(current_actor),
          session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    ticket = ops.get_ticket(session, actor, ticket_id)
    if body.reason or body.comment or body.root_causes:
        ops.explain_and_close(session, actor, ticket, reason=body.reason or "", comment=body.comment,
                              root_causes=body.root_causes)
    else:
        ops.close(session, actor, ticket)
    return _detail(session, ticket_id)


@router.post("/{ticket_id}/reopen")
def reopen(ticket_id: int, body: ReopenRequest, actor: ops.Actor = Depends(current_actor),
           session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    ticket = ops.get_ticket(session, actor, ticket_id)
    ops.reopen(session, actor, ticket, stage=body.stage)
    return _detail(session, ticket_id)


@router.post("/{ticket_id}/forward")
def forward(ticket_id: int, body: ForwardRequest, request: Request,
            actor: ops.Actor = Depends(current_actor),
            session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    ticket = ops.get_ticket(session, actor, ticket_id)
    options = ops.ForwardOptions(**body.model_dump(exclude={"recipients"}))
    queued = forward_ticket(request.app.state.mailgate, session, actor, ticket, body.recipients,
                            options)
    session.flush()
    request.state.outbox_ids = [row.id for row in queued]
    return {"recipients": [row.rcpt_to for row in queued]}


@router.post("/bulk")
def bulk_update(body: BulkRequest, actor: ops.Actor = Depends(current_actor),
                session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    result = ops.bulk_update(session, actor, body.ticket_ids, **body.changes.changes())
    return {"changed": result.changed, "unchanged": result.unchanged,
            "failed": {str(key): value for key, value in result.failed.items()}}


@router.get("/{ticket_id}/history")
def history(ticket_id: int, actor: ops.Actor = Depends(current_actor),
            session: Session = Depends(transaction, scope="function")) -> list[dict[str, Any]]:
    ops.get_ticket(session, actor, ticket_id)
    return history_rows(load_ticket(session, ticket_id))
