"""Outbound mail through a relay: retries with backoff, dead rows, history."""

from __future__ import annotations

from pathlib import Path

from tests.harness import SUPPORT, Gateway
from tests.mail import customer_mail
from tests.process import wait_for
from tests.relay import RecordingRelay, RelayServer


def test_relay_451_twice_then_delivered(tmp_path: Path, redis_url: str) -> None:
    relay = RecordingRelay(failures=2)
    with RelayServer(relay) as server, Gateway.start(
        home=tmp_path / "relay", redis_url=redis_url, smtp_relay=server.url,
        outbox_backoff_seconds=0.2, ack_limit_per_hour=0,
    ) as desk:
        desk.add_queue()
        desk.add_agent("carol", "carol@example.org")
        desk.send(customer_mail(), "ana@example.com", [SUPPORT])
        wait_for(lambda: len(relay.accepted) == 1, timeout=60)
        [row] = desk.outbox_rows()
        wait_for(lambda: desk.outbox_rows()[0].state == "sent", timeout=30)
        [row] = desk.outbox_rows()
        ticket = desk.ticket(desk.ticket_ids()[0])
    assert relay.attempts == 3
    assert relay.message_ids() == [f"<{row.message_id}>"]
    assert row.attempts == 3
    actions = [entry["action"] for entry in ticket["history"]]
    assert actions.count("new_ticket_retry") == 2
    assert actions.count("new_ticket_sent") == 1
    retries = [e for e in ticket["history"] if e["action"] == "new_ticket_retry"]
    assert "451" in retries[0]["details"]["error"]


def test_relay_550_marks_row_dead(tmp_path: Path) -> None:
    relay = RecordingRelay(failures=100, failure_reply="550 5.1.1 No such user")
    with RelayServer(relay) as server, Gateway.start(
        home=tmp_path / "dead", smtp_relay=server.url, ack_limit_per_hour=0,
    ) as desk:
        desk.add_queue()
        desk.add_agent("carol", "carol@example.org")
        desk.send(customer_mail(), "ana@example.com", [SUPPORT])
        wait_for(lambda: desk.outbox_rows() and desk.outbox_rows()[0].state == "dead", timeout=30)
        [row] = desk.outbox_rows()
        ticket = desk.ticket(desk.ticket_ids()[0])
    assert relay.attempts == 1
    assert relay.accepted == []
    assert "550" in row.last_error
    assert [e["action"] for e in ticket["history"]].count("new_ticket_failed") == 1


def test_verp_bounce_marks_row(tmp_path: Path) -> None:
    relay = RecordingRelay()
    with RelayServer(relay) as server, Gateway.start(
        home=tmp_path / "verp", smtp_relay=server.url, ack_limit_per_hour=0,
    ) as desk:
        desk.add_queue()
        desk.add_agent("carol", "carol@example.org")
        desk.send(customer_mail(), "ana@example.com", [SUPPORT])
        wait_for(lambda: len(relay.accepted) == 1, timeout=30)
        desk.wait_idle()
        [row] = desk.outbox_rows()
        return_path = relay.envelopes[0][0]
        assert return_path == f"bounces+{row.id}@support.example.org"
        bounce = (
            "From: MAILER-DAEMON@mx.example.org\r\nTo: " + return_path + "\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n"
            "Message-ID: <verp-bounce@mx.example.org>\r\n\r\nThe mail could not be delivered.\r\n"
        ).encode()
        desk.send(bounce, "", [return_path])
        desk.wait_idle()
        [row] = desk.outbox_rows()
        ticket_ids = desk.ticket_ids()
        ticket = desk.ticket(ticket_ids[0])
    assert row.last_error.startswith("bounced")
    assert len(ticket_ids) == 1
    failures = [e for e in ticket["history"] if e["action"] == "delivery_failed"]
    assert [f["details"]["recipient"] for f in failures] == ["carol@example.org"]
