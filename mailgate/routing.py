"""Decide what a parsed mail is: an agent's reply, a follow-up, or a new ticket.

These functions read the store but change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.parsing import ParsedMail
from mailgate.subjects import find_tagged_ticket_id
from mailgate.tokens import find_token
from store.directory import find_queue_by_address, find_queue_by_name, normalize_address
from store.models import Queue, Ticket
from store.tickets import find_ticket_by_message_ids


def reply_token_candidates(rcpt_tos: Iterable[str], mail: ParsedMail) -> list[str]:
    """Return tokens found in the envelope recipients first, then in
    In-Reply-To and References. Headers such as To and Reply-To, which the
    sender writes, are never read for tokens."""
    found: list[str] = []
    for rcpt in rcpt_tos:
        local = normalize_address(rcpt).rpartition("@")[0]
        if "+" in local:
            token = find_token(local.partition("+")[2])
            if token:
                found.append(token)
    for message_id in (*mail.in_reply_to, *reversed(mail.references)):
        local = message_id.rpartition("@")[0]
        token = find_token(local)
        if token:
            found.append(token)
    return list(dict.fromkeys(found))


def find_referenced_ticket(session: Session, mail: ParsedMail, tag_prefix: str) -> Ticket | None:
    """Return the ticket the mail's threading headers or subject tag name."""
    ticket = find_ticket_by_message_ids(session, [*mail.in_reply_to, *mail.references])
    if ticket is not None:
        return ticket
    ticket_id = find_tagged_ticket_id(mail.subject, tag_prefix)
    return session.get(Ticket, ticket_id) if ticket_id is not None else None


def choose_queue(
    session: Session, rcpt_tos: Iterable[str], mail: ParsedMail, default_queue: str | None
) -> Queue | None:
    """Return the queue a new ticket goes to: the first envelope recipient
    that is a queue address (ignoring any +tag), then the addressing headers,
    then the default queue, then the oldest queue."""
    candidates = list(rcpt_tos)
    for name in ("Delivered-To", "X-Original-To"):
        value = mail.header(name)
        if value:
            candidates.append(value)
    candidates.extend(address.email for address in (*mail.to, *mail.cc))
    for address in candidates:
        local, _, domain = normalize_address(address).rpartition("@")
        queue = find_queue_by_address(session, f"{local.partition('+')[0]}@{domain}")
        if queue is not None:
            return queue
    if default_queue:
        queue = find_queue_by_name(session, default_queue)
        if queue is not None:
            return queue
    return session.scalar(select(Queue).order_by(Queue.id).limit(1))
