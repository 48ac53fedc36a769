"""Admin operations on the lists tickets draw from: stages, root causes and
custom fields. Each requires its admin permission."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store import permissions as perm
from store.models import CustomField, RootCause, Stage
from store.operations import CUSTOM_FIELD_KINDS, Actor, OperationError


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
