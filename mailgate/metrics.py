"""Prometheus metrics of mail intake, processing and delivery.

Counters and the histogram are process-wide (prometheus-client's default
registry). ``mailgate worker`` runs its worker processes in
prometheus-client's multiprocess mode: it sets ``PROMETHEUS_MULTIPROC_DIR``
before it starts them, and its ``/metrics`` adds up their values. The spool
and outbox backlogs are counted in the database at each scrape, so every
process reports the same backlog.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from store.models import OutboxEntry, OutboxState, SpoolEntry, SpoolState

log = logging.getLogger(__name__)

# The variable prometheus-client reads, at import, to choose multiprocess mode.
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

MAILS_RECEIVED = Counter(
    "mailgate_mails_received",
    "Mails written to the spool and acknowledged, by source (smtp, ingest, imap).",
    ["source"],
)
MAILS_PROCESSED = Counter(
    "mailgate_mails_processed",
    "Spooled mails processed, by final spool state (processed, duplicate, ignored).",
    ["state"],
)
MAILS_FAILED = Counter(
    "mailgate_mails_failed",
    "Spooled mails whose processing failed; 'mailgate spool retry' tries again.",
)
MAILS_HELD = Counter(
    "mailgate_mails_held",
    "Spooled mails rejected (e.g. a forged reply token) and held in the spool "
    "for an operator.",
)
OUTBOX_SENT = Counter("mailgate_outbox_sent", "Outbox mails sent.")
OUTBOX_RETRIED = Counter(
    "mailgate_outbox_retried", "Outbox sends that failed temporarily and were rescheduled."
)
OUTBOX_DEAD = Counter(
    "mailgate_outbox_dead", "Outbox mails given up: a permanent error or too many attempts."
)
PROCESSING_SECONDS = Histogram(
    "mailgate_mail_processing_seconds",
    "Time a worker spent processing one spooled mail, in seconds.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

SPOOL_STATES_COUNTED_AS_PROCESSED = (
    SpoolState.PROCESSED,
    SpoolState.DUPLICATE,
    SpoolState.IGNORED,
)


def count_spool_outcome(state: SpoolState, seconds: float) -> None:
    """Count one spool row that reached ``state`` after ``seconds`` of work."""
    PROCESSING_SECONDS.observe(seconds)
    if state in SPOOL_STATES_COUNTED_AS_PROCESSED:
        MAILS_PROCESSED.labels(state=state.value).inc()
    elif state == SpoolState.FAILED:
        MAILS_FAILED.inc()
    elif state == SpoolState.REJECTED:
        MAILS_HELD.inc()


class BacklogCollector:
    """Gauges of pending spool and outbox rows, counted at each scrape."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        try:
            with self.sessions() as session:
                spool = session.scalar(
                    select(func.count(SpoolEntry.id)).where(
                        SpoolEntry.state == SpoolState.PENDING.value
                    )
                )
                outbox = session.scalar(
                    select(func.count(OutboxEntry.id)).where(
                        OutboxEntry.state == OutboxState.PENDING.value
                    )
                )
        except Exception as error:
            # A scrape without the backlog is better than no scrape.
            log.warning("metrics: cannot count the backlog: %s", error)
            return
        yield GaugeMetricFamily(
            "mailgate_spool_backlog", "Spooled mails waiting to be processed.", value=spool or 0
        )
        yield GaugeMetricFamily(
            "mailgate_outbox_backlog", "Outbox mails waiting to be sent.", value=outbox or 0
        )


def scrape_registry(sessions: sessionmaker[Session]) -> CollectorRegistry:
    """Return a registry with this process's metrics (or, in multiprocess
    mode, those of every process writing to the directory) and the backlog."""
    registry = CollectorRegistry()
    directory = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if directory:
        MultiProcessCollector(registry, path=directory)
    else:
        registry.register(REGISTRY)
    registry.register(BacklogCollector(sessions))
    return registry
