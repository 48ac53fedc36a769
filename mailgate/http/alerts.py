"""Alert subscriptions and the tray, for the acting user."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.alerts import AlertError, subscribe
from mailgate.http.auth import current_actor, transaction
from store import operations as ops
from store.models import Queue, TrayItem, utcnow

router = APIRouter(prefix="/api", tags=["alerts"])


class SubscriptionCreate(BaseModel):
    queue: str | None = None
    events: list[str]
    channels: list[str]
    push_url: str | None = None


@router.post("/alerts", status_code=201)
def create_subscription(body: SubscriptionCreate, actor: ops.Actor = Depends(current_actor),
                        session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    """Subscribe; the response carries the push signing secret, once."""
    queue_id = None
    if body.queue:
        queue = session.scalar(select(Queue).where(Queue.name == body.queue))
        if queue is None:
            raise HTTPException(404, f"queue {body.queue!r} not found")
        queue_id = queue.id
    try:
        subscription = subscribe(session, actor.user.id, queue_id=queue_id, events=body.events,
                                 channels=body.channels, push_url=body.push_url)
    except AlertError as error:
        raise HTTPException(422, str(error)) from None
    return {"id": subscription.id, "events": subscription.events,
            "channels": subscription.channels, "push_secret": subscription.push_secret}


@router.get("/tray")
def list_tray(unread: bool = False, actor: ops.Actor = Depends(current_actor),
              session: Session = Depends(transaction, scope="function")) -> list[dict[str, Any]]:
    query = select(TrayItem).where(TrayItem.user_id == actor.user.id).order_by(TrayItem.id)
    if unread:
        query = query.where(TrayItem.read_at.is_(None))
    return [{"id": item.id, "ticket_id": item.ticket_id, "event": item.event, "text": item.text,
             "read": item.read_at is not None} for item in session.scalars(query)]


@router.post("/tray/{item_id}/read")
def read_tray_item(item_id: int, actor: ops.Actor = Depends(current_actor),
                   session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    item = session.get(TrayItem, item_id)
    if item is None or item.user_id != actor.user.id:
        raise HTTPException(404, f"tray item {item_id} not found")
    item.read_at = item.read_at or utcnow()
    return {"id": item.id, "read": True}
