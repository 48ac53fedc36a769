"""Read delivery status notifications (RFC 3464) about mail we sent.

Pure functions over the raw bytes: they find the report's recipients and
status codes, and the Message-IDs and reply tokens of the returned
original, which name the ticket the bounce belongs to.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser

from mailgate.parsing.tree import parse_header_tree, parse_tree
from mailgate.tokens import find_token

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FailedRecipient:
    address: str
    status: str  # RFC 3463 code such as 5.1.1
    action: str  # failed, delayed, ...
    diagnostic: str


@dataclass(frozen=True)
class DeliveryReport:
    recipients: tuple[FailedRecipient, ...]
    original_message_ids: tuple[str, ...]
    tokens: tuple[str, ...]

    @property
    def permanent(self) -> bool:
        return any(item.status.startswith("5") for item in self.recipients)


def read_delivery_report(raw: bytes) -> DeliveryReport | None:
    """Return the report when the whole mail is a multipart/report of
    report-type delivery-status, else None. A forwarded bounce, where the
    report is only a part inside another mail, is a person's mail."""
    try:
        # The header fields decide, so most mail is never parsed a second time.
        if not _is_delivery_report(parse_header_tree(_header_section(raw))):
            return None
        message = parse_tree(raw)
    except Exception:  # the stdlib parser raises on rare broken input
        log.warning("delivery report check could not parse the mail", exc_info=True)
        return None
    if not _is_delivery_report(message):
        return None
    recipients: list[FailedRecipient] = []
    returned: list[Message] = []
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type == "message/delivery-status":
            recipients.extend(_recipients(part))
        elif content_type in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                returned.append(payload[0])
        elif content_type == "text/rfc822-headers":
            data = part.get_payload(decode=True) or b""
            returned.append(BytesHeaderParser().parsebytes(data))
    message_ids: list[str] = []
    tokens: list[str] = []
    for original in returned:
        for name in ("Message-ID", "Reply-To"):
            value = str(original.get(name, ""))
            if name == "Message-ID" and value.strip():
                message_ids.append(value.strip().strip("<>"))
            token = find_token(value)
            if token:
                tokens.append(token)
    return DeliveryReport(tuple(recipients), tuple(message_ids), tuple(dict.fromkeys(tokens)))


def _is_delivery_report(message: Message) -> bool:
    return (
        message.get_content_type() == "multipart/report"
        and (message.get_param("report-type") or "").lower() == "delivery-status"
    )


def _header_section(raw: bytes) -> bytes:
    """Return ``raw`` up to its first blank line, where the parser ends the
    header section at the latest; all of it when there is none."""
    ends = [found for found in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if found >= 0]
    return raw[: min(ends) + 2] if ends else raw


def _recipients(part: Message) -> list[FailedRecipient]:
    blocks = part.get_payload()
    if not isinstance(blocks, list):
        return []
    found = []
    # The first block holds per-message fields; each later one a recipient.
    for block in blocks[1:]:
        address = str(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
        address = address.partition(";")[2].strip() or address.strip()
        found.append(
            FailedRecipient(
                address=address.strip("<>").lower(),
                status=str(block.get("Status", "")).strip(),
                action=str(block.get("Action", "")).strip().lower(),
                diagnostic=" ".join(str(block.get("Diagnostic-Code", "")).split()),
            )
        )
    return found
