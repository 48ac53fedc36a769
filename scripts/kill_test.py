"""Crash safety: send mail over several connections while ``mailgate serve``
(listener and workers in one process) is killed with SIGKILL and restarted,
then check an exact account.

The senders behave like an MTA: a mail is sent again until it gets a 250,
so a mail whose 250 was lost in a kill arrives twice. The account:

- every mail that got a 250 is in the spool, and every spool row ends in
  a recorded state (none pending);
- every customer mail that got a 250 is on exactly one ticket, and every
  agent reply that got a 250 is exactly one note;
- every forged reply is recorded as rejected and every reply failing
  DMARC as held, and none of them is a note;
- nothing is on a ticket that never got a 250.

With ``--redis-url`` the workers run on Redis: ``mailgate serve`` runs the
listener and workers, a separate ``mailgate worker`` process runs more,
and the kills alternate between the two processes. The Redis database
named in the URL is flushed first.

Usage (from the repository root, with its virtualenv):

    .venv/bin/python scripts/kill_test.py --mails 2000 --kills 20 --seed 1
    .venv/bin/python scripts/kill_test.py --redis-url redis://127.0.0.1:6379/14
"""

from __future__ import annotations

import argparse
import os
import random
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import select  # noqa: E402

from mailgate.app import App  # noqa: E402
from mailgate.settings import load_settings  # noqa: E402
from store.directory import add_queue, add_user  # noqa: E402
from store.models import Message, Note, Role, SpoolEntry, SpoolState  # noqa: E402
from tests.mail import agent_reply, customer_mail  # noqa: E402
from tests.process import ServeProcess, free_port, wait_for  # noqa: E402

DOMAIN = "support.example.org"
SUPPORT = f"support@{DOMAIN}"
AGENT = "carol@example.org"
TRUSTED = "mx.support.example.org"
# Shares of the mail sent: customer mail, agent replies, forged replies,
# replies whose trusted Authentication-Results report dmarc=fail.
KINDS = (("customer", 0.85), ("reply", 0.05), ("forged", 0.05), ("dmarc_fail", 0.05))
RETRY_PAUSE_SECONDS = 0.2


@dataclass
class Plan:
    """Each mail to send: its Message-ID, kind, envelope and bytes."""

    mails: list[tuple[str, str, str, list[str], bytes]]


@dataclass
class Account:
    acked: set[str] = field(default_factory=set)
    attempts: int = 0
    failed_attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def build_plan(count: int, rng: random.Random, notification) -> Plan:
    reply_to = notification["Reply-To"].addresses[0].addr_spec
    mails = []
    for number in range(count):
        kind = rng.choices([name for name, _ in KINDS], [share for _, share in KINDS])[0]
        message_id = f"kill-{number}@example.com"
        if kind == "customer":
            sender = f"c{number % 50}@example.com"
            mail = customer_mail(subject=f"kill test {number}", sender=sender,
                                 message_id=f"<{message_id}>")
            mails.append((message_id, kind, sender, [SUPPORT], mail.as_bytes()))
            continue
        sender = "mallory@example.net" if kind == "forged" else AGENT
        mail = agent_reply(notification, f"Reply number {number}.", sender)
        mail.replace_header("Message-ID", f"<{message_id}>")
        if kind == "dmarc_fail":
            mail["Authentication-Results"] = f"{TRUSTED}; dmarc=fail header.from=example.org"
        mails.append((message_id, kind, sender, [reply_to], mail.as_bytes()))
    return Plan(mails)


def send_all(port: int, mails, account: Account, stop: threading.Event) -> None:
    """Send ``mails`` in order over one connection, reconnecting and
    sending again until each gets a 250."""
    client: smtplib.SMTP | None = None
    for message_id, _, sender, recipients, raw in mails:
        while not stop.is_set():
            with account.lock:
                account.attempts += 1
            try:
                if client is None:
                    client = smtplib.SMTP("127.0.0.1", port, timeout=30)
                    client.ehlo("client.example.com")
                client.sendmail(sender, recipients, raw)
            except (smtplib.SMTPException, OSError):
                with account.lock:
                    account.failed_attempts += 1
                if client is not None:
                    try:
                        client.close()
                    except OSError:
                        pass
                client = None
                time.sleep(RETRY_PAUSE_SECONDS)
                continue
            with account.lock:
                account.acked.add(message_id)
            break
    if client is not None:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


def open_seed_ticket(home: Path, port: int) -> object:
    """Send one customer mail and return the agent's New Ticket notification."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("ana@example.com", [SUPPORT], customer_mail(message_id="<seed@example.com>").as_bytes())
    folder = home / "outbox" / "new"
    wait_for(lambda: any(AGENT in path.read_text(errors="replace") for path in folder.glob("*")), 60)
    for path in sorted(folder.glob("*")):
        mail = message_from_bytes(path.read_bytes(), policy=default)
        if AGENT in str(mail["To"]):
            return mail
    raise RuntimeError("no New Ticket notification for the agent")


class WorkerProcess:
    """A ``mailgate worker`` child on Redis."""

    def __init__(self, home: Path, environment: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailgate", "worker"],
            env={**os.environ, "MAILGATE_HOME": str(home), "MAILGATE_DOMAIN": DOMAIN,
                 "MAILGATE_SWEEP_INTERVAL_SECONDS": "1", **environment},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(30)

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--redis-url", help="run the workers on this Redis database")
    options = parser.parse_args()
    rng = random.Random(options.seed)
    started = time.monotonic()

    home = Path(tempfile.mkdtemp(prefix="mailgate-kill-"))
    app = App.create(load_settings(home=home, domain=DOMAIN, trusted_authserv_ids=TRUSTED))
    add_queue(app.sessions, "Support", SUPPORT)
    add_user(app.sessions, "carol", AGENT, Role.FRONTLINE, ["Support"])
    port = free_port()
    environment = {"MAILGATE_TRUSTED_AUTHSERV_IDS": TRUSTED}
    worker = None
    if options.redis_url:
        import redis

        redis.Redis.from_url(options.redis_url).flushdb()
        environment["MAILGATE_REDIS_URL"] = options.redis_url
        worker = WorkerProcess(home, environment)
    server = ServeProcess(home, port, **environment)
    server.wait_ready()
    notification = open_seed_ticket(home, port)
    plan = build_plan(options.mails, rng, notification)

    account = Account()
    stop = threading.Event()
    shares = [plan.mails[index :: options.connections] for index in range(options.connections)]
    senders = [
        threading.Thread(target=send_all, args=(port, share, account, stop)) for share in shares
    ]
    for thread in senders:
        thread.start()
    kill_points = sorted(rng.sample(range(options.mails // 40, options.mails - options.mails // 40), options.kills))
    kills = Counter()
    for number, point in enumerate(kill_points):
        wait_for(lambda: len(account.acked) >= point, timeout=600, interval=0.005)
        # A random moment after the threshold, so kills land in every phase:
        # during DATA, between commit and 250, while a worker processes.
        time.sleep(rng.uniform(0, 0.05))
        if worker is not None and number % 2:
            worker.kill()
            kills["worker"] += 1
            worker = WorkerProcess(home, environment)
            continue
        server.kill()
        kills["serve"] += 1
        server = ServeProcess(home, port, **environment)
        server.wait_ready()
    for thread in senders:
        thread.join(900)

    def settled() -> bool:
        with app.sessions() as session:
            return session.scalar(
                select(SpoolEntry.id).where(SpoolEntry.state == SpoolState.PENDING.value).limit(1)
            ) is None

    wait_for(settled, timeout=600, interval=0.5)
    exit_code = server.stop()
    if worker is not None:
        worker.stop()
    report = check_account(app, plan, account)
    elapsed = time.monotonic() - started
    broker = "redis" if options.redis_url else "in-process"
    killed = ", ".join(f"{name} {count}" for name, count in sorted(kills.items()))
    print(f"mails: {options.mails}  connections: {options.connections}  broker: {broker}  "
          f"kills: {sum(kills.values())} ({killed})  seed: {options.seed}  seconds: {elapsed:.0f}")
    print(f"SMTP attempts: {account.attempts} (failed and sent again: {account.failed_attempts})")
    for line in report["lines"]:
        print(line)
    print(f"last serve exit code: {exit_code}")
    print("account balances" if report["ok"] else "ACCOUNT DOES NOT BALANCE")
    app.close()
    return 0 if report["ok"] else 1


def check_account(app: App, plan: Plan, account: Account) -> dict:
    kinds = {message_id: kind for message_id, kind, *_ in plan.mails}
    with app.sessions() as session:
        spool = session.execute(select(SpoolEntry.message_id, SpoolEntry.state, SpoolEntry.id)).all()
        messages = Counter(session.scalars(select(Message.message_id)))
        note_spools = set(session.scalars(select(Note.spool_id)))
    states = Counter(state for _, state, _ in spool)

    rows_by_id: dict[str, list[tuple[str, int]]] = {}
    for message_id, state, spool_id in spool:
        rows_by_id.setdefault(message_id or "", []).append((state, spool_id))

    problems = []
    acked = account.acked
    unacked = set(kinds) - acked
    if unacked:
        problems.append(f"{len(unacked)} mails never got a 250")
    for message_id in acked:
        rows = rows_by_id.get(message_id, [])
        kind = kinds[message_id]
        if not rows:
            problems.append(f"{message_id}: got 250 but is not in the spool")
            continue
        row_states = [state for state, _ in rows]
        notes = sum(1 for _, spool_id in rows if spool_id in note_spools)
        if kind == "customer" and messages[message_id] != 1:
            problems.append(f"{message_id}: on {messages[message_id]} tickets")
        elif kind == "reply" and notes != 1:
            problems.append(f"{message_id}: {notes} notes")
        elif kind == "forged" and (notes or SpoolState.REJECTED.value not in row_states):
            problems.append(f"{message_id}: forged reply states {row_states}, notes {notes}")
        elif kind == "dmarc_fail" and (notes or SpoolState.HELD.value not in row_states):
            problems.append(f"{message_id}: failing reply states {row_states}, notes {notes}")

    strangers = [mid for mid in messages if mid not in acked and mid != "seed@example.com"]
    if strangers:
        problems.append(f"{len(strangers)} messages on tickets never got a 250")
    if states.get(SpoolState.PENDING.value):
        problems.append(f"{states[SpoolState.PENDING.value]} spool rows still pending")

    sent_kinds = Counter(kinds[mid] for mid in acked)
    lines = [
        f"got 250: {len(acked)} ({', '.join(f'{k} {n}' for k, n in sorted(sent_kinds.items()))})",
        f"spool rows: {len(spool)} ("
        + ", ".join(f"{state} {count}" for state, count in states.most_common()) + ")",
        f"spool rows beyond one per mail (a 250 lost in a kill, sent again): "
        f"{len(spool) - len(acked) - 1}",
        f"tickets' customer messages: {sum(messages.values())}, notes: {len(note_spools)}",
        f"problems: {len(problems)}",
        *problems[:20],
    ]
    return {"ok": not problems, "lines": lines}


if __name__ == "__main__":
    sys.exit(main())
