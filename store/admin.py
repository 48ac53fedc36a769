"""Admin operations on the lists tickets draw from: stages, root causes and
custom fields. Each requires its admin permission."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store import permissions as perm
from store.directory import normalize_address
from store.models import CustomField, Queue, Role, RootCause, Stage, User
from store.operations import CUSTOM_FIELD_KINDS, Actor, OperationError


def require_admin(actor: Actor, what: str) -> None:
    """Require the admin permission for ``what``: queues or users."""
    actor.require({"queues": perm.ADMIN_QUEUES, "users": perm.ADMIN_USERS}[what])


def add_queue(session: Session, actor: Actor, name: str, address: str) -> Queue:
    """Add a queue that takes mail for ``address``."""
    actor.require(perm.ADMIN_QUEUES)
    address = normalize_address(address)
    if "@" not in address:
        raise OperationError(f"queue address {address!r} is not an email address")
    if session.scalar(select(Queue).where((Queue.name == name) | (Queue.address == address))):
        raise OperationError(f"a queue named {name!r} or with address {address} exists already")
    queue = Queue(name=name, address=address)
    session.add(queue)
    session.flush()
    return queue


def add_user(
    session: Session, actor: Actor, username: str, email: str, role: str,
    queue_names: Sequence[str], name: str = "",
) -> User:
    """Add a user with a role and the queues they work on."""
    actor.require(perm.ADMIN_USERS)
    email = normalize_address(email)
    if "@" not in email:
        raise OperationError(f"user email {email!r} is not an email address")
    if role not in {item.value for item in Role}:
        raise OperationError(f"unknown role {role!r}; roles are {', '.join(r.value for r in Role)}")
    if session.scalar(select(User).where((User.username == username) | (User.email == email))):
        raise OperationError(f"a user named {username!r} or with email {email} exists already")
    queues = []
    for queue_name in queue_names:
        queue = session.scalar(select(Queue).where(Queue.name == queue_name))
        if queue is None:
            raise OperationError(f"queue {queue_name!r} not found")
        queues.append(queue)
    user = User(username=username, email=email, role=role, name=name)
    user.queues = queues
    session.add(user)
    session.flush()
    return user


def add_stage(session: Session, actor: Actor, name: str, *, closed: bool = False) -> Stage:
    """Append a stage to the end of the stage list."""
    actor.require(perm.ADMIN_STAGES)
    if session.scalar(select(Stage).where(func.lower(Stage.name) == name.lower())):
        raise OperationError(f"stage {name!r} exists already")
    last = session.scalar(select(func.max(Stage.position))) or 0
    stage = Stage(name=name, position=last + 1, is_closed=closed)
    session.add(stage)
    return stage


def add_root_cause(session: Session, actor: Actor, name: str) -> RootCause:
    actor.require(perm.ADMIN_STAGES)
    if session.scalar(select(RootCause).where(RootCause.name == name)):
        raise OperationError(f"root cause {name!r} exists already")
    cause = RootCause(name=name)
    session.add(cause)
    return cause


def add_custom_field(
    session: Session, actor: Actor, name: str, kind: str, choices: Sequence[str] = ()
) -> CustomField:
    actor.require(perm.ADMIN_CUSTOM_FIELDS)
    if kind not in CUSTOM_FIELD_KINDS:
        raise OperationError(f"invalid kind {kind!r}; kinds are {', '.join(CUSTOM_FIELD_KINDS)}")
    if kind in ("choice", "multichoice") and not choices:
        raise OperationError(f"a {kind} field needs at least one choice")
    if session.scalar(select(CustomField).where(CustomField.name == name)):
        raise OperationError(f"custom field {name!r} exists already")
    field = CustomField(name=name, kind=kind, choices=list(choices))
    session.add(field)
    return field
