"""``mailgate stages``, ``rootcauses`` and ``fields``: the lists tickets use."""

from __future__ import annotations

import click
from sqlalchemy import select

from mailgate.cli.context import echo_json, open_app
from mailgate.cli.ticket_ops import AS_OPTION, JSON_OPTION, acting
from store import admin
from store.models import CustomField, RootCause, Stage


@click.group()
def stages() -> None:
    """List and add ticket stages."""


@stages.command("list")
@JSON_OPTION
def stages_list(as_json: bool) -> None:
    """List stages in order."""
    with open_app().sessions() as session:
        rows = [{"name": s.name, "position": s.position, "closed": s.is_closed}
                for s in session.scalars(select(Stage).order_by(Stage.position))]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['position']:>3}  {row['name']}{'  (closed)' if row['closed'] else ''}")


@stages.command("add")
@click.argument("name")
@click.option("--closed", is_flag=True, help="Tickets in this stage count as closed.")
@AS_OPTION
def stages_add(name: str, closed: bool, username: str) -> None:
    """Add stage NAME at the end of the list."""
    with acting(username) as (session, actor):
        admin.add_stage(session, actor, name, closed=closed)
    click.echo(f"stage {name} added")


@click.group()
def rootcauses() -> None:
    """List and add root causes."""


@rootcauses.command("list")
def rootcauses_list() -> None:
    with open_app().sessions() as session:
        for name in session.scalars(select(RootCause.name).order_by(RootCause.name)):
            click.echo(name)


@rootcauses.command("add")
@click.argument("name")
@AS_OPTION
def rootcauses_add(name: str, username: str) -> None:
    """Add root cause NAME."""
    with acting(username) as (session, actor):
        admin.add_root_cause(session, actor, name)
    click.echo(f"root cause {name} added")


@click.group()
def fields() -> None:
    """List and add custom ticket fields."""


@fields.command("list")
@JSON_OPTION
def fields_list(as_json: bool) -> None:
    with open_app().sessions() as session:
        rows = [{"name": f.name, "kind": f.kind, "choices": f.choices}
                for f in session.scalars(select(CustomField).order_by(CustomField.name))]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['name']:<24} {row['kind']:<12} {', '.join(row['choices'])}")


@fields.command("add")
@click.argument("name")
@click.option("--kind", required=True,
              type=click.Choice(["text", "number", "date", "choice", "multichoice"]))
@click.option("--choice", "choices", multiple=True, help="An allowed value; repeatable.")
@AS_OPTION
def fields_add(name: str, kind: str, choices: tuple[str, ...], username: str) -> None:
    """Add custom field NAME of KIND."""
    with acting(username) as (session, actor):
        admin.add_custom_field(session, actor, name, kind, list(choices))
    click.echo(f"field {name} added")
