"""Caps on automatic mail, and suppression of addresses that bounce.

Everything mailgate sends is automatic, so every outbox row that
processing a mail creates passes here before it is enqueued: mail to an
address that is not a plain ``local@domain``, to a suppressed address, or
over the caps per recipient and ticket is withheld. NOTE: mail queued
outside the pipeline (the command line, the HTTP API) must call
``withhold_limited_mail`` itself. A withheld row is deleted in the transaction that made it and
a ``mail_withheld`` history row on the ticket says why, so a loop with an
auto-responder that ignores RFC 3834 sends a bounded number of mails.

An address is suppressed after ``MAILGATE_SUPPRESS_AFTER_HARD_BOUNCES``
permanent failures (a 5.x.x status in a delivery report) and stays so
until an operator runs ``mailgate suppressions remove``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, defer, sessionmaker

from mailgate.bounces import DeliveryReport
from mailgate.outbound.compose import is_valid_address
from mailgate.settings import Settings
from store.directory import normalize_address
from store.history import SYSTEM_ACTOR, record_history
from store.models import AddressBounces, OutboxEntry

log = logging.getLogger(__name__)

SHORT_WINDOW = timedelta(minutes=10)
LONG_WINDOW = timedelta(days=1)


def record_hard_bounces(
    session: Session, report: DeliveryReport, *, threshold: int, now: datetime
) -> list[str]:
    """Count the permanent failures of ``report`` per address; return the
    addresses this report suppressed."""
    suppressed = []
    for recipient in report.recipients:
        if recipient.action != "failed" or not recipient.status.startswith("5"):
            continue
        address = normalize_address(recipient.address)
        if not address:
            continue
        row = session.get(AddressBounces, address)
        if row is None:
            row = AddressBounces(email=address, hard_bounces=0)
            session.add(row)
        row.hard_bounces += 1
        row.last_status = recipient.status[:32]
        row.last_diagnostic = recipient.diagnostic[:1000]
        row.last_bounce_at = now
        if row.suppressed_at is None and row.hard_bounces >= threshold:
            row.suppressed_at = now
            suppressed.append(address)
            log.warning(
                "address %s suppressed after %d hard bounces (last %s)",
                address, row.hard_bounces, row.last_status,
            )
    session.flush()
    return suppressed


def mark_reported_outbox_rows(session: Session, report: DeliveryReport) -> list[int]:
    """Write the report's outcome into ``last_error`` of the outbox rows
    whose Message-ID it returns; return their ids.

    The rows stay ``sent``: the relay took them, and the report is what
    happened after.
    """
    message_ids = [value for value in report.original_message_ids if value]
    if not message_ids:
        return []
    rows = session.scalars(select(OutboxEntry).where(OutboxEntry.message_id.in_(message_ids)))
    summary = "; ".join(
        f"{item.address} {item.action} {item.status}".strip() for item in report.recipients
    )
    marked = []
    for row in rows:
        row.last_error = f"delivery report: {summary}"[:1000]
        marked.append(row.id)
    return marked


@dataclass(frozen=True)
class _Sent:
    """The fields of an outbox row that the caps count."""

    id: int
    rcpt_to: str
    ticket_id: int
    created_at: datetime


def _recent_rows(session: Session, rows: list[OutboxEntry], since: datetime) -> list[_Sent]:
    """Return the outbox rows since ``since`` to the recipients of ``rows``
    about their tickets, in one query."""
    tickets = {row.ticket_id for row in rows if row.ticket_id is not None}
    if not tickets:
        return []
    found = session.execute(
        select(OutboxEntry.id, OutboxEntry.rcpt_to, OutboxEntry.ticket_id, OutboxEntry.created_at)
        .where(
            OutboxEntry.ticket_id.in_(tickets),
            OutboxEntry.rcpt_to.in_({row.rcpt_to for row in rows}),
            OutboxEntry.created_at >= since,
        )
    )
    return [_Sent(*values) for values in found]


def _suppressed_addresses(session: Session, addresses: set[str]) -> set[str]:
    normalized = {normalize_address(address) for address in addresses}
    return set(session.scalars(
        select(AddressBounces.email).where(
            AddressBounces.email.in_(normalized), AddressBounces.suppressed_at.is_not(None)
        )
    ))


def _reason(
    settings: Settings, row: OutboxEntry, now: datetime,
    suppressed: set[str], recent: list[_Sent],
) -> str | None:
    if not is_valid_address(row.rcpt_to):
        return f"recipient {row.rcpt_to[:100]!r} is not a valid address"
    if normalize_address(row.rcpt_to) in suppressed:
        return f"{row.rcpt_to} is suppressed after repeated hard bounces"
    if row.ticket_id is None:
        return None
    caps = (
        (SHORT_WINDOW, settings.auto_mail_cap_per_ticket_10_minutes, "10 minutes"),
        (LONG_WINDOW, settings.auto_mail_cap_per_ticket_day, "day"),
    )
    for window, cap, label in caps:
        since = now - window
        earlier = sum(
            1 for sent in recent
            if sent.rcpt_to == row.rcpt_to and sent.ticket_id == row.ticket_id
            and sent.id < row.id and sent.created_at >= since
        )
        if earlier >= cap:
            return (
                f"{row.rcpt_to} got {cap} automatic mails about ticket {row.ticket_id}"
                f" in the last {label}"
            )
    return None


def withheld_reason(
    session: Session, settings: Settings, row: OutboxEntry, now: datetime
) -> str | None:
    """Return why automatic mail ``row`` must not be sent, or None."""
    return _reason(
        settings, row, now,
        _suppressed_addresses(session, {row.rcpt_to}),
        _recent_rows(session, [row], now - LONG_WINDOW),
    )


def withhold_limited_mail(
    session: Session, settings: Settings, outbox_ids: Iterable[int], now: datetime
) -> list[int]:
    """Delete the rows of ``outbox_ids`` that must not be sent, recording
    why on their tickets; return the ids that stay, in order."""
    ids = sorted(outbox_ids)
    if not ids:
        return []
    rows = list(session.scalars(
        select(OutboxEntry).where(OutboxEntry.id.in_(ids))
        .options(defer(OutboxEntry.raw)).order_by(OutboxEntry.id)
    ))
    suppressed = _suppressed_addresses(session, {row.rcpt_to for row in rows})
    recent = _recent_rows(session, rows, now - LONG_WINDOW)
    kept = []
    for row in rows:
        reason = _reason(settings, row, now, suppressed, recent)
        if reason is None:
            kept.append(row.id)
            continue
        log.warning(
            "outbox id=%s %s to %s withheld: %s", row.id, row.kind, row.rcpt_to, reason
        )
        if row.ticket_id is not None:
            record_history(
                session, row.ticket_id, actor=SYSTEM_ACTOR, channel="worker",
                action="mail_withheld", kind=row.kind, rcpt_to=row.rcpt_to, reason=reason,
            )
        # A withheld row is deleted, so it counts for no later row.
        recent = [sent for sent in recent if sent.id != row.id]
        session.delete(row)
    session.flush()
    return kept


def list_bounced_addresses(
    sessions: sessionmaker[Session], *, suppressed_only: bool = True
) -> list[AddressBounces]:
    query = select(AddressBounces).order_by(AddressBounces.last_bounce_at.desc())
    if suppressed_only:
        query = query.where(AddressBounces.suppressed_at.is_not(None))
    with sessions() as session:
        return list(session.scalars(query))


def remove_suppression(sessions: sessionmaker[Session], address: str) -> bool:
    """Forget the bounces of ``address``; return False if it had none."""
    with sessions.begin() as session:
        row = session.get(AddressBounces, normalize_address(address))
        if row is None:
            return False
        session.delete(row)
    log.info("suppression of %s removed", normalize_address(address))
    return True
