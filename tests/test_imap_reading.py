"""IMAP mailboxes read from a real Dovecot: tickets, server actions, size
limit, UIDVALIDITY changes and IDLE."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from store.mailboxes import AfterSpool
from tests.conftest import POSTGRES_ADMIN_URL, service_missing
from tests.dovecot import Dovecot, dovecot, imap_user  # noqa: F401
from tests.harness import SUPPORT, Gateway
from tests.imap_support import (
    IMAP_TEST_SETTINGS,
    add_test_mailbox,
    collect_logs,
    make_mail,
    message_id_of,
    reading,
    spool_message_ids,
)
from tests.process import wait_for

SEEN = b"\\Seen"
FLAGGED = b"\\Flagged"


@pytest.fixture
def imap_gateway(tmp_path: Path):
    with Gateway.start(home=tmp_path / "gateway", **IMAP_TEST_SETTINGS) as running:
        running.add_queue()
        running.add_agent("agent", "agent@support.example.org")
        yield running


@pytest.mark.parametrize("after", ["seen", "move", "delete"])
def test_each_mail_becomes_one_ticket(
    imap_gateway: Gateway, dovecot: Dovecot, imap_user: str, after: str
) -> None:
    mails = [make_mail(f"Printer {n} jammed", index=n) for n in range(3)]
    dovecot.append(imap_user, "INBOX", mails)
    move_to = "Processed" if after == "move" else None
    add_test_mailbox(imap_gateway.app, dovecot, imap_user, after=AfterSpool(after), move_to=move_to)

    with reading(imap_gateway):
        wait_for(lambda: len(imap_gateway.ticket_ids()) == 3, timeout=30)
        imap_gateway.wait_idle()
        if after == "seen":
            wait_for(lambda: all(SEEN in flags for flags in
                                 dovecot.folder_flags(imap_user, "INBOX").values()), timeout=10)
        else:
            wait_for(lambda: not dovecot.folder_flags(imap_user, "INBOX"), timeout=10)

    subjects = sorted(imap_gateway.ticket(i)["subject"] for i in imap_gateway.ticket_ids())
    assert subjects == ["Printer 0 jammed", "Printer 1 jammed", "Printer 2 jammed"]
    rows = imap_gateway.spool_rows()
    assert len(rows) == 3
    assert {row.source for row in rows} == {"imap"}
    assert {tuple(row.rcpt_tos) for row in rows} == {(SUPPORT,)}
    assert {row.mail_from for row in rows} == {"ana@example.com"}
    assert {row.state for row in rows} == {"processed"}
    assert sorted(spool_message_ids(imap_gateway.app)) == sorted(message_id_of(m) for m in mails)
    inbox = dovecot.folder_flags(imap_user, "INBOX")
    if after == "seen":
        assert set(inbox) == {message_id_of(m) for m in mails}
        assert all(SEEN in flags for flags in inbox.values())
    elif after == "move":
        assert inbox == {}
        moved = dovecot.folder_flags(imap_user, "Processed")
        assert set(moved) == {message_id_of(m) for m in mails}
        assert dovecot.count(imap_user, "Processed") == 3
    else:
        assert inbox == {}
        with dovecot.client(imap_user) as client:
            assert [name for _, _, name in client.list_folders()] == ["INBOX"]


def test_first_read_skips_read_mail(
    imap_gateway: Gateway, dovecot: Dovecot, imap_user: str
) -> None:
    read_before = [make_mail(f"Old {n}", index=n) for n in range(2)]
    unread = make_mail("Still unread", index=5)
    dovecot.append(imap_user, "INBOX", read_before, flags=(SEEN,))
    dovecot.append(imap_user, "INBOX", [unread])
    add_test_mailbox(imap_gateway.app, dovecot, imap_user, after=AfterSpool.SEEN)

    with reading(imap_gateway):
        wait_for(lambda: len(imap_gateway.spool_rows()) == 1, timeout=30)
        later = make_mail("Arrived later, read at once", index=6)
        dovecot.append(imap_user, "INBOX", [later], flags=(SEEN,))
        wait_for(lambda: len(imap_gateway.spool_rows()) == 2, timeout=30)
        imap_gateway.wait_idle()

    assert spool_message_ids(imap_gateway.app) == [message_id_of(unread), message_id_of(later)]
    subjects = [imap_gateway.ticket(i)["subject"] for i in imap_gateway.ticket_ids()]
    assert subjects == ["Still unread", "Arrived later, read at once"]


def test_oversize_mail_stays_flagged(
    tmp_path: Path, dovecot: Dovecot, imap_user: str
) -> None:
    small = make_mail("Small one", index=1)
    large = make_mail("Large one", index=2, size_padding=40_000)
    dovecot.append(imap_user, "INBOX", [large, small])
    settings = {**IMAP_TEST_SETTINGS, "max_message_bytes": 20_000}
    with Gateway.start(home=tmp_path / "gateway", **settings) as gateway:
        gateway.add_queue()
        add_test_mailbox(gateway.app, dovecot, imap_user, after=AfterSpool.MOVE,
                         move_to="Processed")
        with collect_logs() as logs, reading(gateway):
            wait_for(lambda: len(gateway.ticket_ids()) == 1, timeout=30)
            wait_for(lambda: len(dovecot.folder_flags(imap_user, "INBOX")) == 1, timeout=10)
        assert spool_message_ids(gateway.app) == [message_id_of(small)]

    inbox = dovecot.folder_flags(imap_user, "INBOX")
    assert list(inbox) == [message_id_of(large)]
    assert FLAGGED in inbox[message_id_of(large)]
    assert SEEN not in inbox[message_id_of(large)]
    assert list(dovecot.folder_flags(imap_user, "Processed")) == [message_id_of(small)]
    warnings = logs.matching("over the size limit of 20000 bytes")
    assert len(warnings) == 1
    assert warnings[0].startswith("WARNING mailgate.imap.folder")


def test_uidvalidity_change_no_duplicates(
    imap_gateway: Gateway, dovecot: Dovecot, imap_user: str
) -> None:
    mails = [make_mail(f"Question {n}", index=n) for n in range(3)]
    dovecot.append(imap_user, "Support", mails)
    mailbox_id = add_test_mailbox(imap_gateway.app, dovecot, imap_user, folders=("Support",))

    with collect_logs() as logs, reading(imap_gateway):
        wait_for(lambda: len(imap_gateway.ticket_ids()) == 3, timeout=30)
        before = _folder_state(imap_gateway, mailbox_id)
        # Recreate the folder with the same mails, as a server migration or
        # a restore does; Dovecot gives it a new UIDVALIDITY. The tool added
        # a trace field to one of them, so its bytes differ.
        relayed = b"Received: from restore.example.org by imap.example.org\r\n" + mails[2]
        newcomer = make_mail("New after the restore", index=9)
        with dovecot.client(imap_user) as client:
            client.delete_folder("Support")
            client.create_folder("Support")
        dovecot.append(imap_user, "Support", [mails[0], mails[1], relayed, newcomer])
        wait_for(lambda: len(imap_gateway.spool_rows()) == 5, timeout=30)
        wait_for(lambda: all(SEEN in flags for flags in
                             dovecot.folder_flags(imap_user, "Support").values()), timeout=10)
        imap_gateway.wait_idle()
        after = _folder_state(imap_gateway, mailbox_id)

    assert after[0] != before[0]
    assert len(logs.matching("UIDVALIDITY changed")) == 1
    assert len(logs.matching("not spooled again")) == 2
    rows = imap_gateway.spool_rows()
    assert [message_id_of(row.raw) for row in rows[3:]] == [
        message_id_of(mails[2]), message_id_of(newcomer),
    ]
    assert [row.state for row in rows] == [
        "processed", "processed", "processed", "duplicate", "processed",
    ]
    subjects = [imap_gateway.ticket(i)["subject"] for i in imap_gateway.ticket_ids()]
    # Two workers take the first three mails in any order.
    assert sorted(subjects[:3]) == ["Question 0", "Question 1", "Question 2"]
    assert subjects[3:] == ["New after the restore"]
    flags = dovecot.folder_flags(imap_user, "Support")
    assert len(flags) == 4
    assert all(SEEN in value for value in flags.values())


def _folder_state(gateway: Gateway, mailbox_id: int) -> tuple[int, int]:
    from store.mailboxes import load_folder

    state = load_folder(gateway.app.sessions, mailbox_id, "Support")
    assert state is not None
    return state.uidvalidity, state.last_uid


def test_idle_spools_within_five_seconds(
    tmp_path: Path, dovecot: Dovecot, imap_user: str
) -> None:
    # A poll interval of an hour: only IDLE can bring the mail in quickly.
    settings = {**IMAP_TEST_SETTINGS, "imap_poll_interval_seconds": 3600.0}
    dovecot.append(imap_user, "INBOX", [make_mail("Before start", index=1)])
    with Gateway.start(home=tmp_path / "gateway", **settings) as gateway:
        gateway.add_queue()
        mailbox_id = add_test_mailbox(gateway.app, dovecot, imap_user)
        with reading(gateway) as runner:
            reader = runner.readers[mailbox_id]
            wait_for(lambda: len(gateway.spool_rows()) == 1, timeout=30)
            wait_for(reader.idling.is_set, timeout=10)
            assert sum(reader.wakeups.values()) == 0

            appended_at = time.monotonic()
            dovecot.append(imap_user, "INBOX", [make_mail("While idling", index=2)])
            wait_for(lambda: len(gateway.spool_rows()) == 2, timeout=5, interval=0.02)
            elapsed = time.monotonic() - appended_at

            assert elapsed < 5.0
            assert reader.wakeups["idle"] == 1
            assert reader.wakeups["timer"] == 0
            gateway.wait_idle()
        assert [gateway.ticket(i)["subject"] for i in gateway.ticket_ids()] == [
            "Before start", "While idling",
        ]
    print(f"IDLE: mail appended while idling was spooled after {elapsed:.3f}s")


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own, dropped afterwards."""
    try:
        import psycopg
    except ImportError as error:
        service_missing("psycopg", str(error))
    name = f"mailgate_imap_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as error:
        service_missing("PostgreSQL", str(error))
    yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_reading_on_postgresql_and_redis(
    tmp_path: Path, dovecot: Dovecot, imap_user: str, empty_postgres_url: str, redis_url: str
) -> None:
    mails = [make_mail(f"On PostgreSQL {n}", index=n) for n in range(3)]
    dovecot.append(imap_user, "INBOX", mails)
    settings = {**IMAP_TEST_SETTINGS, "database_url": empty_postgres_url, "redis_url": redis_url}
    with Gateway.start(home=tmp_path / "gateway", **settings) as gateway:
        gateway.add_queue()
        add_test_mailbox(gateway.app, dovecot, imap_user, after=AfterSpool.MOVE,
                         move_to="Processed")
        with collect_logs() as logs, reading(gateway):
            wait_for(lambda: len(gateway.ticket_ids()) == 3, timeout=30)
            wait_for(lambda: not dovecot.folder_flags(imap_user, "INBOX"), timeout=10)
            # Someone puts the same mails back into the inbox.
            dovecot.append(imap_user, "INBOX", mails)
            wait_for(lambda: len(logs.matching("not spooled again")) == 3, timeout=30)
            wait_for(lambda: not dovecot.folder_flags(imap_user, "INBOX"), timeout=10)
            gateway.wait_idle()
        assert len(gateway.spool_rows()) == 3
        assert {row.state for row in gateway.spool_rows()} == {"processed"}
        assert len(gateway.ticket_ids()) == 3

    assert dovecot.count(imap_user, "Processed") == 6
    assert set(dovecot.folder_flags(imap_user, "Processed")) == {message_id_of(m) for m in mails}
