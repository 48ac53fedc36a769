"""``mailgate tickets create|update|note|...``: ticket operations as a user."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.alerts import queue_alerts
from mailgate.app import App
from mailgate.cli.context import echo_json, open_app
from mailgate.updates import last_history_id, queue_ticket_updates
from mailgate.views import history_rows, ticket_summary
from store import operations as ops
from store.models import User
from store.permissions import PermissionDenied
from store.tickets import NewAttachment, load_ticket

EX_NOPERM = 77  # sysexits.h: the user lacks permission

AS_OPTION = click.option("--as", "username", required=True, help="Act as this user.")
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


# The App of the command being run, for operations that send mail.
current_app: ContextVar[App] = ContextVar("current_app")


@contextmanager
def acting(username: str) -> Iterator[tuple[Session, ops.Actor]]:
    """Open a transaction acting as ``username``, mapping errors to exit codes."""
    app = open_app()
    current_app.set(app)
    try:
        with app.sessions.begin() as session:
            user = session.scalar(select(User).where(User.username == username))
            if user is None:
                raise click.ClickException(f"user {username!r} not found")
            since = last_history_id(session)
            actor = ops.Actor(user, "cli")
            yield session, actor
            updates = queue_ticket_updates(app, session, since, actor=actor.name)
            updates += queue_alerts(app, session, since, actor=actor.name)
    except PermissionDenied as error:
        click.echo(f"Error: permission denied: {error}", err=True)
        raise click.exceptions.Exit(EX_NOPERM) from None
    except ops.OperationError as error:
        raise click.ClickException(str(error)) from None
    app.outbox_committed([item.id for item in updates])


def _print_ticket(session: Session, ticket_id: int, as_json: bool, message: str) -> None:
    session.flush()
    ticket = load_ticket(session, ticket_id)
    if as_json:
        echo_json(ticket_summary(ticket))
    else:
        click.echo(message)


@click.command("create")
@click.option("--queue", required=True, help="Queue name.")
@click.option("--subject", required=True)
@click.option("--requester", required=True, help="Requester's email address.")
@click.option("--requester-name", default="")
@click.option("--text", default="", help="The request's text.")
@AS_OPTION
@JSON_OPTION
def create(queue: str, subject: str, requester: str, requester_name: str, text: str,
           username: str, as_json: bool) -> None:
    """Create a ticket by hand."""
    with acting(username) as (session, actor):
        ticket = ops.create_ticket(session, actor, queue=queue, subject=subject,
                                   requester_email=requester, requester_name=requester_name, text=text)
        session.flush()
        _print_ticket(session, ticket.id, as_json, f"ticket {ticket.id} created")


@click.command("update")
@click.argument("ticket_id", type=int)
@click.option("--subject")
@click.option("--queue")
@click.option("--stage")
@click.option("--tag", "add_tags", multiple=True, help="Add a tag; repeatable.")
@click.option("--untag", "remove_tags", multiple=True, help="Remove a tag; repeatable.")
@click.option("--type", "ticket_type")
@click.option("--assignee", help="Username, or '' to unassign.")
@click.option("--escalation", "escalation_level", type=int)
@click.option("--due", "due_at", help="Due date, ISO format.")
@click.option("--root-cause", "root_causes", multiple=True, help="Set root causes; repeatable.")
@click.option("--field", "fields", multiple=True, help="Custom field as NAME=VALUE; repeatable.")
@AS_OPTION
@JSON_OPTION
def update(ticket_id: int, username: str, as_json: bool, fields: tuple[str, ...], **changes: Any) -> None:
    """Change fields of a ticket."""
    changes = {key: value for key, value in changes.items() if value not in (None, ())}
    for key in ("add_tags", "remove_tags", "root_causes"):
        if key in changes:
            changes[key] = list(changes[key])
    if fields:
        changes["custom_fields"] = dict(item.split("=", 1) for item in fields)
    with acting(username) as (session, actor):
        ticket = ops.get_ticket(session, actor, ticket_id)
        changed = ops.update_ticket(session, actor, ticket, **changes)
        _print_ticket(session, ticket_id, as_json, f"ticket {ticket_id}: changed {', '.join(changed) or 'nothing'}")


@click.command("note")
@click.argument("ticket_id", type=int)
@click.argument("text")
@AS_OPTION
def note(ticket_id: int, text: str, username: str) -> None:
    """Add an internal note."""
    with acting(username) as (session, actor):
        ticket = ops.get_ticket(session, actor, ticket_id)
        added = ops.add_note(session, actor, ticket, text)
        session.flush()
        click.echo(f"note {added.id} added to ticket {ticket_id}")


@click.command("attach")
@click.argument("ticket_id", type=int)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@AS_OPTION
def attach(ticket_id: int, file: Path, username: str) -> None:
    """Add FILE to a ticket as an attachment."""
    content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    item = NewAttachment(filename=file.name, content_type=content_type, data=file.read_bytes())
    with acting(username) as (session, actor):
        ticket = ops.get_ticket(session, actor, ticket_id)
        stored = ops.add_attachment(session, actor, ticket, item)
        click.echo(f"attachment {stored.id} added to ticket {ticket_id}")


@click.command("detach")
@click.argument("ticket_id", type=int)
@click.argument("attachment_id", type=int)
@AS_OPTION
def detach(ticket_id: int, attachment_id: int, username: str) -> None:
    """Remove an attachment (its history row stays)."""
    with acting(username) as (session, actor):
        ticket = ops.get_ticket(session, actor, ticket_id)
        ops.remove_attachment(session, actor, ticket, attachment_id)
        click.echo(f"attachment {attachment_id} removed from ticket {ticket_id}")


@click.command("postpone")
@click.argument("ticket_id", type=int)
@click.argument("amount", required=False)
@click.option("--until", help="Postpone to this date (ISO format) instead of by AMOUNT.")
@click.option("--keep", is_flag=True, help="Stay postponed when the customer writes.")
@AS_OPTION
def postpone(ticket_id: int, amount: str | None, until: str | None, keep: bool, username: str) -> None:
    """Postpone by AMOUNT (4h, 3d, 2w, 1mo) or to --until DATE."""
    with acting(username) as (session, actor):
        ticket = ops.get_ticket(session, actor, ticket_id)
        due = ops.postpone(session, actor, ticket, amount=amount, until=until, keep_on_customer_reply=keep)
        click.echo(f"ticket {ticket_id} due {due.isoformat()}")


@click.command("close")
@click.argument("ticket_id", type=int)
@click.option("--reason", help="Closing reason (explain and close).")
@click.option("--comment", default="")
@click.option("--root-cause", "root_causes", multiple=True, help="Repeatable.")
@AS_OPTION
def close(ticket_id: int, reason: str | None, comment: str, root_causes: tuple[str, ...],
          username: str) -> None:
    """Close a ticket, optionally with a reason, comment and root causes."""
    with acting(username) as (session, actor):
        ticket = ops.get_ticket(session, actor, ticket_id)
        if reason or comment or root_causes:
            ops.explain_and_close(session, actor, ticket, reason=reason or "", comment=comment,
                                  root_causes=list(root_causes))
        else:
            ops.close(session, actor, ticket)
        click.echo(f"ticket {ticket_id} closed")


@click.command("reopen")
@click.argument("ticket_id", type=int)
@click.option("--stage", default="open", show_default=True)
@AS_OPTION
def reopen(ticket_id: int, stage: str, username: str) -> None:
    """Reopen a closed ticket."""
    with acting(username) as (session, actor):
        ticket = ops.get_ticket(session, actor, ticket_id)
        ops.reopen(session, actor, ticket, stage=stage)
        click.echo(f"ticket {ticket_id} reopened to {stage}")


@click.command("bulk")
@click.argument("ticket_ids", type=int, nargs=-1, required=True)
@click.option("--queue")
@click.option("--stage")
@click.option("--tag", "add_tags", multiple=True)
@click.option("--untag", "remove_tags", multiple=True)
@click.option("--assignee")
@AS_OPTION
@JSON_OPTION
def bulk(ticket_ids: tuple[int, ...], username: str, as_json: bool, **changes: Any) -> None:
    """Apply the same change to many tickets; each succeeds or fails alone."""
    changes = {key: (list(value) if isinstance(value, tuple) else value)
               for key, value in changes.items() if value not in (None, ())}
    with acting(username) as (session, actor):
        result = ops.bulk_update(session, actor, list(ticket_ids), **changes)
    if as_json:
        echo_json({"changed": result.changed, "unchanged": result.unchanged,
                   "failed": {str(key): value for key, value in result.failed.items()}})
    else:
        click.echo(f"changed {len(result.changed)}, unchanged {len(result.unchanged)}, failed {len(result.failed)}")
        for ticket_id, reason in result.failed.items():
            click.echo(f"  {ticket_id}: {reason}")
    if result.failed:
        raise click.exceptions.Exit(1)


@click.command("forward")
@click.argument("ticket_id", type=int)
@click.option("--to", "recipients", multiple=True, required=True,
              help="An address, username or role name; repeatable.")
@click.option("--subject", default="", help="Subject; default 'Fwd: [tag] subject'.")
@click.option("--message", default="", help="Text above the forwarded ticket.")
@click.option("--no-original", is_flag=True, help="Leave out the customer's mail.")
@click.option("--attachments", is_flag=True, help="Attach the customer's attachments.")
@click.option("--history", "include_history", is_flag=True, help="Include the ticket's history.")
@click.option("--notes", is_flag=True, help="Include internal notes.")
@AS_OPTION
def forward(ticket_id: int, recipients: tuple[str, ...], subject: str, message: str,
            no_original: bool, attachments: bool, include_history: bool, notes: bool,
            username: str) -> None:
    """Forward a ticket to addresses, users or roles."""
    from mailgate.forwards import forward_ticket

    options = ops.ForwardOptions(
        subject=subject, message=message, include_original=not no_original,
        include_attachments=attachments, include_history=include_history, include_notes=notes,
    )
    with acting(username) as (session, actor):
        ticket = ops.get_ticket(session, actor, ticket_id)
        queued = forward_ticket(current_app.get(), session, actor, ticket, list(recipients), options)
        session.flush()
        queued_ids = [row.id for row in queued]
        click.echo(f"ticket {ticket_id} forwarded to {', '.join(row.rcpt_to for row in queued)}")
    current_app.get().outbox_committed(queued_ids)


@click.command("history")
@click.argument("ticket_id", type=int)
@JSON_OPTION
def history(ticket_id: int, as_json: bool) -> None:
    """Print every history entry of a ticket, oldest first."""
    app = open_app()
    with app.sessions() as session:
        ticket = load_ticket(session, ticket_id)
        if ticket is None:
            raise click.ClickException(f"ticket {ticket_id} not found")
        rows = history_rows(ticket)
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        change = f" {row['field']}: {row['old_value']} -> {row['new_value']}" if row["field"] else ""
        click.echo(f"{row['at']}  {row['actor']:<28} {row['channel']:<6} {row['action']}{change}")


COMMANDS = (create, update, note, attach, detach, postpone, close, reopen, bulk, forward, history)
