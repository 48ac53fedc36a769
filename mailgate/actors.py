"""Dramatiq brokers and the actors that process the spool and the outbox.

Actors take row ids, never ORM objects, and are safe to run twice because
Dramatiq delivers at least once: a row that is no longer pending is skipped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from sqlalchemy.exc import OperationalError

from mailgate import metrics
from mailgate.app import App
from mailgate.delivery import OutboxDelivery
from mailgate.pipeline import fail_spool_entry, process_spool_entry
from mailgate.redis_batch import enqueue_batch
from mailgate.settings import Settings
from store.models import SpoolState

log = logging.getLogger(__name__)

QUEUE_NAME = "mailgate"
# Retries for errors of the database itself (e.g. a restart); any other
# error is recorded on the spool row at once.
PROCESS_MAX_RETRIES = 5


def make_broker(settings: Settings, *, namespace: str | None = None) -> dramatiq.Broker:
    """Return Redis when ``MAILGATE_REDIS_URL`` is set, else the in-process broker.

    Redis keys start with ``namespace``, by default ``MAILGATE_REDIS_NAMESPACE``.
    """
    if settings.redis_url:
        return RedisBroker(
            url=settings.redis_url, namespace=namespace or settings.redis_namespace
        )
    broker = StubBroker()
    broker.emit_after("process_boot")
    return broker


@dataclass
class Actors:
    process_spool: dramatiq.Actor
    deliver_outbox: dramatiq.Actor

    def received(self, spool_id: int, source: str = "smtp") -> None:
        """Count a mail just spooled by a listener and enqueue its processing."""
        metrics.MAILS_RECEIVED.labels(source=source).inc()
        self.enqueue_spool(spool_id)

    def received_batch(self, spool_ids: list[int], source: str = "smtp") -> None:
        """Count mails just spooled together and enqueue their processing."""
        metrics.MAILS_RECEIVED.labels(source=source).inc(len(spool_ids))
        self.enqueue_spools(spool_ids)

    def enqueue_spool(self, spool_id: int) -> None:
        """Enqueue processing; on failure the sweeper enqueues it later."""
        try:
            self.process_spool.send(spool_id)
        except Exception:
            log.warning("could not enqueue spool id=%s; the sweeper will", spool_id, exc_info=True)

    def enqueue_spools(self, spool_ids: list[int]) -> None:
        """Enqueue the processing of several rows, in one round trip to
        Redis; on failure the sweeper enqueues them later."""
        try:
            enqueue_batch(self.process_spool, [(spool_id,) for spool_id in spool_ids])
        except Exception:
            log.warning(
                "could not enqueue spool ids=%s; the sweeper will",
                ",".join(map(str, spool_ids)), exc_info=True,
            )

    def enqueue_outbox(self, outbox_id: int, delay_seconds: float | None = None) -> None:
        delay = int(delay_seconds * 1000) if delay_seconds else None
        try:
            self.deliver_outbox.send_with_options(args=(outbox_id,), delay=delay)
        except Exception:
            log.warning("could not enqueue outbox id=%s; the sweeper will", outbox_id, exc_info=True)


def declare_actors(app: App, broker: dramatiq.Broker) -> Actors:
    """Create the actors on ``broker``, bound to ``app``."""
    actors: Actors
    delivery = OutboxDelivery(app)

    def process_spool(spool_id: int) -> None:
        started = time.perf_counter()
        try:
            outcome = process_spool_entry(app, spool_id)
        except OperationalError:
            log.warning("spool id=%s: database error, will retry", spool_id, exc_info=True)
            raise
        except Exception as error:
            log.exception("spool id=%s failed", spool_id)
            fail_spool_entry(app, spool_id, error)
            metrics.count_spool_outcome(SpoolState.FAILED, time.perf_counter() - started)
            return
        if outcome is None:
            return  # not pending: another worker or an earlier run did it
        metrics.count_spool_outcome(outcome.state, time.perf_counter() - started)
        for outbox_id in outcome.outbox_ids:
            actors.enqueue_outbox(outbox_id)

    def deliver_outbox(outbox_id: int) -> None:
        # The row and a few more that are due, so the lease and its
        # commit cover several rows; see mailgate.delivery.
        for row_id, result in delivery.deliver_due(outbox_id):
            if result.sent:
                metrics.OUTBOX_SENT.inc()
            elif result.dead:
                metrics.OUTBOX_DEAD.inc()
            if result.retry_in_seconds is not None:
                metrics.OUTBOX_RETRIED.inc()
                actors.enqueue_outbox(row_id, result.retry_in_seconds)
            elif result.released:
                actors.enqueue_outbox(row_id)

    actors: Actors = Actors(
        process_spool=dramatiq.actor(
            process_spool, broker=broker, actor_name="process_spool",
            queue_name=QUEUE_NAME, max_retries=PROCESS_MAX_RETRIES, min_backoff=1000,
        ),
        deliver_outbox=dramatiq.actor(
            deliver_outbox, broker=broker, actor_name="deliver_outbox",
            queue_name=QUEUE_NAME, max_retries=0,
        ),
    )
    app.enqueue_outbox = actors.enqueue_outbox
    return actors


def start_worker(broker: dramatiq.Broker, threads: int) -> dramatiq.Worker:
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    log.info("dramatiq worker started with %d threads on %s", threads, type(broker).__name__)
    return worker
