"""``mailgate worker``: a supervisor and its Dramatiq worker processes.

The supervisor starts ``processes`` worker processes (each with ``threads``
Dramatiq worker threads on Redis), runs the sweeper and serves ``/healthz``
and ``/metrics`` for all of them. It restarts a worker process that dies.
On SIGTERM or SIGINT it passes SIGTERM on to every worker process, which
finishes the messages in hand (Dramatiq's graceful stop, within
``MAILGATE_SHUTDOWN_GRACE_SECONDS``), and exits 0 when they have stopped.

Worker processes write their metrics in prometheus-client's multiprocess
mode to a directory the supervisor creates, so ``/metrics`` adds them up.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from mailgate.actors import declare_actors, make_broker, start_worker
from mailgate.app import App
from mailgate.http.server import start_http_server
from mailgate.metrics import MULTIPROCESS_DIR_VARIABLE
from mailgate.settings import Settings, load_settings
from mailgate.sweeper import Sweeper

log = logging.getLogger(__name__)

# A worker process that dies is started again, but not more often than this.
RESTART_INTERVAL_SECONDS = 5.0
# Time for a worker process to exit after its grace time, before SIGKILL.
EXIT_MARGIN_SECONDS = 10.0
MONITOR_INTERVAL_SECONDS = 0.5


def run_worker_pool(settings: Settings, overrides: dict[str, Any]) -> None:
    """Supervise ``settings.worker_processes`` worker processes until SIGTERM.

    ``overrides`` are the settings given on the command line, which each
    worker process loads again. Raises SchemaOutOfDate when the database
    needs ``mailgate db upgrade``.
    """
    app = App.create(settings)
    metrics_dir, created = _prepare_metrics_dir()
    broker = make_broker(settings)
    actors = declare_actors(app, broker)
    sweeper = Sweeper(app, actors, settings.sweep_interval_seconds)
    log.info(
        "mailgate worker starting: processes=%d threads=%d http=%s:%d metrics-dir=%s %s",
        settings.worker_processes, settings.worker_threads, settings.http_host,
        settings.http_port, metrics_dir, settings.summary(),
    )
    pool = WorkerPool(settings.worker_processes, overrides, metrics_dir)
    try:
        pool.start()
        sweeper.start()
        asyncio.run(_supervise(app, pool))
    finally:
        sweeper.stop()
        pool.stop(settings.shutdown_grace_seconds + EXIT_MARGIN_SECONDS)
        broker.close()
        app.close()
        if created:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        log.info("mailgate worker stopped")


def _prepare_metrics_dir() -> tuple[Path, bool]:
    """Return the multiprocess metrics directory, emptied, and whether we
    created it. An operator may name one in ``PROMETHEUS_MULTIPROC_DIR``."""
    named = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if named:
        directory = Path(named)
        directory.mkdir(parents=True, exist_ok=True)
        # Files of an earlier run would add its counts to this one's.
        for stale in directory.glob("*.db"):
            stale.unlink()
        return directory, False
    directory = Path(tempfile.mkdtemp(prefix="mailgate-metrics-"))
    os.environ[MULTIPROCESS_DIR_VARIABLE] = str(directory)
    return directory, True


async def _supervise(app: App, pool: WorkerPool) -> None:
    settings = app.settings
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    http_server, http_task = await start_http_server(
        app, settings.http_host, settings.http_port, api=False
    )
    log.info(
        "mailgate ready: %d worker processes, HTTP on %s:%d",
        len(pool.slots), settings.http_host, settings.http_port,
    )
    while not stop.is_set():
        pool.restart_dead()
        try:
            await asyncio.wait_for(stop.wait(), MONITOR_INTERVAL_SECONDS)
        except TimeoutError:
            pass
    log.info("shutting down: stopping %d worker processes", len(pool.slots))
    http_server.should_exit = True
    await http_task


@dataclass
class Slot:
    """One worker process and when it was last started."""

    index: int
    process: BaseProcess | None = None
    started_at: float = field(default=0.0)


class WorkerPool:
    """Worker processes started with ``spawn``, so none inherits the
    supervisor's threads, database connections or Redis sockets."""

    def __init__(self, processes: int, overrides: dict[str, Any], metrics_dir: Path) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.overrides = overrides
        self.metrics_dir = metrics_dir
        self.slots = [Slot(index) for index in range(1, processes + 1)]
        self._stopping = False

    def start(self) -> None:
        for slot in self.slots:
            self._start(slot)

    def _start(self, slot: Slot) -> None:
        process = self.context.Process(
            target=worker_process_main,
            args=(slot.index, len(self.slots), self.overrides, logging.getLogger().level),
            name=f"mailgate-worker-{slot.index}",
        )
        process.start()
        slot.process, slot.started_at = process, time.monotonic()
        log.info("worker process %d/%d started: pid=%s", slot.index, len(self.slots), process.pid)

    def restart_dead(self) -> None:
        """Start again each worker process that exited while we were running."""
        for slot in self.slots:
            process = slot.process
            if self._stopping or process is None or process.exitcode is None:
                continue
            if time.monotonic() - slot.started_at < RESTART_INTERVAL_SECONDS:
                continue
            log.error(
                "worker process %d/%d pid=%s exited with %s; starting it again",
                slot.index, len(self.slots), process.pid, process.exitcode,
            )
            self._forget(process)
            self._start(slot)

    def stop(self, timeout_seconds: float) -> None:
        """SIGTERM every worker process; SIGKILL those alive after the timeout."""
        self._stopping = True
        running = [slot.process for slot in self.slots if slot.process is not None]
        for process in running:
            if process.exitcode is None:
                process.terminate()
        deadline = time.monotonic() + timeout_seconds
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                log.error("worker process pid=%s did not stop in time; killing it", process.pid)
                process.kill()
                process.join(5)
            self._forget(process)

    def _forget(self, process: BaseProcess) -> None:
        from prometheus_client import multiprocess

        if process.pid is not None:
            multiprocess.mark_process_dead(process.pid, str(self.metrics_dir))


def worker_process_main(
    index: int, count: int, overrides: dict[str, Any], log_level: int
) -> None:
    """Run one worker process until SIGTERM or SIGINT (the spawn target)."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    supervisor = multiprocessing.parent_process()
    if supervisor is not None:
        threading.Thread(
            target=_stop_when_supervisor_exits, args=(supervisor, stop),
            name="supervisor-watch", daemon=True,
        ).start()
    from mailgate.cli import configure_logging

    configure_logging(log_level)
    settings = load_settings(**overrides)
    app = App.create(settings)
    broker = make_broker(settings)
    declare_actors(app, broker)
    log.info(
        "mailgate worker process %d/%d starting: pid=%d threads=%d %s",
        index, count, os.getpid(), settings.worker_threads, settings.summary(),
    )
    worker = start_worker(broker, settings.worker_threads)
    stop.wait()
    log.info(
        "worker process %d/%d stopping: finishing messages in hand, up to %.0fs",
        index, count, settings.shutdown_grace_seconds,
    )
    worker.stop(timeout=int(settings.shutdown_grace_seconds * 1000))
    broker.close()
    app.close()
    log.info("worker process %d/%d stopped", index, count)


def _stop_when_supervisor_exits(supervisor: BaseProcess, stop: threading.Event) -> None:
    """Set ``stop`` when the supervisor process exits.

    A supervisor killed with SIGKILL (by the OOM killer, say) cannot pass
    SIGTERM on, and its worker processes would go on taking messages with
    no one to restart or stop them. They stop as on SIGTERM instead.
    """
    multiprocessing.connection.wait([supervisor.sentinel])
    if not stop.is_set():
        log.error("supervisor pid=%s exited; stopping this worker process", supervisor.pid)
        stop.set()
