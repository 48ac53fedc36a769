"""Replay a proposed rule set over spooled mail and report which mails it
would route differently from how they were routed.

"How they were routed" is the decision processing recorded for the mail.
A mail without one (still pending, failed, or processed before routing
rules existed) is compared with the rule set in force instead, evaluated
now. Nothing is changed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.parsing import ParseError, parse_message
from mailgate.rules.evaluate import RuleSet
from mailgate.rules.processing import preview_mail
from mailgate.rules.ruleset import current_rule_set
from mailgate.settings import Settings
from store.models import SpoolEntry, SpoolState
from store.rules import routing_decisions
from store.spool import read_raw

log = logging.getLogger(__name__)

# The routed fields a replay compares, in the order it reports them.
COMPARED_FIELDS = (
    "queue", "tags", "stage", "ticket_type", "assignee", "escalation_level",
    "custom_fields", "root_causes", "acknowledge", "drop",
)
# States of spool rows that routing never saw and never will: duplicates,
# and rows rejected before routing (forged or expired reply tokens).
UNROUTED_STATES = (SpoolState.DUPLICATE.value, SpoolState.REJECTED.value)
BATCH_ROWS = 200
MAX_REPLAY_MAILS = 100_000

BASELINE_RECORDED = "recorded"
BASELINE_CURRENT = "rules in force"

SINCE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$", re.IGNORECASE)
SINCE_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """Return the start of a replay window: ``value`` is an age such as
    30m, 12h, 7d or 2w, or an ISO date or date-time (UTC unless given)."""
    now = now or datetime.now(timezone.utc)
    match = SINCE.match(value)
    if match:
        unit = SINCE_UNITS[match.group(2).lower()]
        return now - timedelta(**{unit: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"invalid --since {value!r}; use an age such as 7d, 12h or 2w, "
            "or a date like 2026-03-01"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class ReplayChange:
    """One mail the proposed rule set routes differently."""

    spool_id: int
    received_at: datetime
    message_id: str | None
    sender: str
    subject: str
    baseline: str  # BASELINE_RECORDED or BASELINE_CURRENT
    changes: dict[str, tuple[Any, Any]]  # field -> (before, after)

    def as_dict(self) -> dict[str, Any]:
        return {
            "spool_id": self.spool_id,
            "received_at": self.received_at.isoformat(),
            "message_id": self.message_id,
            "from": self.sender,
            "subject": self.subject,
            "baseline": self.baseline,
            "changes": {
                name: {"before": before, "after": after}
                for name, (before, after) in self.changes.items()
            },
        }


@dataclass
class ReplayReport:
    since: datetime
    examined: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    changes: list[ReplayChange] = field(default_factory=list)
    truncated: bool = False  # more mail than the limit was in the window

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "examined": self.examined,
            "changed": len(self.changes),
            "skipped": dict(self.skipped),
            "truncated": self.truncated,
            "mails": [change.as_dict() for change in self.changes],
        }


def replay(
    session: Session,
    settings: Settings,
    proposed: RuleSet,
    *,
    since: datetime,
    limit: int = MAX_REPLAY_MAILS,
) -> ReplayReport:
    """Compare ``proposed`` with how each mail spooled since ``since`` was
    routed; at most ``limit`` mails, oldest first."""
    report = ReplayReport(since=since)
    query = (
        select(SpoolEntry.id)
        .where(SpoolEntry.received_at >= since, SpoolEntry.state.not_in(UNROUTED_STATES))
        .order_by(SpoolEntry.id)
        .limit(limit + 1)
    )
    spool_ids = list(session.scalars(query))
    if len(spool_ids) > limit:
        report.truncated = True
        spool_ids = spool_ids[:limit]
    _revision, in_force = current_rule_set(session)
    for start in range(0, len(spool_ids), BATCH_ROWS):
        batch = spool_ids[start:start + BATCH_ROWS]
        decisions = routing_decisions(session, batch)
        entries = list(session.scalars(
            select(SpoolEntry).where(SpoolEntry.id.in_(batch)).order_by(SpoolEntry.id)
        ))
        for entry in entries:
            decision = decisions.get(entry.id)
            _replay_one(session, settings, entry, decision, in_force, proposed, report)
        # Raw mail is large: let each batch go before loading the next.
        for item in (*entries, *decisions.values()):
            session.expunge(item)
    log.info(
        "replay since %s: %d mails examined, %d routed differently",
        since.isoformat(), report.examined, len(report.changes),
    )
    return report


def _replay_one(
    session: Session,
    settings: Settings,
    entry: SpoolEntry,
    decision: Any,
    in_force: RuleSet,
    proposed: RuleSet,
    report: ReplayReport,
) -> None:
    if entry.state == SpoolState.IGNORED.value and decision is None:
        report.skip("ignored before routing")
        return
    raw = read_raw(session, entry)
    try:
        mail = parse_message(raw)
    except ParseError:
        report.skip("cannot be parsed")
        return
    envelope_sender = entry.mail_from if entry.source == "smtp" or entry.mail_from else None
    before_preview, after_preview = preview_mail(
        session, settings, raw, mail,
        rcpt_tos=list(entry.rcpt_tos), envelope_sender=envelope_sender,
        rule_sets=[in_force, proposed], scope=decision.scope if decision is not None else None,
    )
    if after_preview.scope is None:
        report.skip(after_preview.skipped)
        return
    report.examined += 1
    if decision is not None:
        before, baseline = decision.result, BASELINE_RECORDED
    else:
        before, baseline = before_preview.fields, BASELINE_CURRENT
    changes = {
        name: (before.get(name), after_preview.fields.get(name))
        for name in COMPARED_FIELDS
        if _comparable(name, before.get(name)) != _comparable(name, after_preview.fields.get(name))
    }
    if changes:
        sender = mail.from_.email if mail.from_ else entry.mail_from
        report.changes.append(ReplayChange(
            entry.id, entry.received_at, mail.message_id, sender, mail.subject, baseline, changes,
        ))


def _comparable(name: str, value: Any) -> Any:
    if name in ("tags", "root_causes"):
        return sorted(value or [])
    if name == "custom_fields":
        return dict(value or {})
    return value
