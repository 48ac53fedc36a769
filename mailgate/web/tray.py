"""The notification tray: the signed-in user's in-app alerts."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import select, update

from mailgate.alerts import CHANNELS, EVENTS, AlertError, subscribe
from mailgate.web.pages import CheckedForm, PageActor, Transaction, flash, local_path, redirect, render
from store.models import AlertSubscription, Queue, TrayItem, utcnow

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
    subscriptions = list(session.scalars(
        select(AlertSubscription).where(AlertSubscription.user_id == actor.user.id)
        .order_by(AlertSubscription.id)
    ))
    queue_names = {queue.id: queue.name for queue in session.scalars(select(Queue))}
    return render(request, "tray.html", {
        "items": items, "subscriptions": subscriptions, "queue_names": queue_names,
        "events": EVENTS, "channels": [name for name in CHANNELS if name != "push"],
        "queues": sorted(queue_names.values()),
    }, session=session)


@router.post("/tray/subscriptions")
def add_subscription(
    request: Request,
    form: CheckedForm,
    actor: PageActor,
    session: Transaction,
) -> Response:
    """Subscribe the signed-in user to alerts by mail or in the tray. Push
    subscriptions need a URL and a shared secret, so they stay in the API."""
    queue_name = str(form.get("queue", ""))
    queue_id = None
    if queue_name:
        queue_id = session.scalar(select(Queue.id).where(Queue.name == queue_name))
        if queue_id is None:
            raise HTTPException(404, f"queue {queue_name!r} not found")
    events = [str(item) for item in form.getlist("events")]
    channels = [str(item) for item in form.getlist("channels") if str(item) != "push"]
    try:
        subscribe(session, actor.user.id, queue_id=queue_id, events=events, channels=channels)
    except AlertError as error:
        flash(request, str(error), "error")
        return redirect("/tray")
    flash(request, "Subscribed.")
    return redirect("/tray")


@router.post("/tray/{item_id}/read")
def mark_read(
    request: Request,
    item_id: int,
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
