"""The ticket page: Info, Messages, Notes and History tabs, and the forms
that change the ticket's fields, notes and attachments."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from mailgate.web.dashboard import POSTPONE_CHOICES, choices
from mailgate.web.message_html import displayed_html
from mailgate.web.pages import CheckedForm, PageActor, RowId, Transaction, attempt, flash, redirect, render
from store import operations as ops
from store.blobs import read_blob
from store.models import Attachment, CustomField, RootCause, Ticket
from store.tickets import NewAttachment, load_ticket

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

TABS = ("info", "messages", "notes", "history")
# Shown in the browser; anything else downloads, so an attached HTML or SVG
# file cannot run script on this site.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "text/plain"})
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
_UNSAFE_IN_FILENAME = re.compile(r'[\x00-\x1f\x7f"\\]')


def ticket_url(ticket_id: int, tab: str = "info") -> str:
    return f"/tickets/{ticket_id}?tab={tab}"


def _inline_images(ticket: Ticket) -> dict[int, dict[str, str]]:
    """Return, per message id, its cid: references mapped to attachment URLs."""
    images: dict[int, dict[str, str]] = {}
    for message in ticket.messages:
        images[message.id] = {
            item.content_id.strip("<>").lower(): f"/tickets/{ticket.id}/attachments/{item.id}"
            for item in message.attachments
            if item.content_id and item.removed_at is None
        }
    return images


@router.get("/tickets/{ticket_id}")
def ticket_page(
    request: Request,
    ticket_id: RowId,
    actor: PageActor,
    session: Transaction,
    tab: str = "info",
) -> Response:
    ops.get_ticket(session, actor, ticket_id)
    ticket = load_ticket(session, ticket_id)
    assert ticket is not None
    images = _inline_images(ticket)
    messages = [
        {"message": message,
         "html": displayed_html(message.html, images[message.id]) if message.html else None}
        for message in ticket.messages
    ]
    attachments = list(session.scalars(
        select(Attachment).where(Attachment.ticket_id == ticket_id).order_by(Attachment.id)))
    return render(request, "ticket.html", {
        "ticket": ticket,
        "tab": tab if tab in TABS else "info",
        "tabs": TABS,
        "messages": messages,
        "attachments": attachments,
        "root_causes": list(session.scalars(select(RootCause).order_by(RootCause.name))),
        "custom_fields": list(session.scalars(select(CustomField).order_by(CustomField.name))),
        "field_values": {value.field.name: value.value for value in ticket.field_values},
        "closed": ops.closed_stage(session).name == ticket.stage,
        "postpone_units": (("h", "hours"), ("d", "days"), ("w", "weeks"), ("mo", "months")),
        **choices(session, actor),
        "postpone_choices": POSTPONE_CHOICES,
    }, session=session)


def _custom_values(session: Session, form: FormData) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for definition in session.scalars(select(CustomField)):
        key = f"field_{definition.name}"
        if definition.kind == "multichoice":
            picked = [str(item) for item in form.getlist(key)]
            values[definition.name] = picked or None
        elif key in form:
            text = str(form.get(key, "")).strip()
            values[definition.name] = text or None
    return values


@router.post("/tickets/{ticket_id}/update")
def update_info(
    request: Request,
    ticket_id: RowId,
    form: CheckedForm,
    actor: PageActor,
    session: Transaction,
) -> Response:
    """Save the Info tab: queue, stage, assignee, type, tags, root causes and
    custom fields; only the values that differ are changed."""
    ticket = ops.get_ticket(session, actor, ticket_id)
    # NOTE: a field the request leaves out counts as empty, so a hand-made
    # partial form clears tags and root causes; the page's form sends them all.
    tags = [tag.strip() for tag in str(form.get("tags", "")).replace(",", " ").split() if tag.strip()]
    changes: dict[str, Any] = {
        "queue": str(form.get("queue", ticket.queue.name)),
        "stage": str(form.get("stage", ticket.stage)),
        "assignee": str(form.get("assignee", "")),
        "ticket_type": str(form.get("ticket_type", "")).strip() or None,
        "tags": tags,
        "root_causes": [str(name) for name in form.getlist("root_causes")],
        "custom_fields": _custom_values(session, form),
    }

    return attempt(request, session, ticket_url(ticket_id, "info"),
                    lambda: ops.update_ticket(session, actor, ticket, **changes), "Ticket saved.")


@router.post("/tickets/{ticket_id}/notes")
def add_note(
    request: Request,
    ticket_id: RowId,
    form: CheckedForm,
    actor: PageActor,
    session: Transaction,
) -> Response:
    ticket = ops.get_ticket(session, actor, ticket_id)
    body = str(form.get("body", "")).strip()
    if not body:
        flash(request, "The note is empty.", "error")
        return redirect(ticket_url(ticket_id, "notes"))
    return attempt(request, session, ticket_url(ticket_id, "notes"),
                    lambda: ops.add_note(session, actor, ticket, body), "Note added.")


@router.post("/tickets/{ticket_id}/attachments")
async def upload_attachment(
    request: Request,
    ticket_id: RowId,
    form: CheckedForm,
    actor: PageActor,
    session: Transaction,
) -> Response:
    ticket = ops.get_ticket(session, actor, ticket_id)
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        flash(request, "Choose a file to upload.", "error")
        return redirect(ticket_url(ticket_id, "info"))
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        flash(request, f"{upload.filename} is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB.",
              "error")
        return redirect(ticket_url(ticket_id, "info"))
    item = NewAttachment(filename=upload.filename,
                         content_type=upload.content_type or "application/octet-stream", data=data)
    return attempt(request, session, ticket_url(ticket_id, "info"),
                    lambda: ops.add_attachment(session, actor, ticket, item),
                    f"{upload.filename} attached.")


@router.post("/tickets/{ticket_id}/attachments/{attachment_id}/remove")
def remove_attachment(
    request: Request,
    ticket_id: RowId,
    attachment_id: RowId,
    form: CheckedForm,
    actor: PageActor,
    session: Transaction,
) -> Response:
    ticket = ops.get_ticket(session, actor, ticket_id)
    return attempt(request, session, ticket_url(ticket_id, "info"),
                    lambda: ops.remove_attachment(session, actor, ticket, attachment_id),
                    "Attachment removed.")


@router.get("/tickets/{ticket_id}/attachments/{attachment_id}")
def download_attachment(
    ticket_id: RowId,
    attachment_id: RowId,
    actor: PageActor,
    session: Transaction,
) -> Response:
    ops.get_ticket(session, actor, ticket_id)
    item = session.get(Attachment, attachment_id)
    if item is None or item.ticket_id != ticket_id or item.removed_at is not None:
        raise HTTPException(404, f"attachment {attachment_id} not found")
    content = read_blob(session, item.blob_sha256)
    if content is None:
        raise HTTPException(404, f"attachment {attachment_id} has no content")
    inline = item.content_type.lower() in INLINE_TYPES
    disposition = "inline" if inline else "attachment"
    # A customer's mail can name a file with CR, LF or other control
    # characters (RFC 2231 encoding), which no HTTP header may contain.
    filename = _UNSAFE_IN_FILENAME.sub("", item.filename) or "attachment"
    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_")
    headers = {
        "Content-Disposition": f"{disposition}; filename=\"{ascii_name}\"; "
                               f"filename*=UTF-8''{quote(filename)}",
        "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self'",
        "X-Content-Type-Options": "nosniff",
    }
    media_type = item.content_type if inline else "application/octet-stream"
    return Response(content, media_type=media_type, headers=headers)
