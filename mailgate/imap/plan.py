"""Decisions of the IMAP reader that need no server: batches, backoff,
search criteria, IDLE responses and the envelope sender. No I/O here."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import parseaddr


@dataclass(frozen=True)
class FetchStep:
    """One round trip: the UIDs to fetch whole, and the UIDs between them
    that are over the size limit, which are only flagged."""

    fetch: tuple[int, ...]
    oversize: tuple[int, ...]

    @property
    def uids(self) -> list[int]:
        """All UIDs of the step in ascending order, the order they are taken in."""
        return sorted((*self.fetch, *self.oversize))


def plan_fetches(
    sizes: Sequence[tuple[int, int]], *, max_count: int, max_bytes: int, max_message_bytes: int
) -> list[FetchStep]:
    """Split ``(uid, size)`` pairs, in ascending UID order, into fetch steps.

    A step contains at most ``max_count`` mails to fetch and at most
    ``max_bytes`` of them, but always at least one mail, so a mail larger
    than ``max_bytes`` but within ``max_message_bytes`` is fetched alone.
    Mail over ``max_message_bytes`` is never fetched.
    """
    steps: list[FetchStep] = []
    fetch: list[int] = []
    oversize: list[int] = []
    total = 0
    for uid, size in sorted(sizes):
        if size > max_message_bytes:
            oversize.append(uid)
            continue
        if fetch and (len(fetch) >= max_count or total + size > max_bytes):
            steps.append(FetchStep(tuple(fetch), tuple(oversize)))
            fetch, oversize, total = [], [], 0
        fetch.append(uid)
        total += size
    if fetch or oversize:
        steps.append(FetchStep(tuple(fetch), tuple(oversize)))
    return steps


def reconnect_delay(
    attempt: int, minimum: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Return the wait in seconds before reconnect ``attempt`` (1 for the first).

    Exponential from ``minimum``, capped at ``maximum``, with jitter over the
    upper half so that many mailboxes on one failed server do not reconnect
    in step.
    """
    ceiling = min(maximum, minimum * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


def search_criteria(last_uid: int) -> list[str]:
    """Return the SEARCH criteria for mail after ``last_uid``.

    ``UID n:*`` always matches the highest UID even when it is below ``n``
    (RFC 3501 6.4.8), so the caller still drops UIDs up to ``last_uid``.
    Mail flagged \\Deleted is left alone: someone deleted it.
    """
    return ["UID", f"{last_uid + 1}:*", "UNDELETED"]


def read_before_start_criteria(last_uid: int, start_uid: int) -> list[str] | None:
    """Return SEARCH criteria for \\Seen mail after ``last_uid`` and below
    ``start_uid``, or None when no UID lies between them.

    With the seen action, that mail was read by someone before mailgate
    began on the folder, so it is not turned into tickets.
    """
    if last_uid + 1 > start_uid - 1:
        return None
    return ["UID", f"{last_uid + 1}:{start_uid - 1}", "SEEN"]


def has_new_mail(responses: Iterable[tuple[object, ...]]) -> bool:
    """True when IDLE responses include ``* n EXISTS``."""
    return any(len(response) >= 2 and response[1] == b"EXISTS" for response in responses)


def untagged_status(responses: Iterable[tuple[object, ...]], status: bytes) -> str | None:
    """Return the text of the first untagged ``status`` response (BYE, NO,
    BAD) among IDLE responses, or None.

    A server sends BYE before it closes the connection, and NO or BAD when
    the selected folder changed under it. Dovecot 2.3 sends NO when another
    session deleted the folder and created it again.
    """
    for response in responses:
        if response and response[0] == status:
            words = [part for part in response[1:] if isinstance(part, bytes)]
            return b" ".join(words).decode("utf-8", "replace")
    return None


def envelope_sender(raw: bytes) -> str:
    """Return the address of the first Return-Path field, or "".

    The delivering server writes the SMTP MAIL FROM into Return-Path, so it
    is the closest thing to an envelope that IMAP offers. The null return
    path ``<>`` gives "".
    """
    separator = raw.find(b"\r\n\r\n")
    if separator < 0:
        separator = raw.find(b"\n\n")
    head = raw if separator < 0 else raw[:separator]
    value = BytesHeaderParser().parsebytes(head).get("Return-Path")
    if value is None:
        return ""
    return parseaddr(str(value))[1]
