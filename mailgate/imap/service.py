"""``mailgate imap``: read the IMAP mailboxes in a process of their own."""

from __future__ import annotations

import logging
import signal
import threading

from mailgate.actors import declare_actors, make_broker, start_worker
from mailgate.app import App
from mailgate.imap.runner import ImapRunner
from mailgate.settings import Settings
from mailgate.sweeper import Sweeper

log = logging.getLogger(__name__)


def run_imap(settings: Settings) -> None:
    """Read every enabled mailbox until SIGTERM or SIGINT.

    With Redis the spooled mail goes to ``mailgate worker`` processes;
    without it this process runs workers and a sweeper of its own, as
    ``serve`` does.
    """
    app = App.create(settings)
    broker = make_broker(settings)
    actors = declare_actors(app, broker)
    worker = sweeper = None
    if settings.is_embedded:
        worker = start_worker(broker, settings.worker_threads)
        sweeper = Sweeper(app, actors, settings.sweep_interval_seconds)
        sweeper.start()
    runner = ImapRunner(app, actors.enqueue_spool, actors.enqueue_outbox)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        runner.start()
        log.info("mailgate imap ready: reading %d mailboxes; %s",
                 len(runner.readers), settings.summary())
        stop.wait()
        log.info("stopping IMAP reading")
    finally:
        runner.stop()
        if sweeper is not None:
            sweeper.stop()
        if worker is not None:
            worker.stop(timeout=30_000)
        broker.close()
        app.close()
        log.info("mailgate imap stopped")
