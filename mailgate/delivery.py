"""Send one outbox row, at most once, and record the result on the ticket."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import update

from mailgate.app import App
from mailgate.errors import PermanentDeliveryError, TemporaryDeliveryError
from mailgate.outbound.push import PushSender

# The outbox kind of push alerts; every other kind is mail.
KIND_PUSH = "push"
VERP_LOCAL_PART = "bounces"
from store.history import SYSTEM_ACTOR, record_history
from store.models import OutboxEntry, OutboxState, utcnow
from store.outbox import lock_outbox_entry

log = logging.getLogger(__name__)

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
            .values(
                next_attempt_at=now + timedelta(seconds=app.settings.outbox_send_lease_seconds),
                attempts=OutboxEntry.attempts + 1,
            )
        )
        if result.rowcount != 1:
            return None
        return session.get(OutboxEntry, outbox_id)


def verp_address(outbox_id: int, domain: str) -> str:
    """Return the return path of a row, ``bounces+<id>@domain``, so a bounce
    names the row it is about. Rows with the null return path keep it."""
    return f"{VERP_LOCAL_PART}+{outbox_id}@{domain}"


def verp_outbox_id(address: str, domain: str) -> int | None:
    local, _, address_domain = address.strip("<>").lower().rpartition("@")
    base, _, tag = local.partition("+")
    if base != VERP_LOCAL_PART or address_domain != domain or not tag.isdigit():
        return None
    return int(tag)


def backoff_seconds(attempts: int, base_seconds: float) -> float:
    """Return the delay before attempt ``attempts + 1``: exponential, capped
    at an hour, with jitter over its upper half so retries spread out."""
    ceiling = min(BACKOFF_CAP_SECONDS, base_seconds * 2 ** max(0, attempts - 1))
    return random.uniform(ceiling / 2, ceiling)


def deliver_outbox_entry(app: App, outbox_id: int) -> DeliveryResult:
    entry = _claim(app, outbox_id)
    if entry is None:
        return DeliveryResult(sent=False)
    try:
        sender = PushSender() if entry.kind == KIND_PUSH else app.sender
        return_path = verp_address(entry.id, app.settings.domain) if entry.mail_from else ""
        where = sender.send(entry.id, return_path, entry.rcpt_to, entry.raw)
    except TemporaryDeliveryError as error:
        if entry.attempts >= app.settings.outbox_max_attempts:
            _finish(app, entry, OutboxState.DEAD, f"{error} (after {entry.attempts} attempts)")
            return DeliveryResult(sent=False, dead=True)
        delay = backoff_seconds(entry.attempts, app.settings.outbox_backoff_seconds)
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
        if row.ticket_id is not None:
            record_history(
                session, row.ticket_id, actor=SYSTEM_ACTOR, channel="worker",
                action=f"{row.kind}_retry", outbox_id=row.id, rcpt_to=row.rcpt_to,
                attempt=row.attempts, error=error, retry_in_seconds=round(delay, 1),
            )


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
