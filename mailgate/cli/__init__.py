"""The ``mailgate`` command line."""

from __future__ import annotations

import logging
import sys

import click

from mailgate.cli.admin import queues, users
from mailgate.cli.alerts import alerts, tray
from mailgate.cli.context import CONTEXT_SETTINGS
from mailgate.cli.lists import fields, rootcauses, stages
from mailgate.cli.mailboxes import imap, mailboxes
from mailgate.cli.records import outbox, spool, tickets
from mailgate.cli.rules import rules
from mailgate.cli.run import db, ingest, serve, worker
from mailgate.cli.suppressions import suppressions

# The process id tells apart the lines of a supervisor and its workers.
LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


@click.group(context_settings=CONTEXT_SETTINGS)
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages too.")
def cli(verbose: bool) -> None:
    """mailgate: an email gateway for a ticket system.

    \b
    Examples:
      mailgate queues add Support --address support@example.org
      mailgate users add ana --email ana@example.org --role frontline --queue Support
      mailgate serve --smtp-port 2525
      mailgate serve --role smtp,http
      mailgate worker --processes 4 --threads 4
      mailgate ingest < message.eml
      mailgate tickets show 1 --json
    """
    configure_logging(logging.DEBUG if verbose else logging.INFO)


def configure_logging(level: int) -> None:
    """Log to stderr at ``level``; also used by worker processes."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    if level > logging.DEBUG:
        # Alembic reports every schema check at INFO (store.migrate logs the
        # upgrades), aiosmtpd every SMTP command, and mail-parser warns about
        # each MIME part it does not use, which our parser handles itself.
        logging.getLogger("alembic").setLevel(logging.WARNING)
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        logging.getLogger("mailparser").setLevel(logging.ERROR)


for command in (
    serve, worker, ingest, db, queues, users, tickets, spool, outbox, stages, rootcauses, fields,
    alerts, tray, rules, mailboxes, imap, suppressions,
):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    try:
        # Without standalone mode click returns the code of an Exit raised
        # by a command, instead of calling sys.exit.
        result = cli.main(args=argv, prog_name="mailgate", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 1
    return result if isinstance(result, int) else 0
