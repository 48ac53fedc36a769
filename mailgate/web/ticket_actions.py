"""The action buttons of the ticket page: Forward, Postpone, Close,
Explain & Close and Reopen."""

from __future__ import annotations

import logging
import re

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mailgate.forwards import forward_ticket
from mailgate.web.pages import CheckedForm, PageActor, RowId, Transaction, attempt, flash, redirect
from mailgate.web.ticket_page import ticket_url
from store import operations as ops

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

POSTPONE_UNITS = {"h", "d", "w", "mo"}


@router.post("/tickets/{ticket_id}/postpone")
def postpone(
    request: Request,
    ticket_id: RowId,
    form: CheckedForm,
    actor: PageActor,
    session: Transaction,
) -> Response:
    """Postpone by a count of hours, days, weeks or months, or to a date."""
    ticket = ops.get_ticket(session, actor, ticket_id)
    count = str(form.get("count", "")).strip()
    unit = str(form.get("unit", ""))
    until = str(form.get("until", "")).strip() or None
    amount = f"{count}{unit}" if count and not until else None
    if not until and (not re.fullmatch(r"\d{1,4}", count) or unit not in POSTPONE_UNITS):
        flash(request, "Give a number of hours, days, weeks or months, or a date.", "error")
        return redirect(ticket_url(ticket_id))
    keep = form.get("keep_on_customer_reply") == "1"
    return attempt(
        request, session, ticket_url(ticket_id, "info"),
        lambda: ops.postpone(session, actor, ticket, amount=amount, until=until,
                             keep_on_customer_reply=keep),
        lambda due: f"Postponed until {due:%Y-%m-%d %H:%M} UTC.",
    )


@router.post("/tickets/{ticket_id}/close")
def close(
    request: Request,
    ticket_id: RowId,
    form: CheckedForm,
    actor: PageActor,
    session: Transaction,
) -> Response:
    ticket = ops.get_ticket(session, actor, ticket_id)
    return attempt(request, session, ticket_url(ticket_id, "info"),
                    lambda: ops.close(session, actor, ticket), lambda _: "Ticket closed.")


@router.post("/tickets/{ticket_id}/explain-close")
def explain_and_close(
    request: Request,
    ticket_id: RowId,
    form: CheckedForm,
    actor: PageActor,
    session: Transaction,
) -> Response:
    ticket = ops.get_ticket(session, actor, ticket_id)
    reason = str(form.get("reason", "")).strip()
    comment = str(form.get("comment", "")).strip()
    causes = [str(name) for name in form.getlist("root_causes") if str(name)]
    return attempt(
        request, session, ticket_url(ticket_id, "info"),
        lambda: ops.explain_and_close(session, actor, ticket, reason=reason, comment=comment,
                                      root_causes=causes),
        lambda _: "Ticket closed with an explanation.",
    )


@router.post("/tickets/{ticket_id}/reopen")
def reopen(
    request: Request,
    ticket_id: RowId,
    form: CheckedForm,
    actor: PageActor,
    session: Transaction,
) -> Response:
    ticket = ops.get_ticket(session, actor, ticket_id)
    return attempt(request, session, ticket_url(ticket_id, "info"),
                    lambda: ops.reopen(session, actor, ticket), lambda _: "Ticket reopened.")


@router.post("/tickets/{ticket_id}/forward")
def forward(
    request: Request,
    ticket_id: RowId,
    form: CheckedForm,
    actor: PageActor,
    session: Transaction,
) -> Response:
    """Forward to addresses, usernames or roles, separated by commas or lines."""
    ticket = ops.get_ticket(session, actor, ticket_id)
    recipients = [name.strip() for name in re.split(r"[,;\n]", str(form.get("recipients", "")))
                  if name.strip()]
    options = ops.ForwardOptions(
        subject=str(form.get("subject", "")).strip(),
        message=str(form.get("message", "")).strip(),
        include_original=form.get("include_original") == "1",
        include_attachments=form.get("include_attachments") == "1",
        include_history=form.get("include_history") == "1",
        include_notes=form.get("include_notes") == "1",
    )

    def send() -> list[str]:
        queued = forward_ticket(request.app.state.mailgate, session, actor, ticket, recipients,
                                options)
        session.flush()
        request.state.outbox_ids = [row.id for row in queued]
        return [row.rcpt_to for row in queued]

    return attempt(request, session, ticket_url(ticket_id, "history"), send,
                    lambda sent: f"Forwarded to {', '.join(sent)}.")
