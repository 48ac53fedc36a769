"""Every message of the hunnysoft corpus, sent over SMTP, becomes one ticket
with the subject the sender wrote and the attachments its MIME parts carry."""

from __future__ import annotations

import email
import re
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.conftest import SHARED
from tests.harness import SUPPORT, Gateway

CORPUS = SHARED / "corpus" / "hunnysoft"
FILES = sorted(CORPUS.glob("*.eml")) if CORPUS.is_dir() else []

pytestmark = pytest.mark.skipif(not FILES, reason=f"corpus not found at {CORPUS}")


def clean_stdlib_subject(raw: bytes) -> str | None:
    """The subject as the email package decodes it, or None where that
    decoding is not clean (raw 8-bit bytes or a broken encoded-word)."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    try:
        subject = str(message.get("Subject", ""))
    except Exception:  # the stdlib raises on some broken headers
        return None
    if "\ufffd" in subject or "=?" in subject or any(0xDC80 <= ord(c) <= 0xDCFF for c in subject):
        return None
    return " ".join(subject.split())


def raw_8bit_subject(raw: bytes) -> str | None:
    """The subject decoded from raw 8-bit header bytes (UTF-8 when valid,
    else windows-1252), or None when the header is plain ASCII."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    match = re.search(rb"^Subject:(.*(?:\r?\n[ \t].*)*)", head, re.MULTILINE | re.IGNORECASE)
    if match is None or max(match.group(1), default=0) < 0x80 or b"=?" in match.group(1):
        return None
    value = b" ".join(match.group(1).split())
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("windows-1252")


def stdlib_attachments(raw: bytes) -> list[tuple[str, int]]:
    """(filename, decoded size) of the parts that the stdlib names cleanly."""
    message: EmailMessage = email.message_from_bytes(raw, policy=email.policy.default)
    found = []
    for part in message.walk():
        if part.is_multipart():
            continue
        try:
            filename = part.get_filename()
            payload = part.get_payload(decode=True)
        except Exception:
            continue
        if filename and payload is not None and "\ufffd" not in filename and "=?" not in filename:
            found.append((filename, len(payload)))
    return found


@pytest.fixture(scope="module")
def corpus_tickets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    home = tmp_path_factory.mktemp("corpus")
    with Gateway.start(home=home) as desk:
        desk.add_queue()
        desk.add_agent("carol", "carol@example.org")
        replies = {}
        for path in FILES:
            replies[path.name] = desk.send(path.read_bytes(), "sender@example.com", [SUPPORT])
        desk.wait_idle(timeout=180)
        rows = {row.id: row for row in desk.spool_rows()}
        by_file = {}
        for name, reply in replies.items():
            spool_id = int(reply.rsplit(" ", 1)[1])
            row = rows[spool_id]
            ticket = desk.ticket(row.ticket_id) if row.ticket_id else None
            by_file[name] = {"state": row.state, "error": row.error, "ticket": ticket}
        return by_file


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_corpus_mail_makes_one_ticket(corpus_tickets: dict, path: Path) -> None:
    result = corpus_tickets[path.name]
    assert result["state"] == "processed", result["error"]
    ticket = result["ticket"]
    assert ticket is not None
    assert len(ticket["messages"]) == 1


def test_corpus_tickets_are_distinct(corpus_tickets: dict) -> None:
    ticket_ids = [result["ticket"]["id"] for result in corpus_tickets.values()]
    assert len(set(ticket_ids)) == len(FILES)


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_corpus_subject_is_clean(corpus_tickets: dict, path: Path) -> None:
    subject = corpus_tickets[path.name]["ticket"]["subject"]
    assert "\ufffd" not in subject
    assert "=?" not in subject
    expected = clean_stdlib_subject(path.read_bytes()) or raw_8bit_subject(path.read_bytes())
    if expected is not None:
        assert subject == expected


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_corpus_attachments_match_parts(corpus_tickets: dict, path: Path) -> None:
    [message] = corpus_tickets[path.name]["ticket"]["messages"]
    stored = [(item["filename"], item["size"]) for item in message["attachments"]]
    for name, size in stdlib_attachments(path.read_bytes()):
        # Netscape wrote Windows paths (C:\TEMP\x.png) whose backslashes the
        # stdlib drops as quoting; we keep only the base name, a suffix of it.
        assert any(
            size == stored_size and name.endswith(stored_name) for stored_name, stored_size in stored
        ), (name, size, stored)
