"""Group commit of the spool on a real SQLite database: mails waiting
together share one commit, each id is returned only once its row is
committed, and a row the database rejects fails only its own mail."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
from sqlalchemy import event, select

from mailgate.app import App
from mailgate.settings import load_settings
from store.models import SpoolEntry
from store.spool import Envelope
from store.spool_writer import SpoolWriter, SpoolWriterClosed

MAIL_COUNT = 40


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    app = App.create(load_settings(home=tmp_path, domain="support.example.org"))
    yield app
    app.close()


def envelope(sender: str) -> Envelope:
    return Envelope(mail_from=sender, rcpt_tos=("support@support.example.org",), source="smtp")


def raw_mail(number: int) -> bytes:
    return f"From: customer{number}@example.com\r\nSubject: {number}\r\n\r\nBody {number}\r\n".encode()


def spooled_rows(app: App) -> dict[int, tuple[str, bytes]]:
    with app.sessions() as session:
        rows = session.execute(select(SpoolEntry.id, SpoolEntry.mail_from, SpoolEntry.raw))
        return {spool_id: (sender, raw) for spool_id, sender, raw in rows}


def test_waiting_mails_share_commits(app: App, tmp_path: Path) -> None:
    commits: list[int] = []
    event.listen(app.engine, "commit", lambda connection: commits.append(1))
    # Another connection holds the write lock, so the writer's first batch
    # waits and every later mail queues up behind it.
    blocker = sqlite3.connect(tmp_path / "mailgate.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    writer = SpoolWriter(app.engine)
    try:
        futures = [
            writer.submit(raw_mail(number), envelope(f"customer{number}@example.com"))
            for number in range(MAIL_COUNT)
        ]
        assert not any(future.done() for future in futures)
        blocker.execute("COMMIT")
        spool_ids = [future.result(timeout=30) for future in futures]
    finally:
        blocker.close()
        writer.close()
    assert len(set(spool_ids)) == MAIL_COUNT
    assert spool_ids == sorted(spool_ids)
    assert len(commits) <= 2
    rows = spooled_rows(app)
    for number, spool_id in enumerate(spool_ids):
        assert rows[spool_id] == (f"customer{number}@example.com", raw_mail(number))


def test_rejected_row_fails_only_its_mail(app: App, tmp_path: Path) -> None:
    database = sqlite3.connect(tmp_path / "mailgate.db", isolation_level=None)
    database.execute(
        "CREATE TRIGGER reject_bad BEFORE INSERT ON spool WHEN NEW.mail_from = 'bad@example.com' "
        "BEGIN SELECT RAISE(ABORT, 'rejected by test trigger'); END"
    )
    database.execute("BEGIN IMMEDIATE")
    writer = SpoolWriter(app.engine)
    try:
        senders = ["ana@example.com", "bad@example.com", "ben@example.com"]
        futures: list[Future[int]] = [
            writer.submit(raw_mail(number), envelope(sender)) for number, sender in enumerate(senders)
        ]
        database.execute("COMMIT")
        first = futures[0].result(timeout=30)
        with pytest.raises(Exception, match="rejected by test trigger"):
            futures[1].result(timeout=30)
        third = futures[2].result(timeout=30)
    finally:
        database.close()
        writer.close()
    rows = spooled_rows(app)
    assert sorted(rows) == sorted([first, third])
    assert rows[first][0] == "ana@example.com"
    assert rows[third][0] == "ben@example.com"


def test_close_writes_submitted_then_rejects(app: App) -> None:
    writer = SpoolWriter(app.engine)
    future = writer.submit(raw_mail(1), envelope("ana@example.com"))
    writer.close()
    assert future.result(timeout=0) in spooled_rows(app)
    with pytest.raises(SpoolWriterClosed):
        writer.submit(raw_mail(2), envelope("ben@example.com"))


def test_committed_ids_passed_to_callback(app: App) -> None:
    seen: list[tuple[int, bool]] = []

    def on_committed(spool_ids: list[int]) -> None:
        rows = spooled_rows(app)
        seen.extend((spool_id, spool_id in rows) for spool_id in spool_ids)

    writer = SpoolWriter(app.engine, on_committed=on_committed)
    try:
        futures = [writer.submit(raw_mail(number), envelope("ana@example.com")) for number in range(5)]
        spool_ids = [future.result(timeout=30) for future in futures]
    finally:
        writer.close()
    assert [spool_id for spool_id, _ in seen] == spool_ids
    assert all(committed for _, committed in seen)


def test_batch_ids_passed_in_one_call(app: App, tmp_path: Path) -> None:
    calls: list[list[int]] = []
    blocker = sqlite3.connect(tmp_path / "mailgate.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    writer = SpoolWriter(app.engine, on_committed=calls.append)
    try:
        futures = [writer.submit(raw_mail(number), envelope("ana@example.com")) for number in range(5)]
        blocker.execute("COMMIT")
        spool_ids = [future.result(timeout=30) for future in futures]
    finally:
        blocker.close()
        writer.close()
    assert [spool_id for call in calls for spool_id in call] == spool_ids
    assert len(calls) <= 2


def test_abandoned_wait_keeps_writer(app: App, tmp_path: Path) -> None:
    # aiosmtpd cancels a session's handler when its client disconnects, and
    # asyncio.wrap_future passes the cancel on to the writer's future.
    blocker = sqlite3.connect(tmp_path / "mailgate.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    writer = SpoolWriter(app.engine)
    try:
        abandoned = writer.submit(raw_mail(1), envelope("ana@example.com"))
        abandoned.cancel()
        blocker.execute("COMMIT")
        later = writer.submit(raw_mail(2), envelope("ben@example.com"))
        later_id = later.result(timeout=30)
    finally:
        blocker.close()
        writer.close()
    rows = spooled_rows(app)
    assert abandoned.result(timeout=0) in rows
    assert rows[later_id][0] == "ben@example.com"
