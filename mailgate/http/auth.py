"""Per-user API tokens (``Authorization: Bearer <token>``) and one
transaction per request, acting as that user."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from mailgate.alerts import queue_alerts
from mailgate.updates import last_history_id, queue_ticket_updates
from store.directory import find_user_by_api_token
from store.operations import Actor

bearer = HTTPBearer(auto_error=False, description="A token from 'mailgate users token USERNAME'.")


def transaction(request: Request) -> Iterator[Session]:
    """Run the request in one transaction; changes made by the request's
    actor cause "Ticket Updated" mail, queued in the same transaction.

    Routes use it with ``scope="function"``, so the commit happens before
    the response is sent: a client that reads right after a write sees it.
    """
    app = request.app.state.mailgate
    with app.sessions.begin() as session:
        since = last_history_id(session)
        yield session
        actor = getattr(request.state, "actor", None)
        updates = []
        if actor is not None:
            updates += queue_ticket_updates(app, session, since, actor=actor.name)
            updates += queue_alerts(app, session, since, actor=actor.name)
    queued = getattr(request.state, "outbox_ids", [])
    app.outbox_committed([*queued, *(item.id for item in updates)])


def current_actor(
    request: Request,
    session: Session = Depends(transaction, scope="function"),
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
) -> Actor:
    """Return the actor the token belongs to; raise 401 without a valid token."""
    if credentials is None:
        raise HTTPException(401, "missing API token", headers={"WWW-Authenticate": "Bearer"})
    user = find_user_by_api_token(session, credentials.credentials)
    if user is None:
        raise HTTPException(401, "invalid API token", headers={"WWW-Authenticate": "Bearer"})
    actor = Actor(user, "api")
    request.state.actor = actor
    return actor
