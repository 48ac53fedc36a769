"""``mailgate queues`` and ``mailgate users``."""

from __future__ import annotations

import click

from mailgate.cli.context import echo_json, open_app
from mailgate.passwords import PasswordError, hash_password
from store.directory import (
    DirectoryError,
    add_queue,
    add_user,
    issue_api_token,
    list_queues,
    list_users,
    set_password_hash,
)
from store.models import Role


@click.group()
def queues() -> None:
    """Manage queues and the addresses they serve."""


@queues.command("add")
@click.argument("name")
@click.option("--address", required=True, help="The address customers write to.")
@click.option("--exist-ok", is_flag=True, help="Succeed when the queue exists already.")
@click.option("--as", "username", help="Act as this user, who needs admin.queues; "
              "without it the command runs as the operator, as when setting up.")
def queues_add(name: str, address: str, exist_ok: bool, username: str | None) -> None:
    """Add a queue NAME that takes mail for ADDRESS."""
    if username:
        from mailgate.cli.ticket_ops import acting
        from store import admin

        with acting(username) as (session, actor):
            queue = admin.add_queue(session, actor, name, address)
            click.echo(f"queue {queue.id} {queue.name} <{queue.address}>")
        return
    app = open_app(must_exist=False)
    try:
        queue = add_queue(app.sessions, name, address)
    except DirectoryError as error:
        if exist_ok and any(queue.name == name for queue in list_queues(app.sessions)):
            click.echo(f"queue {name} exists already")
            return
        raise click.ClickException(str(error)) from None
    click.echo(f"queue {queue.id} {queue.name} <{queue.address}>")


@queues.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def queues_list(as_json: bool) -> None:
    """List queues with their agents."""
    rows = [
        {"id": queue.id, "name": queue.name, "address": queue.address,
         "agents": [agent.username for agent in queue.agents]}
        for queue in list_queues(open_app().sessions)
    ]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['id']:>4}  {row['name']:<20} {row['address']:<32} {', '.join(row['agents'])}")


@click.group()
def users() -> None:
    """Manage agents, managers and admins."""


@users.command("add")
@click.argument("username")
@click.option("--email", required=True, help="The address the user reads mail at.")
@click.option(
    "--role", type=click.Choice([role.value for role in Role]), default=Role.FRONTLINE.value,
    show_default=True, help="What the user may do.",
)
@click.option("--queue", "queue_names", multiple=True, help="A queue the user works on; repeatable.")
@click.option("--name", default="", help="Display name.")
@click.option("--exist-ok", is_flag=True, help="Succeed when the user exists already.")
def users_add(
    username: str, email: str, role: str, queue_names: tuple[str, ...], name: str, exist_ok: bool
) -> None:
    """Add user USERNAME."""
    app = open_app(must_exist=False)
    try:
        user = add_user(app.sessions, username, email, Role(role), list(queue_names), name)
    except DirectoryError as error:
        if exist_ok and any(user.username == username for user in list_users(app.sessions)):
            click.echo(f"user {username} exists already")
            return
        raise click.ClickException(str(error)) from None
    click.echo(f"user {user.id} {user.username} <{user.email}> {user.role}")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def users_list(as_json: bool) -> None:
    """List users with their role and queues."""
    rows = [
        {"id": user.id, "username": user.username, "email": user.email, "role": user.role,
         "queues": [queue.name for queue in user.queues]}
        for user in list_users(open_app().sessions)
    ]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(
            f"{row['id']:>4}  {row['username']:<16} {row['email']:<32} {row['role']:<10} "
            f"{', '.join(row['queues'])}"
        )


@users.command("password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("--remove", is_flag=True, help="Remove the password, so the user cannot sign in.")
def users_password(username: str, password_stdin: bool, remove: bool) -> None:
    """Set the web sign-in password of USERNAME (asked for twice)."""
    password_hash = None
    if not remove:
        if password_stdin:
            password = click.get_text_stream("stdin").readline().rstrip("\r\n")
        else:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        try:
            password_hash = hash_password(password)
        except PasswordError as error:
            raise click.ClickException(str(error)) from None
    try:
        set_password_hash(open_app().sessions, username, password_hash)
    except DirectoryError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"password {'removed' if remove else 'set'} for {username}")


@users.command("token")
@click.argument("username")
def users_token(username: str) -> None:
    """Print a new HTTP API token for USERNAME; the old one stops working."""
    try:
        token = issue_api_token(open_app().sessions, username)
    except DirectoryError as error:
        raise click.ClickException(str(error)) from None
    click.echo(token)
