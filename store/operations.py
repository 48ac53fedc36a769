"""Ticket operations by a user: each checks permission, changes the ticket
and writes history rows (actor, channel, action, field, old and new value)
in the caller's transaction, whichever way the action arrived."""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store import permissions as perm
from store.history import record_history, user_actor
from store.models import (
    Attachment,
    CustomField,
    HistoryEntry,
    Message,
    Queue,
    Role,
    RootCause,
    Stage,
    Ticket,
    TicketFieldValue,
    TicketTag,
    User,
    utcnow,
)
from store.tickets import NewAttachment, NewMessage, _add_attachments, add_message
from store.tickets import add_note as store_note
from store.tickets import create_ticket as store_create_ticket

CUSTOM_FIELD_KINDS = ("text", "number", "date", "choice", "multichoice")
# Fields that update_ticket changes, each with how it is written in history.
UPDATABLE_FIELDS = (
    "subject", "queue", "stage", "tags", "add_tags", "remove_tags", "ticket_type", "assignee",
    "escalation_level", "due_at", "root_causes", "custom_fields",
)


class OperationError(ValueError):
    """Raised for a request that cannot be carried out; the message gives the reason."""


@dataclass(frozen=True)
class Actor:
    """The acting user and the channel of the action (cli, api, email)."""

    user: User
    channel: str

    @property
    def name(self) -> str:
        return user_actor(self.user.username)

    def require(self, permission: str) -> None:
        perm.require(self.user.username, self.user.role, permission)


@dataclass(frozen=True)
class SystemActor:
    """A change the system makes on an admin's standing instruction, such as
    a routing rule. It passes no permission check, because the admin's
    permission was checked when the instruction was saved."""

    name: str  # as history writes it, e.g. "rule:outlook to billing"
    channel: str


def rule_actor(rule_name: str) -> SystemActor:
    """Return the actor of changes that routing rule ``rule_name`` makes."""
    return SystemActor(f"rule:{rule_name}", "email")


def check_scope(actor: Actor, ticket: Ticket) -> None:
    """Raise PermissionDenied when the ticket's queue is not one of the actor's."""
    if perm.has_permission(actor.user.role, perm.TICKET_ALL_QUEUES):
        return
    if ticket.queue_id not in {queue.id for queue in actor.user.queues}:
        raise perm.PermissionDenied(
            actor.user.username, perm.TICKET_ALL_QUEUES,
            f"ticket {ticket.id} is in a queue the user does not work on",
        )


def get_ticket(session: Session, actor: Actor, ticket_id: int) -> Ticket:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise OperationError(f"ticket {ticket_id} not found")
    check_scope(actor, ticket)
    return ticket


def _history(
    session: Session, actor: Actor | SystemActor, ticket: Ticket, action: str, **values: Any
) -> None:
    record_history(session, ticket.id, actor=actor.name, channel=actor.channel, action=action, **values)


def _changed(
    session: Session, actor: Actor | SystemActor, ticket: Ticket, name: str, old: Any, new: Any
) -> None:
    _history(
        session, actor, ticket, "field_changed", field=name,
        old_value=_text(old), new_value=_text(new),
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value)
    return str(value)


# -- lookups -----------------------------------------------------------------

def stages(session: Session) -> list[Stage]:
    return list(session.scalars(select(Stage).order_by(Stage.position)))


def find_stage(session: Session, name: str) -> Stage:
    for stage in stages(session):
        if stage.name.lower() == name.strip().lower():
            return stage
    known = ", ".join(stage.name for stage in stages(session))
    raise OperationError(f"unknown stage {name!r}; stages are: {known}")


def closed_stage(session: Session) -> Stage:
    stage = session.scalar(select(Stage).where(Stage.is_closed).order_by(Stage.position))
    if stage is None:
        raise OperationError("no closed stage is configured")
    return stage


def _queue(session: Session, name: str) -> Queue:
    queue = session.scalar(select(Queue).where(Queue.name == name))
    if queue is None:
        raise OperationError(f"queue {name!r} not found")
    return queue


def _user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise OperationError(f"user {username!r} not found")
    return user


def _root_causes(session: Session, names: Iterable[str]) -> list[RootCause]:
    found = []
    for name in names:
        cause = session.scalar(select(RootCause).where(RootCause.name == name))
        if cause is None:
            known = ", ".join(session.scalars(select(RootCause.name).order_by(RootCause.name)))
            raise OperationError(f"unknown root cause {name!r}; root causes are: {known or 'none'}")
        found.append(cause)
    return found


def validate_custom_value(definition: CustomField, value: Any) -> Any:
    """Return ``value`` converted for ``definition``, or raise OperationError."""
    name, kind = definition.name, definition.kind
    if value is None:
        return None
    if kind == "text":
        return str(value)
    if kind == "number":
        try:
            return float(value) if "." in str(value) else int(value)
        except ValueError:
            raise OperationError(f"custom field {name}: {value!r} is not a number") from None
    if kind == "date":
        try:
            return date.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise OperationError(
                f"custom field {name}: {value!r} is not a date like 2026-12-31"
            ) from None
    values = value if isinstance(value, list) else [value]
    if kind == "choice" and len(values) != 1:
        raise OperationError(f"custom field {name}: exactly one choice expected")
    for item in values:
        if item not in definition.choices:
            raise OperationError(
                f"custom field {name}: {item!r} is not one of {', '.join(definition.choices)}"
            )
    return values[0] if kind == "choice" else list(values)


# -- postponement ----------------------------------------------------------

MAX_POSTPONE_COUNT = 9999
POSTPONE_AMOUNT = re.compile(r"^\s*(\d+)\s*(h|d|w|mo)\s*$", re.IGNORECASE)


def postpone_target(amount: str | None, until: str | None, now: datetime) -> datetime:
    """Return the new due date: ``amount`` such as 4h, 3d, 2w or 1mo from now,
    or ``until`` as an ISO date or date-time (UTC when no zone is given)."""
    if until:
        try:
            target = datetime.fromisoformat(until)
            if target.tzinfo is None:
                target = target.replace(tzinfo=timezone.utc)
            # Normalising to UTC overflows for dates at the ends of the range.
            return target.astimezone(timezone.utc)
        except ValueError:
            raise OperationError(f"invalid date {until!r}; example: 2026-12-31 or 2026-12-31T09:00") from None
        except OverflowError:
            raise OperationError(f"date {until!r} is out of range") from None
    match = POSTPONE_AMOUNT.match(amount or "")
    if not match:
        raise OperationError(f"invalid postpone amount {amount!r}; use a number and h, d, w or mo, e.g. 2w")
    count, unit = int(match.group(1)), match.group(2).lower()
    if count > MAX_POSTPONE_COUNT:
        raise OperationError(f"postpone amount {amount!r} is too large; use at most {MAX_POSTPONE_COUNT}")
    if unit == "mo":
        month = now.month - 1 + count
        year, month = now.year + month // 12, month % 12 + 1
        day = min(now.day, calendar.monthrange(year, month)[1])
        return now.replace(year=year, month=month, day=day)
    hours = {"h": 1, "d": 24, "w": 24 * 7}[unit] * count
    return now + timedelta(hours=hours)


# -- operations --------------------------------------------------------------

# A bare address: no spaces, control characters, brackets or commas, so a
# value typed into a form cannot add header lines or further recipients.
ADDR_SPEC = re.compile(r"[^\s<>()\[\],;:\"\\@\x00-\x1f\x7f]+@[^\s<>()\[\],;:\"\\@\x00-\x1f\x7f]+")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]+")


def _single_line(text: str) -> str:
    """Return ``text`` with line breaks and other control characters as spaces."""
    return _CONTROL_CHARACTERS.sub(" ", text).strip()


def create_ticket(
    session: Session,
    actor: Actor,
    *,
    queue: str,
    subject: str,
    requester_email: str,
    requester_name: str = "",
    text: str = "",
) -> Ticket:
    """Create a ticket by hand, as if the requester had written ``text``."""
    actor.require(perm.TICKET_CREATE)
    target = _queue(session, queue)
    if not perm.has_permission(actor.user.role, perm.TICKET_ALL_QUEUES) and target.id not in {
        item.id for item in actor.user.queues
    }:
        raise perm.PermissionDenied(actor.user.username, perm.TICKET_ALL_QUEUES,
                                    f"queue {queue} is not one the user works on")
    requester_email = requester_email.strip()
    if not ADDR_SPEC.fullmatch(requester_email):
        raise OperationError(f"requester {requester_email!r} is not an email address")
    subject = _single_line(subject)
    requester_name = _single_line(requester_name)
    message = NewMessage(
        from_name=requester_name, from_email=requester_email, subject=subject, text=text,
        html=None, message_id=None, spool_id=None,
    )
    ticket = store_create_ticket(session, target, message, channel=actor.channel)
    _history(session, actor, ticket, "ticket_created_by_hand", queue=queue)
    return ticket


def update_ticket(session: Session, actor: Actor, ticket: Ticket, **changes: Any) -> list[str]:
    """Apply ``changes`` (see UPDATABLE_FIELDS); return the fields that changed.

    All changes are checked before any is made, so a bad value changes nothing.
    """
    actor.require(perm.TICKET_UPDATE)
    check_scope(actor, ticket)
    return _apply_changes(session, actor, ticket, changes)


def update_ticket_as_system(
    session: Session, actor: SystemActor, ticket: Ticket, **changes: Any
) -> list[str]:
    """Apply ``changes`` like update_ticket, without a user's permission
    check; the history rows name ``actor`` (e.g. ``rule_actor(name)``)."""
    return _apply_changes(session, actor, ticket, changes)


def _apply_changes(
    session: Session, actor: Actor | SystemActor, ticket: Ticket, changes: dict[str, Any]
) -> list[str]:
    unknown = set(changes) - set(UPDATABLE_FIELDS)
    if unknown:
        raise OperationError(f"unknown fields {sorted(unknown)}; fields are {', '.join(UPDATABLE_FIELDS)}")
    plan = _plan_changes(session, actor, ticket, changes)
    changed = []
    for name, (old, new, apply) in plan.items():
        if old == new:
            continue
        apply()
        _changed(session, actor, ticket, name, old, new)
        changed.append(name)
    if changed:
        ticket.updated_at = utcnow()
    return changed


def _plan_changes(
    session: Session, actor: Actor | SystemActor, ticket: Ticket, changes: dict[str, Any]
) -> dict[str, tuple[Any, Any, Any]]:
    plan: dict[str, tuple[Any, Any, Any]] = {}
    current_tags = sorted(tag.tag for tag in ticket.tags)
    new_tags = set(current_tags)
    for key, value in changes.items():
        if value is None and key not in ("assignee", "due_at", "ticket_type"):
            continue
        if key == "subject":
            plan["subject"] = (ticket.subject, str(value), lambda v=str(value): setattr(ticket, "subject", v))
        elif key == "queue":
            queue = _queue(session, value)
            plan["queue"] = (ticket.queue.name, queue.name, lambda q=queue: setattr(ticket, "queue", q))
        elif key == "stage":
            stage = find_stage(session, value)
            if isinstance(actor, Actor):
                _check_stage_permission(session, actor, ticket, stage)
            plan["stage"] = (ticket.stage, stage.name, lambda s=stage: _set_stage(ticket, s))
        elif key == "tags":
            new_tags = {_tag(tag) for tag in value}
        elif key == "add_tags":
            new_tags |= {_tag(tag) for tag in value}
        elif key == "remove_tags":
            new_tags -= {_tag(tag) for tag in value}
        elif key == "ticket_type":
            plan["ticket_type"] = (ticket.ticket_type, value, lambda v=value: setattr(ticket, "ticket_type", v))
        elif key == "assignee":
            user = _user(session, value) if value else None
            old = ticket.assignee.username if ticket.assignee else None
            plan["assignee"] = (old, user.username if user else None,
                                lambda u=user: setattr(ticket, "assignee", u))
        elif key == "escalation_level":
            level = int(value)
            if level < 0:
                raise OperationError(f"escalation level must be 0 or more, got {level}")
            plan["escalation_level"] = (ticket.escalation_level, level,
                                        lambda v=level: setattr(ticket, "escalation_level", v))
        elif key == "due_at":
            due = postpone_target(None, value, utcnow()) if isinstance(value, str) else value
            plan["due_at"] = (ticket.due_at, due, lambda v=due: setattr(ticket, "due_at", v))
        elif key == "root_causes":
            causes = _root_causes(session, value)
            old = [cause.name for cause in ticket.root_causes]
            plan["root_causes"] = (old, sorted(c.name for c in causes),
                                   lambda c=causes: setattr(ticket, "root_causes", list(c)))
        elif key == "custom_fields":
            plan.update(_plan_custom_fields(session, ticket, value))
    if new_tags != set(current_tags):
        ordered = sorted(new_tags)
        plan["tags"] = (current_tags, ordered, lambda t=ordered: _set_tags(ticket, t))
    return plan


def _check_stage_permission(session: Session, actor: Actor, ticket: Ticket, stage: Stage) -> None:
    if stage.is_closed and not perm.has_permission(actor.user.role, perm.TICKET_CLOSE):
        raise perm.PermissionDenied(actor.user.username, perm.TICKET_CLOSE,
                                    f"stage {stage.name} closes the ticket")
    if _is_closed(session, ticket) and not stage.is_closed:
        actor.require(perm.TICKET_REOPEN)


def _plan_custom_fields(session: Session, ticket: Ticket, values: dict[str, Any]) -> dict[str, tuple]:
    plan = {}
    existing = {item.field.name: item for item in ticket.field_values}
    for name, raw in values.items():
        definition = session.scalar(select(CustomField).where(CustomField.name == name))
        if definition is None:
            raise OperationError(f"custom field {name!r} not found")
        value = validate_custom_value(definition, raw)
        current = existing.get(name)
        old = current.value if current else None

        def apply(definition: CustomField = definition, value: Any = value, current: Any = current) -> None:
            if current is not None:
                current.value = value
            else:
                ticket.field_values.append(TicketFieldValue(field_id=definition.id, value=value, field=definition))

        plan[f"custom:{name}"] = (old, value, apply)
    return plan


def _tag(value: str) -> str:
    tag = str(value).strip().lower()
    if not tag or len(tag) > 100 or any(c.isspace() for c in tag):
        raise OperationError(f"invalid tag {value!r}; tags are single words of at most 100 characters")
    return tag


def _set_tags(ticket: Ticket, tags: Sequence[str]) -> None:
    ticket.tags = [TicketTag(ticket_id=ticket.id, tag=tag) for tag in tags]


def _is_closed(session: Session, ticket: Ticket) -> bool:
    return ticket.stage == closed_stage(session).name or ticket.closed_at is not None


def _set_stage(ticket: Ticket, stage: Stage) -> None:
    ticket.stage = stage.name
    ticket.closed_at = utcnow() if stage.is_closed else None


def add_note(
    session: Session,
    actor: Actor,
    ticket: Ticket,
    body: str,
    *,
    trimmed: str = "",
    spool_id: int | None = None,
    attachments: Iterable[NewAttachment] = (),
):
    """Add an internal note; notes are never sent to the customer."""
    actor.require(perm.TICKET_NOTE)
    check_scope(actor, ticket)
    return store_note(
        session, ticket, actor.user, body, channel=actor.channel, trimmed=trimmed,
        spool_id=spool_id, attachments=attachments,
    )


def add_public_reply(
    session: Session,
    actor: Actor,
    ticket: Ticket,
    text: str,
    *,
    spool_id: int | None = None,
    attachments: Iterable[NewAttachment] = (),
) -> Message:
    """Store an agent's reply to the customer, sent from the queue address."""
    actor.require(perm.TICKET_REPLY)
    check_scope(actor, ticket)
    queue = ticket.queue
    stored = Message(
        ticket_id=ticket.id, spool_id=spool_id, message_id=None, from_name=queue.name,
        from_email=queue.address, subject=ticket.subject, text=text, direction="out",
        author_id=actor.user.id,
    )
    session.add(stored)
    session.flush()
    added = _add_attachments(session, ticket, attachments, message=stored)
    ticket.updated_at = utcnow()
    _history(session, actor, ticket, "public_reply_added", message_id=stored.id,
             spool_id=spool_id, attachments=len(added))
    return stored


def add_attachment(session: Session, actor: Actor, ticket: Ticket, item: NewAttachment) -> Attachment:
    actor.require(perm.TICKET_ATTACH)
    check_scope(actor, ticket)
    [stored] = _add_attachments(session, ticket, [item])
    session.flush()
    _history(session, actor, ticket, "attachment_added", field="attachments",
             new_value=item.filename, attachment_id=stored.id, size=stored.size)
    ticket.updated_at = utcnow()
    return stored


def remove_attachment(session: Session, actor: Actor, ticket: Ticket, attachment_id: int) -> Attachment:
    """Mark an attachment removed; the row and its history stay."""
    actor.require(perm.TICKET_ATTACH)
    check_scope(actor, ticket)
    item = session.get(Attachment, attachment_id)
    if item is None or item.ticket_id != ticket.id:
        raise OperationError(f"attachment {attachment_id} not found on ticket {ticket.id}")
    if item.removed_at is not None:
        raise OperationError(f"attachment {attachment_id} was removed already by {item.removed_by}")
    item.removed_at = utcnow()
    item.removed_by = actor.name
    _history(session, actor, ticket, "attachment_removed", field="attachments",
             old_value=item.filename, attachment_id=item.id)
    ticket.updated_at = utcnow()
    return item


def postpone(
    session: Session,
    actor: Actor,
    ticket: Ticket,
    *,
    amount: str | None = None,
    until: str | None = None,
    keep_on_customer_reply: bool = False,
) -> datetime:
    """Set the due date to ``until``, or forward by ``amount`` from now or from
    the current due date when that is later. Return the new due date."""
    actor.require(perm.TICKET_POSTPONE)
    check_scope(actor, ticket)
    now = utcnow()
    base = ticket.due_at if ticket.due_at and ticket.due_at > now and not until else now
    target = postpone_target(amount, until, base)
    old = ticket.due_at
    ticket.due_at = target
    ticket.keep_postponed = keep_on_customer_reply
    ticket.updated_at = now
    _history(session, actor, ticket, "postponed", field="due_at", old_value=_text(old),
             new_value=_text(target), amount=amount, keep_on_customer_reply=keep_on_customer_reply)
    return target


def close(session: Session, actor: Actor, ticket: Ticket) -> None:
    actor.require(perm.TICKET_CLOSE)
    check_scope(actor, ticket)
    stage = closed_stage(session)
    if ticket.stage == stage.name:
        raise OperationError(f"ticket {ticket.id} is closed already")
    old = ticket.stage
    _set_stage(ticket, stage)
    ticket.updated_at = utcnow()
    _history(session, actor, ticket, "closed", field="stage", old_value=old, new_value=stage.name)


def explain_and_close(
    session: Session, actor: Actor, ticket: Ticket, *, reason: str, comment: str = "",
    root_causes: Sequence[str] = (),
) -> None:
    """Close with a reason, a comment and root causes, in one history entry."""
    actor.require(perm.TICKET_CLOSE)
    check_scope(actor, ticket)
    if not reason.strip():
        raise OperationError("a closing reason is required")
    causes = _root_causes(session, root_causes)
    stage = closed_stage(session)
    if ticket.stage == stage.name:
        raise OperationError(f"ticket {ticket.id} is closed already")
    old = ticket.stage
    _set_stage(ticket, stage)
    ticket.root_causes = sorted(set(ticket.root_causes) | set(causes), key=lambda c: c.name)
    ticket.updated_at = utcnow()
    _history(session, actor, ticket, "closed", field="stage", old_value=old, new_value=stage.name,
             reason=reason, comment=comment, root_causes=[cause.name for cause in causes])


def reopen(session: Session, actor: Actor, ticket: Ticket, *, stage: str = "open") -> None:
    actor.require(perm.TICKET_REOPEN)
    check_scope(actor, ticket)
    if not _is_closed(session, ticket):
        raise OperationError(f"ticket {ticket.id} is not closed")
    target = find_stage(session, stage)
    if target.is_closed:
        raise OperationError(f"stage {target.name} is a closed stage; reopen to an open one")
    old = ticket.stage
    _set_stage(ticket, target)
    ticket.updated_at = utcnow()
    _history(session, actor, ticket, "reopened", field="stage", old_value=old, new_value=target.name)


def watch(session: Session, actor: Actor, ticket: Ticket, username: str | None = None) -> None:
    """Add ``username`` (default: the actor) to the ticket's watchers."""
    actor.require(perm.TICKET_UPDATE)
    check_scope(actor, ticket)
    user = _user(session, username) if username else actor.user
    if user in ticket.watchers:
        return
    ticket.watchers.append(user)
    _history(session, actor, ticket, "watcher_added", field="watchers", new_value=user.username)


def unwatch(session: Session, actor: Actor, ticket: Ticket, username: str | None = None) -> None:
    actor.require(perm.TICKET_UPDATE)
    check_scope(actor, ticket)
    user = _user(session, username) if username else actor.user
    if user not in ticket.watchers:
        return
    ticket.watchers.remove(user)
    _history(session, actor, ticket, "watcher_removed", field="watchers", old_value=user.username)


@dataclass(frozen=True)
class ForwardOptions:
    subject: str = ""
    message: str = ""
    include_original: bool = True
    include_attachments: bool = False
    include_history: bool = False
    include_notes: bool = False


def resolve_recipients(session: Session, names: Sequence[str]) -> list[User]:
    """Turn addresses, usernames and role names into users; an address that
    is no user's becomes an external user, who has no permissions."""
    found: dict[int, User] = {}
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if name.lower() in {role.value for role in Role if role != Role.EXTERNAL}:
            members = session.scalars(select(User).where(User.role == name.lower()))
            found.update({user.id: user for user in members})
            continue
        if "@" in name:
            address = name.strip("<>").lower()
            user = session.scalar(select(User).where(User.email == address))
            if user is None:
                user = User(username=address, email=address, role=Role.EXTERNAL.value)
                session.add(user)
                session.flush()
            found[user.id] = user
            continue
        user = _user(session, name)
        found[user.id] = user
    if not found:
        raise OperationError("no recipients: give addresses, usernames or role names")
    return list(found.values())


def forward(
    session: Session, actor: Actor, ticket: Ticket, recipients: Sequence[str], options: ForwardOptions
) -> list[User]:
    """Record a forward of the ticket and return the users to send it to."""
    actor.require(perm.TICKET_FORWARD)
    check_scope(actor, ticket)
    users = resolve_recipients(session, recipients)
    _history(
        session, actor, ticket, "forwarded",
        recipients=[user.email for user in users], subject=options.subject,
        include_original=options.include_original,
        include_attachments=options.include_attachments,
        include_history=options.include_history, include_notes=options.include_notes,
    )
    return users


def add_external_note(
    session: Session, ticket: Ticket, author: User, body: str, *, trimmed: str = "",
    spool_id: int | None = None, attachments: Iterable[NewAttachment] = (),
):
    """Add a note from an external user the ticket was forwarded to."""
    forwarded_to = session.scalars(
        select(HistoryEntry.details).where(
            HistoryEntry.ticket_id == ticket.id, HistoryEntry.action == "forwarded"
        )
    )
    if not any(author.email in (details or {}).get("recipients", []) for details in forwarded_to):
        raise perm.PermissionDenied(author.email, perm.TICKET_NOTE,
                                    f"ticket {ticket.id} was never forwarded to them")
    note = store_note(session, ticket, author, body, channel="email", trimmed=trimmed,
                      spool_id=spool_id, attachments=attachments)
    return note


@dataclass
class BulkResult:
    changed: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


def bulk_update(session: Session, actor: Actor, ticket_ids: Sequence[int], **changes: Any) -> BulkResult:
    """Apply the same change to many tickets; each succeeds or fails on its own."""
    return bulk_apply(session, actor, ticket_ids,
                      lambda ticket: bool(update_ticket(session, actor, ticket, **changes)))


def bulk_apply(
    session: Session, actor: Actor, ticket_ids: Sequence[int], change: Callable[[Ticket], bool]
) -> BulkResult:
    """Call ``change`` on each ticket in a savepoint of its own; it returns
    whether it changed the ticket. A ticket that fails is rolled back alone."""
    result = BulkResult()
    for ticket_id in ticket_ids:
        try:
            with session.begin_nested():
                ticket = get_ticket(session, actor, ticket_id)
                if change(ticket):
                    result.changed.append(ticket_id)
                else:
                    result.unchanged.append(ticket_id)
        except (OperationError, perm.PermissionDenied) as error:
            result.failed[ticket_id] = str(error)
    return result


def customer_wrote(session: Session, ticket: Ticket, message: NewMessage) -> None:
    """Add a customer's message; it ends a postponement unless that was kept."""
    add_message(session, ticket, message)
    if ticket.due_at is not None and not ticket.keep_postponed and ticket.due_at > utcnow():
        old = ticket.due_at
        ticket.due_at = None
        record_history(
            session, ticket.id, actor=f"customer:{message.from_email.lower()}", channel="email",
            action="postponement_ended", field="due_at", old_value=_text(old), new_value=None,
        )
