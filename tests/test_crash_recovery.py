"""SIGKILL while mail arrives: every mail that got 250 ends on exactly one ticket."""

from __future__ import annotations

import smtplib
import threading
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from mailgate.app import App
from mailgate.settings import load_settings
from store.directory import add_queue, add_user
from store.models import Message, Role, SpoolEntry, SpoolState
from tests.conftest import free_port
from tests.harness import SUPPORT
from tests.mail import customer_mail
from tests.process import ServeProcess, wait_for

SENDERS = 4
MAILS_PER_SENDER = 80
KILL_AFTER_ACKS = 120


def send_batch(port: int, sender: int, acked: list[str], lock: threading.Lock) -> None:
    try:
        client = smtplib.SMTP("127.0.0.1", port, timeout=30)
        client.ehlo("client.example.com")
        for number in range(MAILS_PER_SENDER):
            message_id = f"<crash-{sender}-{number}@example.com>"
            mail = customer_mail(subject=f"crash {sender}-{number}", message_id=message_id,
                                 sender=f"c{sender}@example.com")
            client.sendmail(f"c{sender}@example.com", [SUPPORT], mail.as_bytes())
            with lock:
                acked.append(message_id.strip("<>"))
    except (smtplib.SMTPException, OSError) as error:
        # The server died under us; what was acknowledged is recorded.
        print(f"sender {sender} stopped: {error!r}")


def test_sigkill_loses_and_doubles_nothing(tmp_path: Path, backend_env: dict[str, str]) -> None:
    home = tmp_path / "home"
    app = App.create(load_settings(home=home, domain="support.example.org"))
    add_queue(app.sessions, "Support", SUPPORT)
    add_user(app.sessions, "carol", "carol@example.org", Role.FRONTLINE, ["Support"])
    port = free_port()
    server = ServeProcess(home, port)
    server.wait_ready()

    acked: list[str] = []
    lock = threading.Lock()
    threads = [
        threading.Thread(target=send_batch, args=(port, sender, acked, lock))
        for sender in range(SENDERS)
    ]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(acked) >= KILL_AFTER_ACKS, timeout=120, interval=0.01)
    server.kill()
    for thread in threads:
        thread.join(60)
    acknowledged = list(acked)
    assert len(acknowledged) >= KILL_AFTER_ACKS

    restarted = ServeProcess(home, port)
    restarted.wait_ready()

    def all_processed() -> bool:
        with app.sessions() as session:
            pending = session.scalar(
                select(func.count()).where(SpoolEntry.state == SpoolState.PENDING.value)
            )
        return pending == 0

    wait_for(all_processed, timeout=180)
    assert restarted.stop() == 0

    with app.sessions() as session:
        rows = session.execute(select(Message.message_id, Message.ticket_id)).all()
        states = Counter(session.scalars(select(SpoolEntry.state)))
    tickets_by_message = Counter(message_id for message_id, _ in rows)
    missing = [mid for mid in acknowledged if tickets_by_message[mid] == 0]
    doubled = [mid for mid, count in tickets_by_message.items() if count > 1]
    assert missing == []
    assert doubled == []
    assert len({ticket for _, ticket in rows}) == len(rows)
    assert set(states) <= {SpoolState.PROCESSED.value, SpoolState.DUPLICATE.value}
    app.close()
