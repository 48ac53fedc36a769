"""IMAP reading when things go wrong: the server killed in the middle of a
fetch, a mailbox that cannot log in, a server without IDLE or MOVE."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from mailgate.app import App
from mailgate.cli import main
from mailgate.imap.runner import ImapRunner
from mailgate.settings import load_settings
from store.directory import add_queue, add_user
from store.mailboxes import AfterSpool, list_mailboxes
from store.models import OutboxEntry, Role, SpoolEntry
from tests.dovecot import Dovecot, dovecot, dovecot_factory, imap_user  # noqa: F401
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

MAIL_COUNT = 500


def test_server_killed_mid_fetch(tmp_path: Path, dovecot_factory, imap_user: str) -> None:
    server: Dovecot = dovecot_factory()
    mails = [make_mail(f"Bulk {n}", index=n) for n in range(MAIL_COUNT)]
    server.append(imap_user, "INBOX", mails)
    expected = {message_id_of(raw) for raw in mails}
    settings = load_settings(
        home=tmp_path / "home", imap_batch_size=25, imap_alert_after_seconds=0.3,
        **IMAP_TEST_SETTINGS,
    )
    app = App.create(settings)
    add_queue(app.sessions, "Support", SUPPORT)
    add_user(app.sessions, "root", "root@support.example.org", Role.ADMIN, [])
    add_test_mailbox(app, server, imap_user, after=AfterSpool.MOVE, move_to="Processed")
    # No workers: the test is about the reader. Enqueueing each spooled
    # mail takes 4 ms, which makes batches of 25 take 0.1 s between their
    # fetch and their move, so the kill below falls inside one.
    runner = ImapRunner(app, on_spooled=lambda spool_id: time.sleep(0.004))

    with collect_logs() as logs:
        runner.start()
        try:
            wait_for(lambda: _spool_count(app) >= 110, timeout=60, interval=0.005)
            server.kill()
            spooled_at_kill = spool_message_ids(app)
            # Dovecot is down: its Maildirs on disk are the server's state.
            moved = server.maildir_mail(imap_user, "Processed")
            seen = {mid for mid, flags in server.maildir_mail(imap_user).items() if "S" in flags}
            wait_for(lambda: _outbox_kinds(app) == ["mailbox_failing"], timeout=30)
            server.start()
            wait_for(lambda: len(spool_message_ids(app)) >= MAIL_COUNT, timeout=90)
            wait_for(lambda: not server.folder_flags(imap_user, "INBOX"), timeout=30)
        finally:
            runner.stop()

    assert 110 <= len(spooled_at_kill) < MAIL_COUNT
    assert set(moved) <= set(spooled_at_kill)
    assert len(moved) < len(spooled_at_kill)
    assert seen <= set(spooled_at_kill)
    spooled = spool_message_ids(app)
    counts = Counter(spooled)
    assert len(spooled) == MAIL_COUNT
    assert set(counts) == expected
    assert max(counts.values()) == 1
    assert set(server.folder_flags(imap_user, "Processed")) == expected
    assert server.folder_flags(imap_user, "INBOX") == {}
    retries = logs.matching("failed: cannot connect to 127.0.0.1")
    assert retries
    assert all("reconnecting in" in line for line in retries)
    assert logs.matching("read again after")
    assert _outbox_kinds(app) == ["mailbox_failing", "mailbox_recovered"]
    leftover = logs.matching("actions left over from the last session")
    assert len(leftover) == 1
    assert f"doing {len(spooled_at_kill) - len(moved)} actions" in leftover[0]
    app.close()
    print(
        f"killed after {len(spooled_at_kill)} of {MAIL_COUNT} spooled, {len(moved)} moved; "
        f"{len(retries)} reconnect attempts logged; {len(spooled)} spooled in the end, "
        f"{len(counts)} distinct"
    )


def test_failing_mailbox_isolated_and_alerted(
    tmp_path: Path, dovecot: Dovecot, imap_user: str, monkeypatch
) -> None:
    settings = {**IMAP_TEST_SETTINGS, "imap_alert_after_seconds": 1.0}
    home = tmp_path / "gateway"
    with Gateway.start(home=home, **settings) as gateway:
        gateway.add_queue()
        add_user(gateway.app.sessions, "root", "root@support.example.org", Role.ADMIN, [])
        add_test_mailbox(gateway.app, dovecot, imap_user, name="Broken", password="wrong")
        add_test_mailbox(gateway.app, dovecot, imap_user, name="Working")
        dovecot.append(imap_user, "INBOX", [make_mail("Works anyway", index=1)])

        with collect_logs() as logs, reading(gateway):
            wait_for(lambda: len(gateway.ticket_ids()) == 1, timeout=30)
            wait_for(lambda: any(row.kind == "mailbox_failing"
                                 for row in gateway.outbox_rows()), timeout=30)
            gateway.wait_idle()

        states = {row.name: row for row in list_mailboxes(gateway.app.sessions)}
        alerts = [row for row in gateway.outbox_rows() if row.kind == "mailbox_failing"]

    assert states["Working"].failing_since is None
    assert states["Working"].last_ok_at is not None
    assert states["Broken"].failing_since is not None
    assert "refused password login" in states["Broken"].last_error
    assert "AUTHENTICATIONFAILED" in states["Broken"].last_error
    assert states["Broken"].alerted_at is not None
    assert len(alerts) == 1
    assert alerts[0].rcpt_to == "root@support.example.org"
    assert alerts[0].state == "sent"
    assert b"Subject: Mailbox Broken cannot be read" in alerts[0].raw
    assert b"Check it with:  mailgate mailboxes test Broken" in alerts[0].raw
    assert b"Auto-Submitted: auto-generated" in alerts[0].raw
    assert alerts[0].mail_from == ""
    attempts = logs.matching("name=Broken: attempt")
    assert len(attempts) >= 2
    assert attempts[0].startswith("ERROR")

    monkeypatch.setenv("MAILGATE_HOME", str(home))
    monkeypatch.setenv("MAILGATE_DOMAIN", "support.example.org")
    listed = _run_cli(["mailboxes", "list"])
    broken = [line for line in listed.splitlines() if "Broken" in line]
    assert len(broken) == 1
    assert "failing since" in broken[0]
    assert "last error: 127.0.0.1 refused password login" in listed
    working = [line for line in listed.splitlines() if "Working" in line]
    assert "ok, last read" in working[0]


def _outbox_kinds(app: App) -> list[str]:
    with app.sessions() as session:
        return list(session.scalars(select(OutboxEntry.kind).order_by(OutboxEntry.id)))


def _spool_count(app: App) -> int:
    with app.sessions() as session:
        return session.scalar(select(func.count()).select_from(SpoolEntry)) or 0


def _run_cli(argv: list[str]) -> str:
    import contextlib
    import io

    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert main(argv) == 0
    return output.getvalue()


def test_polling_without_idle_or_move(tmp_path: Path, dovecot_factory, imap_user: str) -> None:
    server: Dovecot = dovecot_factory(capabilities="IMAP4rev1 LITERAL+ UIDPLUS MULTIAPPEND")
    with Gateway.start(home=tmp_path / "gateway", **IMAP_TEST_SETTINGS) as gateway:
        gateway.add_queue()
        mailbox_id = add_test_mailbox(gateway.app, server, imap_user,
                                      after=AfterSpool.MOVE, move_to="Done")
        server.append(imap_user, "INBOX", [make_mail("First", index=1)])
        with reading(gateway) as runner:
            wait_for(lambda: len(gateway.ticket_ids()) == 1, timeout=30)
            reader = runner.readers[mailbox_id]
            server.append(imap_user, "INBOX", [make_mail("Second", index=2)])
            wait_for(lambda: len(gateway.ticket_ids()) == 2, timeout=30)
            wait_for(lambda: not server.folder_flags(imap_user, "INBOX"), timeout=10)
            gateway.wait_idle()
            assert not reader.idling.is_set()
            assert reader.wakeups["timer"] >= 1
            assert reader.wakeups["idle"] == 0

    moved = server.folder_flags(imap_user, "Done")
    assert len(moved) == 2
    assert server.folder_flags(imap_user, "INBOX") == {}
