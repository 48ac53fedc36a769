"""Outbox rows leased and sent in batches, against a real relay and database.

One worker thread leases several rows, sends them over kept-open relay
connections and records each result on its own, so a row the relay
rejects neither loses nor repeats the others of its batch. The tests that
use the database run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from mailgate.app import App
from mailgate.delivery import OutboxDelivery
from mailgate.errors import PermanentDeliveryError
from mailgate.outbound import relay as relay_module
from mailgate.outbound.relay import RelaySender
from mailgate.settings import load_settings, parse_relay_url
from store.directory import add_queue
from store.group_commit import GroupCommit
from store.models import HistoryEntry, OutboxEntry, Queue, Ticket, utcnow
from store.outbox import OutgoingMail, add_to_outbox
from tests.harness import DOMAIN, SUPPORT, fresh_postgres_database
from tests.process import free_port
from tests.relay import RelayServer

# Local parts (without their trailing number) that the relay rejects, and
# its reply. smtplib closes the connection itself after a 421.
RCPT_REPLIES = {
    "busy": "451 4.2.1 Mailbox busy, try later",
    "unknown": "550 5.1.1 No such user",
    "closing": "421 4.3.2 Service shutting down, closing connection",
}
DATA_REPLIES = {"quota": "452 4.2.2 Over quota"}


def _reply_for(address: str, replies: dict[str, str]) -> str | None:
    return replies.get(address.partition("@")[0].rstrip("0123456789"))


class SelectiveRelay:
    """aiosmtpd handler that rejects some recipients by their local part
    until ``accept_all`` is set, and keeps the Message-ID of every mail it
    accepts and the client address of every connection that sent one."""

    def __init__(self) -> None:
        self.accept_all = False
        self.delay_seconds = 0.0
        self.accepted: list[str] = []
        self.peers: set[tuple[str, int]] = set()
        self._lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, options) -> str:
        reply = _reply_for(address, RCPT_REPLIES)
        if reply and not self.accept_all:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        reply = _reply_for(envelope.rcpt_tos[0], DATA_REPLIES)
        if reply and not self.accept_all:
            return reply
        policy = email.policy.default
        message = email.message_from_bytes(envelope.content, policy=policy)
        with self._lock:
            self.accepted.append(str(message["Message-ID"]).strip())
            self.peers.add(tuple(session.peer[:2]))
        return "250 2.0.0 OK"


Relay = tuple[SelectiveRelay, int]


@pytest.fixture
def relay() -> Iterator[Relay]:
    handler = SelectiveRelay()
    with RelayServer(handler) as server:
        yield handler, server.port


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path: Path, relay: Relay) -> Iterator[App]:
    _, port = relay
    settings: dict[str, Any] = {
        "home": tmp_path / "home", "domain": DOMAIN,
        "smtp_relay": f"smtp://127.0.0.1:{port}",
        # Retries come due at once, so a second pass can send them.
        "outbox_backoff_seconds": 0.001,
    }
    if request.param == "postgresql":
        request.getfixturevalue("postgres_server")
        database = fresh_postgres_database()
    else:
        database = nullcontext(None)
    with database as database_url:
        if database_url:
            settings["database_url"] = database_url
        application = App.create(load_settings(**settings))
        add_queue(application.sessions, "Support", SUPPORT)
        try:
            yield application
        finally:
            application.close()


def queue_rows(app: App, local_parts: list[str]) -> tuple[int, list[int]]:
    """Add a ticket and one outbox row per local part; return their ids."""
    with app.sessions.begin() as session:
        queue = session.scalars(select(Queue)).one()
        ticket = Ticket(subject="Batch", requester_email="ana@example.com", queue_id=queue.id)
        session.add(ticket)
        session.flush()
        rows = []
        for number, local in enumerate(local_parts):
            message_id = f"batch-{number}@{DOMAIN}"
            raw = f"Message-ID: <{message_id}>\r\nSubject: {local}\r\n\r\nbody\r\n"
            rows.append(add_to_outbox(session, OutgoingMail(
                kind="notice", mail_from=SUPPORT, rcpt_to=f"{local}@example.org",
                message_id=message_id, raw=raw.encode(), ticket_id=ticket.id,
            )))
        session.flush()
        return ticket.id, [row.id for row in rows]


def outbox_rows(app: App) -> dict[str, OutboxEntry]:
    """Return the outbox rows by the local part of their recipient."""
    with app.sessions() as session:
        rows = session.scalars(select(OutboxEntry))
        return {row.rcpt_to.partition("@")[0]: row for row in rows}


def history(app: App, ticket_id: int) -> list[HistoryEntry]:
    with app.sessions() as session:
        query = select(HistoryEntry).where(HistoryEntry.ticket_id == ticket_id)
        return list(session.scalars(query.order_by(HistoryEntry.id)))


def message_ids(numbers: list[int]) -> list[str]:
    return sorted(f"<batch-{number}@{DOMAIN}>" for number in numbers)


def test_rejected_rows_leave_batch_intact(app: App, relay: Relay) -> None:
    handler, _ = relay
    names = ["ok0", "busy1", "ok2", "unknown3", "quota4", "closing5", "ok6", "ok7"]
    ticket_id, ids = queue_rows(app, names)
    delivery = OutboxDelivery(app)

    results = dict(delivery.deliver_due(ids[0], others=len(ids) - 1))

    assert sorted(results) == sorted(ids)
    assert sorted(handler.accepted) == message_ids([0, 2, 6, 7])
    # smtplib closed the connection after the 421, so the rows after it
    # went over a second one.
    assert len(handler.peers) == 2
    rows = outbox_rows(app)
    assert {name: row.state for name, row in rows.items()} == {
        "ok0": "sent", "busy1": "pending", "ok2": "sent", "unknown3": "dead",
        "quota4": "pending", "closing5": "pending", "ok6": "sent", "ok7": "sent",
    }
    assert all(row.attempts == 1 for row in rows.values())
    assert "451" in rows["busy1"].last_error
    assert "452" in rows["quota4"].last_error
    assert "421" in rows["closing5"].last_error
    assert "550" in rows["unknown3"].last_error
    assert rows["ok0"].sent_at is not None
    assert rows["ok0"].last_error is None
    assert results[rows["busy1"].id].retry_in_seconds is not None
    assert results[rows["unknown3"].id].dead

    entries = history(app, ticket_id)
    assert Counter(entry.action for entry in entries) == {
        "notice_sent": 4, "notice_retry": 3, "notice_failed": 1,
    }
    failed = next(entry for entry in entries if entry.action == "notice_failed")
    assert failed.details == {
        "outbox_id": rows["unknown3"].id, "rcpt_to": "unknown3@example.org",
        "error": rows["unknown3"].last_error,
    }
    retry = next(entry for entry in entries if entry.action == "notice_retry")
    assert set(retry.details) == {
        "outbox_id", "rcpt_to", "attempt", "error", "retry_in_seconds",
    }
    assert retry.details["attempt"] == 1
    sent = next(entry for entry in entries if entry.action == "notice_sent")
    assert set(sent.details) == {"outbox_id", "rcpt_to", "error"}

    handler.accept_all = True
    again = dict(delivery.deliver_due(ids[0], others=len(ids) - 1))

    retried = ("busy1", "quota4", "closing5")
    assert sorted(again) == sorted(rows[name].id for name in retried)
    assert all(result.sent for result in again.values())
    counts = Counter(handler.accepted)
    assert sorted(counts) == message_ids([0, 1, 2, 4, 5, 6, 7])
    assert set(counts.values()) == {1}
    rows = outbox_rows(app)
    assert rows["unknown3"].state == "dead"
    assert all(row.state == "sent" for name, row in rows.items() if name != "unknown3")
    assert rows["busy1"].attempts == 2


def test_parallel_batches_send_each_once(app: App, relay: Relay) -> None:
    handler, _ = relay
    ticket_id, ids = queue_rows(app, [f"ok{number}" for number in range(48)])
    delivery = OutboxDelivery(app)
    # Every id twice, as the broker and the sweeper may enqueue it.
    jobs = ids + ids
    errors: list[BaseException] = []
    jobs_lock = threading.Lock()
    barrier = threading.Barrier(4)

    def work() -> None:
        barrier.wait()
        while True:
            with jobs_lock:
                if not jobs:
                    return
                outbox_id = jobs.pop()
            try:
                delivery.deliver_due(outbox_id, others=5)
            except BaseException as error:  # reported by the assert below
                errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert errors == []
    counts = Counter(handler.accepted)
    assert len(counts) == len(ids)
    assert set(counts.values()) == {1}
    rows = outbox_rows(app).values()
    assert {row.state for row in rows} == {"sent"}
    assert {row.attempts for row in rows} == {1}
    actions = Counter(entry.action for entry in history(app, ticket_id))
    assert actions == {"notice_sent": len(ids)}
    # The relay sender opens at most 4 connections (its default cap).
    assert len(handler.peers) <= 4


def test_short_lease_releases_unsent_rows(app: App, relay: Relay) -> None:
    handler, _ = relay
    handler.delay_seconds = 0.3
    app.settings.outbox_send_lease_seconds = 0.4
    _, ids = queue_rows(app, ["ok0", "ok1", "ok2"])

    results = dict(OutboxDelivery(app).deliver_due(ids[0], others=2))

    # The first send took more than half of the 0.4 s lease, so the other
    # two rows were released unsent: due at once, no attempt counted.
    assert results[ids[0]].sent
    assert results[ids[1]].released
    assert results[ids[2]].released
    assert handler.accepted == message_ids([0])
    rows = outbox_rows(app)
    assert [rows[name].state for name in ("ok0", "ok1", "ok2")] == [
        "sent", "pending", "pending",
    ]
    assert rows["ok1"].attempts == 0
    assert rows["ok1"].next_attempt_at <= utcnow()


def test_leased_row_skipped_by_others(app: App, relay: Relay) -> None:
    handler, _ = relay
    _, ids = queue_rows(app, ["ok0", "ok1"])
    with app.sessions.begin() as session:
        session.execute(
            update(OutboxEntry).where(OutboxEntry.id == ids[0])
            .values(next_attempt_at=utcnow() + timedelta(seconds=300), attempts=1)
        )

    results = OutboxDelivery(app).deliver_due(ids[0], others=4)

    # The row under another worker's lease is neither sent nor changed;
    # the message for it still sends the other due row.
    assert [outbox_id for outbox_id, _ in results] == [ids[1]]
    assert handler.accepted == message_ids([1])
    row = outbox_rows(app)["ok0"]
    assert row.state == "pending"
    assert row.attempts == 1


def mail(name: str) -> bytes:
    return f"Message-ID: <{name}@{DOMAIN}>\r\n\r\nbody\r\n.\r\n".encode()


def test_relay_connection_reused_between_mails(relay: Relay) -> None:
    handler, port = relay
    url = parse_relay_url(f"smtp://127.0.0.1:{port}")
    sender = RelaySender(url, max_connections=2)
    try:
        for number in range(5):
            sender.send(number, SUPPORT, "ok@example.org", mail(f"reuse-{number}"))
        with pytest.raises(PermanentDeliveryError, match="550"):
            sender.send(5, SUPPORT, "unknown@example.org", mail("reuse-5"))
        sender.send(6, SUPPORT, "ok@example.org", mail("reuse-6"))
    finally:
        sender.close()
    assert len(handler.accepted) == 6
    assert len(handler.peers) == 1


def test_relay_idle_connection_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    handler = SelectiveRelay()
    port = free_port()
    # The relay closes a connection after 0.5 s without a command.
    controller = Controller(handler, hostname="127.0.0.1", port=port, timeout=0.5)
    controller.start()
    monkeypatch.setattr(relay_module, "IDLE_CHECK_SECONDS", 0.1)
    sender = RelaySender(parse_relay_url(f"smtp://127.0.0.1:{port}"))
    try:
        sender.send(1, SUPPORT, "ok@example.org", mail("idle-1"))
        time.sleep(1.5)
        sender.send(2, SUPPORT, "ok@example.org", mail("idle-2"))
    finally:
        sender.close()
        controller.stop()
    assert handler.accepted == [f"<idle-1@{DOMAIN}>", f"<idle-2@{DOMAIN}>"]
    assert len(handler.peers) == 2


def test_group_commit_failure_stays_own(tmp_path: Path) -> None:
    app = App.create(load_settings(home=tmp_path / "home", domain=DOMAIN))
    add_queue(app.sessions, "Support", SUPPORT)
    group = GroupCommit(app.sessions)
    barrier = threading.Barrier(6)
    outcomes: dict[int, object] = {}

    def add_ticket(number: int) -> None:
        def work(session) -> int:
            if number == 3:
                raise ValueError("rejected unit")
            queue = session.scalars(select(Queue)).one()
            ticket = Ticket(
                subject=f"t{number}", requester_email="a@example.com", queue_id=queue.id
            )
            session.add(ticket)
            session.flush()
            return ticket.id

        barrier.wait()
        try:
            outcomes[number] = group.run(work)
        except ValueError as error:
            outcomes[number] = error

    threads = [threading.Thread(target=add_ticket, args=(n,)) for n in range(6)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        with app.sessions() as session:
            subjects = sorted(session.scalars(select(Ticket.subject)))
    finally:
        app.close()
    assert isinstance(outcomes[3], ValueError)
    assert subjects == ["t0", "t1", "t2", "t4", "t5"]
    assert all(isinstance(outcomes[number], int) for number in (0, 1, 2, 4, 5))
