"""Re-enqueue spool and outbox rows left pending, so a lost broker message
delays work but never drops it."""

from __future__ import annotations

import logging
import threading

from mailgate.actors import Actors
from mailgate.app import App
from store.outbox import due_outbox_ids
from store.spool import pending_spool_ids, stale_cutoff

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(self, app: App, actors: Actors, interval_seconds: float) -> None:
        self.app = app
        self.actors = actors
        self.interval_seconds = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mailgate-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; a no-op when ``serve`` failed before starting it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def sweep(self, *, everything: bool = False) -> tuple[int, int]:
        """Enqueue pending rows; ``everything`` includes rows just received."""
        cutoff = None if everything else stale_cutoff(self.interval_seconds)
        spool_ids = pending_spool_ids(self.app.sessions, received_before=cutoff)
        for spool_id in spool_ids:
            self.actors.enqueue_spool(spool_id)
        outbox_ids = due_outbox_ids(self.app.sessions)
        for outbox_id in outbox_ids:
            self.actors.enqueue_outbox(outbox_id)
        if spool_ids or outbox_ids:
            log.info("sweeper enqueued %d spool and %d outbox rows", len(spool_ids), len(outbox_ids))
        return len(spool_ids), len(outbox_ids)

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                self.sweep(everything=first)
                first = False
            except Exception:
                log.exception("sweep failed; next try in %.0fs", self.interval_seconds)
            self._stop.wait(self.interval_seconds)
