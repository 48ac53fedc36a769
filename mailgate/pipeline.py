"""Process one spooled mail: parse it, decide what it is, and act.

Every change, its history rows and the mail it causes commit in one
transaction together with the spool row's new state, so processing a row
twice is harmless: the second run finds it no longer pending.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailgate.app import App, is_served
from mailgate.automatic import automatic_reason
from mailgate.bounces import DeliveryReport
from mailgate.notifications import queue_acknowledgement, queue_new_ticket_notifications
from mailgate.outbound.compose import is_valid_address
from mailgate.parsing import ParsedMail, ParseError
from mailgate.reply_checks import (
    check_reply_authentication,
    check_reply_sender,
    queue_rejection_notice,
)
from mailgate.routing import (
    choose_queue,
    dedupe_key,
    find_referenced_ticket,
    reply_token_candidates,
)
from mailgate.sandbox import parse_spooled_mail
from mailgate.suppression import (
    mark_reported_outbox_rows,
    record_hard_bounces,
    withhold_limited_mail,
)
from mailgate.tokens import CUSTOMER_USER_ID, ReplyToken, TokenError, verify_token
from mailgate.trimming import trim_reply
from store.directory import normalize_address, queue_addresses
from store.history import SYSTEM_ACTOR, record_history
from store.models import ProcessedMail, SpoolEntry, SpoolState, Ticket, User, utcnow
from store.spool import finish_spool_entry, lock_spool_entry, mark_failed
from store.tickets import (
    NewAttachment,
    NewMessage,
    add_message,
    add_note,
    create_ticket,
    find_ticket_by_message_ids,
    is_participant,
)

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """The result of processing one spool row, with the outbox rows to enqueue."""

    state: SpoolState
    reason: str = ""
    ticket_id: int | None = None
    outbox_ids: list[int] = field(default_factory=list)


def process_spool_entry(app: App, spool_id: int, *, release: bool = False) -> Outcome | None:
    """Process one spool row; return None when it was not pending.

    With ``release`` a held row is processed instead, as if its sender's
    authentication had passed (``mailgate spool release``).
    """
    expected_state = SpoolState.HELD.value if release else SpoolState.PENDING.value
    with app.sessions() as session:
        entry = session.get(SpoolEntry, spool_id)
        if entry is None or entry.state != expected_state:
            return None
        raw, mail_from, rcpt_tos = entry.raw, entry.mail_from, list(entry.rcpt_tos)
        source = entry.source
    try:
        parsed = parse_spooled_mail(raw, app.settings)
    except ParseError as error:
        log.warning("spool id=%s cannot be parsed: %s", spool_id, error)
        mark_failed(app.sessions, spool_id, f"cannot be parsed: {error}")
        return Outcome(SpoolState.FAILED, reason=str(error))
    mail = parsed.mail
    envelope_sender = mail_from if source == "smtp" or mail_from else None
    with app.sessions.begin() as session:
        entry = lock_spool_entry(session, spool_id)
        if entry is None or entry.state != expected_state:
            return None
        entry.attempts += 1
        entry.message_id = mail.message_id
        outcome = _decide_and_act(
            app, session, entry, mail, raw, envelope_sender, rcpt_tos,
            report=parsed.report, released=release,
        )
        outcome.outbox_ids = withhold_limited_mail(
            session, app.settings, outcome.outbox_ids, utcnow()
        )
        finish_spool_entry(
            entry, outcome.state, error=outcome.reason or None, ticket_id=outcome.ticket_id
        )
        session.flush()
    log.info(
        "spool id=%s %s ticket=%s message-id=<%s>%s",
        spool_id, outcome.state.value, outcome.ticket_id, mail.message_id,
        f" reason={outcome.reason}" if outcome.reason else "",
    )
    return outcome


def _decide_and_act(
    app: App,
    session: Session,
    entry: SpoolEntry,
    mail: ParsedMail,
    raw: bytes,
    envelope_sender: str | None,
    rcpt_tos: list[str],
    *,
    report: DeliveryReport | None,
    released: bool,
) -> Outcome:
    key = dedupe_key(mail, raw)
    if session.get(ProcessedMail, key) is not None:
        return _duplicate()
    try:
        # A savepoint, so that a twin of this mail committed by another
        # worker meanwhile undoes only this mail's changes.
        with session.begin_nested():
            outcome = _act(
                app, session, entry, mail, raw, envelope_sender, rcpt_tos,
                report=report, released=released,
            )
            if outcome.state == SpoolState.PROCESSED:
                session.add(ProcessedMail(dedupe_key=key, spool_id=entry.id))
                session.flush()
    except IntegrityError:
        if session.get(ProcessedMail, key) is None:
            raise
        return _duplicate()
    return outcome


def _duplicate() -> Outcome:
    return Outcome(SpoolState.DUPLICATE, reason="the same mail was processed before")


def _act(
    app: App,
    session: Session,
    entry: SpoolEntry,
    mail: ParsedMail,
    raw: bytes,
    envelope_sender: str | None,
    rcpt_tos: list[str],
    *,
    report: DeliveryReport | None,
    released: bool,
) -> Outcome:
    if report is not None:
        return _delivery_report(app, session, entry, report)
    settings = app.settings
    served = frozenset(queue_addresses(session))
    automatic = automatic_reason(
        mail.header, mail.subject, envelope_sender,
        own_domain=settings.domain, own_addresses=sorted(served),
    )
    tokens = reply_token_candidates(rcpt_tos, mail)
    ticket = None
    if tokens:
        token_or_outcome = _verify_tokens(app, session, mail, tokens)
        if isinstance(token_or_outcome, Outcome):
            return token_or_outcome
        token, ticket = token_or_outcome
        if token.user_id != CUSTOMER_USER_ID:
            problem = _check_agent_reply(app, session, mail, raw, token, ticket, released)
            if problem is not None:
                return problem
            return _agent_reply(app, session, entry, mail, token, ticket, automatic)
    if ticket is None:
        ticket = find_referenced_ticket(session, mail, settings.ticket_tag_prefix)
    sender = normalize_address(mail.from_.email) if mail.from_ else ""
    if ticket is not None and sender and is_participant(session, ticket, sender):
        message = _new_message(entry, mail, automatic=bool(automatic), trim=True)
        add_message(session, ticket, message)
        # TODO: send "Ticket Updated" to the assignee and watchers.
        return Outcome(SpoolState.PROCESSED, ticket_id=ticket.id)
    if ticket is not None and automatic:
        return Outcome(
            SpoolState.IGNORED,
            reason=f"automatic mail ({automatic}) about ticket {ticket.id} from a non-participant",
        )
    return _new_ticket(app, session, entry, mail, rcpt_tos, automatic, served)


def _new_message(
    entry: SpoolEntry, mail: ParsedMail, *, automatic: bool, trim: bool = False
) -> NewMessage:
    """Build the stored message; ``trim`` cuts the quoted thread of a follow-up."""
    sender = mail.from_ or mail.sender
    text, trimmed = mail.text, ""
    if trim:
        result = trim_reply(mail.text, mail.html_source)
        text, trimmed = result.body, result.removed
    return NewMessage(
        from_name=sender.name if sender else "",
        from_email=(sender.email if sender and sender.email else entry.mail_from) or "",
        subject=mail.subject,
        text=text,
        trimmed=trimmed,
        html=mail.html,
        message_id=mail.message_id,
        spool_id=entry.id,
        attachments=tuple(_attachments(mail)),
        automatic=automatic,
    )


def _attachments(mail: ParsedMail, *, inline: bool = True) -> list[NewAttachment]:
    return [
        NewAttachment(
            filename=item.filename, content_type=item.content_type, data=item.data,
            content_id=item.content_id, inline=item.inline,
        )
        for item in mail.attachments
        if inline or not item.inline
    ]


def _new_ticket(
    app: App,
    session: Session,
    entry: SpoolEntry,
    mail: ParsedMail,
    rcpt_tos: list[str],
    automatic: str | None,
    served: frozenset[str],
) -> Outcome:
    queue = choose_queue(session, rcpt_tos, mail, app.settings.default_queue)
    if queue is None:
        return Outcome(
            SpoolState.FAILED,
            reason="no queue configured; add one with 'mailgate queues add', then retry",
        )
    participants = [
        (address.email, address.name)
        for address in (*mail.to, *mail.cc)
        if address.email and not is_served(address.email, served, app.settings.domain)
    ]
    message = _new_message(entry, mail, automatic=bool(automatic))
    ticket = create_ticket(session, queue, message, participants=participants)
    stored = ticket.messages[-1].attachments if ticket.messages else []
    outbox = queue_new_ticket_notifications(app, session, ticket, queue, mail.text, stored)
    if automatic:
        log.info("ticket=%s gets no acknowledgement: automatic mail (%s)", ticket.id, automatic)
    elif not is_valid_address(ticket.requester_email):
        log.info("ticket=%s gets no acknowledgement: requester address is not valid", ticket.id)
    else:
        acknowledgement = queue_acknowledgement(app, session, ticket, queue, mail.message_id)
        if acknowledgement is not None:
            outbox.append(acknowledgement)
    session.flush()
    return Outcome(
        SpoolState.PROCESSED, ticket_id=ticket.id, outbox_ids=[item.id for item in outbox]
    )


def _delivery_report(
    app: App, session: Session, entry: SpoolEntry, report: DeliveryReport
) -> Outcome:
    """Record a bounce of our mail on its ticket, without sending any mail."""
    ticket = None
    for candidate in report.tokens:
        try:
            ticket = session.get(Ticket, verify_token(candidate, app.keys_by_id).ticket_id)
        except TokenError:
            continue
        if ticket is not None:
            break
    if ticket is None:
        ticket = find_ticket_by_message_ids(session, report.original_message_ids)
    if ticket is None:
        return Outcome(SpoolState.IGNORED, reason="delivery report about mail we did not send")
    outbox_ids = mark_reported_outbox_rows(session, report)
    for recipient in report.recipients:
        record_history(
            session, ticket.id, actor=SYSTEM_ACTOR, channel="email",
            action="delivery_delayed" if recipient.action == "delayed" else "delivery_failed",
            recipient=recipient.address, status=recipient.status,
            diagnostic=recipient.diagnostic, spool_id=entry.id,
            original_message_ids=list(report.original_message_ids), outbox_ids=outbox_ids,
        )
    record_hard_bounces(
        session, report, threshold=app.settings.suppress_after_hard_bounces, now=utcnow()
    )
    return Outcome(SpoolState.PROCESSED, ticket_id=ticket.id)


def _verify_tokens(
    app: App, session: Session, mail: ParsedMail, tokens: list[str]
) -> tuple[ReplyToken, Ticket] | Outcome:
    """Return the first valid token and its ticket, or a rejection saying
    why none is valid. A mail that carries a token but no valid one is
    rejected rather than taken as new mail, so a forged reply never reaches
    a ticket by another path. The owner of an expired token, or of one of
    a retired key, gets a notice (the sender never does)."""
    errors = []
    notice: tuple[TokenError, Ticket] | None = None
    for candidate in tokens:
        try:
            token = verify_token(candidate, app.keys_by_id)
        except TokenError as error:
            errors.append(str(error))
            owned = session.get(Ticket, error.token.ticket_id) if error.token else None
            if notice is None and owned is not None:
                notice = (error, owned)
            continue
        ticket = session.get(Ticket, token.ticket_id)
        if ticket is None:
            errors.append(f"token names ticket {token.ticket_id}, which does not exist")
            continue
        return token, ticket
    outcome = Outcome(SpoolState.REJECTED, reason="; ".join(dict.fromkeys(errors)))
    if notice is not None:
        error, ticket = notice
        assert error.token is not None
        outcome.ticket_id = ticket.id
        if error.token.user_id != CUSTOMER_USER_ID:
            _queue_notice(app, session, outcome, ticket, error.token.user_id, error.reason, mail)
    return outcome


def _check_agent_reply(
    app: App,
    session: Session,
    mail: ParsedMail,
    raw: bytes,
    token: ReplyToken,
    ticket: Ticket,
    released: bool,
) -> Outcome | None:
    """Reject a reply from another sender than the token's owner, and hold
    one whose sender fails authentication unless an operator released it."""
    problem = check_reply_sender(session, token, mail)
    if problem is None and not released:
        problem = check_reply_authentication(app, mail, raw)
    if problem is None:
        return None
    outcome = Outcome(problem.state, reason=problem.reason, ticket_id=ticket.id)
    if problem.notice is not None:
        _queue_notice(app, session, outcome, ticket, token.user_id, problem.notice, mail)
    return outcome


def _queue_notice(
    app: App,
    session: Session,
    outcome: Outcome,
    ticket: Ticket,
    user_id: int,
    reason: str,
    mail: ParsedMail,
) -> None:
    claimed = mail.from_.email if mail.from_ else ""
    notice = queue_rejection_notice(app, session, ticket, user_id, reason, claimed)
    if notice is not None:
        session.flush()
        outcome.outbox_ids.append(notice.id)


def _agent_reply(
    app: App,
    session: Session,
    entry: SpoolEntry,
    mail: ParsedMail,
    token: ReplyToken,
    ticket: Ticket,
    automatic: str | None,
) -> Outcome:
    """Turn an agent's reply to a notification into an internal note, or reject it."""
    agent = session.get(User, token.user_id)
    if agent is None:
        return Outcome(
            SpoolState.REJECTED, ticket_id=ticket.id,
            reason=f"token names user {token.user_id}, who does not exist",
        )
    sender = normalize_address(mail.from_.email) if mail.from_ and mail.from_.email else ""
    if sender != agent.email:
        return Outcome(
            SpoolState.REJECTED, ticket_id=ticket.id,
            reason=f"sender {sender or '(none)'} is not the agent the token was issued to",
        )
    if automatic:
        return Outcome(
            SpoolState.IGNORED, ticket_id=ticket.id, reason=f"automatic reply ({automatic})"
        )
    trimmed = trim_reply(mail.text, mail.html_source)
    # NOTE: inline images are left out of notes, because most of them come
    # from the quoted original. An image the agent pasted stays in the raw mail.
    attachments = _attachments(mail, inline=False)
    if not trimmed.body and not attachments:
        return Outcome(SpoolState.IGNORED, ticket_id=ticket.id, reason="reply has no new text")
    add_note(
        session, ticket, agent, trimmed.body, channel="email", trimmed=trimmed.removed,
        spool_id=entry.id, attachments=attachments,
    )
    return Outcome(SpoolState.PROCESSED, ticket_id=ticket.id)


def fail_spool_entry(app: App, spool_id: int, error: BaseException) -> None:
    """Record an unexpected processing error on the row, for ``spool retry``."""
    mark_failed(app.sessions, spool_id, f"{type(error).__name__}: {error}")
