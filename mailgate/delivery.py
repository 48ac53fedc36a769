"""Send outbox rows, at most once per lease, and record each result.

A worker thread leases a few due rows in one transaction, then sends them
one after another and commits each row's result before it sends the next.
So when a worker process is killed, each of its threads leaves at most one
row that the relay took but the database does not show as sent. The rows
it leased but did not send wait for the end of their lease. The worker threads of a process
share their transactions (``store.group_commit``): a commit carries the
results of every thread waiting at that moment, and no transaction is
open while a mail is being sent.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

from sqlalchemy.orm import Session

from mailgate.app import App
from mailgate.errors import PermanentDeliveryError, TemporaryDeliveryError
from mailgate.outbound import Sender
from mailgate.outbound.push import PushSender
from store.group_commit import GroupCommit
from store.models import OutboxState
from store.outbox import (
    LeasedEntry,
    lease_due_entries,
    mark_dead,
    mark_sent,
    release,
    reschedule,
)

log = logging.getLogger(__name__)

# The outbox kind of push alerts; every other kind is mail.
KIND_PUSH = "push"
VERP_LOCAL_PART = "bounces"
BACKOFF_CAP_SECONDS = 3600.0
# A worker starts no send once less than this share of its lease is left,
# so that a slow relay cannot make a send outlast the lease. The rows not
# sent are released for the next worker.
LEASE_SHARE_FOR_SENDING = 0.5


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of one leased row: sent, retried later, dead, or
    released unsent to be leased again."""

    sent: bool
    retry_in_seconds: float | None = None
    dead: bool = False
    released: bool = False


@dataclass(frozen=True)
class _Outcome:
    """The result of one send, to be committed."""

    entry: LeasedEntry
    state: OutboxState
    # The sender's description of the delivery when sent, else the error.
    detail: str
    retry_in_seconds: float | None = None

    def record(self, session: Session) -> bool:
        """Write the outcome and its history row; False when the row is no
        longer this worker's to change."""
        entry = self.entry
        if self.state == OutboxState.SENT:
            return entry.id in mark_sent(session, [entry])
        if self.state == OutboxState.DEAD:
            return mark_dead(session, entry, self.detail)
        delay = self.retry_in_seconds or 0.0
        return reschedule(session, entry, self.detail, delay)

    def result(self) -> DeliveryResult:
        if self.state == OutboxState.SENT:
            return DeliveryResult(sent=True)
        if self.state == OutboxState.DEAD:
            return DeliveryResult(sent=False, dead=True)
        return DeliveryResult(sent=False, retry_in_seconds=self.retry_in_seconds)


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


class OutboxDelivery:
    """Deliver outbox rows for the worker threads of one process, which
    share this object so that their writes share commits."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.push_sender = PushSender()
        self._writes = GroupCommit(app.sessions)

    def deliver_due(
        self, outbox_id: int, *, others: int | None = None
    ) -> list[tuple[int, DeliveryResult]]:
        """Lease ``outbox_id`` if it is due, and up to ``others`` more due
        rows (by default ``outbox_batch_size - 1``), send them and record
        each result. Return (row id, result) for every row leased.

        Rows that are sent, dead or leased by another worker are skipped,
        so the result may be empty and running this twice for one row is
        harmless. When a result cannot be committed, the error is logged,
        that row waits for the end of its lease and the rows not yet sent
        are released. Raises the database's error when the lease itself
        fails.
        """
        settings = self.app.settings
        if others is None:
            others = settings.outbox_batch_size - 1
        lease_seconds = settings.outbox_send_lease_seconds
        send_until = time.monotonic() + lease_seconds * LEASE_SHARE_FOR_SENDING
        entries = self._writes.run(lambda session: lease_due_entries(
            session, outbox_id, others=others,
            max_bytes=settings.outbox_batch_max_bytes, lease_seconds=lease_seconds,
        ))
        results: list[tuple[int, DeliveryResult]] = []
        for index, entry in enumerate(entries):
            if time.monotonic() > send_until:
                results += self._release(entries[index:])
                break
            outcome = self._send(entry)
            try:
                changed = self._writes.run(outcome.record)
            except Exception:
                log.exception(
                    "outbox id=%s: could not record %s; tried again after its lease",
                    entry.id, outcome.state.value,
                )
                results += self._release(entries[index + 1:])
                break
            _log_outcome(outcome, changed)
            results.append((entry.id, outcome.result()))
        return results

    def _send(self, entry: LeasedEntry) -> _Outcome:
        settings = self.app.settings
        sender: Sender = self.app.sender
        if entry.kind == KIND_PUSH:
            sender = self.push_sender
        return_path = verp_address(entry.id, settings.domain) if entry.mail_from else ""
        try:
            where = sender.send(entry.id, return_path, entry.rcpt_to, entry.raw)
        except TemporaryDeliveryError as error:
            if entry.attempts >= settings.outbox_max_attempts:
                message = f"{error} (after {entry.attempts} attempts)"
                return _Outcome(entry, OutboxState.DEAD, message)
            delay = backoff_seconds(entry.attempts, settings.outbox_backoff_seconds)
            return _Outcome(entry, OutboxState.PENDING, str(error), delay)
        except PermanentDeliveryError as error:
            return _Outcome(entry, OutboxState.DEAD, str(error))
        return _Outcome(entry, OutboxState.SENT, where)

    def _release(self, entries: list[LeasedEntry]) -> list[tuple[int, DeliveryResult]]:
        """Release rows leased but not sent. On a database error, log it;
        the rows are then due at the end of their lease."""
        if not entries:
            return []
        ids = [entry.id for entry in entries]
        try:
            self._writes.run(lambda session: release(session, entries))
        except Exception:
            log.exception("outbox ids=%s: release failed; due after their lease", ids)
            return []
        log.warning("outbox ids=%s released unsent: too little lease left", ids)
        released = DeliveryResult(sent=False, released=True)
        return [(outbox_id, released) for outbox_id in ids]


def deliver_outbox_entry(app: App, outbox_id: int) -> DeliveryResult:
    """Send one row if it is pending and due, and record the result. A row
    sent, dead or leased by another worker gives a result that is not sent."""
    results = OutboxDelivery(app).deliver_due(outbox_id, others=0)
    return results[0][1] if results else DeliveryResult(sent=False)


def _log_outcome(outcome: _Outcome, changed: bool) -> None:
    entry = outcome.entry
    if not changed:
        log.warning(
            "outbox id=%s %s to %s: %s not recorded, the lease is no longer ours",
            entry.id, entry.kind, entry.rcpt_to, outcome.state.value,
        )
    elif outcome.state == OutboxState.SENT:
        log.info(
            "outbox id=%s %s to %s sent: %s",
            entry.id, entry.kind, entry.rcpt_to, outcome.detail,
        )
    elif outcome.state == OutboxState.DEAD:
        log.error(
            "outbox id=%s %s to %s is dead: %s",
            entry.id, entry.kind, entry.rcpt_to, outcome.detail,
        )
    else:
        log.warning(
            "outbox id=%s to %s attempt %d failed, retry in %.0fs: %s",
            entry.id, entry.rcpt_to, entry.attempts, outcome.retry_in_seconds,
            outcome.detail,
        )
