"""``mailgate serve``, ``worker``, ``ingest`` and ``db``."""

from __future__ import annotations

import gc
import logging
import sys
from pathlib import Path

import click
from sqlalchemy.exc import OperationalError

from mailgate.app import App, SchemaOutOfDate
from mailgate.cli.context import get_settings, open_app
from mailgate.errors import MessageRejected, SpoolUnavailable
from mailgate.listeners.pipe import (
    EX_DATAERR,
    EX_NOINPUT,
    EX_TEMPFAIL,
    read_message,
)
from mailgate.listeners.pipe import ingest as ingest_message

log = logging.getLogger(__name__)


ROLE_HELP = (
    "Roles this process runs, comma-separated or repeated: smtp, imap, http, "
    "worker, or all.  [default: all]"
)


@click.command()
@click.option("--role", "roles", multiple=True, metavar="ROLES", help=ROLE_HELP)
@click.option("--smtp-host", help="Address to listen on for SMTP.  [default: 127.0.0.1]")
@click.option("--smtp-port", type=int, help="Port to listen on for SMTP.  [default: 2525]")
@click.option("--http-host", help="Address to listen on for HTTP.  [default: 127.0.0.1]")
@click.option("--http-port", type=int, help="Port to listen on for HTTP.  [default: 8025]")
@click.option("--threads", type=int, help="Worker threads.  [default: 4]")
def serve(
    roles: tuple[str, ...],
    smtp_host: str | None,
    smtp_port: int | None,
    http_host: str | None,
    http_port: int | None,
    threads: int | None,
) -> None:
    """Run the SMTP listener, the HTTP API, the workers and the sweeper.

    \b
    Every role runs in this one process unless --role names some: e.g.
    --role smtp,http on listener hosts, with 'mailgate worker' processes
    (on MAILGATE_REDIS_URL) doing the work. Every process serves /healthz
    and /metrics on its HTTP port; the API needs the http role.
    """
    from mailgate.serve import RoleError, parse_roles, run_serve

    settings = get_settings(
        smtp_host=smtp_host, smtp_port=smtp_port, http_host=http_host, http_port=http_port,
        worker_threads=threads,
    )
    try:
        run_serve(settings, parse_roles(roles))
    except RoleError as error:
        raise click.UsageError(str(error)) from None
    except (SchemaOutOfDate, OperationalError) as error:
        raise _startup_error(error) from None
    except OSError as error:
        # Most often a port that another process listens on already.
        raise click.ClickException(f"mailgate serve failed: {error}") from None
    # The process exits next, and its objects go with it. Frozen, they are
    # not scanned by the garbage collection at interpreter shutdown, which
    # took about 0.5 s of CPU and 1 s of wall time on 2 busy cores.
    gc.freeze()


@click.command()
@click.option("--processes", type=int, help="Worker processes.  [default: 1]")
@click.option("--threads", type=int, help="Worker threads per process.  [default: 4]")
@click.option("--http-host", help="Address to serve /healthz and /metrics on.  [default: 127.0.0.1]")
@click.option("--http-port", type=int, help="Port to serve /healthz and /metrics on.  [default: 8025]")
def worker(
    processes: int | None, threads: int | None, http_host: str | None, http_port: int | None
) -> None:
    """Run Dramatiq worker processes and the sweeper on Redis (MAILGATE_REDIS_URL).

    \b
    This process supervises the worker processes: it restarts one that
    dies, serves /healthz and /metrics for all of them, and on SIGTERM lets
    each finish the messages in hand before it exits.
    """
    from mailgate.workers import run_worker_pool

    overrides = {
        "worker_processes": processes, "worker_threads": threads,
        "http_host": http_host, "http_port": http_port,
    }
    settings = get_settings(**overrides)
    if not settings.redis_url:
        raise click.ClickException(
            "mailgate worker needs MAILGATE_REDIS_URL (e.g. redis://127.0.0.1:6379/0); "
            "without Redis, 'mailgate serve' runs the workers in-process"
        )
    try:
        run_worker_pool(settings, overrides)
    except (SchemaOutOfDate, OperationalError) as error:
        raise _startup_error(error) from None


def _startup_error(error: Exception) -> click.ClickException:
    if isinstance(error, OperationalError):
        return click.ClickException(f"database unavailable: {error.orig or error}")
    return click.ClickException(str(error))


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--sender", "-f", default="", help="Envelope sender (MAIL FROM), e.g. Postfix's ${sender}.")
@click.option(
    "--recipient", "-r", "recipients", multiple=True,
    help="Envelope recipient (RCPT TO), e.g. Postfix's ${recipient}; repeatable.",
)
def ingest(file: Path | None, sender: str, recipients: tuple[str, ...]) -> None:
    """Spool one mail from FILE, or from standard input without FILE.

    \b
    Exit status: 0 spooled, 65 a mail that can never be accepted (empty,
    too large, not a mail), 75 a temporary failure (retry later).
    """
    try:
        settings = get_settings()
        app = open_app(settings)
    except click.ClickException as error:
        error.show()
        raise click.exceptions.Exit(EX_TEMPFAIL) from None
    try:
        if file is None:
            raw = read_message(sys.stdin.buffer, settings.max_message_bytes)
        else:
            try:
                stream = file.open("rb")
            except OSError as error:
                click.echo(f"mailgate ingest: cannot read {file}: {error.strerror}", err=True)
                raise click.exceptions.Exit(EX_NOINPUT) from None
            with stream:
                raw = read_message(stream, settings.max_message_bytes)
        spool_id = ingest_message(app, raw, sender, recipients)
    except MessageRejected as error:
        click.echo(f"mailgate ingest: rejected: {error}", err=True)
        raise click.exceptions.Exit(EX_DATAERR) from None
    except (SpoolUnavailable, OSError) as error:
        click.echo(f"mailgate ingest: temporary failure: {error}", err=True)
        raise click.exceptions.Exit(EX_TEMPFAIL) from None
    _enqueue_ingested(app, spool_id)
    click.echo(f"queued as {spool_id}")


def _enqueue_ingested(app: App, spool_id: int) -> None:
    """Hand the spooled mail to the workers on Redis at once; without Redis,
    or when Redis fails, a sweeper of 'mailgate serve' or 'mailgate worker'
    picks the row up within MAILGATE_SWEEP_INTERVAL_SECONDS."""
    if not app.settings.redis_url:
        return
    from mailgate.actors import declare_actors, make_broker

    broker = make_broker(app.settings)
    try:
        declare_actors(app, broker).received(spool_id, source="ingest")
    finally:
        broker.close()


@click.group()
def db() -> None:
    """Manage the database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Upgrade the database schema to this version of mailgate."""
    from store import migrate
    from store.db import make_engine

    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    migrate.upgrade(engine)
    click.echo(f"database schema at {migrate.current_revision(engine)}")


@db.command("current")
def db_current() -> None:
    """Print the schema revision of the database and of this code."""
    from store import migrate
    from store.db import make_engine

    engine = make_engine(get_settings().resolved_database_url)
    click.echo(f"database: {migrate.current_revision(engine)}  code: {migrate.head_revision()}")
