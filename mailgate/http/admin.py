"""Admin endpoints: queues, users, stages, root causes and custom fields.

Each checks its admin permission inside the store operation it calls.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.http.auth import current_actor, transaction
from store import admin
from store import operations as ops
from store.models import Queue, User

router = APIRouter(prefix="/api", tags=["admin"])


class QueueCreate(BaseModel):
    name: str
    address: str


class UserCreate(BaseModel):
    username: str
    email: str
    role: str = "frontline"
    queues: list[str] = []
    name: str = ""


class NameCreate(BaseModel):
    name: str
    closed: bool = False


class FieldCreate(BaseModel):
    name: str
    kind: str
    choices: list[str] = []


@router.get("/queues")
def list_queues(actor: ops.Actor = Depends(current_actor),
                session: Session = Depends(transaction, scope="function")) -> list[dict[str, Any]]:
    admin.require_admin(actor, "queues")
    return [{"id": q.id, "name": q.name, "address": q.address,
             "agents": [agent.username for agent in q.agents]}
            for q in session.scalars(select(Queue).order_by(Queue.id))]


@router.post("/queues", status_code=201)
def create_queue(body: QueueCreate, actor: ops.Actor = Depends(current_actor),
                 session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    queue = admin.add_queue(session, actor, body.name, body.address)
    return {"id": queue.id, "name": queue.name, "address": queue.address}


@router.get("/users")
def list_users(actor: ops.Actor = Depends(current_actor),
               session: Session = Depends(transaction, scope="function")) -> list[dict[str, Any]]:
    admin.require_admin(actor, "users")
    return [{"id": u.id, "username": u.username, "email": u.email, "role": u.role,
             "queues": [queue.name for queue in u.queues]}
            for u in session.scalars(select(User).order_by(User.id))]


@router.post("/users", status_code=201)
def create_user(body: UserCreate, actor: ops.Actor = Depends(current_actor),
                session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    user = admin.add_user(session, actor, body.username, body.email, body.role, body.queues, body.name)
    return {"id": user.id, "username": user.username, "role": user.role}


@router.post("/stages", status_code=201)
def create_stage(body: NameCreate, actor: ops.Actor = Depends(current_actor),
                 session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    stage = admin.add_stage(session, actor, body.name, closed=body.closed)
    return {"name": stage.name, "closed": stage.is_closed}


@router.post("/rootcauses", status_code=201)
def create_root_cause(body: NameCreate, actor: ops.Actor = Depends(current_actor),
                      session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    return {"name": admin.add_root_cause(session, actor, body.name).name}


@router.post("/fields", status_code=201)
def create_field(body: FieldCreate, actor: ops.Actor = Depends(current_actor),
                 session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    field = admin.add_custom_field(session, actor, body.name, body.kind, body.choices)
    return {"name": field.name, "kind": field.kind, "choices": field.choices}
