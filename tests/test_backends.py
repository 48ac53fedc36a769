"""The same mail path on PostgreSQL and on Dramatiq's Redis broker."""

from __future__ import annotations

from pathlib import Path

from tests.harness import SUPPORT, Gateway
from tests.mail import agent_reply, customer_mail

AGENT = "carol@example.org"


def run_ticket_and_note(desk: Gateway) -> None:
    desk.add_queue()
    desk.add_agent("carol", AGENT)
    first = customer_mail()
    desk.send(first, "ana@example.com", [SUPPORT])
    desk.wait_idle()
    [ticket_id] = desk.ticket_ids()
    [notification] = [m for m in desk.delivered() if "New Ticket" in m["Subject"]]
    reply = agent_reply(notification, "On it.", AGENT)
    desk.send(reply, AGENT, [notification["Reply-To"].addresses[0].addr_spec])
    desk.send(first, "ana@example.com", [SUPPORT])  # the same mail again
    desk.wait_idle()
    ticket = desk.ticket(ticket_id)
    assert desk.ticket_ids() == [ticket_id]
    assert [note["body"] for note in ticket["notes"]] == ["On it."]
    assert sorted(row.state for row in desk.spool_rows()) == ["duplicate", "processed", "processed"]
    assert [row.state for row in desk.outbox_rows()] == ["sent", "sent"]


def test_flow_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    with Gateway.start(home=tmp_path / "pg", database_url=postgres_url) as desk:
        run_ticket_and_note(desk)


def test_flow_on_redis_broker(tmp_path: Path, redis_url: str) -> None:
    with Gateway.start(home=tmp_path / "redis", redis_url=redis_url) as desk:
        run_ticket_and_note(desk)
