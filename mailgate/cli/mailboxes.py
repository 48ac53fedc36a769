"""``mailgate mailboxes`` and ``mailgate imap``."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click

from mailgate.cli.context import echo_json, get_settings, open_app
from mailgate.imap.config import DEFAULT_PORTS, MailboxConfig
from mailgate.imap.connection import probe
from mailgate.imap.errors import MailboxFailure
from store.mailboxes import (
    AfterSpool,
    AuthMethod,
    Mailbox,
    MailboxError,
    MailboxSpec,
    Security,
    add_mailbox,
    find_mailbox,
    list_mailboxes,
    remove_mailbox,
)
from store.models import utcnow


@click.group()
def mailboxes() -> None:
    """Manage the IMAP mailboxes that feed queues.

    \b
    Examples:
      mailgate mailboxes add Support --host imap.example.org --username support@example.org \\
          --queue Support --after move --move-to Processed
      mailgate mailboxes add Gmail --host imap.gmail.com --username support@example.org \\
          --auth xoauth2 --token-command "oauth2l fetch --scope https://mail.google.com/" \\
          --queue Support
      mailgate mailboxes test Support
      mailgate mailboxes list
    """


@mailboxes.command("add")
@click.argument("name")
@click.option("--host", required=True, help="IMAP server name or address.")
@click.option("--port", type=int, help="IMAP port.  [default: 993 with tls, else 143]")
@click.option(
    "--security", type=click.Choice([item.value for item in Security]),
    default=Security.TLS.value, show_default=True,
    help="tls: implicit TLS; starttls: upgrade a plain connection; none: no encryption.",
)
@click.option(
    "--no-verify-certificate", is_flag=True,
    help="Accept any server certificate (for test servers only).",
)
@click.option(
    "--ca-file", type=click.Path(exists=True, dir_okay=False, resolve_path=True),
    help="CA certificates (PEM) that the server certificate is checked against.",
)
@click.option("--username", required=True, help="Login name, often the address.")
@click.option(
    "--auth", type=click.Choice([item.value for item in AuthMethod]),
    default=AuthMethod.PASSWORD.value, show_default=True, help="How to log in.",
)
@click.option("--password", help="Password for --auth password; asked for when missing.")
@click.option(
    "--token-command",
    help="For --auth xoauth2: a command that prints an OAuth2 access token; run before each login.",
)
@click.option(
    "--folder", "folders", multiple=True, default=("INBOX",), show_default=True,
    help="A folder to read; repeatable. IDLE watches the first one, the others are polled.",
)
@click.option("--queue", "queue_name", required=True, help="The queue that new mail goes to.")
@click.option(
    "--after", type=click.Choice([item.value for item in AfterSpool]),
    default=AfterSpool.SEEN.value, show_default=True,
    help="What to do with a mail on the server once it is spooled.",
)
@click.option("--move-to", help="Folder for --after move; created when missing.")
@click.option("--disabled", is_flag=True, help="Store the mailbox without reading it yet.")
def mailboxes_add(
    name: str, host: str, port: int | None, security: str, no_verify_certificate: bool,
    ca_file: str | None, username: str, auth: str, password: str | None,
    token_command: str | None, folders: tuple[str, ...], queue_name: str, after: str,
    move_to: str | None, disabled: bool,
) -> None:
    """Add mailbox NAME; a running 'serve' or 'imap' starts reading it within
    MAILGATE_IMAP_RELOAD_SECONDS."""
    app = open_app(must_exist=False)
    if auth == AuthMethod.PASSWORD.value and password is None:
        # Piped input has no echo to hide; getpass would warn about it.
        password = click.prompt(
            f"Password for {username}", hide_input=sys.stdin.isatty(), err=True
        )
    spec = MailboxSpec(
        name=name, host=host,
        port=port if port is not None else DEFAULT_PORTS[Security(security)],
        username=username, queue_name=queue_name, security=Security(security),
        verify_certificate=not no_verify_certificate, ca_file=ca_file,
        auth=AuthMethod(auth), password=password if auth == AuthMethod.PASSWORD.value else None,
        token_command=token_command, folders=folders, after=AfterSpool(after),
        move_to=move_to, enabled=not disabled,
    )
    try:
        mailbox = add_mailbox(app.sessions, spec)
    except MailboxError as error:
        raise click.ClickException(str(error)) from None
    if spec.security is Security.NONE:
        click.echo(
            "warning: --security none sends the login unencrypted; "
            "use it only for a server on this host",
            err=True,
        )
    click.echo(
        f"mailbox {mailbox.id} {mailbox.name} {username}@{host}:{spec.port} "
        f"-> queue {queue_name}, after: {after}"
    )


@mailboxes.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def mailboxes_list(as_json: bool) -> None:
    """List mailboxes with their state and last error."""
    rows = [_row(mailbox) for mailbox in list_mailboxes(open_app().sessions)]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        account = f"{row['username']}@{row['host']}:{row['port']}"
        after = row["after"] + (f":{row['move_to']}" if row["move_to"] else "")
        click.echo(
            f"{row['id']:>4}  {row['name']:<16} {account:<40} {','.join(row['folders']):<16} "
            f"{row['queue']:<16} {after:<16} {row['state']}"
        )
        if row["state"].startswith("failing") and row["last_error"]:
            click.echo(f"      last error: {row['last_error']}")


def _row(mailbox: Mailbox) -> dict[str, Any]:
    reader = mailbox.lease_owner if _is_future(mailbox.lease_until) else None
    return {
        "id": mailbox.id, "name": mailbox.name, "host": mailbox.host, "port": mailbox.port,
        "security": mailbox.security, "verify_certificate": mailbox.verify_certificate,
        "username": mailbox.username, "auth": mailbox.auth, "folders": mailbox.folders,
        "queue": mailbox.queue.name, "after": mailbox.after, "move_to": mailbox.move_to,
        "enabled": mailbox.enabled, "state": _state(mailbox), "reader": reader,
        "last_ok_at": mailbox.last_ok_at, "failing_since": mailbox.failing_since,
        "last_error": mailbox.last_error, "last_error_at": mailbox.last_error_at,
        "alerted_at": mailbox.alerted_at,
    }


def _state(mailbox: Mailbox) -> str:
    if not mailbox.enabled:
        return "disabled"
    if mailbox.failing_since is not None:
        return f"failing since {mailbox.failing_since:%Y-%m-%d %H:%M:%S} UTC"
    if mailbox.last_ok_at is not None:
        return f"ok, last read {mailbox.last_ok_at:%Y-%m-%d %H:%M:%S} UTC"
    return "not read yet"


def _is_future(moment: datetime | None) -> bool:
    return moment is not None and moment > utcnow()


@mailboxes.command("test")
@click.argument("name")
def mailboxes_test(name: str) -> None:
    """Log in to mailbox NAME, list its folders and the server's capabilities.

    Changes nothing on the server. Exits 1 when the login fails or a folder
    to read is missing.
    """
    app = open_app()
    mailbox = find_mailbox(app.sessions, name)
    if mailbox is None:
        raise click.ClickException(f"mailbox {name!r} not found; 'mailgate mailboxes list' lists them")
    config = MailboxConfig.from_row(mailbox)
    try:
        result = probe(config, app.settings.imap_timeout_seconds)
    except MailboxFailure as error:
        raise click.ClickException(f"mailbox {name}: {error}") from None
    click.echo(f"mailbox {name}: logged in to {config.server} ({config.auth.value})")
    click.echo(f"capabilities: {' '.join(result.capabilities)}")
    click.echo(f"folders: {', '.join(result.folders)}")
    missing_to_read = [folder for folder in result.missing_folders if folder in config.folders]
    if config.move_to and config.move_to in result.missing_folders:
        click.echo(f"folder {config.move_to} is missing; it is created when mail is first moved")
    if missing_to_read:
        raise click.ClickException(
            f"mailbox {name}: folders to read not found on the server: {', '.join(missing_to_read)}"
        )


@mailboxes.command("remove")
@click.argument("name")
def mailboxes_remove(name: str) -> None:
    """Remove mailbox NAME; its tickets and spooled mail stay."""
    if not remove_mailbox(open_app().sessions, name):
        raise click.ClickException(f"mailbox {name!r} not found; 'mailgate mailboxes list' lists them")
    click.echo(f"mailbox {name} removed")


@click.command()
@click.option("--threads", type=int, help="Worker threads without Redis.  [default: 4]")
def imap(threads: int | None) -> None:
    """Read the IMAP mailboxes in a process of their own.

    Set MAILGATE_IMAP_IN_SERVE=false for 'mailgate serve' beside it; if both
    run, each mailbox is still read by only one of them.
    """
    from mailgate.imap.service import run_imap

    run_imap(get_settings(worker_threads=threads))
