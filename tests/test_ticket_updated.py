""""Ticket Updated" mail: to the assignee and watchers, not to whoever made
the change, one mail per unit of work, threaded under the first mail."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from store.directory import find_user_by_email
from store.models import Role
from store.operations import Actor, get_ticket, update_ticket, watch
from tests.harness import SUPPORT, Gateway
from tests.mail import agent_reply, customer_mail

FRAN = "fran@example.org"
MONA = "mona@example.org"


@pytest.fixture
def desk(gateway: Gateway):
    gateway.add_queue()
    gateway.add_agent("fran", FRAN)
    gateway.add_agent("mona", MONA, role=Role.MANAGER)
    gateway.send(customer_mail(), "ana@example.com", [SUPPORT])
    gateway.wait_idle()
    [ticket_id] = gateway.ticket_ids()
    with gateway.app.sessions.begin() as session:
        mona = Actor(find_user_by_email(session, MONA), "cli")
        ticket = get_ticket(session, mona, ticket_id)
        update_ticket(session, mona, ticket, assignee="fran")
        watch(session, mona, ticket)
    return gateway, ticket_id


def updates_to(desk: Gateway, address: str) -> list:
    return [m for m in desk.delivered()
            if "Ticket Updated" in m["Subject"] and m["To"].addresses[0].addr_spec == address]


def first_mail_to(desk: Gateway, address: str):
    return next(m for m in desk.delivered() if m["To"].addresses[0].addr_spec == address)


def test_customer_message_reaches_both(desk) -> None:
    gateway, ticket_id = desk
    follow_up = customer_mail(subject=f"Re: [#{ticket_id}] Printer", body="Still jammed.\n")
    gateway.send(follow_up, "ana@example.com", [SUPPORT])
    gateway.wait_idle()
    for address in (FRAN, MONA):
        [mail] = updates_to(gateway, address)
        body = mail.get_body(("plain",)).get_content()
        assert "The customer wrote." in body
        assert "Still jammed." in body
        root = first_mail_to(gateway, address)["Message-ID"]
        assert mail["In-Reply-To"] == root
        assert mail["Subject"].startswith(f"[#{ticket_id}] ")


def test_note_author_gets_no_update(desk) -> None:
    gateway, ticket_id = desk
    notification = first_mail_to(gateway, FRAN)
    reply = agent_reply(notification, "Called the customer.", FRAN)
    gateway.send(reply, FRAN, [notification["Reply-To"].addresses[0].addr_spec])
    gateway.wait_idle()
    assert updates_to(gateway, FRAN) == []
    [mail] = updates_to(gateway, MONA)
    body = mail.get_body(("plain",)).get_content()
    assert "Note by fran" in body
    assert "Called the customer." in body


def test_changes_together_make_one_mail(desk) -> None:
    gateway, ticket_id = desk
    env = gateway.cli_env()
    result = subprocess.run(
        [sys.executable, "-m", "mailgate", "tickets", "update", str(ticket_id), "--stage", "pending",
         "--tag", "printer", "--escalation", "2", "--as", "mona"],
        capture_output=True, env=env, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # The CLI has no workers of its own; the gateway's sweeper sends the row.
    gateway.actors.enqueue_outbox(gateway.outbox_rows()[-1].id)
    gateway.wait_idle()
    assert updates_to(gateway, MONA) == []
    [mail] = updates_to(gateway, FRAN)
    body = mail.get_body(("plain",)).get_content()
    assert "Stage: new -> pending" in body
    assert "Tags: (none) -> printer" in body
    assert "Escalation: 0 -> 2" in body
    assert "updated by mona" in body
