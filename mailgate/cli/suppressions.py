"""``mailgate suppressions``: addresses that get no automatic mail after
repeated hard bounces."""

from __future__ import annotations

import click

from mailgate.cli.context import echo_json, open_app
from mailgate.suppression import list_bounced_addresses, remove_suppression


@click.group()
def suppressions() -> None:
    """List and remove suppressed addresses."""


@suppressions.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also addresses with fewer hard bounces.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def suppressions_list(show_all: bool, as_json: bool) -> None:
    """List suppressed addresses, most recent bounce first."""
    rows = [
        {
            "email": row.email,
            "hard_bounces": row.hard_bounces,
            "suppressed": row.suppressed_at is not None,
            "suppressed_at": row.suppressed_at.isoformat() if row.suppressed_at else None,
            "last_bounce_at": row.last_bounce_at.isoformat(),
            "last_status": row.last_status,
            "last_diagnostic": row.last_diagnostic,
        }
        for row in list_bounced_addresses(open_app().sessions, suppressed_only=not show_all)
    ]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        state = "suppressed" if row["suppressed"] else "counting"
        click.echo(
            f"{row['email']:<40} {state:<10} bounces={row['hard_bounces']:<3} "
            f"last={row['last_status']} {row['last_diagnostic'][:60]}"
        )


@suppressions.command("remove")
@click.argument("addresses", nargs=-1, required=True)
def suppressions_remove(addresses: tuple[str, ...]) -> None:
    """Forget the bounces of ADDRESSES, so they get automatic mail again."""
    app = open_app()
    failed = False
    for address in addresses:
        if remove_suppression(app.sessions, address):
            click.echo(f"{address}: bounces forgotten")
        else:
            failed = True
            click.echo(f"{address}: no bounces recorded", err=True)
    if failed:
        raise click.exceptions.Exit(1)
