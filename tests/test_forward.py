"""Forwarding a ticket to a role and an outside address, and the outside
address's reply coming back as a note marked as theirs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from store.models import Role
from tests.harness import SUPPORT, Gateway
from tests.mail import agent_reply, customer_mail

FRAN = "fran@example.org"
EXTERNAL = "vendor@example.net"


@pytest.fixture
def desk(gateway: Gateway):
    gateway.add_queue()
    gateway.add_agent("fran", FRAN)
    gateway.add_agent("mona", "mona@example.org", role=Role.MANAGER)
    gateway.add_agent("max", "max@example.org", role=Role.MANAGER)
    gateway.send(customer_mail(), "ana@example.com", [SUPPORT])
    gateway.wait_idle()
    return gateway, gateway.ticket_ids()[0]


def forward(gateway: Gateway, ticket_id: int, *args: str) -> subprocess.CompletedProcess:
    env = gateway.cli_env()
    result = subprocess.run(
        [sys.executable, "-m", "mailgate", "tickets", "forward", str(ticket_id), *args, "--as", "fran"],
        capture_output=True, env=env, timeout=60,
    )
    for row in gateway.outbox_rows():
        if row.state == "pending":
            gateway.actors.enqueue_outbox(row.id)
    gateway.wait_idle()
    return result


def forwards(gateway: Gateway) -> list:
    return [m for m in gateway.delivered() if "Fwd:" in str(m["Subject"])]


def test_forward_reaches_role_and_address(desk) -> None:
    gateway, ticket_id = desk
    with gateway.app.sessions.begin() as session:
        from store.directory import find_user_by_email
        from store.operations import Actor, add_note, get_ticket

        fran = Actor(find_user_by_email(session, FRAN), "cli")
        add_note(session, fran, get_ticket(session, fran, ticket_id), "Secret internal remark.")
    result = forward(gateway, ticket_id, "--to", "manager", "--to", EXTERNAL, "--history",
                     "--message", "Can you check this printer?")
    assert result.returncode == 0, result.stderr
    sent = forwards(gateway)
    recipients = sorted(m["To"].addresses[0].addr_spec for m in sent)
    assert recipients == ["max@example.org", "mona@example.org", EXTERNAL]
    outside = next(m for m in sent if m["To"].addresses[0].addr_spec == EXTERNAL)
    body = outside.get_body(("plain",)).get_content()
    assert "Can you check this printer?" in body
    assert "shows a paper jam" in body
    assert "History:" in body
    assert "Secret internal remark." not in body
    assert FRAN not in outside.as_string()
    history = gateway.ticket(ticket_id)["history"]
    [entry] = [h for h in history if h["action"] == "forwarded"]
    assert sorted(entry["details"]["recipients"]) == recipients
    assert entry["details"]["include_history"] is True
    assert entry["details"]["include_notes"] is False


def test_notes_included_when_chosen(desk) -> None:
    gateway, ticket_id = desk
    with gateway.app.sessions.begin() as session:
        from store.directory import find_user_by_email
        from store.operations import Actor, add_note, get_ticket

        fran = Actor(find_user_by_email(session, FRAN), "cli")
        add_note(session, fran, get_ticket(session, fran, ticket_id), "Shared remark.")
    assert forward(gateway, ticket_id, "--to", EXTERNAL, "--notes").returncode == 0
    [sent] = forwards(gateway)
    assert "Shared remark." in sent.get_body(("plain",)).get_content()


def test_outside_reply_becomes_their_note(desk) -> None:
    gateway, ticket_id = desk
    assert forward(gateway, ticket_id, "--to", EXTERNAL).returncode == 0
    [sent] = forwards(gateway)
    reply = agent_reply(sent, "We will replace the fuser on Monday.", EXTERNAL)
    gateway.send(reply, EXTERNAL, [sent["Reply-To"].addresses[0].addr_spec])
    gateway.wait_idle()
    ticket = gateway.ticket(ticket_id)
    assert len(gateway.ticket_ids()) == 1
    [note] = ticket["notes"]
    assert note["body"] == "We will replace the fuser on Monday."
    assert note["author"] == EXTERNAL
    assert note["author_role"] == "external"


def test_outside_token_cannot_run_commands(desk) -> None:
    gateway, ticket_id = desk
    assert forward(gateway, ticket_id, "--to", EXTERNAL).returncode == 0
    [sent] = forwards(gateway)
    reply = agent_reply(sent, "#close\nDone.", EXTERNAL)
    gateway.send(reply, EXTERNAL, [sent["Reply-To"].addresses[0].addr_spec])
    gateway.wait_idle()
    ticket = gateway.ticket(ticket_id)
    assert ticket["stage"] == "new"
    assert [note["body"] for note in ticket["notes"]] == ["#close\nDone."]


def test_emailed_forward_command(desk) -> None:
    gateway, ticket_id = desk
    notification = next(m for m in gateway.delivered() if m["To"].addresses[0].addr_spec == FRAN)
    reply = agent_reply(notification, f"#forward {EXTERNAL}\nAsked the vendor.", FRAN)
    gateway.send(reply, FRAN, [notification["Reply-To"].addresses[0].addr_spec])
    gateway.wait_idle()
    [sent] = forwards(gateway)
    assert sent["To"].addresses[0].addr_spec == EXTERNAL
    assert [note["body"] for note in gateway.ticket(ticket_id)["notes"]] == ["Asked the vendor."]
