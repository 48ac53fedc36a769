"""The hard cases of the shared suite, sent over SMTP into a running gateway.

Each case stands for a class of mail, and its .md file lists the outcome it
must get. Reply cases reply to ticket EX-1042, which the fixture creates
together with the notifications that the case describes as sent. Their token
placeholders are replaced by real tokens.
"""

from __future__ import annotations

import smtplib
import socket
from pathlib import Path

import pytest

from mailgate.tokens import CUSTOMER_USER_ID, issue_token
from store.directory import find_user_by_email
from store.models import OutboxEntry, OutboxState, Ticket, utcnow
from tests.conftest import SHARED, Backend
from tests.harness import SUPPORT, Gateway

CASES = SHARED / "cases"
AGENT = "carol.agent@example.org"
TICKET = 1042
# Notifications about EX-1042 that the cases describe as sent by us.
SENT_MESSAGE_IDS = ("ex-1042.n2.h7k2p@support.example.org", "ex-1042.n4.m3n8v@support.example.org")
CUSTOMER_TOKEN_PLACEHOLDER = b"r.1042.2.k3y9q"
AGENT_TOKEN_PLACEHOLDER = b"r.1042.4.k3y9q"

pytestmark = pytest.mark.skipif(not CASES.is_dir(), reason=f"cases not found at {CASES}")


def case_bytes(number: str) -> bytes:
    [path] = CASES.glob(f"{number}-*.eml")
    return path.read_bytes()


@pytest.fixture
def desk(tmp_path: Path, backend: Backend):
    with Gateway.start(
        home=tmp_path / "cases", database=backend.database, broker=backend.broker,
        ticket_tag_prefix="EX-",
    ) as gateway:
        gateway.add_queue(address=SUPPORT)
        gateway.add_agent("carol", AGENT)
        yield gateway


def seed_ticket(desk: Gateway, subject: str, requester: str) -> None:
    """Create EX-1042 as the case describes it, with the notifications sent."""
    with desk.app.sessions.begin() as session:
        session.add(Ticket(id=TICKET, subject=subject, requester_email=requester, queue_id=1,
                           stage="waiting"))
        session.flush()
        for message_id in SENT_MESSAGE_IDS:
            session.add(OutboxEntry(
                ticket_id=TICKET, kind="new_ticket", mail_from=SUPPORT, rcpt_to=requester,
                message_id=message_id, raw=b"", state=OutboxState.SENT.value, sent_at=utcnow(),
            ))


def with_real_tokens(desk: Gateway, raw: bytes) -> bytes:
    key = desk.app.signing_keys[0]
    with desk.app.sessions() as session:
        carol = find_user_by_email(session, AGENT)
    customer = issue_token(key, TICKET, CUSTOMER_USER_ID, ttl_days=30).encode()
    agent = issue_token(key, TICKET, carol.id, ttl_days=30).encode()
    return raw.replace(CUSTOMER_TOKEN_PLACEHOLDER, customer).replace(AGENT_TOKEN_PLACEHOLDER, agent)


def reply_address(raw: bytes) -> str:
    """The support+token address the case's To header names."""
    for line in raw.splitlines():
        if line.lower().startswith(b"to:") and b"support+" in line:
            return line.split(b"<", 1)[1].split(b">", 1)[0].decode()
    return SUPPORT


def deliver(desk: Gateway, raw: bytes, mail_from: str) -> None:
    desk.send(raw, mail_from, [reply_address(raw)])
    desk.wait_idle()


def only_ticket(desk: Gateway) -> dict:
    assert len(desk.ticket_ids()) == 1
    return desk.ticket(desk.ticket_ids()[0])


def new_tickets(desk: Gateway) -> list[int]:
    return [ticket_id for ticket_id in desk.ticket_ids() if ticket_id != TICKET]


# -- new mail: one ticket each, decoded right ----------------------------------

NEW_TICKET_CASES = {
    "001": {"subject": "Lieferung verzögert – Spedition fährt erst nächste Woche",
            "body_contains": "die Lieferung verzögert sich um eine Woche."},
    "004": {"subject": "見積書の再送のお願い",
            "body_contains": "先日の見積書（No.A-2231）を再送していただけますでしょうか。"},
    "007": {"body_contains": "la salle réservée pour la réunion de février est annulée."},
    "010": {"body_contains": "das Update auf Version 4.2 schlägt fehl."},
    "013": {"subject": "Отчёт за квартал", "body": "Отчёт во вложении.",
            "attachments": [("Отчёт-квартал-1-итог.json", 57)]},
    "016": {"body_contains": "Die Rechnung für Juni finden Sie im Anhang.",
            "attachments_include": [("rechnung-juni.pdf", 587)]},
    "019": {"body_contains": "hier die Notizen:", "attachments": [("notizen.txt", 100)]},
    "022": {"body_contains": "Bitte um Rückruf unter 0301 555 0199."},
    "028": {"subject": "Zugang gesperrt", "body": "Mein Konto ist seit gestern gesperrt."},
    "058": {"body_contains": "meine Mail an Ihre Buchhaltung kam zurück. Welche Adresse ist richtig?"},
    "061": {"attachments": [("Škoda Angebot.png", 69)]},
    "064": {"body": "Voici l'offre.", "attachments": [("Offre spéciale été.docx", 162)]},
    "073": {"body": "Grüße aus Köln – die Lieferung ist angekommen, danke!"},
}


@pytest.mark.parametrize("number", sorted(NEW_TICKET_CASES))
def test_case_makes_one_ticket(desk: Gateway, number: str) -> None:
    expected = NEW_TICKET_CASES[number]
    deliver(desk, case_bytes(number), "sender@example.com")
    ticket = only_ticket(desk)
    [message] = ticket["messages"]
    text = message["text"].strip()
    attachments = [(item["filename"], item["size"]) for item in message["attachments"]]
    assert "\ufffd" not in ticket["subject"] + text
    assert "=?" not in ticket["subject"]
    assert "<" not in text or number != "022"
    if "subject" in expected:
        assert ticket["subject"] == expected["subject"]
    if "body" in expected:
        assert text == expected["body"]
    if "body_contains" in expected:
        assert expected["body_contains"] in text
    if "attachments" in expected:
        assert attachments == expected["attachments"]
    for item in expected.get("attachments_include", []):
        assert item in attachments


def test_forwarded_bounce_gets_acknowledged(desk: Gateway) -> None:
    deliver(desk, case_bytes("058"), "bea@example.com")
    ticket = only_ticket(desk)
    assert ticket["requester"]["email"] == "bea@example.com"
    acknowledgements = [m for m in desk.delivered() if "bea@example.com" in str(m["To"])]
    assert len(acknowledgements) == 1


# -- follow-ups from the customer side ------------------------------------------

FOLLOW_UP_CASES = {
    "031": ("Rechnung doppelt gebucht", "wei.zhang@example.com", "您好，\n\n请问退款什么时候到账？\n\n张伟"),
    "034": ("Drucker defekt", "paul@example.com", "Der Techniker war da, der Drucker geht wieder."),
    "037": ("Login fails", "tina@example.com", "Thanks, that fixed it.\n\nTina"),
    "040": ("Password reset", "vera@example.com",
            "I reset the password as you suggested, it works now.\n\nBest regards\nVera"),
    "046": ("Upgrade planned", "xenia@example.com", "Sounds good, go ahead."),
    "079": ("Drucker defekt", "anton@example.com",
            "Danke für die Hilfe beim Drucker. Eine andere Frage: gibt es im Juli ein Wartungsfenster?"),
}


@pytest.mark.parametrize("number", sorted(FOLLOW_UP_CASES))
def test_case_follow_up_threads(desk: Gateway, number: str) -> None:
    subject, requester, body = FOLLOW_UP_CASES[number]
    seed_ticket(desk, subject, requester)
    deliver(desk, with_real_tokens(desk, case_bytes(number)), requester)
    assert new_tickets(desk) == []
    ticket = desk.ticket(TICKET)
    assert ticket["subject"] == subject
    [message] = ticket["messages"]
    assert message["text"].strip() == body
    assert message["from"]["email"] == requester
    assert ticket["notes"] == []


def test_changed_subject_is_recorded(desk: Gateway) -> None:
    seed_ticket(desk, "Drucker defekt", "anton@example.com")
    deliver(desk, with_real_tokens(desk, case_bytes("079")), "anton@example.com")
    [message] = desk.ticket(TICKET)["messages"]
    assert message["subject"] == "Neue Frage: Wartungsfenster im Juli?"


# -- agents' replies -----------------------------------------------------------

@pytest.mark.parametrize(
    ("number", "body"),
    [("043", "I will take this one; calling the customer at 3 pm."), ("049", "Erledigt.")],
)
def test_case_agent_reply_is_note(desk: Gateway, number: str, body: str) -> None:
    seed_ticket(desk, "Printer broken", "kim@example.com")
    deliver(desk, with_real_tokens(desk, case_bytes(number)), AGENT)
    ticket = desk.ticket(TICKET)
    [note] = ticket["notes"]
    assert note["author"] == "carol"
    assert note["body"] == body
    assert note["attachments"] == []
    assert ticket["messages"] == []
    assert new_tickets(desk) == []


# -- automatic mail and bounces: stored at most, no mail sent ------------------

def test_out_of_office_reply_stays_silent(desk: Gateway) -> None:
    seed_ticket(desk, "Zugang gesperrt", "kai@example.com")
    deliver(desk, case_bytes("025"), "kai@example.com")
    ticket = desk.ticket(TICKET)
    assert new_tickets(desk) == []
    assert desk.delivered() == []
    assert ticket["stage"] == "waiting"
    assert [message["automatic"] for message in ticket["messages"]] == [True]


def test_other_helpdesk_ack_is_ignored(desk: Gateway) -> None:
    seed_ticket(desk, "Drucker defekt", "alice@example.com")
    raw = with_real_tokens(desk, case_bytes("052"))
    for number in range(5):
        variant = raw.replace(b"helpdesk+a1f3@", f"helpdesk+a1f{number}@".encode()).replace(
            b"case052.99812.1@", f"case052.99812.{number}@".encode()
        )
        deliver(desk, variant, f"helpdesk+a1f{number}@partner.example.net")
    assert new_tickets(desk) == []
    assert desk.delivered() == []
    assert {row.state for row in desk.spool_rows()} == {"ignored"}


def test_bounce_recorded_on_ticket(desk: Gateway) -> None:
    seed_ticket(desk, "Drucker defekt", "alice@example.com")
    deliver(desk, case_bytes("055"), "")
    assert new_tickets(desk) == []
    assert desk.delivered() == []
    [failure] = [e for e in desk.ticket(TICKET)["history"] if e["action"] == "delivery_failed"]
    assert failure["details"]["recipient"] == "alice@example.com"
    assert failure["details"]["status"] == "5.1.1"


def test_bounce_of_unknown_mail_is_ignored(desk: Gateway) -> None:
    deliver(desk, case_bytes("055"), "")
    assert desk.ticket_ids() == []
    [row] = desk.spool_rows()
    assert row.state == "ignored"


# -- SMTP sessions -----------------------------------------------------------

def test_8bitmime_body_kept_byte_identical(desk: Gateway) -> None:
    raw = case_bytes("073").replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    with desk.smtp() as client:
        client.ehlo("client.example.com")
        assert client.has_extn("8bitmime")
        code, _ = client.mail("lena@example.com", ["BODY=8BITMIME"])
        assert code == 250
        assert client.rcpt(SUPPORT)[0] == 250
        assert client.data(raw)[0] == 250
    desk.wait_idle()
    [row] = desk.spool_rows()
    assert row.raw == raw


def test_8bit_command_rejected_session_usable(desk: Gateway) -> None:
    raw = case_bytes("076").replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    with socket.create_connection(("127.0.0.1", desk.port), timeout=10) as connection:
        reader = connection.makefile("rb")

        def command(line: bytes) -> bytes:
            connection.sendall(line + b"\r\n")
            reply = reader.readline()
            while reply[3:4] == b"-":
                reply = reader.readline()
            return reply

        assert reader.readline().startswith(b"220")
        assert command(b"EHLO client.example.com").startswith(b"250")
        assert command(b"MAIL FROM:<caf\xe9@example.com>")[:1] == b"5"
        assert command(b"RSET").startswith(b"250")
        assert command(b"MAIL FROM:<cafe@example.com>").startswith(b"250")
        assert command(b"RCPT TO:<support@support.example.org>").startswith(b"250")
        assert command(b"DATA").startswith(b"354")
        assert command(raw.rstrip(b"\r\n") + b"\r\n.").startswith(b"250")
    desk.wait_idle()
    assert len(desk.ticket_ids()) == 1


def test_random_bytes_command_gets_error(desk: Gateway) -> None:
    noise = bytes(range(256))[128:] + b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 6
    with socket.create_connection(("127.0.0.1", desk.port), timeout=10) as connection:
        reader = connection.makefile("rb")
        assert reader.readline().startswith(b"220")
        connection.sendall(noise[:200] + b"\r\n")
        reply = reader.readline()
        assert reply == b"" or reply[:1] == b"5"
    with desk.smtp() as client:
        assert client.ehlo("client.example.com")[0] == 250
