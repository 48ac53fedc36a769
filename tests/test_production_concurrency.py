"""Two workers given the same spool or outbox row do the work once.

Dramatiq delivers at least once, and the sweeper enqueues rows that are
already queued, so the same id reaches two workers. Each test starts two
threads on the same ids at the same moment (a barrier) against a real
database and a real SMTP relay, and counts what was done.
"""

from __future__ import annotations

import email
import email.policy
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from mailgate.app import App
from mailgate.delivery import deliver_outbox_entry
from mailgate.pipeline import process_spool_entry
from mailgate.settings import load_settings
from store.directory import add_queue, add_user
from store.models import OutboxEntry, Role, SpoolEntry, Ticket
from store.spool import Envelope, spool_message
from tests.harness import DOMAIN, SUPPORT, fresh_postgres_database
from tests.mail import customer_mail
from tests.process import free_port

ROWS = 12
THREADS_PER_ROW = 2


class RelaySink:
    """aiosmtpd handler that keeps every mail it is given."""

    def __init__(self) -> None:
        self.message_ids: list[str] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.message_ids.append(str(message["Message-ID"]).strip())
        return "250 2.0.0 OK"


@pytest.fixture
def relay() -> Iterator[tuple[RelaySink, int]]:
    sink = RelaySink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def app(
    request: pytest.FixtureRequest, tmp_path: Path, relay: tuple[RelaySink, int]
) -> Iterator[App]:
    """The application on each database, sending through the relay sink."""
    _, relay_port = relay
    settings: dict[str, Any] = {
        "home": tmp_path / "home", "domain": DOMAIN,
        "smtp_relay": f"smtp://127.0.0.1:{relay_port}",
    }
    with fresh_database(request) as database_url:
        if database_url:
            settings["database_url"] = database_url
        application = App.create(load_settings(**settings))
        add_queue(application.sessions, "Support", SUPPORT)
        add_user(application.sessions, "carol", "carol@example.org", Role.FRONTLINE, ["Support"])
        try:
            yield application
        finally:
            application.close()


def fresh_database(request: pytest.FixtureRequest):
    if request.param == "postgresql":
        request.getfixturevalue("postgres_server")
        return fresh_postgres_database()
    from contextlib import nullcontext

    return nullcontext(None)


def spool_mails(app: App, count: int, *, twins: bool = False) -> list[int]:
    """Spool ``count`` distinct mails, or with ``twins`` each one twice."""
    ids = []
    for number in range(count):
        raw = customer_mail(
            subject=f"Race {number}", message_id=f"<race-{number}@example.com>",
            sender=f"c{number}@example.com",
        ).as_bytes()
        envelope = Envelope(mail_from=f"c{number}@example.com", rcpt_tos=(SUPPORT,), source="smtp")
        for _ in range(2 if twins else 1):
            ids.append(spool_message(app.sessions, raw, envelope))
    return ids


def run_together(work: Callable[[int], Any], jobs: list[int]) -> list[Any]:
    """Run ``work(job)`` for each job on its own thread, all started at once."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(jobs[index])
        except BaseException as error:  # reported by the assert below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    return results


def test_same_spool_row_processed_once(app: App) -> None:
    spool_ids = spool_mails(app, ROWS)
    outcomes = []
    for spool_id in spool_ids:
        outcomes += run_together(
            lambda job: process_spool_entry(app, job), [spool_id] * THREADS_PER_ROW
        )
    done = [outcome for outcome in outcomes if outcome is not None]
    assert len(done) == ROWS
    assert len(outcomes) - len(done) == ROWS * (THREADS_PER_ROW - 1)
    with app.sessions() as session:
        tickets = list(session.scalars(select(Ticket.id)))
        outbox = list(session.scalars(select(OutboxEntry.id)))
    assert len(tickets) == ROWS
    # One New Ticket mail to carol and one acknowledgement per ticket.
    assert len(outbox) == 2 * ROWS


def test_same_outbox_row_sent_once(app: App, relay: tuple[RelaySink, int]) -> None:
    sink, _ = relay
    for spool_id in spool_mails(app, ROWS // 2):
        process_spool_entry(app, spool_id)
    with app.sessions() as session:
        rows = list(session.execute(select(OutboxEntry.id, OutboxEntry.message_id)))
    assert len(rows) == ROWS
    results = []
    for outbox_id, _ in rows:
        results += run_together(
            lambda job: deliver_outbox_entry(app, job), [outbox_id] * THREADS_PER_ROW
        )
    assert sum(result.sent for result in results) == ROWS
    sent = Counter(sink.message_ids)
    assert sorted(sent) == sorted(f"<{message_id}>" for _, message_id in rows)
    assert set(sent.values()) == {1}
    with app.sessions() as session:
        states = Counter(session.scalars(select(OutboxEntry.state)))
    assert states == {"sent": ROWS}


def test_twin_mails_make_one_ticket(app: App) -> None:
    spool_ids = spool_mails(app, ROWS // 2, twins=True)
    pairs = [spool_ids[index:index + 2] for index in range(0, len(spool_ids), 2)]
    states = []
    for pair in pairs:
        states += [
            outcome.state.value
            for outcome in run_together(lambda job: process_spool_entry(app, job), pair)
        ]
    assert Counter(states) == {"processed": ROWS // 2, "duplicate": ROWS // 2}
    with app.sessions() as session:
        assert len(list(session.scalars(select(Ticket.id)))) == ROWS // 2


def test_concurrent_tickets_get_distinct_ids(app: App) -> None:
    spool_ids = spool_mails(app, ROWS)
    outcomes = run_together(lambda job: process_spool_entry(app, job), spool_ids)
    ticket_ids = [outcome.ticket_id for outcome in outcomes]
    assert None not in ticket_ids
    assert len(set(ticket_ids)) == ROWS
    with app.sessions() as session:
        stored = dict(session.execute(select(SpoolEntry.id, SpoolEntry.ticket_id)).all())
    assert sorted(stored.values()) == sorted(ticket_ids)
