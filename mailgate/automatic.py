"""Recognise automatic mail, which must never get an automatic answer.

Pure functions over header fields and the envelope sender, after RFC 3834
(Auto-Submitted) and the headers that common auto-responders and list
servers add in its place.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

AUTOMATIC_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
# Headers whose mere presence marks a mail as automatic or list traffic.
AUTOMATIC_MARKER_HEADERS = (
    "X-Autoreply",
    "X-Autorespond",
    "X-Auto-Response-Suppress",
    "List-Id",
    "List-Unsubscribe",
)
# Prefix of the local part of every Message-ID we generate.
OWN_MESSAGE_ID_PREFIX = "mg."
SYSTEM_LOCAL_PARTS = {"mailer-daemon", "postmaster", "noreply", "no-reply", "donotreply"}
OUT_OF_OFFICE_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto[- ]?reply|autoreply|out of (the )?office|"
    r"automatische antwort|abwesenheitsnotiz|r[ée]ponse automatique|absence|"
    r"respuesta autom[áa]tica|risposta automatica|resposta autom[áa]tica|"
    r"automatisch antwoord|afwezig|autosvar|automaattinen vastaus|"
    r"automatyczna odpowied[źz]|自动回复|自動回覆|自動応答)\b",
    re.IGNORECASE,
)

HeaderLookup = Callable[[str], str | None]


def automatic_reason(
    header: HeaderLookup,
    subject: str,
    envelope_sender: str | None,
    *,
    own_domain: str,
    own_addresses: Sequence[str] = (),
) -> str | None:
    """Return why a mail is automatic, or None when a person sent it.

    ``envelope_sender`` is the SMTP MAIL FROM (``""`` for the null return
    path) or None when unknown, e.g. mail fed through a pipe without one.
    """
    auto_submitted = (header("Auto-Submitted") or "").strip().lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return f"Auto-Submitted: {auto_submitted}"
    precedence = (header("Precedence") or "").strip().lower()
    if precedence in AUTOMATIC_PRECEDENCE:
        return f"Precedence: {precedence}"
    for name in AUTOMATIC_MARKER_HEADERS:
        if header(name) is not None:
            return f"{name} present"
    loop = (header("X-Loop") or "").strip().lower()
    if loop and own_domain in loop:
        return f"X-Loop: {loop}"
    if envelope_sender is not None and envelope_sender.strip("<> ") == "":
        return "empty return path"
    return_path = header("Return-Path")
    if return_path is not None and return_path.strip().strip("<>").strip() == "":
        return "empty Return-Path header"
    sender = _address_of(header("From") or "")
    local = sender.split("@", 1)[0]
    if local in SYSTEM_LOCAL_PARTS:
        return f"system sender {sender}"
    if sender and sender in {address.lower() for address in own_addresses}:
        return f"sent from our own address {sender}"
    if is_own_message_id(header("Message-ID") or "", own_domain):
        return "our own Message-ID"
    if OUT_OF_OFFICE_SUBJECT.match(subject):
        return "out-of-office subject"
    return None


def _address_of(value: str) -> str:
    match = re.search(r"<([^<>]*)>", value)
    return (match.group(1) if match else value).strip().lower()


def is_own_message_id(message_id: str, own_domain: str) -> bool:
    """True for a Message-ID that we generated (see OWN_MESSAGE_ID_PREFIX)."""
    local, _, domain = message_id.strip().strip("<>").lower().rpartition("@")
    return domain == own_domain and local.startswith(OWN_MESSAGE_ID_PREFIX)
