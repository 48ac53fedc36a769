"""Ticket tags in subjects, such as ``[#42]``."""

from __future__ import annotations

import re


def format_tag(prefix: str, ticket_id: int) -> str:
    """Return the tag that names a ticket in a subject, e.g. ``[#42]``."""
    return f"[{prefix}{ticket_id}]"


def find_tagged_ticket_id(subject: str, prefix: str) -> int | None:
    """Return the ticket id of the first tag in ``subject``, if any."""
    match = re.search(r"\[" + re.escape(prefix) + r"(\d{1,12})\]", subject, re.IGNORECASE)
    return int(match.group(1)) if match else None
