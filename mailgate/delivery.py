"""Send one outbox row, at most once, and record the result on the ticket."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import update

from mailgate.app import App
from mailgate.errors import PermanentDeliveryError, TemporaryDeliveryError
from store.history import SYSTEM_ACTOR, record_history
from store.models import OutboxEntry, OutboxState, utcnow
from store.outbox import lock_outbox_entry

log = logging.getLogger(__name__)

# While one worker sends a row, the sweeper leaves it alone for this long.
SEND_LEASE = timedelta(minutes=5)
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 3600.0


@dataclass(frozen=True)
class DeliveryResult:
    sent: bool
    retry_in_seconds: float | None = None
    dead: bool = False


def _claim(app: App, outbox_id: int) -> OutboxEntry | None:
    """Take a lease on a due pending row; None if another worker has it or it is done."""
    now = utcnow()
    with app.sessions.begin() as session:
        result = session.execute(
            update(OutboxEntry)
            .where(
                OutboxEntry.id == outbox_id,
                OutboxEntry.state == OutboxState.PENDING.value,
                OutboxEntry.next_attempt_at <= now,
            )
            .values(next_attempt_at=now + SEND_LEASE, attempts=OutboxEntry.attempts + 1)
        )
        if result.rowcount != 1:
            return None
        return session.get(OutboxEntry, outbox_id)


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with full jitter for attempt ``attempts + 1``."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return random.uniform(ceiling / 2, ceiling)


def deliver_outbox_entry(app: App, outbox_id: int) -> DeliveryResult:
    entry = _claim(app, outbox_id)
    if entry is None:
        return DeliveryResult(sent=False)
    try:
        where = app.sender.send(entry.id, entry.mail_from, entry.rcpt_to, entry.raw)
    except TemporaryDeliveryError as error:
        if entry.attempts >= app.settings.outbox_max_attempts:
            _finish(app, entry, OutboxState.DEAD, f"{error} (after {entry.attempts} attempts)")
            return DeliveryResult(sent=False, dead=True)
        delay = backoff_seconds(entry.attempts)
        _reschedule(app, entry, str(error), delay)
        return DeliveryResult(sent=False, retry_in_seconds=delay)
    except PermanentDeliveryError as error:
        _finish(app, entry, OutboxState.DEAD, str(error))
        return DeliveryResult(sent=False, dead=True)
    _finish(app, entry, OutboxState.SENT, None, where=where)
    return DeliveryResult(sent=True)


def _reschedule(app: App, entry: OutboxEntry, error: str, delay: float) -> None:
    log.warning(
        "outbox id=%s to %s attempt %d failed, retry in %.0fs: %s",
        entry.id, entry.rcpt_to, entry.attempts, delay, error,
    )
    with app.sessions.begin() as session:
        row = lock_outbox_entry(session, entry.id)
        if row is None or row.state != OutboxState.PENDING.value:
            return
        row.last_error = error
        row.next_attempt_at = utcnow() + timedelta(seconds=delay)


def _finish(
    app: App, entry: OutboxEntry, state: OutboxState, error: str | None, where: str = ""
) -> None:
    with app.sessions.begin() as session:
        row = lock_outbox_entry(session, entry.id)
        if row is None or row.state != OutboxState.PENDING.value:
            return
        row.state = state.value
        row.last_error = error
        if state == OutboxState.SENT:
            row.sent_at = utcnow()
        if row.ticket_id is not None:
            record_history(
                session, row.ticket_id, actor=SYSTEM_ACTOR, channel="worker",
                action=f"{row.kind}_{'sent' if state == OutboxState.SENT else 'failed'}",
                outbox_id=row.id, rcpt_to=row.rcpt_to, error=error,
            )
    if state == OutboxState.SENT:
        log.info("outbox id=%s %s to %s sent: %s", entry.id, entry.kind, entry.rcpt_to, where)
    else:
        log.error("outbox id=%s %s to %s is dead: %s", entry.id, entry.kind, entry.rcpt_to, error)
