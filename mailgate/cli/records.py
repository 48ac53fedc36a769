"""``mailgate tickets``, ``mailgate spool`` and ``mailgate outbox``."""

from __future__ import annotations

import sys

import click

from mailgate.cli.context import echo_json, open_app
from mailgate.cli.ticket_ops import COMMANDS as TICKET_COMMANDS
from mailgate.views import outbox_row, spool_row, ticket_detail, ticket_summary
from store.models import OutboxState, SpoolState
from store.outbox import get_outbox_entry, list_outbox, retry_outbox_entry
from store.spool import get_spool_entry, list_spool, raw_chunks, retry_spool_entry
from store.tickets import list_tickets, load_ticket

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
LIMIT_OPTION = click.option("--limit", default=100, show_default=True, help="Rows to print at most.")


@click.group()
def tickets() -> None:
    """Read and change tickets."""


@tickets.command("list")
@click.option("--queue", help="Only tickets of this queue (name or address).")
@LIMIT_OPTION
@JSON_OPTION
def tickets_list(queue: str | None, limit: int, as_json: bool) -> None:
    """List tickets, newest first."""
    app = open_app()
    with app.sessions() as session:
        rows = [ticket_summary(ticket) for ticket in list_tickets(session, queue=queue, limit=limit)]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(
            f"{row['id']:>6}  {row['stage']:<8} {row['queue']:<16} "
            f"{row['requester']['email']:<32} {row['subject']}"
        )


@tickets.command("show")
@click.argument("ticket_id", type=int)
@JSON_OPTION
def tickets_show(ticket_id: int, as_json: bool) -> None:
    """Show one ticket with its messages, notes and history."""
    app = open_app()
    with app.sessions() as session:
        ticket = load_ticket(session, ticket_id)
        if ticket is None:
            raise click.ClickException(f"ticket {ticket_id} not found")
        detail = ticket_detail(ticket)
    if as_json:
        echo_json(detail)
        return
    click.echo(f"Ticket {detail['id']}: {detail['subject']}")
    click.echo(f"Requester: {detail['requester']['name']} <{detail['requester']['email']}>")
    click.echo(f"Queue: {detail['queue']}   Stage: {detail['stage']}")
    for message in detail["messages"]:
        click.echo(f"\n--- message {message['id']} from {message['from']['email']}: {message['subject']}")
        click.echo(message["text"])
        for item in message["attachments"]:
            click.echo(f"[attachment] {item['filename']} ({item['content_type']}, {item['size']} bytes)")
    for note in detail["notes"]:
        click.echo(f"\n--- note {note['id']} by {note['author']}")
        click.echo(note["body"])
    click.echo("\nHistory:")
    for entry in detail["history"]:
        click.echo(f"  {entry['at']}  {entry['actor']:<30} {entry['action']}")


@click.group()
def spool() -> None:
    """Inspect and retry spooled mail."""


@spool.command("list")
@click.option("--state", type=click.Choice([state.value for state in SpoolState]), help="Only rows in this state.")
@LIMIT_OPTION
@JSON_OPTION
def spool_list(state: str | None, limit: int, as_json: bool) -> None:
    """List spooled mail, newest first."""
    rows = [spool_row(entry) for entry in list_spool(open_app().sessions, state=state, limit=limit)]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        ticket = row["ticket_id"] or "-"
        click.echo(
            f"{row['id']:>6}  {row['state']:<9} ticket={ticket:<6} {row['size']:>9}B "
            f"from=<{row['mail_from']}> {row['error'] or ''}"
        )


@spool.command("show")
@click.argument("spool_id", type=int)
@click.option("--raw", is_flag=True, help="Print the raw message instead.")
@JSON_OPTION
def spool_show(spool_id: int, raw: bool, as_json: bool) -> None:
    """Show one spooled mail and its processing state."""
    sessions = open_app().sessions
    entry = get_spool_entry(sessions, spool_id)
    if entry is None:
        raise click.ClickException(f"spool entry {spool_id} not found")
    if raw:
        for chunk in raw_chunks(sessions, entry):
            sys.stdout.buffer.write(chunk)
        return
    row = spool_row(entry)
    if as_json:
        echo_json(row)
        return
    for key, value in row.items():
        click.echo(f"{key:>12}: {value}")


@spool.command("retry")
@click.argument("spool_ids", type=int, nargs=-1, required=True)
def spool_retry(spool_ids: tuple[int, ...]) -> None:
    """Set failed or rejected rows back to pending; a running gateway picks them up."""
    app = open_app()
    failed = False
    for spool_id in spool_ids:
        if retry_spool_entry(app.sessions, spool_id):
            click.echo(f"spool {spool_id}: pending again")
        else:
            failed = True
            click.echo(f"spool {spool_id}: not found or not failed/rejected", err=True)
    if failed:
        raise click.exceptions.Exit(1)


@spool.command("release")
@click.argument("spool_ids", type=int, nargs=-1, required=True)
def spool_release(spool_ids: tuple[int, ...]) -> None:
    """Process held rows now, as if their sender's authentication had passed.

    Only rows in state held are released (see 'spool list --state held').
    Mail the release causes is sent by a running gateway.
    """
    from mailgate.pipeline import process_spool_entry

    app = open_app()
    failed = False
    for spool_id in spool_ids:
        outcome = process_spool_entry(app, spool_id, release=True)
        if outcome is None:
            failed = True
            click.echo(f"spool {spool_id}: not found or not held", err=True)
            continue
        reason = f": {outcome.reason}" if outcome.reason else ""
        click.echo(f"spool {spool_id}: released, now {outcome.state.value}{reason}")
    if failed:
        raise click.exceptions.Exit(1)


@click.group()
def outbox() -> None:
    """Inspect and retry outbound mail."""


@outbox.command("list")
@click.option("--state", type=click.Choice([state.value for state in OutboxState]), help="Only rows in this state.")
@LIMIT_OPTION
@JSON_OPTION
def outbox_list(state: str | None, limit: int, as_json: bool) -> None:
    """List outbound mail, newest first."""
    rows = [outbox_row(entry) for entry in list_outbox(open_app().sessions, state=state, limit=limit)]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(
            f"{row['id']:>6}  {row['state']:<7} {row['kind']:<16} ticket={row['ticket_id']} "
            f"to=<{row['rcpt_to']}> {row['last_error'] or ''}"
        )


@outbox.command("show")
@click.argument("outbox_id", type=int)
@click.option("--raw", is_flag=True, help="Print the raw message instead.")
@JSON_OPTION
def outbox_show(outbox_id: int, raw: bool, as_json: bool) -> None:
    """Show one outbound mail."""
    entry = get_outbox_entry(open_app().sessions, outbox_id)
    if entry is None:
        raise click.ClickException(f"outbox entry {outbox_id} not found")
    if raw:
        sys.stdout.buffer.write(entry.raw)
        return
    row = outbox_row(entry)
    if as_json:
        echo_json(row)
        return
    for key, value in row.items():
        click.echo(f"{key:>12}: {value}")


@outbox.command("retry")
@click.argument("outbox_ids", type=int, nargs=-1, required=True)
def outbox_retry(outbox_ids: tuple[int, ...]) -> None:
    """Set dead rows back to pending; a running gateway sends them."""
    app = open_app()
    failed = False
    for outbox_id in outbox_ids:
        if retry_outbox_entry(app.sessions, outbox_id):
            click.echo(f"outbox {outbox_id}: pending again")
        else:
            failed = True
            click.echo(f"outbox {outbox_id}: not found or not dead", err=True)
    if failed:
        raise click.exceptions.Exit(1)


for _command in TICKET_COMMANDS:
    tickets.add_command(_command)
