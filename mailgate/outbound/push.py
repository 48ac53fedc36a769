"""Deliver push alerts: an HTTP POST of a JSON body, signed with HMAC."""

from __future__ import annotations

import logging

import httpx

from mailgate.errors import PermanentDeliveryError, TemporaryDeliveryError

log = logging.getLogger(__name__)

PUSH_TIMEOUT_SECONDS = 10.0


def split_push(raw: bytes) -> tuple[dict[str, str], bytes]:
    """Split a stored push row into its HTTP headers and body (the row contains
    ``Name: value`` lines, a blank line, then the JSON body)."""
    head, _, body = raw.partition(b"\n\n")
    headers = {}
    for line in head.decode("ascii").splitlines():
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    return headers, body


class PushSender:
    """POSTs the body to the row's URL; 2xx is sent, 429/5xx/network errors
    retry, any other 4xx is permanent."""

    def close(self) -> None:
        """Nothing to release: each POST opens and closes its own connection."""

    def send(self, outbox_id: int, mail_from: str, rcpt_to: str, raw: bytes) -> str:
        headers, body = split_push(raw)
        headers["Content-Type"] = "application/json"
        try:
            response = httpx.post(rcpt_to, content=body, headers=headers, timeout=PUSH_TIMEOUT_SECONDS)
        except httpx.HTTPError as error:
            raise TemporaryDeliveryError(f"push to {rcpt_to}: {type(error).__name__}: {error}") from None
        if response.is_success:
            return f"posted to {rcpt_to} ({response.status_code})"
        message = f"push to {rcpt_to} returned HTTP {response.status_code}"
        if response.status_code == 429 or response.status_code >= 500:
            raise TemporaryDeliveryError(message)
        raise PermanentDeliveryError(message)
