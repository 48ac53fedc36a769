"""Ticket tags in subjects, and the reply prefixes that clients stack up."""

from __future__ import annotations

import re

# Reply and forward prefixes of common clients in many languages, with an
# optional counter ("Re[2]:") and an ASCII or full-width colon.
REPLY_PREFIX = re.compile(
    r"^\s*(?:re|aw|antw|wg|fwd?|tr|sv|vs|r|rif|odp|pd|enc|res|ynt|"
    r"回复|回覆|答复|転送|返信)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*",
    re.IGNORECASE,
)


def format_tag(prefix: str, ticket_id: int) -> str:
    """Return the tag that names a ticket in a subject, e.g. ``[#42]``."""
    return f"[{prefix}{ticket_id}]"


def find_tagged_ticket_id(subject: str, prefix: str) -> int | None:
    """Return the ticket id of the first tag in ``subject``, if any."""
    match = re.search(r"\[" + re.escape(prefix) + r"(\d{1,12})\]", subject, re.IGNORECASE)
    return int(match.group(1)) if match else None


def strip_reply_prefixes(subject: str) -> str:
    """Remove stacked prefixes such as ``AW: WG: Re[2]:`` from the start."""
    previous = None
    while previous != subject:
        previous = subject
        subject = REPLY_PREFIX.sub("", subject, count=1)
    return subject.strip()


def tagged_subject(subject: str, prefix: str, ticket_id: int) -> str:
    """Return ``subject`` with reply prefixes and old tags of this ticket
    removed and the ticket's tag in front."""
    tag = format_tag(prefix, ticket_id)
    bare = strip_reply_prefixes(subject).replace(tag, "").strip()
    return f"{tag} {bare}" if bare else tag
