"""Process one spooled mail: parse it, decide what it is, and act.

Every change, its history rows and the mail it causes commit in one
transaction together with the spool row's new state, so processing a row
twice is harmless: the second run finds it no longer pending.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from email.utils import getaddresses
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailgate.app import App, is_served
from mailgate.alerts import queue_alerts
from mailgate.automatic import automatic_reason
from mailgate.bounces import DeliveryReport
from mailgate.commands import run_commands, split_commands
from mailgate.delivery import verp_outbox_id
from mailgate.notifications import (
    queue_acknowledgement,
    queue_command_failures,
    queue_new_ticket_notifications,
    queue_public_reply,
)
from mailgate.outbound.compose import is_valid_address
from mailgate.parsing import ParsedMail, ParseError
from mailgate.reply_checks import (
    check_reply_authentication,
    check_reply_sender,
    queue_rejection_notice,
)
from mailgate.rules.processing import FOLLOW_UP, NEW, apply_routing, record_drop, route
from mailgate.routing import (
    choose_queue,
    find_referenced_ticket,
    reply_token_candidates,
)
from mailgate.updates import last_history_id, queue_ticket_updates
from mailgate.sandbox import parse_spooled_mail, payload_directory
from mailgate.suppression import (
    mark_reported_outbox_rows,
    record_hard_bounces,
    withhold_limited_mail,
)
from mailgate.tokens import CUSTOMER_USER_ID, ReplyToken, TokenError, verify_token
from mailgate.trimming import trim_reply
from store.directory import normalize_address, queue_addresses
from store.history import SYSTEM_ACTOR, record_history
from mailgate.forwards import forward_ticket
from mailgate.trimming import TrimmedReply
from store.operations import (
    Actor,
    ForwardOptions,
    OperationError,
    add_external_note,
    add_note,
    add_public_reply,
    check_scope,
    customer_wrote,
)
from store.permissions import PermissionDenied
from store.models import (
    OutboxEntry,
    ProcessedMail,
    Role,
    SpoolEntry,
    SpoolState,
    Ticket,
    User,
    utcnow,
)
from store.spool import finish_spool_entry, lock_spool_entry, mark_failed, raw_chunks, read_raw
from store.tickets import (
    NewAttachment,
    NewMessage,
    add_message,
    create_ticket,
    find_ticket_by_message_ids,
    is_participant,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _NoThread:
    """Stands in for a mail without threading headers."""

    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()


EMPTY_THREAD = _NoThread()


@dataclass
class Outcome:
    """The result of processing one spool row, with the outbox rows to enqueue."""

    state: SpoolState
    reason: str = ""
    ticket_id: int | None = None
    outbox_ids: list[int] = field(default_factory=list)
    # True when the mail changed an existing ticket, which is worth a
    # "Ticket Updated" mail; a new ticket has its own notification.
    updated_ticket: bool = False


def process_spool_entry(app: App, spool_id: int, *, release: bool = False) -> Outcome | None:
    """Process one spool row; return None when it was not pending.

    With ``release`` a held row is processed instead, as if its sender's
    authentication had passed (``mailgate spool release``).
    """
    expected_state = SpoolState.HELD.value if release else SpoolState.PENDING.value
    with app.sessions() as session:
        # A large mail's row has an empty raw column, so only small mails load here.
        spooled = session.get(SpoolEntry, spool_id)
        if spooled is None or spooled.state != expected_state:
            return None
        mail_from, rcpt_tos = spooled.mail_from, list(spooled.rcpt_tos)
        source = spooled.source
    with payload_directory(app.settings) as directory:
        try:
            # Chunks go to the parser as they are read, and large attachments
            # come back as files in ``directory``. So this process never has
            # a large mail or attachment whole in memory.
            parsed = parse_spooled_mail(
                raw_chunks(app.sessions, spooled), app.settings,
                size=spooled.size, payload_directory=directory,
            )
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
                app, session, entry, mail, partial(read_raw, session, entry),
                envelope_sender, rcpt_tos,
                key=parsed.dedupe_key, report=parsed.report, released=release,
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
    read_raw: Callable[[], bytes],
    envelope_sender: str | None,
    rcpt_tos: list[str],
    *,
    key: str,
    report: DeliveryReport | None,
    released: bool,
) -> Outcome:
    if session.get(ProcessedMail, key) is not None:
        return _duplicate()
    since = last_history_id(session)
    try:
        # A savepoint, so that a twin of this mail committed by another
        # worker meanwhile undoes only this mail's changes.
        with session.begin_nested():
            outcome = _act(
                app, session, entry, mail, read_raw, envelope_sender, rcpt_tos,
                report=report, released=released,
            )
            if outcome.state == SpoolState.PROCESSED:
                session.add(ProcessedMail(dedupe_key=key, spool_id=entry.id))
                session.flush()
            if outcome.state == SpoolState.PROCESSED and outcome.ticket_id is not None:
                touched = {outcome.ticket_id}
                queued = queue_alerts(app, session, since, ticket_ids=touched)
                if outcome.updated_ticket:
                    queued += queue_ticket_updates(app, session, since, ticket_ids=touched)
                session.flush()
                outcome.outbox_ids.extend(item.id for item in queued)
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
    read_raw: Callable[[], bytes],
    envelope_sender: str | None,
    rcpt_tos: list[str],
    *,
    report: DeliveryReport | None,
    released: bool,
) -> Outcome:
    bounced_ids = [verp_outbox_id(rcpt, app.settings.domain) for rcpt in rcpt_tos]
    bounced = [outbox_id for outbox_id in bounced_ids if outbox_id is not None]
    if report is not None or bounced:
        return _delivery_report(app, session, entry, report, bounced)
    settings = app.settings
    served = frozenset(queue_addresses(session))
    automatic = automatic_reason(
        mail.header, mail.subject, envelope_sender,
        own_domain=settings.domain, own_addresses=sorted(served),
    )
    tokens = reply_token_candidates(rcpt_tos, mail)
    # A token in the envelope recipient means the mail was sent to a reply
    # address, and a bad one there is rejected. A token only in In-Reply-To
    # or References may come from anyone in the thread (for example a
    # customer replying to a forwarded notification), so when it does not
    # fit, the mail is handled as if it had none.
    via_envelope = bool(reply_token_candidates(rcpt_tos, EMPTY_THREAD))
    ticket = None
    if tokens:
        outcome, ticket = _handle_tokens(
            app, session, entry, mail, read_raw, tokens, automatic,
            released=released, via_envelope=via_envelope,
        )
        if outcome is not None:
            return outcome
    if ticket is None:
        ticket = find_referenced_ticket(session, mail, settings.ticket_tag_prefix)
    sender = normalize_address(mail.from_.email) if mail.from_ else ""
    if ticket is not None and sender and is_participant(session, ticket, sender):
        routing = route(session, mail, rcpt_tos=rcpt_tos, size=entry.size,
                        automatic=automatic, scope=FOLLOW_UP)
        if routing.dropped_by:
            record_drop(session, entry.id, routing)
            return Outcome(SpoolState.IGNORED, ticket_id=ticket.id,
                           reason=f"dropped by rule {routing.dropped_by!r}")
        message = _new_message(entry, mail, automatic=bool(automatic), trim=True)
        customer_wrote(session, ticket, message)
        apply_routing(session, entry.id, ticket, routing)
        return Outcome(SpoolState.PROCESSED, ticket_id=ticket.id, updated_ticket=not automatic)
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
            path=Path(item.payload_file) if item.payload_file is not None else None,
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
    routing = route(session, mail, rcpt_tos=rcpt_tos, size=entry.size,
                    automatic=automatic, scope=NEW)
    if routing.dropped_by:
        record_drop(session, entry.id, routing)
        return Outcome(SpoolState.IGNORED, reason=f"dropped by rule {routing.dropped_by!r}")
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
    # Before the notifications, because a rule may move the ticket to another queue.
    apply_routing(session, entry.id, ticket, routing)
    queue = ticket.queue
    stored = ticket.messages[-1].attachments if ticket.messages else []
    outbox = queue_new_ticket_notifications(app, session, ticket, queue, mail.text, stored)
    if automatic:
        log.info("ticket=%s gets no acknowledgement: automatic mail (%s)", ticket.id, automatic)
    elif not routing.acknowledge:
        log.info("ticket=%s gets no acknowledgement: a routing rule suppresses it", ticket.id)
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
    app: App,
    session: Session,
    entry: SpoolEntry,
    report: DeliveryReport | None,
    verp_ids: list[int],
) -> Outcome:
    """Record a bounce of our mail on its ticket, without sending any mail.

    The row it is about comes from the VERP return path it was sent to, else
    from the tokens and Message-IDs of the original the report returns.
    """
    if report is not None and verp_ids:
        record_hard_bounces(
            session, report, threshold=app.settings.suppress_after_hard_bounces, now=utcnow()
        )
    for outbox_id in verp_ids:
        row = session.get(OutboxEntry, outbox_id)
        if row is None:
            continue
        failures = report.recipients if report else ()
        status = ", ".join(f"{item.status} {item.diagnostic}".strip() for item in failures)
        row.last_error = f"bounced: {status or 'a delivery failure notice without a report'}"
        if row.ticket_id is not None:
            record_history(
                session, row.ticket_id, actor=SYSTEM_ACTOR, channel="email",
                action="delivery_failed", recipient=row.rcpt_to, outbox_id=row.id,
                status=failures[0].status if failures else None,
                diagnostic=failures[0].diagnostic if failures else None, spool_id=entry.id,
            )
            return Outcome(SpoolState.PROCESSED, ticket_id=row.ticket_id)
        return Outcome(SpoolState.PROCESSED)
    if report is None:
        return Outcome(SpoolState.IGNORED, reason="bounce address of an unknown outbox row")
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


class _ThreadTokenDoesNotFit(Exception):
    """Undoes the savepoint of a token read only from threading headers."""

    def __init__(self, reason: str, ticket_id: int | None = None) -> None:
        super().__init__(reason)
        self.ticket_id = ticket_id


def _handle_tokens(
    app: App,
    session: Session,
    entry: SpoolEntry,
    mail: ParsedMail,
    read_raw: Callable[[], bytes],
    tokens: list[str],
    automatic: str | None,
    *,
    released: bool,
    via_envelope: bool,
) -> tuple[Outcome | None, Ticket | None]:
    """Return the outcome of a mail that carries reply tokens, or None and
    the ticket named, when the mail is to be handled as customer mail.

    A token that does not fit is final when it came in the envelope. A token
    read only from In-Reply-To or References is dropped, together with any
    notice it caused, and the mail is handled as if it had none.
    """
    try:
        with session.begin_nested():
            token_or_outcome = _verify_tokens(app, session, mail, tokens)
            if isinstance(token_or_outcome, Outcome):
                if via_envelope:
                    return token_or_outcome, None
                raise _ThreadTokenDoesNotFit(token_or_outcome.reason)
            token, ticket = token_or_outcome
            if token.user_id == CUSTOMER_USER_ID:
                return None, ticket
            outcome = _check_agent_reply(app, session, mail, read_raw, token, ticket, released)
            if outcome is None:
                outcome = _agent_reply(app, session, entry, mail, token, ticket, automatic)
            if outcome.state != SpoolState.REJECTED or via_envelope:
                return outcome, ticket
            raise _ThreadTokenDoesNotFit(outcome.reason, ticket.id)
    except _ThreadTokenDoesNotFit as unfit:
        log.info("spool id=%s: thread token ignored: %s", entry.id, unfit)
        return None, session.get(Ticket, unfit.ticket_id) if unfit.ticket_id else None


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
    read_raw: Callable[[], bytes],
    token: ReplyToken,
    ticket: Ticket,
    released: bool,
) -> Outcome | None:
    """Reject a reply from another sender than the token's owner, and hold
    one whose sender fails authentication unless an operator released it."""
    problem = check_reply_sender(session, token, mail)
    if problem is None and not released:
        problem = check_reply_authentication(app, mail, read_raw)
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
    if len(getaddresses([mail.header("From") or ""])) > 1:
        return Outcome(
            SpoolState.REJECTED, ticket_id=ticket.id,
            reason="From names several addresses, so the sender is not known",
        )
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
    if agent.role == Role.EXTERNAL.value:
        return _external_reply(session, entry, ticket, agent, trimmed, attachments)
    commands, body = split_commands(trimmed.body)
    actor = Actor(agent, "email")
    try:
        check_scope(actor, ticket)
    except PermissionDenied as error:
        return Outcome(SpoolState.REJECTED, ticket_id=ticket.id, reason=str(error))
    results = run_commands(session, actor, ticket, commands)
    outbox = []
    for line, recipients in results.forwards:
        try:
            with session.begin_nested():
                outbox.extend(forward_ticket(app, session, actor, ticket, recipients, ForwardOptions()))
        except (OperationError, PermissionDenied) as error:
            results.failed.append((line, str(error)))
    if results.failed:
        outbox.append(queue_command_failures(app, session, ticket, agent, results.failed, results.done))
    if results.public and body:
        reason = _public_reply(session, entry, actor, ticket, body, attachments)
        if reason:
            results.failed.append(("#public", reason))
            outbox.append(queue_command_failures(app, session, ticket, agent, [("#public", reason)], []))
        else:
            outbox.append(queue_public_reply(app, session, ticket, body))
    elif body or attachments:
        try:
            add_note(session, actor, ticket, body, trimmed=trimmed.removed, spool_id=entry.id,
                     attachments=attachments)
        except PermissionDenied as error:
            return Outcome(SpoolState.REJECTED, ticket_id=ticket.id, reason=str(error))
    elif not commands:
        return Outcome(SpoolState.IGNORED, ticket_id=ticket.id, reason="reply has no new text")
    session.flush()
    return Outcome(
        SpoolState.PROCESSED, ticket_id=ticket.id, outbox_ids=[item.id for item in outbox],
        updated_ticket=True,
    )


def _external_reply(
    session: Session,
    entry: SpoolEntry,
    ticket: Ticket,
    author: User,
    trimmed: TrimmedReply,
    attachments: list[NewAttachment],
) -> Outcome:
    """Add a note, marked as theirs, from someone outside the organisation
    who replied to a forward."""
    if not trimmed.body and not attachments:
        return Outcome(SpoolState.IGNORED, ticket_id=ticket.id, reason="reply has no new text")
    try:
        add_external_note(session, ticket, author, trimmed.body, trimmed=trimmed.removed,
                          spool_id=entry.id, attachments=attachments)
    except PermissionDenied as error:
        return Outcome(SpoolState.REJECTED, ticket_id=ticket.id, reason=str(error))
    return Outcome(SpoolState.PROCESSED, ticket_id=ticket.id, updated_ticket=True)


def _public_reply(
    session: Session,
    entry: SpoolEntry,
    actor: Actor,
    ticket: Ticket,
    body: str,
    attachments: list[NewAttachment],
) -> str | None:
    """Store an agent's public reply on the ticket; return why not, or None."""
    try:
        add_public_reply(session, actor, ticket, body, spool_id=entry.id, attachments=attachments)
    except PermissionDenied as error:
        return str(error)
    return None


def fail_spool_entry(app: App, spool_id: int, error: BaseException) -> None:
    """Record an unexpected processing error on the row, for ``spool retry``."""
    mark_failed(app.sessions, spool_id, f"{type(error).__name__}: {error}")
