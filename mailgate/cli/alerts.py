"""``mailgate alerts`` and ``mailgate tray``: subscriptions and the tray."""

from __future__ import annotations

import click
from sqlalchemy import select

from mailgate.alerts import CHANNELS, EVENTS, AlertError, subscribe
from mailgate.cli.context import echo_json
from mailgate.cli.ticket_ops import AS_OPTION, JSON_OPTION, acting
from store.models import AlertSubscription, Queue, TrayItem, utcnow


@click.group()
def alerts() -> None:
    """Subscribe to ticket events by email, push and tray."""


@alerts.command("subscribe")
@click.option("--queue", help="Only tickets of this queue; default every queue.")
@click.option("--event", "events", multiple=True, required=True, type=click.Choice(EVENTS),
              help="An event to hear of; repeatable.")
@click.option("--channel", "channels", multiple=True, required=True, type=click.Choice(CHANNELS),
              help="Where to deliver it; repeatable.")
@click.option("--push-url", help="URL to POST push alerts to (ntfy-compatible JSON).")
@AS_OPTION
def alerts_subscribe(queue: str | None, events: tuple[str, ...], channels: tuple[str, ...],
                     push_url: str | None, username: str) -> None:
    """Subscribe the acting user; prints the push signing secret once."""
    with acting(username) as (session, actor):
        queue_id = None
        if queue:
            found = session.scalar(select(Queue).where(Queue.name == queue))
            if found is None:
                raise click.ClickException(f"queue {queue!r} not found")
            queue_id = found.id
        try:
            subscription = subscribe(session, actor.user.id, queue_id=queue_id, events=list(events),
                                     channels=list(channels), push_url=push_url)
        except AlertError as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"subscription {subscription.id} added")
        if subscription.push_secret:
            click.echo(f"push signing secret (HMAC-SHA256): {subscription.push_secret}")


@alerts.command("list")
@AS_OPTION
@JSON_OPTION
def alerts_list(username: str, as_json: bool) -> None:
    """List the acting user's subscriptions."""
    with acting(username) as (session, actor):
        rows = [{"id": s.id, "queue_id": s.queue_id, "events": s.events, "channels": s.channels,
                 "push_url": s.push_url}
                for s in session.scalars(select(AlertSubscription).where(
                    AlertSubscription.user_id == actor.user.id))]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['id']:>4}  {','.join(row['events'])}  via {','.join(row['channels'])}")


@click.group()
def tray() -> None:
    """Read the in-app tray of alerts."""


@tray.command("list")
@click.option("--unread", is_flag=True, help="Only items not marked read.")
@AS_OPTION
@JSON_OPTION
def tray_list(unread: bool, username: str, as_json: bool) -> None:
    with acting(username) as (session, actor):
        query = select(TrayItem).where(TrayItem.user_id == actor.user.id).order_by(TrayItem.id)
        if unread:
            query = query.where(TrayItem.read_at.is_(None))
        rows = [{"id": item.id, "ticket_id": item.ticket_id, "event": item.event, "text": item.text,
                 "created_at": item.created_at.isoformat(),
                 "read_at": item.read_at.isoformat() if item.read_at else None}
                for item in session.scalars(query)]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        mark = " " if row["read_at"] else "*"
        click.echo(f"{mark} {row['id']:>5}  {row['event']:<14} {row['text']}")


@tray.command("read")
@click.argument("item_ids", type=int, nargs=-1, required=True)
@AS_OPTION
def tray_read(item_ids: tuple[int, ...], username: str) -> None:
    """Mark tray items read."""
    with acting(username) as (session, actor):
        for item_id in item_ids:
            item = session.get(TrayItem, item_id)
            if item is None or item.user_id != actor.user.id:
                raise click.ClickException(f"tray item {item_id} not found")
            item.read_at = item.read_at or utcnow()
    click.echo(f"marked {len(item_ids)} read")
