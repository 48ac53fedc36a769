"""``mailgate serve``: listeners, workers and the sweeper in one process."""

from __future__ import annotations

import asyncio
import logging
import signal

from mailgate.actors import declare_actors, make_broker, start_worker
from mailgate.app import App
from mailgate.listeners.smtp import start_smtp_server
from mailgate.settings import Settings
from mailgate.sweeper import Sweeper

log = logging.getLogger(__name__)


def run_serve(settings: Settings, *, smtp_host: str, smtp_port: int) -> None:
    app = App.create(settings)
    broker = make_broker(settings)
    actors = declare_actors(app, broker)
    worker = start_worker(broker, settings.worker_threads)
    sweeper = Sweeper(app, actors, settings.sweep_interval_seconds)
    log.info("mailgate starting: %s", settings.summary())
    try:
        asyncio.run(_serve_until_stopped(app, actors, sweeper, smtp_host, smtp_port))
    finally:
        log.info("stopping workers")
        sweeper.stop()
        worker.stop(timeout=30_000)
        broker.close()
        app.close()
        log.info("mailgate stopped")


async def _serve_until_stopped(
    app: App, actors, sweeper: Sweeper, host: str, port: int
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await start_smtp_server(app, host, port, actors.enqueue_spool)
    sweeper.start()
    bound = ", ".join(f"{sock.getsockname()[0]}:{sock.getsockname()[1]}" for sock in server.sockets)
    log.info("mailgate ready: accepting SMTP on %s", bound)
    await stop.wait()
    log.info("shutting down: no new SMTP connections")
    server.close()
    await server.wait_closed()
