"""Routing rules in processing: evaluate the rule set in force on a mail,
apply the result to its ticket through the store's operations, and record
the decision. Also the preview of the same steps that ``mailgate rules
test`` and ``mailgate rules replay`` run without changing anything.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from mailgate.automatic import automatic_reason
from mailgate.bounces import read_delivery_report
from mailgate.parsing import ParsedMail
from mailgate.routing import choose_queue, find_referenced_ticket, reply_token_candidates
from mailgate.rules.evaluate import Evaluation, RuleSet
from mailgate.rules.facts import MailFacts
from mailgate.rules.ruleset import current_rule_set
from mailgate.settings import Settings
from store.directory import normalize_address, queue_addresses
from store.history import record_history
from store.models import Ticket
from store.operations import OperationError, rule_actor, update_ticket_as_system
from store.rules import record_routing_decision
from store.tickets import is_participant

log = logging.getLogger(__name__)

NEW = "new"
FOLLOW_UP = "follow-up"


@dataclass(frozen=True)
class Routing:
    """The rules' verdict on one mail, with the rule set revision it used."""

    revision: int
    evaluation: Evaluation

    @property
    def dropped_by(self) -> str | None:
        return self.evaluation.result.dropped_by

    @property
    def acknowledge(self) -> bool:
        return self.evaluation.result.acknowledge


def route(
    session: Session,
    mail: ParsedMail,
    *,
    rcpt_tos: Sequence[str],
    size: int,
    automatic: str | None,
    scope: str,
) -> Routing:
    """Evaluate the rule set in force on a mail of ``scope`` (new or follow-up)."""
    revision, rule_set = current_rule_set(session)
    facts = MailFacts(mail, rcpt_tos=rcpt_tos, size=size, automatic=automatic)
    return Routing(revision, rule_set.evaluate(facts, scope))


def apply_routing(session: Session, spool_id: int, ticket: Ticket, routing: Routing) -> None:
    """Make the rules' changes to ``ticket``, each rule as its own actor
    (``rule:<name>``) in the history, and record the decision.

    A rule whose change the store rejects (a queue or user since removed,
    say) changes nothing; a history row and a log line record why.
    """
    result = routing.evaluation.result
    for rule_name, changes in result.changes_by_rule().items():
        try:
            update_ticket_as_system(session, rule_actor(rule_name), ticket, **changes)
        except OperationError as error:
            log.warning(
                "spool id=%s ticket=%s: rule %r not applied: %s",
                spool_id, ticket.id, rule_name, error,
            )
            record_history(
                session, ticket.id, actor=rule_actor(rule_name).name, channel="email",
                action="rule_failed", error=str(error), spool_id=spool_id,
            )
    session.flush()
    summary = result.as_dict()
    if routing.evaluation.scope == NEW:
        summary["queue"] = ticket.queue.name
    record_routing_decision(
        session, spool_id, ticket_id=ticket.id, scope=routing.evaluation.scope,
        result=summary, revision=routing.revision,
    )


def record_drop(session: Session, spool_id: int, routing: Routing) -> None:
    record_routing_decision(
        session, spool_id, ticket_id=None, scope=routing.evaluation.scope,
        result=routing.evaluation.result.as_dict(), revision=routing.revision,
    )


# -- preview ---------------------------------------------------------------------

@dataclass(frozen=True)
class Preview:
    """What processing would do with a mail under a given rule set.

    ``scope`` is None when processing would not route the mail at all
    (``skipped`` gives the reason); ``fields`` are then empty.
    """

    scope: str | None
    skipped: str
    automatic: str | None
    evaluation: Evaluation | None
    fields: dict[str, Any]


def classify_mail(
    session: Session, settings: Settings, raw: bytes, mail: ParsedMail, rcpt_tos: Sequence[str]
) -> tuple[str | None, Ticket | None, str]:
    """Return the scope processing gives the mail (new, follow-up, or None
    when it is not routed), the ticket of a follow-up, and why not routed.

    NOTE: this repeats the order of decisions in ``mailgate.pipeline._act``
    in short: a delivery report or a reply token is never routed, and a
    token is not verified here. Keep the two in step.
    """
    if read_delivery_report(raw) is not None:
        return None, None, "a delivery report"
    if reply_token_candidates(rcpt_tos, mail):
        return None, None, "a reply to a notification (it carries a reply token)"
    ticket = find_referenced_ticket(session, mail, settings.ticket_tag_prefix)
    sender = normalize_address(mail.from_.email) if mail.from_ and mail.from_.email else ""
    if ticket is not None and sender and is_participant(session, ticket, sender):
        return FOLLOW_UP, ticket, ""
    return NEW, None, ""


def preview_mail(
    session: Session,
    settings: Settings,
    raw: bytes,
    mail: ParsedMail,
    *,
    rcpt_tos: Sequence[str],
    envelope_sender: str | None,
    rule_sets: Sequence[RuleSet],
    scope: str | None = None,
) -> list[Preview]:
    """Evaluate each of ``rule_sets`` on a mail the way processing would,
    reading the store but changing nothing; return one Preview per set.

    ``envelope_sender`` is the MAIL FROM, or None when unknown. ``scope``
    forces new or follow-up instead of deciding it as processing does.
    """
    detected, _ticket, skipped = classify_mail(session, settings, raw, mail, rcpt_tos)
    if scope is None and detected is None:
        return [Preview(None, skipped, None, None, {}) for _ in rule_sets]
    scope = scope or detected
    automatic = automatic_reason(
        mail.header, mail.subject, envelope_sender,
        own_domain=settings.domain, own_addresses=sorted(queue_addresses(session)),
    )
    facts = MailFacts(mail, rcpt_tos=rcpt_tos, size=len(raw), automatic=automatic)
    unrouted: list[str | None] = []
    previews = []
    for rule_set in rule_sets:
        evaluation = rule_set.evaluate(facts, scope)
        fields = evaluation.result.as_dict()
        # A new ticket that no rule places gets the recipient's queue; a
        # follow-up's ticket keeps its queue, so None stands for "unchanged".
        if scope == NEW and fields["queue"] is None and not fields["drop"]:
            if not unrouted:
                unrouted.append(_default_queue(session, settings, mail, rcpt_tos))
            fields["queue"] = unrouted[0]
            fields["placed_by"]["queue"] = "(default)"
        previews.append(Preview(scope, "", automatic, evaluation, fields))
    return previews


def _default_queue(
    session: Session, settings: Settings, mail: ParsedMail, rcpt_tos: Sequence[str]
) -> str | None:
    queue = choose_queue(session, rcpt_tos, mail, settings.default_queue)
    return queue.name if queue is not None else None
