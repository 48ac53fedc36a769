"""``mailgate serve``, ``worker``, ``ingest`` and ``db``."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import click

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


@click.command()
@click.option("--smtp-host", help="Address to listen on for SMTP.  [default: 127.0.0.1]")
@click.option("--smtp-port", type=int, help="Port to listen on for SMTP.  [default: 2525]")
@click.option("--http-host", help="Address to listen on for HTTP.  [default: 127.0.0.1]")
@click.option("--http-port", type=int, help="Port to listen on for HTTP.  [default: 8025]")
@click.option("--threads", type=int, help="Worker threads.  [default: 4]")
def serve(
    smtp_host: str | None,
    smtp_port: int | None,
    http_host: str | None,
    http_port: int | None,
    threads: int | None,
) -> None:
    """Run the SMTP listener, the HTTP API, the workers and the sweeper in one process."""
    from mailgate.serve import run_serve

    run_serve(get_settings(
        smtp_host=smtp_host, smtp_port=smtp_port, http_host=http_host, http_port=http_port,
        worker_threads=threads,
    ))


@click.command()
@click.option("--threads", type=int, help="Worker threads.  [default: 4]")
def worker(threads: int | None) -> None:
    """Run Dramatiq workers and the sweeper on Redis (MAILGATE_REDIS_URL)."""
    from mailgate.actors import declare_actors, make_broker, start_worker
    from mailgate.sweeper import Sweeper

    settings = get_settings(worker_threads=threads)
    if not settings.redis_url:
        raise click.ClickException(
            "mailgate worker needs MAILGATE_REDIS_URL (e.g. redis://127.0.0.1:6379/0); "
            "without Redis, 'mailgate serve' runs the workers in-process"
        )
    app = open_app(settings, must_exist=False)
    broker = make_broker(settings)
    actors = declare_actors(app, broker)
    running = start_worker(broker, settings.worker_threads)
    sweeper = Sweeper(app, actors, settings.sweep_interval_seconds)
    sweeper.start()
    log.info("mailgate worker ready: %s", settings.summary())
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    log.info("stopping worker")
    sweeper.stop()
    running.stop(timeout=30_000)
    broker.close()
    log.info("mailgate worker stopped")


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
    click.echo(f"queued as {spool_id}")


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
