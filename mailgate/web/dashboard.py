"""The Actions Dashboard: the ticket list with filters, sorting, pages,
bulk actions and quick actions, and the form that creates a ticket."""

from __future__ import annotations

import logging
import math
from datetime import datetime, time, timezone
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from mailgate.web.pages import (
    MAX_ROW_ID, CheckedForm, PageActor, RowId, Transaction, flash, local_path, redirect, render,
)
from store import operations as ops
from store.models import Queue, User
from store.permissions import (
    TICKET_ALL_QUEUES, TICKET_CLOSE, TICKET_POSTPONE, TICKET_UPDATE, has_permission,
)
from store.search import SORT_COLUMNS, TicketFilter, find_tickets

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

PAGE_SIZES = (25, 50, 100)
# Larger page numbers are clamped to this one, so that the row offset fits in
# PostgreSQL's 32-bit INTEGER and in SQLite's 64-bit one.
MAX_PAGE = 2**31 // max(PAGE_SIZES)
POSTPONE_CHOICES = ("4h", "1d", "3d", "1w", "2w", "1mo")
# Each bulk action and the permission it needs, in the order the form lists them.
BULK_ACTIONS = {
    "stage": TICKET_UPDATE, "queue": TICKET_UPDATE, "add_tag": TICKET_UPDATE,
    "assignee": TICKET_UPDATE, "postpone": TICKET_POSTPONE, "close": TICKET_CLOSE,
}


def _due_before(value: str) -> datetime | None:
    """Return the start of the given day (UTC), or None for no date."""
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        return None
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def choices(session: Session, actor: ops.Actor) -> dict[str, Any]:
    """Return the queues, stages and users that the forms offer."""
    if has_permission(actor.user.role, TICKET_ALL_QUEUES):
        queues = list(session.scalars(select(Queue).order_by(Queue.name)))
    else:
        queues = sorted(actor.user.queues, key=lambda queue: queue.name)
    users = list(session.scalars(select(User).where(User.role != "external").order_by(User.username)))
    return {"queues": queues, "stages": ops.stages(session), "users": users,
            "postpone_choices": POSTPONE_CHOICES}


@router.get("/")
def home(actor: PageActor) -> Response:
    return redirect("/tickets")


@router.get("/tickets")
def dashboard(
    request: Request,
    actor: PageActor,
    session: Transaction,
    queue: str = "",
    stage: str = "",
    tag: str = "",
    assignee: str = "",
    due_before: str = "",
    overdue: str = "",
    q: str = "",
    sort: str = "id",
    order: str = "desc",
    page: int = 1,
    per_page: int = 50,
) -> Response:
    return _dashboard(request, session, actor, dict(
        queue=queue, stage=stage, tag=tag, assignee=assignee, due_before=due_before,
        overdue=overdue, q=q, sort=sort, order=order, page=page, per_page=per_page,
    ))


def _dashboard(request: Request, session: Session, actor: ops.Actor, params: dict[str, Any],
               bulk: dict[str, Any] | None = None) -> Response:
    sort = params["sort"] if params["sort"] in SORT_COLUMNS else "id"
    per_page = params["per_page"] if params["per_page"] in PAGE_SIZES else 50
    filters = TicketFilter(
        queue=params["queue"] or None, stage=params["stage"] or None, tag=params["tag"] or None,
        assignee=params["assignee"] or None, due_before=_due_before(params["due_before"]),
        overdue=bool(params["overdue"]), text=params["q"].strip() or None,
    )
    page = min(max(1, params["page"]), MAX_PAGE)
    total, tickets = find_tickets(
        session, actor.user, filters, sort=sort, descending=params["order"] != "asc",
        limit=per_page, offset=(page - 1) * per_page,
    )
    active_params = {key: value for key, value in params.items() if value not in ("", None)}

    def link(**changes: Any) -> str:
        values = {**active_params, **changes}
        return "/tickets?" + urlencode({k: v for k, v in values.items() if v not in ("", None)})

    return render(request, "dashboard.html", {
        "tickets": tickets,
        "total": total,
        "page": page,
        "pages": max(1, math.ceil(total / per_page)),
        "per_page": per_page,
        "params": {**params, "sort": sort, "per_page": per_page},
        "link": link,
        "sort_columns": list(SORT_COLUMNS),
        "page_sizes": PAGE_SIZES,
        "bulk_actions": [name for name, permission in BULK_ACTIONS.items()
                         if has_permission(actor.user.role, permission)],
        "bulk": bulk,
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        **choices(session, actor),
    }, session=session)


def _is_number(value: object) -> bool:
    """Return whether ``value`` is a string of ASCII digits; ``str.isdigit``
    alone also accepts digits such as "²" that ``int`` rejects."""
    return isinstance(value, str) and value.isascii() and value.isdigit()


def _ticket_ids(form: FormData) -> list[int]:
    """Return the checked ticket ids, skipping values that are no row id."""
    ids = []
    for value in form.getlist("ticket"):
        if _is_number(value) and 1 <= int(value) <= MAX_ROW_ID:
            ids.append(int(value))
    return sorted(set(ids))


def _bulk_change(session: Session, actor: ops.Actor, action: str, value: str):  # type: ignore[no-untyped-def]
    """Return the change a bulk action makes to one ticket."""
    if action == "stage":
        return lambda ticket: bool(ops.update_ticket(session, actor, ticket, stage=value))
    if action == "queue":
        return lambda ticket: bool(ops.update_ticket(session, actor, ticket, queue=value))
    if action == "add_tag":
        return lambda ticket: bool(ops.update_ticket(session, actor, ticket, add_tags=[value]))
    if action == "assignee":
        return lambda ticket: bool(ops.update_ticket(session, actor, ticket, assignee=value))
    if action == "postpone":
        return lambda ticket: bool(ops.postpone(session, actor, ticket, amount=value))
    if action == "close":
        return lambda ticket: ops.close(session, actor, ticket) or True
    raise ops.OperationError(f"unknown bulk action {action!r}")


@router.post("/tickets/bulk")
def bulk(
    request: Request,
    form: CheckedForm,
    actor: PageActor,
    session: Transaction,
) -> Response:
    """Apply one action to the checked tickets and show each ticket's result."""
    ids = _ticket_ids(form)
    action = str(form.get("action", ""))
    value = str(form.get(f"value_{action}", "")).strip()
    back = local_path(str(form.get("next", "")), "/tickets")
    if not ids:
        flash(request, "Check at least one ticket first.", "error")
        return redirect(back)
    if action != "close" and action != "assignee" and not value:
        flash(request, f"Choose a value for {action.replace('_', ' ')}.", "error")
        return redirect(back)
    if action == "postpone" and value not in POSTPONE_CHOICES:
        flash(request, f"Invalid postpone amount {value!r}; choose one of the list.", "error")
        return redirect(back)
    # NOTE: the results page is the POST's own response, so reloading it
    # applies the action again; the changes repeat harmlessly except postpone.
    result = ops.bulk_apply(session, actor, ids, _bulk_change(session, actor, action, value))
    log.info("web bulk %s=%r by %s: %d changed, %d unchanged, %d failed", action, value,
             actor.user.username, len(result.changed), len(result.unchanged), len(result.failed))
    params = _params_of(back)
    return _dashboard(request, session, actor, params, bulk={
        "action": action, "value": value, "changed": result.changed,
        "unchanged": result.unchanged, "failed": result.failed,
    })


def _params_of(path: str) -> dict[str, Any]:
    """Return the dashboard parameters of a dashboard URL."""
    query = {key: values[-1] for key, values in parse_qs(urlsplit(path).query).items()}
    params: dict[str, Any] = {key: query.get(key, "") for key in (
        "queue", "stage", "tag", "assignee", "due_before", "overdue", "q")}
    params["sort"] = query.get("sort", "id")
    params["order"] = query.get("order", "desc")
    params["page"] = int(query["page"]) if _is_number(query.get("page")) else 1
    params["per_page"] = int(query["per_page"]) if _is_number(query.get("per_page")) else 50
    return params


@router.post("/tickets/{ticket_id}/quick")
def quick_action(
    request: Request,
    ticket_id: RowId,
    form: CheckedForm,
    actor: PageActor,
    session: Transaction,
) -> Response:
    """Change the queue or stage of one ticket, or postpone it, from its row."""
    back = local_path(str(form.get("next", "")), "/tickets")
    ticket = ops.get_ticket(session, actor, ticket_id)
    field = str(form.get("field", ""))
    value = str(form.get("value", "")).strip()
    try:
        with session.begin_nested():
            if field in ("queue", "stage"):
                changed = ops.update_ticket(session, actor, ticket, **{field: value})
                text = f"Ticket {ticket_id}: {field} set to {value}." if changed else \
                    f"Ticket {ticket_id}: {field} was {value} already."
            elif field == "postpone":
                if value not in POSTPONE_CHOICES:
                    raise ops.OperationError(f"invalid postpone amount {value!r}; choose one of the list")
                due = ops.postpone(session, actor, ticket, amount=value)
                text = f"Ticket {ticket_id} postponed until {due:%Y-%m-%d %H:%M} UTC."
            else:
                raise ops.OperationError(f"unknown quick action {field!r}")
    except ops.OperationError as error:
        flash(request, f"Ticket {ticket_id}: {error}", "error")
        return redirect(back)
    flash(request, text)
    return redirect(back)


@router.get("/tickets/new")
def new_ticket_page(
    request: Request,
    actor: PageActor,
    session: Transaction,
) -> Response:
    return render(request, "new_ticket.html", {"values": {}, **choices(session, actor)},
                  session=session)


@router.post("/tickets/new")
def create_ticket(
    request: Request,
    form: CheckedForm,
    actor: PageActor,
    session: Transaction,
) -> Response:
    values = {key: str(form.get(key, "")).strip() for key in (
        "queue", "requester_email", "requester_name", "subject", "text")}
    try:
        with session.begin_nested():
            ticket = ops.create_ticket(session, actor, **values)
    except ops.OperationError as error:
        return render(request, "new_ticket.html", {
            "values": values, "error": str(error), **choices(session, actor),
        }, status_code=400, session=session)
    flash(request, f"Ticket {ticket.id} created.")
    return redirect(f"/tickets/{ticket.id}")
