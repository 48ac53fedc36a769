"""``mailgate serve``: listeners, workers and the sweeper in one process."""

from __future__ import annotations

import asyncio
import logging
import signal

from mailgate.actors import Actors, declare_actors, make_broker, start_worker
from mailgate.http.server import start_http_server
from mailgate.app import App
from mailgate.imap.runner import ImapRunner
from mailgate.listeners.smtp import start_smtp_server
from mailgate.settings import Settings
from mailgate.sweeper import Sweeper

log = logging.getLogger(__name__)


def run_serve(settings: Settings) -> None:
    app = App.create(settings)  # serve creates the embedded database on first start
    broker = make_broker(settings)
    actors = declare_actors(app, broker)
    worker = start_worker(broker, settings.worker_threads)
    sweeper = Sweeper(app, actors, settings.sweep_interval_seconds)
    imap = (
        ImapRunner(app, actors.enqueue_spool, actors.enqueue_outbox)
        if settings.imap_in_serve else None
    )
    log.info("mailgate starting: %s", settings.summary())
    try:
        asyncio.run(_serve_until_stopped(app, actors, sweeper, imap))
    finally:
        if imap is not None:
            imap.stop()
        log.info("stopping workers")
        sweeper.stop()
        worker.stop(timeout=30_000)
        broker.close()
        app.close()
        log.info("mailgate stopped")


async def _serve_until_stopped(
    app: App, actors: Actors, sweeper: Sweeper, imap: ImapRunner | None
) -> None:
    settings = app.settings
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await start_smtp_server(
        app, settings.smtp_host, settings.smtp_port, actors.enqueue_spool
    )
    http_server, http_task = await start_http_server(app, settings.http_host, settings.http_port)
    sweeper.start()
    if imap is not None:
        imap.start()
    bound = ", ".join(f"{sock.getsockname()[0]}:{sock.getsockname()[1]}" for sock in server.sockets)
    log.info(
        "mailgate ready: accepting SMTP on %s, HTTP on %s:%d",
        bound, settings.http_host, settings.http_port,
    )
    await stop.wait()
    log.info("shutting down: no new SMTP or HTTP connections")
    server.close()
    http_server.should_exit = True
    await server.wait_closed()
    await http_task
