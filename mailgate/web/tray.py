"""The notification tray: the signed-in user's in-app alerts."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import select, update

from mailgate.web.pages import CheckedForm, PageActor, RowId, Transaction, local_path, redirect, render
from store.models import TrayItem, utcnow

router = APIRouter(include_in_schema=False)

TRAY_PAGE_SIZE = 100


@router.get("/tray")
def tray_page(
    request: Request,
    actor: PageActor,
    session: Transaction,
) -> Response:
    """Show the newest alerts first, unread ones marked."""
    items = list(session.scalars(
        select(TrayItem).where(TrayItem.user_id == actor.user.id)
        .order_by(TrayItem.id.desc()).limit(TRAY_PAGE_SIZE)
    ))
    return render(request, "tray.html", {"items": items}, session=session)


@router.post("/tray/{item_id}/read")
def mark_read(
    request: Request,
    item_id: RowId,
    form: CheckedForm,
    actor: PageActor,
    session: Transaction,
) -> Response:
    item = session.get(TrayItem, item_id)
    if item is None or item.user_id != actor.user.id:
        raise HTTPException(404, f"tray item {item_id} not found")
    item.read_at = item.read_at or utcnow()
    return redirect(local_path(str(form.get("next", "")), "/tray"))


@router.post("/tray/read-all")
def mark_all_read(
    form: CheckedForm,
    actor: PageActor,
    session: Transaction,
) -> Response:
    session.execute(
        update(TrayItem)
        .where(TrayItem.user_id == actor.user.id, TrayItem.read_at.is_(None))
        .values(read_at=utcnow())
    )
    return redirect("/tray")
