"""``mailgate serve``: the listeners, the HTTP API and the workers.

One process runs the roles it is given. The roles are ``smtp`` (the SMTP
listener), ``imap`` (the IMAP poller), ``http`` (the JSON API) and
``worker`` (Dramatiq worker threads and the sweeper). ``all``, the default,
is every role. Every process also
serves ``/healthz`` and ``/metrics`` on its HTTP port. On SIGTERM or SIGINT
it stops accepting mail, lets SMTP sessions in DATA and busy workers finish
within ``MAILGATE_SHUTDOWN_GRACE_SECONDS``, and exits 0.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import Iterable

import dramatiq

from mailgate.actors import Actors, declare_actors, make_broker, start_worker
from mailgate.app import App
from mailgate.http.server import start_http_server
from mailgate.imap.runner import ImapRunner
from mailgate.listeners.smtp import SMTPListener, start_smtp_server
from mailgate.settings import Settings
from mailgate.sweeper import Sweeper

log = logging.getLogger(__name__)

ROLES = ("smtp", "imap", "http", "worker")
LISTENER_ROLES = frozenset({"smtp", "imap"})
IMAP_POLLER_AVAILABLE = True


class RoleError(ValueError):
    """Raised for roles that do not exist or cannot run with these settings."""


def parse_roles(values: Iterable[str]) -> frozenset[str]:
    """Return the roles named in ``values``, each "all" or a comma-separated list."""
    roles: set[str] = set()
    for value in values:
        for name in value.split(","):
            name = name.strip().lower()
            if name == "all":
                roles.update(all_roles())
            elif name in ROLES:
                roles.add(name)
            elif name:
                raise RoleError(
                    f"unknown role {name!r}; choose from {', '.join(ROLES)} or all, "
                    "e.g. --role smtp,http"
                )
    return frozenset(roles or all_roles())


def all_roles() -> frozenset[str]:
    """Return the roles of "all": imap only when this version has the poller."""
    return frozenset(role for role in ROLES if role != "imap" or IMAP_POLLER_AVAILABLE)


def check_roles(roles: frozenset[str], settings: Settings) -> None:
    """Raise RoleError when the roles cannot work together on these settings."""
    if roles == {"imap"} and not IMAP_POLLER_AVAILABLE:
        raise RoleError(
            "the imap role needs the IMAP poller, which this version of mailgate "
            "does not include; run --role smtp or use 'mailgate ingest'"
        )
    if settings.is_embedded and roles & LISTENER_ROLES and "worker" not in roles:
        raise RoleError(
            "roles without 'worker' need MAILGATE_REDIS_URL "
            "(e.g. redis://127.0.0.1:6379/0), so that worker processes receive "
            "the mail; with the in-process broker add the worker role: --role smtp,worker"
        )


def run_serve(settings: Settings, roles: frozenset[str] | None = None) -> None:
    """Run ``roles`` until SIGTERM or SIGINT.

    Raises RoleError for roles that cannot run, and SchemaOutOfDate when the
    database needs ``mailgate db upgrade``.
    """
    roles = roles or all_roles()
    check_roles(roles, settings)
    app = App.create(settings)
    log.info(
        "mailgate serve starting: roles=%s smtp=%s:%d http=%s:%d threads=%d %s",
        ",".join(role for role in ROLES if role in roles), settings.smtp_host,
        settings.smtp_port, settings.http_host, settings.http_port, settings.worker_threads,
        settings.summary(),
    )
    broker = make_broker(settings)
    actors = declare_actors(app, broker)
    worker: dramatiq.Worker | None = None
    sweeper: Sweeper | None = None
    if "worker" in roles:
        worker = start_worker(broker, settings.worker_threads)
        sweeper = Sweeper(app, actors, settings.sweep_interval_seconds)
    imap = None
    if "imap" in roles and settings.imap_in_serve:
        imap = ImapRunner(
            app, functools.partial(actors.received, source="imap"), actors.enqueue_outbox
        )
    try:
        asyncio.run(_serve_until_stopped(app, actors, sweeper, roles, imap))
    finally:
        if imap is not None:
            imap.stop()
        if sweeper is not None:
            sweeper.stop()
        if worker is not None:
            log.info(
                "stopping workers: finishing messages in hand, up to %.0fs",
                settings.shutdown_grace_seconds,
            )
            worker.stop(timeout=int(settings.shutdown_grace_seconds * 1000))
        broker.close()
        app.close()
        log.info("mailgate stopped")


async def _serve_until_stopped(
    app: App, actors: Actors, sweeper: Sweeper | None, roles: frozenset[str],
    imap: ImapRunner | None,
) -> None:
    settings = app.settings
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    listener: SMTPListener | None = None
    if "smtp" in roles:
        listener = await start_smtp_server(
            app, settings.smtp_host, settings.smtp_port,
            functools.partial(actors.received_batch, source="smtp"),
        )
    if imap is not None:
        imap.start()
    http_server, http_task = await start_http_server(
        app, settings.http_host, settings.http_port, api="http" in roles
    )
    if sweeper is not None:
        sweeper.start()
    log.info("mailgate ready: %s", _describe_ready(listener, settings))
    await stop.wait()
    log.info("shutting down: no new SMTP connections")
    if listener is not None:
        await listener.shutdown(settings.shutdown_grace_seconds)
    http_server.should_exit = True
    await http_task


def _describe_ready(listener: SMTPListener | None, settings: Settings) -> str:
    http = f"HTTP on {settings.http_host}:{settings.http_port}"
    if listener is None:
        return f"not accepting SMTP, {http}"
    bound = ", ".join(
        f"{sock.getsockname()[0]}:{sock.getsockname()[1]}" for sock in listener.sockets
    )
    return f"accepting SMTP on {bound}, {http}"
