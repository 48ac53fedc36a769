"""Mail in over SMTP, ticket, New Ticket mail, and a reply that becomes a note."""

from __future__ import annotations

import smtplib
import socket
from datetime import datetime, timedelta, timezone

import pytest

from mailgate.tokens import find_token, issue_token
from store.models import SpoolState
from tests.harness import DOMAIN, SUPPORT, Gateway
from tests.mail import agent_reply, customer_mail

AGENT = "carol@example.org"
OTHER_AGENT = "dave@example.org"


@pytest.fixture
def desk(gateway: Gateway) -> Gateway:
    gateway.add_queue()
    gateway.add_agent("carol", AGENT)
    gateway.add_agent("dave", OTHER_AGENT)
    return gateway


def open_ticket(desk: Gateway) -> tuple[int, dict]:
    """Send one customer mail; return the ticket id and carol's notification."""
    reply = desk.send(customer_mail(), "ana@example.com", [SUPPORT])
    assert reply.startswith("2.0.0 queued as ")
    desk.wait_idle()
    [ticket_id] = desk.ticket_ids()
    notifications = [m for m in desk.delivered() if m["To"].addresses[0].addr_spec == AGENT]
    assert len(notifications) == 1
    return ticket_id, notifications[0]


def test_new_mail_becomes_ticket(desk: Gateway) -> None:
    ticket_id, _ = open_ticket(desk)
    ticket = desk.ticket(ticket_id)
    assert ticket["subject"] == "Printer on floor 3 is jammed"
    assert ticket["requester"] == {"name": "Ana Customer", "email": "ana@example.com"}
    assert ticket["queue"] == "Support"
    assert ticket["stage"] == "new"
    assert len(ticket["messages"]) == 1
    assert "shows a paper jam" in ticket["messages"][0]["text"]


def test_queued_reply_names_spool_id(desk: Gateway) -> None:
    reply = desk.send(customer_mail(), "ana@example.com", [SUPPORT])
    [row] = desk.spool_rows()
    assert reply == f"2.0.0 queued as {row.id}"
    assert row.rcpt_tos == [SUPPORT]
    assert row.mail_from == "ana@example.com"


def test_new_ticket_mail_to_each_agent(desk: Gateway) -> None:
    ticket_id, notification = open_ticket(desk)
    recipients = sorted(
        m["To"].addresses[0].addr_spec for m in desk.delivered() if "New Ticket" in m["Subject"]
    )
    assert recipients == [AGENT, OTHER_AGENT]
    assert notification["Subject"] == f"[#{ticket_id}] New Ticket: Printer on floor 3 is jammed"
    assert notification["Auto-Submitted"] == "auto-generated"
    reply_to = notification["Reply-To"].addresses[0].addr_spec
    assert reply_to.startswith("support+r.")
    assert reply_to.endswith("@" + DOMAIN)
    assert len(reply_to.split("@")[0]) <= 64
    assert find_token(notification["Message-ID"]) == find_token(reply_to)
    assert notification.get_body(("html",)) is not None
    assert "shows a paper jam" in notification.get_body(("plain",)).get_content()


def test_customer_gets_one_acknowledgement(desk: Gateway) -> None:
    ticket_id, _ = open_ticket(desk)
    acks = [m for m in desk.delivered() if m["To"].addresses[0].addr_spec == "ana@example.com"]
    assert len(acks) == 1
    assert acks[0]["Subject"] == f"[#{ticket_id}] Printer on floor 3 is jammed"
    assert acks[0]["Auto-Submitted"] == "auto-replied"
    assert acks[0]["Return-Path"] == "<>"


def test_history_records_each_step(desk: Gateway) -> None:
    ticket_id, _ = open_ticket(desk)
    actions = [entry["action"] for entry in desk.ticket(ticket_id)["history"]]
    assert actions[:2] == ["ticket_created", "message_added"]
    assert actions.count("new_ticket_sent") == 2
    assert actions.count("acknowledgement_sent") == 1
    actors = {entry["actor"] for entry in desk.ticket(ticket_id)["history"]}
    assert "customer:ana@example.com" in actors
    assert "system" in actors


def test_agent_reply_becomes_one_note(desk: Gateway) -> None:
    ticket_id, notification = open_ticket(desk)
    reply = agent_reply(notification, "I will call the customer at 3 pm.", f"Carol <{AGENT}>")
    desk.send(reply, AGENT, [notification["Reply-To"].addresses[0].addr_spec])
    desk.wait_idle()
    ticket = desk.ticket(ticket_id)
    assert len(ticket["notes"]) == 1
    assert ticket["notes"][0]["author"] == "carol"
    assert ticket["notes"][0]["body"] == "I will call the customer at 3 pm."
    assert "wrote:" in ticket["notes"][0]["trimmed"]
    assert len(ticket["messages"]) == 1
    assert "note_added" in [entry["action"] for entry in ticket["history"]]


def test_reply_by_in_reply_to_only(desk: Gateway) -> None:
    ticket_id, notification = open_ticket(desk)
    reply = agent_reply(notification, "Taking this one.", AGENT, to=SUPPORT)
    desk.send(reply, AGENT, [SUPPORT])
    desk.wait_idle()
    notes = desk.ticket(ticket_id)["notes"]
    assert [note["body"] for note in notes] == ["Taking this one."]
    assert desk.ticket_ids() == [ticket_id]


def assert_rejected(
    desk: Gateway, ticket_id: int, reason_part: str, *, notices_to: tuple[str, ...] = ()
) -> None:
    """The reply adds nothing; the only mail it causes is a notice to the
    token's owner, never one to the claimed sender."""
    sent_before = len(desk.delivered())
    desk.wait_idle()
    assert desk.ticket(ticket_id)["notes"] == []
    assert desk.ticket_ids() == [ticket_id]
    last = desk.spool_rows()[-1]
    assert last.state == SpoolState.REJECTED.value
    assert reason_part in (last.error or "")
    new_mail = desk.delivered()[sent_before:]
    assert [str(mail["To"]).rpartition("<")[2].strip(">") for mail in new_mail] == list(notices_to)


def test_reply_from_other_sender_rejected(desk: Gateway) -> None:
    ticket_id, notification = open_ticket(desk)
    reply = agent_reply(notification, "Close it.", "mallory@example.com")
    desk.send(reply, "mallory@example.com", [notification["Reply-To"].addresses[0].addr_spec])
    assert_rejected(desk, ticket_id, "not the agent", notices_to=(AGENT,))


def test_other_agent_cannot_use_token(desk: Gateway) -> None:
    ticket_id, notification = open_ticket(desk)
    reply = agent_reply(notification, "Mine now.", OTHER_AGENT)
    desk.send(reply, OTHER_AGENT, [notification["Reply-To"].addresses[0].addr_spec])
    assert_rejected(desk, ticket_id, "not the agent", notices_to=(AGENT,))


def test_changed_token_character_rejected(desk: Gateway) -> None:
    ticket_id, notification = open_ticket(desk)
    address = notification["Reply-To"].addresses[0].addr_spec
    local, domain = address.split("@")
    forged = local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + domain
    reply = agent_reply(notification, "Forged.", AGENT, to=forged, in_reply_to=False)
    desk.send(reply, AGENT, [forged])
    assert_rejected(desk, ticket_id, "signature")


def test_expired_token_rejected(desk: Gateway) -> None:
    ticket_id, notification = open_ticket(desk)
    long_ago = datetime.now(timezone.utc) - timedelta(days=400)
    with desk.app.sessions() as session:
        from store.directory import find_user_by_email

        carol = find_user_by_email(session, AGENT)
    token = issue_token(desk.app.signing_keys[0], ticket_id, carol.id, ttl_days=30, now=long_ago)
    address = f"support+{token}@{DOMAIN}"
    reply = agent_reply(notification, "Too late.", AGENT, to=address, in_reply_to=False)
    desk.send(reply, AGENT, [address])
    assert_rejected(desk, ticket_id, "expired", notices_to=(AGENT,))


def test_upper_cased_token_still_works(desk: Gateway) -> None:
    ticket_id, notification = open_ticket(desk)
    address = notification["Reply-To"].addresses[0].addr_spec.upper()
    reply = agent_reply(notification, "Case folded.", AGENT, to=address, in_reply_to=False)
    desk.send(reply, AGENT, [address])
    desk.wait_idle()
    assert [note["body"] for note in desk.ticket(ticket_id)["notes"]] == ["Case folded."]


def test_unserved_recipient_gets_550(desk: Gateway) -> None:
    with desk.smtp() as client:
        client.ehlo("client.example.com")
        client.mail("ana@example.com")
        for address in ("sales@support.example.org", "someone@example.net"):
            code, message = client.rcpt(address)
            assert code == 550, address
            assert b"not served" in message


def test_size_advertised_and_enforced(tmp_path) -> None:
    with Gateway.start(home=tmp_path / "small", max_message_bytes=4096) as desk:
        desk.add_queue()
        with desk.smtp() as client:
            client.ehlo("client.example.com")
            assert client.has_extn("size")
            assert client.esmtp_features["size"] == "4096"
        big = customer_mail(body="x" * 8000 + "\n")
        with pytest.raises(smtplib.SMTPDataError) as raised:
            desk.send(big, "ana@example.com", [SUPPORT])
        assert raised.value.smtp_code == 552
        assert desk.spool_rows() == []


def test_follow_up_from_requester_threads(desk: Gateway) -> None:
    ticket_id, _ = open_ticket(desk)
    follow_up = customer_mail(subject=f"Re: [#{ticket_id}] Printer on floor 3 is jammed",
                              body="It is working again.\n")
    desk.send(follow_up, "ana@example.com", [SUPPORT])
    desk.wait_idle()
    assert desk.ticket_ids() == [ticket_id]
    messages = desk.ticket(ticket_id)["messages"]
    assert [m["text"].strip() for m in messages][1] == "It is working again."


def test_tag_from_stranger_opens_new_ticket(desk: Gateway) -> None:
    ticket_id, _ = open_ticket(desk)
    mail = customer_mail(subject=f"[#{ticket_id}] let me in", sender="eve@example.net")
    desk.send(mail, "eve@example.net", [SUPPORT])
    desk.wait_idle()
    assert len(desk.ticket_ids()) == 2
    assert len(desk.ticket(ticket_id)["messages"]) == 1


def test_same_mail_twice_one_ticket(desk: Gateway) -> None:
    mail = customer_mail()
    desk.send(mail, "ana@example.com", [SUPPORT])
    desk.send(mail, "ana@example.com", [SUPPORT])
    desk.wait_idle()
    assert len(desk.ticket_ids()) == 1
    states = [row.state for row in desk.spool_rows()]
    assert sorted(states) == ["duplicate", "processed"]


def test_automatic_mail_gets_no_acknowledgement(desk: Gateway) -> None:
    for number, headers in enumerate([
        {"Auto_Submitted": "auto-replied"},
        {"Precedence": "bulk"},
        {"List_Id": "<news.example.com>"},
    ]):
        desk.send(customer_mail(subject=f"notice {number}", **headers), "news@example.com", [SUPPORT])
    desk.send(customer_mail(subject="bounce"), "", [SUPPORT])
    desk.wait_idle()
    assert len(desk.ticket_ids()) == 4
    to_customer = [m for m in desk.delivered() if "example.com" in str(m["To"])]
    assert to_customer == []


def test_garbage_stays_failed_and_retryable(desk: Gateway) -> None:
    desk.send(b"\x00\x01\x02 not a mail at all\r\n", "ana@example.com", [SUPPORT])
    desk.wait_idle()
    [row] = desk.spool_rows()
    assert row.state == SpoolState.FAILED.value
    assert "cannot be parsed" in row.error
    assert desk.ticket_ids() == []
    from store.spool import retry_spool_entry

    assert retry_spool_entry(desk.app.sessions, row.id)
    assert desk.spool_rows()[0].state == SpoolState.PENDING.value


def test_empty_data_rejected(desk: Gateway) -> None:
    with desk.smtp() as client:
        client.ehlo("client.example.com")
        client.mail("ana@example.com")
        client.rcpt(SUPPORT)
        code, message = client.data(b"\r\n")
    assert code == 554
    assert b"message is empty" in message
    assert desk.spool_rows() == []


def test_eight_bit_helo_still_spools(desk: Gateway) -> None:
    raw = customer_mail().as_bytes().replace(b"\n", b"\r\n")
    with socket.create_connection(("127.0.0.1", desk.port), timeout=10) as connection:
        reader = connection.makefile("rb")

        def command(line: bytes) -> bytes:
            connection.sendall(line + b"\r\n")
            reply = reader.readline()
            while reply[3:4] == b"-":
                reply = reader.readline()
            return reply

        assert reader.readline().startswith(b"220")
        assert command(b"EHLO caf\xe9.example.com").startswith(b"250")
        assert command(b"MAIL FROM:<ana@example.com>").startswith(b"250")
        assert command(f"RCPT TO:<{SUPPORT}>".encode()).startswith(b"250")
        assert command(b"DATA").startswith(b"354")
        assert command(raw + b".").startswith(b"250")
    desk.wait_idle()
    assert len(desk.ticket_ids()) == 1
    assert desk.spool_rows()[0].helo == "caf\ufffd.example.com"


def test_made_up_plus_address_rejected(desk: Gateway) -> None:
    with desk.smtp() as client:
        client.ehlo("client.example.com")
        client.mail("ana@example.com")
        assert client.rcpt("root+x@support.example.org")[0] == 550
        assert client.rcpt("support+anything@support.example.org")[0] == 250
        assert client.rcpt("bounces+12@support.example.org")[0] == 250


def test_thread_token_from_customer_threads(desk: Gateway) -> None:
    ticket_id, notification = open_ticket(desk)
    follow_up = customer_mail(subject="Re: printer", body="Any news?\n",
                              In_Reply_To=str(notification["Message-ID"]))
    desk.send(follow_up, "ana@example.com", [SUPPORT])
    desk.wait_idle()
    assert desk.ticket_ids() == [ticket_id]
    assert [m["text"].strip() for m in desk.ticket(ticket_id)["messages"]][-1] == "Any news?"


def test_two_from_addresses_rejected(desk: Gateway) -> None:
    ticket_id, notification = open_ticket(desk)
    reply = agent_reply(notification, "Sneaky.", AGENT)
    reply.replace_header("From", f"{AGENT}, mallory@example.com")
    desk.send(reply, AGENT, [notification["Reply-To"].addresses[0].addr_spec])
    assert_rejected(desk, ticket_id, "several addresses")
