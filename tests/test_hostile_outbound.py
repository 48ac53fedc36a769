"""Outbound safety: clean header values, valid addresses, caps on
automatic mail and suppression of addresses after hard bounces."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest
from sqlalchemy import select

from mailgate.app import App
from mailgate.outbound.compose import (
    HeaderInjection,
    InvalidAddress,
    _check_header_names,
    clean_header_text,
    compose_mail,
    validate_address,
)
from mailgate.outbound.rendering import RenderedMail
from mailgate.settings import load_settings
from mailgate.suppression import withheld_reason
from mailgate.tokens import issue_token
from store.directory import find_user_by_email
from store.models import AddressBounces, HistoryEntry, OutboxEntry, Queue, Ticket, utcnow
from tests.harness import DOMAIN, SUPPORT, Gateway
from tests.mail import agent_reply, customer_mail

AGENT = "carol@example.org"


@pytest.mark.parametrize(
    ("value", "cleaned"),
    [
        ("Hello\r\nBcc: victim@example.net", "Hello Bcc: victim@example.net"),
        ("tab\there", "tab here"),
        ("nul\x00byte\x7f and\x85next", "nulbyte and next"),
        ("line\u2028separator", "line separator"),
        ("  many   spaces  ", "many spaces"),
        ("x" * 2000, "x" * 900),
    ],
)
def test_header_text_cleaned(value: str, cleaned: str) -> None:
    assert clean_header_text(value) == cleaned


@pytest.mark.parametrize(
    "address",
    ["ana@example.com", "first.last+tag@sub.example.org", "jos\u00e9@example.com", "o'neil@example.com"],
)
def test_plain_addresses_valid(address: str) -> None:
    assert validate_address(address) == address


@pytest.mark.parametrize(
    "address",
    [
        "ana@example.com\r\nBcc: victim@example.net",
        "ana@example.com>, <victim@example.net",
        '"john doe"@example.com',
        "ana@@example.com",
        "ana example.com",
        "ana@example.com (comment)",
        "@example.com",
        "ana@",
        "ana@-example.com",
        ".ana@example.com",
        "a" * 65 + "@example.com",
        "ana@" + "a" * 260 + ".com",
        "",
    ],
)
def test_unsafe_addresses_invalid(address: str) -> None:
    with pytest.raises(InvalidAddress):
        validate_address(address)


def rendered(subject: str) -> RenderedMail:
    return RenderedMail(subject=subject, text="text body\n", html="<p>html body</p>")


def test_compose_keeps_injection_in_one_field() -> None:
    raw = compose_mail(
        rendered("[#1] Hello\r\nBcc: victim@example.net\nX-Evil: 1"),
        from_address=("Support\r\nBcc: a@example.net", "support@example.org"),
        to_address=("Ana\nCc: b@example.net", "ana@example.com"),
        message_id="mg.1@example.org",
        domain="example.org",
        auto_submitted="auto-replied",
        in_reply_to="bad id with spaces",
        references=["ok@example.com", "also bad\r\n"],
    )
    parsed = message_from_bytes(raw, policy=default)
    assert sorted(parsed.keys()) == sorted([
        "From", "To", "Subject", "Date", "Message-ID", "References", "Auto-Submitted",
        "X-Auto-Response-Suppress", "X-Loop", "Content-Type", "MIME-Version",
    ])
    assert str(parsed["Subject"]) == "[#1] Hello Bcc: victim@example.net X-Evil: 1"
    assert parsed["To"].addresses[0].addr_spec == "ana@example.com"
    assert str(parsed["References"]) == "<ok@example.com>"


def test_compose_rejects_unsafe_recipient() -> None:
    with pytest.raises(InvalidAddress):
        compose_mail(
            rendered("hello"),
            from_address=("Support", "support@example.org"),
            to_address=("Ana", "ana@example.com\r\nBcc: victim@example.net"),
            message_id="mg.2@example.org",
            domain="example.org",
            auto_submitted="auto-replied",
        )


def test_header_check_catches_extra_field() -> None:
    raw = b"From: a@example.org\r\nBcc: victim@example.net\r\nContent-Type: text/plain\r\nMIME-Version: 1.0\r\n\r\nx"
    with pytest.raises(HeaderInjection, match="bcc"):
        _check_header_names(raw, ["From"])


# -- caps and suppression through a running gateway ------------------------------


def open_ticket(desk: Gateway, sender: str = "ana@example.com", subject: str = "Printer jammed"):
    desk.send(customer_mail(subject=subject, sender=sender), sender, [SUPPORT])
    desk.wait_idle()
    ticket_id = desk.ticket_ids()[-1]
    notification = next(
        mail for mail in reversed(desk.delivered())
        if AGENT in str(mail["To"]) and f"[#{ticket_id}]" in str(mail["Subject"])
    )
    return ticket_id, notification


def delivery_report(original_message_id: str, recipient: str, number: int) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.com\r\nTo: support@support.example.org\r\n"
        f"Subject: Undelivered Mail\r\nMessage-ID: <dsn-{number}@mx.example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        "--r\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n"
        "--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n"
        "--r\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: <{original_message_id}>\r\n\r\n--r--\r\n"
    ).encode()


def mailgate(desk: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ, "MAILGATE_HOME": str(desk.app.settings.home), "MAILGATE_DOMAIN": DOMAIN,
    }
    return subprocess.run(
        [sys.executable, "-m", "mailgate", *args],
        capture_output=True, text=True, env=environment, timeout=120,
    )


def acknowledgements_to(desk: Gateway, address: str) -> list[OutboxEntry]:
    return [
        row for row in desk.outbox_rows() if row.kind == "acknowledgement" and row.rcpt_to == address
    ]


def test_hard_bounces_suppress_address(tmp_path: Path) -> None:
    with Gateway.start(home=tmp_path / "desk", suppress_after_hard_bounces=3) as desk:
        desk.add_queue()
        desk.add_agent("carol", AGENT)
        ticket_id, _ = open_ticket(desk, "gone@example.com")
        acknowledgement = acknowledgements_to(desk, "gone@example.com")[0]
        for number in range(3):
            report = delivery_report(acknowledgement.message_id, "gone@example.com", number)
            desk.send(report, "", [SUPPORT])
        desk.wait_idle()
        with desk.app.sessions() as session:
            row = session.get(AddressBounces, "gone@example.com")
            assert (row.hard_bounces, row.last_status) == (3, "5.1.1")
            assert row.suppressed_at is not None
            bounced = session.get(OutboxEntry, acknowledgement.id)
            assert bounced.state == "sent"
            assert bounced.last_error == "delivery report: gone@example.com failed 5.1.1"
        history = desk.ticket(ticket_id)["history"]
        failures = [entry for entry in history if entry["action"] == "delivery_failed"]
        assert [entry["details"]["outbox_ids"] for entry in failures] == [[acknowledgement.id]] * 3

        listed = mailgate(desk, "suppressions", "list")
        assert listed.returncode == 0, listed.stderr
        assert "gone@example.com" in listed.stdout
        assert "suppressed" in listed.stdout

        second_id, _ = open_ticket(desk, "gone@example.com", subject="Still jammed")
        assert len(acknowledgements_to(desk, "gone@example.com")) == 1
        history = desk.ticket(second_id)["history"]
        withheld = [entry for entry in history if entry["action"] == "mail_withheld"]
        assert len(withheld) == 1
        assert "suppressed after repeated hard bounces" in withheld[0]["details"]["reason"]

        removed = mailgate(desk, "suppressions", "remove", "gone@example.com")
        assert removed.returncode == 0, removed.stderr
        open_ticket(desk, "gone@example.com", subject="Jammed a third time")
        assert len(acknowledgements_to(desk, "gone@example.com")) == 2
        assert ticket_id != second_id


def test_cap_per_ticket_withholds_notice(tmp_path: Path) -> None:
    with Gateway.start(
        home=tmp_path / "desk", auto_mail_cap_per_ticket_10_minutes=2
    ) as desk:
        desk.add_queue()
        desk.add_agent("carol", AGENT)
        ticket_id, notification = open_ticket(desk)
        address = notification["Reply-To"].addresses[0].addr_spec
        # The second mail to carol about this ticket: a forged reply's notice.
        desk.send(agent_reply(notification, "Forged.", "mallory@example.net"), "mallory@example.net", [address])
        desk.wait_idle()
        # The third, the notice of an expired token, is over the cap.
        with desk.app.sessions() as session:
            carol_id = find_user_by_email(session, AGENT).id
        expired = issue_token(
            desk.app.signing_keys[0], ticket_id, carol_id, ttl_days=1,
            now=utcnow() - timedelta(days=30),
        )
        late = f"support+{expired}@{DOMAIN}"
        desk.send(agent_reply(notification, "Late.", AGENT, to=late, in_reply_to=False), AGENT, [late])
        desk.wait_idle()
        to_carol = [row.kind for row in desk.outbox_rows() if row.rcpt_to == AGENT]
        assert to_carol == ["new_ticket", "reply_rejected_sender"]
        with desk.app.sessions() as session:
            actions = list(session.scalars(
                select(HistoryEntry.details).where(HistoryEntry.action == "mail_withheld")
            ))
        assert len(actions) == 1
        assert actions[0]["kind"] == "reply_rejected_expired"
        assert "got 2 automatic mails about ticket" in actions[0]["reason"]


def test_caps_count_their_windows(tmp_path: Path) -> None:
    settings = load_settings(
        home=tmp_path, auto_mail_cap_per_ticket_10_minutes=2, auto_mail_cap_per_ticket_day=3
    )
    app = App.create(settings)
    now = utcnow()
    with app.sessions.begin() as session:
        queue = Queue(name="Support", address=SUPPORT)
        session.add(queue)
        session.flush()
        ticket = Ticket(requester_email="ana@example.com", queue_id=queue.id)
        session.add(ticket)
        session.flush()

        def outbox(age: timedelta) -> OutboxEntry:
            row = OutboxEntry(
                ticket_id=ticket.id, kind="acknowledgement", mail_from="", rcpt_to="ana@example.com",
                message_id=f"m{age.total_seconds()}@example.org", raw=b"x", created_at=now - age,
            )
            session.add(row)
            session.flush()
            return row

        outbox(timedelta(hours=5))
        outbox(timedelta(minutes=30))
        third = outbox(timedelta(minutes=1))
        # Two earlier mails in the day, one in the last 10 minutes: allowed.
        assert withheld_reason(session, settings, third, now) is None
        fourth = outbox(timedelta(0))
        # Three in the day: over the daily cap of 3 before the 10-minute one.
        reason = withheld_reason(session, settings, fourth, now)
        assert reason is not None and "in the last day" in reason
        later = now + timedelta(hours=20)
        assert withheld_reason(session, settings, fourth, later) is None
    app.close()
