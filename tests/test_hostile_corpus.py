"""Each hostile mail of tests/hostile/, sent over SMTP into one running
gateway, ends as its table in tests/hostile/README.md says."""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailgate.tokens import SigningKey, issue_token, parse_keys
from store.directory import find_user_by_email
from store.models import HistoryEntry, Note, OutboxEntry, SpoolEntry, Ticket
from tests.harness import DOMAIN, SUPPORT, Gateway
from tests.hostile.builders import BUILDERS
from tests.mail import customer_mail

HOSTILE = Path(__file__).parent / "hostile"
AGENT = "carol@example.org"
SECOND_AGENT = "dave@example.org"
TRUSTED_AUTHSERV_ID = "mx.support.example.org"
SIGNING_KEY_HEX = "11" * 32
RETIRED_KEY_HEX = "22" * 32
SIGNING_KEYS = f"k2:{SIGNING_KEY_HEX},k1:{RETIRED_KEY_HEX}:retired"
REJECTION_KIND = "reply_rejected_"


@dataclass(frozen=True)
class Case:
    mail: str
    mail_from: str
    rcpt_to: str
    smtp: int
    state: str
    reason: str
    checks: tuple[str, ...]


def read_cases() -> list[Case]:
    cases = []
    for line in (HOSTILE / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 7 or cells[0] in ("mail", "---"):
            continue
        mail, mail_from, rcpt_to, smtp, state, reason, checks = cells
        cases.append(Case(mail, mail_from, rcpt_to, int(smtp), state, reason, tuple(checks.split())))
    return cases


CASES = read_cases()


@dataclass
class Counts:
    tickets: int
    notes: int
    acks: int
    notices: int
    bounces: int
    spool_rows: int
    last_outbox_id: int


@dataclass
class Desk:
    gateway: Gateway
    values: dict[str, str]


def send_case(gateway: Gateway, mail_from: str, rcpt_to: str, raw: bytes, *, exact: bool) -> int:
    """Send one mail and return the reply code to the end of DATA."""
    if not exact:
        raw = re.sub(rb"\r?\n", b"\r\n", raw)
    with smtplib.SMTP("127.0.0.1", gateway.port, timeout=60) as client:
        client.ehlo("client.example.com")
        code, _ = client.mail("" if mail_from == "<>" else mail_from)
        assert code == 250
        code, _ = client.rcpt(rcpt_to)
        assert code == 250
        if not exact:
            code, _ = client.data(raw)
            return code
        code, _ = client.docmd("DATA")
        assert code == 354
        client.send(raw + (b"" if raw.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        code, _ = client.getreply()
        return code


def counts(gateway: Gateway) -> Counts:
    def count(query) -> int:
        return session.scalar(query) or 0

    with gateway.app.sessions() as session:
        return Counts(
            tickets=count(select(func.count(Ticket.id))),
            notes=count(select(func.count(Note.id)).where(Note.ticket_id == 1)),
            acks=count(select(func.count(OutboxEntry.id)).where(OutboxEntry.kind == "acknowledgement")),
            notices=count(
                select(func.count(OutboxEntry.id)).where(
                    OutboxEntry.kind.startswith(REJECTION_KIND), OutboxEntry.rcpt_to == AGENT
                )
            ),
            bounces=count(
                select(func.count(HistoryEntry.id)).where(
                    HistoryEntry.ticket_id == 1, HistoryEntry.action == "delivery_failed"
                )
            ),
            spool_rows=count(select(func.count(SpoolEntry.id))),
            last_outbox_id=count(select(func.max(OutboxEntry.id))),
        )


def reply_address(token: str) -> str:
    return f"support+{token}@{DOMAIN}"


def open_first_ticket(gateway: Gateway) -> dict[str, str]:
    """Open ticket 1 and return the placeholder values of the table."""
    gateway.add_queue()
    gateway.add_agent("carol", AGENT)
    gateway.add_agent("dave", SECOND_AGENT)
    gateway.send(customer_mail(), "ana@example.com", [SUPPORT])
    gateway.wait_idle()
    notification = next(mail for mail in gateway.delivered() if str(mail["To"]).endswith(f"<{AGENT}>"))
    address = notification["Reply-To"].addresses[0].addr_spec
    token = address.split("+", 1)[1].split("@")[0]
    with gateway.app.sessions() as session:
        carol_id = find_user_by_email(session, AGENT).id
    signing, retired = parse_keys(SIGNING_KEYS)
    long_ago = datetime.now(timezone.utc) - timedelta(days=400)
    stranger = SigningKey("zz9", bytes.fromhex("33" * 32))
    tampered = token[:-1] + ("a" if token[-1] != "a" else "b")
    return {
        "reply_address": address,
        "notification_id": str(notification["Message-ID"]).strip("<>"),
        "expired_address": reply_address(issue_token(signing, 1, carol_id, ttl_days=30, now=long_ago)),
        "retired_address": reply_address(issue_token(retired, 1, carol_id, ttl_days=90)),
        "tampered_address": reply_address(tampered),
        "unknown_key_address": reply_address(issue_token(stranger, 1, carol_id, ttl_days=90)),
        "missing_ticket_address": reply_address(issue_token(signing, 999, carol_id, ttl_days=90)),
    }


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    home = tmp_path_factory.mktemp("hostile")
    with Gateway.start(
        home=home,
        signing_keys=SIGNING_KEYS,
        trusted_authserv_ids=TRUSTED_AUTHSERV_ID,
        worker_threads=2,
    ) as gateway:
        yield Desk(gateway, open_first_ticket(gateway))


def substitute(text: bytes, values: dict[str, str]) -> bytes:
    for name, value in values.items():
        text = text.replace(b"{{" + name.encode() + b"}}", value.encode())
    return text


def load_mail(case: Case, values: dict[str, str]) -> bytes:
    if case.mail in BUILDERS:
        return BUILDERS[case.mail]()
    return substitute((HOSTILE / case.mail).read_bytes(), values)


def claimed_sender(raw: bytes) -> str:
    match = re.search(rb"(?im)^From:.*?<([^<>\s]+@[^<>\s]+)>", raw)
    return match.group(1).decode().lower() if match else ""


def test_table_has_forty_cases() -> None:
    assert len(CASES) >= 40
    files = {path.name for path in HOSTILE.glob("*.eml")}
    listed = {case.mail for case in CASES}
    assert files <= listed
    assert set(BUILDERS) <= listed


@pytest.mark.parametrize("case", CASES, ids=[case.mail for case in CASES])
def test_hostile_mail_outcome(desk: Desk, case: Case) -> None:
    gateway = desk.gateway
    raw = load_mail(case, desk.values)
    rcpt_to = substitute(case.rcpt_to.encode(), desk.values).decode()
    before = counts(gateway)

    code = send_case(gateway, case.mail_from, rcpt_to, raw, exact="raw" in case.checks)
    assert code == case.smtp
    gateway.wait_idle()
    after = counts(gateway)

    if case.state == "-":
        assert after.spool_rows == before.spool_rows
    else:
        assert after.spool_rows == before.spool_rows + 1
        row = gateway.spool_rows()[-1]
        assert row.state == case.state, row.error
        assert case.reason in (row.error or "")
        if case.state in ("rejected", "held"):
            # The only mail a refused reply causes is a notice to the owner
            # of its token, whoever the mail claims to be from.
            caused = [item for item in gateway.outbox_rows() if item.id > before.last_outbox_id]
            assert all(item.rcpt_to == AGENT for item in caused)
            assert all(item.kind.startswith(REJECTION_KIND) for item in caused)
        if "crlf" in case.checks:
            assert re.search(rb"(?<!\r)\n", row.raw) is None

    expected = {
        "ticket": ("tickets", 1), "no-ticket": ("tickets", 0),
        "note": ("notes", 1), "no-note": ("notes", 0),
        "ack": ("acks", 1), "no-ack": ("acks", 0),
        "notice": ("notices", 1), "no-notice": ("notices", 0),
        "bounce": ("bounces", 1),
    }
    for check in case.checks:
        if check in expected:
            name, delta = expected[check]
            assert getattr(after, name) - getattr(before, name) == delta, check
    if "clean-html" in case.checks:
        assert_clean_html(gateway)
    if "clean-headers" in case.checks:
        assert_clean_acknowledgement(gateway, claimed_sender(raw))


def assert_clean_html(gateway: Gateway) -> None:
    ticket_id = gateway.ticket_ids()[-1]
    html = gateway.ticket(ticket_id)["messages"][0]["html"]
    assert "Hello" in html
    for fragment in ("<script", "onerror", "onclick", "javascript:", "tracker.example.net",
                     "<form", "<input", "<iframe", "evil.example.net", "style="):
        assert fragment not in html.lower(), fragment


def assert_clean_acknowledgement(gateway: Gateway, customer: str) -> None:
    acknowledgements = [
        mail for mail in gateway.delivered()
        if customer in str(mail["To"]) and mail["Auto-Submitted"] == "auto-replied"
    ]
    assert len(acknowledgements) == 1
    mail: EmailMessage = acknowledgements[0]
    names = sorted(name.lower() for name in mail.keys())
    assert "bcc" not in names
    assert "x-evil" not in names
    assert len(mail.get_all("To")) == 1
    raw = mail.as_bytes()
    header = raw.split(b"\n\n", 1)[0]
    assert b"\nBcc:" not in header
    assert b"\nX-Evil:" not in header
    for name in ("Subject", "To"):
        assert "\n" not in str(mail[name])
        assert "\r" not in str(mail[name])
