"""Checks on a mail that carries an agent's reply token, before it can
become a note, and the notice its owner gets when one fails.

A failed check never sends mail to the claimed sender, who may be a
forger. The notice goes to the agent the token was issued to, at most
once a day per agent and reason, so a flood of forged replies causes one
mail a day.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from mailgate.app import App
from mailgate.authentication import sender_authentication_failure
from mailgate.outbound.compose import InvalidAddress, compose_mail, make_message_id
from mailgate.outbound.rendering import render_mail
from mailgate.parsing import ParsedMail
from mailgate.subjects import format_tag
from mailgate.tokens import EXPIRED, RETIRED_KEY, ReplyToken
from store.directory import normalize_address
from store.models import OutboxEntry, SpoolState, Ticket, User, utcnow
from store.outbox import OutgoingMail, add_to_outbox, count_recent

log = logging.getLogger(__name__)

TEMPLATE = "reply_rejected"
# Outbox kinds start with this, followed by the reason, so the daily limit
# counts per reason.
KIND_PREFIX = "reply_rejected_"
NOTICE_INTERVAL = timedelta(days=1)

FORGED_SENDER = "sender"
# What the notice says, by reason: a short summary for the subject and an
# explanation for the body.
NOTICE_TEXTS = {
    FORGED_SENDER: (
        "sent from another address",
        "The reply was sent from an address that is not yours. Only replies"
        " from your own address become notes.",
    ),
    EXPIRED: (
        "reply address expired",
        "The reply address of that notification has expired.",
    ),
    RETIRED_KEY: (
        "reply address no longer valid",
        "The reply address was signed with a key that has since been retired.",
    ),
}


@dataclass(frozen=True)
class ReplyProblem:
    """The reason a mail with a valid agent token adds no note.

    ``state`` is REJECTED or HELD. ``notice`` is the reason key of the
    notice to the token's owner, or None for no notice.
    """

    state: SpoolState
    reason: str
    notice: str | None = None


def check_reply_sender(session: Session, token: ReplyToken, mail: ParsedMail) -> ReplyProblem | None:
    """Return a problem unless the From address is the token owner's address."""
    agent = session.get(User, token.user_id)
    if agent is None:
        return ReplyProblem(
            SpoolState.REJECTED, f"token names user {token.user_id}, who does not exist"
        )
    sender = normalize_address(mail.from_.email) if mail.from_ and mail.from_.email else ""
    if sender != normalize_address(agent.email):
        return ReplyProblem(
            SpoolState.REJECTED,
            f"sender {sender or '(none)'} is not the agent the token was issued to",
            notice=FORGED_SENDER,
        )
    return None


def check_reply_authentication(
    app: App, mail: ParsedMail, read_raw: Callable[[], bytes]
) -> ReplyProblem | None:
    """Return a HELD problem when trusted results or DKIM fail the sender.

    ``read_raw`` returns the raw mail; it is called only to verify DKIM.
    """
    settings = app.settings
    failure = sender_authentication_failure(
        mail, read_raw,
        trusted_authserv_ids=settings.trusted_authserv_ids,
        verify_dkim=settings.verify_dkim,
    )
    if failure is None:
        return None
    return ReplyProblem(SpoolState.HELD, f"held for review: {failure}")


def queue_rejection_notice(
    app: App,
    session: Session,
    ticket: Ticket,
    user_id: int,
    reason: str,
    claimed_sender: str,
) -> OutboxEntry | None:
    """Queue the notice of a rejected reply to the token's owner, unless
    they got one for the same reason in the last day."""
    agent = session.get(User, user_id)
    if agent is None or reason not in NOTICE_TEXTS:
        return None
    kind = KIND_PREFIX + reason
    since = utcnow() - NOTICE_INTERVAL
    if count_recent(session, kind, agent.email, since) > 0:
        log.info(
            "rejected reply on ticket=%s: %s had a %s notice in the last day, none sent",
            ticket.id, agent.email, reason,
        )
        return None
    settings = app.settings
    summary, explanation = NOTICE_TEXTS[reason]
    tag = format_tag(settings.ticket_tag_prefix, ticket.id)
    rendered = render_mail(
        app.templates, TEMPLATE,
        ticket=ticket, queue=ticket.queue, tag=tag, agent=agent, summary=summary,
        explanation=explanation, claimed_sender=claimed_sender,
        received_at=utcnow().strftime("%Y-%m-%d %H:%M UTC"),
    )
    message_id = make_message_id(settings.domain, f"t{ticket.id}")
    try:
        raw = compose_mail(
            rendered,
            from_address=(f"{ticket.queue.name} via mailgate", ticket.queue.address),
            to_address=(agent.name or agent.username, agent.email),
            message_id=message_id,
            domain=settings.domain,
            auto_submitted="auto-replied",
        )
    except InvalidAddress as error:
        log.warning("notice of a rejected reply on ticket=%s not sent: %s", ticket.id, error)
        return None
    log.info("rejected reply on ticket=%s: %s notice to %s", ticket.id, reason, agent.email)
    return add_to_outbox(session, OutgoingMail(
        kind=kind, mail_from="", rcpt_to=agent.email, message_id=message_id, raw=raw,
        ticket_id=ticket.id,
    ))
