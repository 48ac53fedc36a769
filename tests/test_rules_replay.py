"""``mailgate rules replay`` reports exactly the spooled mails that a
changed rule set would route differently."""

from __future__ import annotations

import json
import logging
import random
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailgate.app import App
from mailgate.cli import main
from mailgate.rules import ruleset
from mailgate.rules.yamlfile import load_rules_text
from mailgate.settings import load_settings
from store.directory import add_queue, add_user
from store.models import Role, User
from store.operations import Actor
from store.spool import Envelope, spool_message
from tests.harness import DOMAIN, SUPPORT, Gateway
from tests.mail import customer_mail

SALES = f"sales@{DOMAIN}"
MAILS = 1000

RULES_IN_FORCE = """\
rules:
  - name: billing
    conditions:
      - {field: subject, operator: contains, value: invoice}
    actions: {queue: Billing, tags: [invoice]}
  - name: vip
    conditions:
      - {field: from-domain, operator: equals, value: vip.example.com}
    actions: {tags: [vip]}
"""

# Receipts go to Billing too, VIP tagging ends, priority-1 mail is urgent.
PROPOSED = """\
rules:
  - name: billing
    match: any
    conditions:
      - {field: subject, operator: contains, value: invoice}
      - {field: subject, operator: matches, value: "\\\\breceipt\\\\b"}
    actions: {queue: Billing, tags: [invoice]}
  - name: urgent
    conditions:
      - {field: header:X-Priority, operator: equals, value: "1"}
    actions: {tags: [urgent]}
"""

SUBJECTS = ["Invoice 4711 overdue", "Your receipt", "Receipts attached", "Printer jammed",
            "Password reset", "invoice and receipt", "Rückfrage zur Rechnung"]
DOMAINS = ["example.com", "vip.example.com", "example.org"]


def generate(seed: int = 7) -> list[dict]:
    chooser = random.Random(seed)
    return [
        {"subject": chooser.choice(SUBJECTS), "domain": chooser.choice(DOMAINS),
         "priority": chooser.choice(["1", "3", None]), "rcpt": chooser.choice([SUPPORT, SALES])}
        for _ in range(MAILS)
    ]


def build(index: int, spec: dict) -> bytes:
    message = EmailMessage()
    message["From"] = f"user{index}@{spec['domain']}"
    message["To"] = spec["rcpt"]
    message["Subject"] = spec["subject"]
    message["Message-ID"] = f"<replay-{index}@example.com>"
    if spec["priority"]:
        message["X-Priority"] = spec["priority"]
    message.set_content(f"Mail number {index}.\n")
    return message.as_bytes()


def expected_routing(spec: dict, proposed: bool) -> tuple[str, set[str]]:
    """Route one generated mail by hand, without the rules engine."""
    subject = spec["subject"].lower()
    billing = "invoice" in subject
    tags = set()
    if proposed:
        billing = billing or any(word == "receipt" for word in subject.replace(",", " ").split())
        if spec["priority"] == "1":
            tags.add("urgent")
    elif spec["domain"] == "vip.example.com":
        tags.add("vip")
    if billing:
        tags.add("invoice")
    if billing:
        return "Billing", tags
    if spec["rcpt"] == SALES:
        return "Sales", tags
    return "Support", tags


def admin_actor(session) -> Actor:
    return Actor(session.query(User).filter_by(username="root").one(), "cli")


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def quiet_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI would otherwise attach a log handler to the captured stderr.
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.NullHandler()])


def setup_desk(app: App) -> None:
    add_queue(app.sessions, "Support", SUPPORT)
    add_queue(app.sessions, "Sales", SALES)
    add_queue(app.sessions, "Billing", f"billing@{DOMAIN}")
    add_user(app.sessions, "root", "root@example.org", Role.ADMIN, [])
    with app.sessions.begin() as session:
        ruleset.import_rules(session, admin_actor(session), load_rules_text(RULES_IN_FORCE),
                             source="test")


def test_replay_reports_exactly_changed_mails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
    quiet_cli: None,
) -> None:
    home = tmp_path / "home"
    specs = generate()
    app = App.create(load_settings(home=home, domain=DOMAIN))
    setup_desk(app)
    spool_ids = []
    for index, spec in enumerate(specs):
        envelope = Envelope(mail_from=f"user{index}@{spec['domain']}", rcpt_tos=(spec["rcpt"],),
                            source="smtp")
        spool_ids.append(spool_message(app.sessions, build(index, spec), envelope))
    app.close()
    expected = {
        spool_id for spool_id, spec in zip(spool_ids, specs)
        if expected_routing(spec, proposed=False) != expected_routing(spec, proposed=True)
    }
    assert 100 < len(expected) < MAILS - 100  # the change touches some mails, not all

    proposed = tmp_path / "proposed.yaml"
    proposed.write_text(PROPOSED, encoding="utf-8")
    monkeypatch.setenv("MAILGATE_HOME", str(home))
    monkeypatch.setenv("MAILGATE_DOMAIN", DOMAIN)
    code, out, err = run_cli(capsys, "rules", "replay", "--since", "1d", "--rules",
                             str(proposed), "--json", "--as", "root")
    assert code == 0, err
    report = json.loads(out)
    assert report["examined"] == MAILS
    assert report["skipped"] == {}
    reported = {mail["spool_id"] for mail in report["mails"]}
    assert report["changed"] == len(expected)
    assert reported == expected
    by_id = dict(zip(spool_ids, specs))
    for mail in report["mails"]:
        spec = by_id[mail["spool_id"]]
        before_queue, before_tags = expected_routing(spec, proposed=False)
        after_queue, after_tags = expected_routing(spec, proposed=True)
        assert mail["baseline"] == "rules in force"
        assert set(mail["changes"]) <= {"queue", "tags"}
        if before_queue != after_queue:
            assert mail["changes"]["queue"] == {"before": before_queue, "after": after_queue}
        if before_tags != after_tags:
            assert set(mail["changes"]["tags"]["before"]) == before_tags
            assert set(mail["changes"]["tags"]["after"]) == after_tags

    code, out, err = run_cli(capsys, "rules", "replay", "--since", "1d", "--rules",
                             str(proposed), "--as", "root")
    assert code == 0, err
    assert out.splitlines()[-1] == (
        f"{MAILS} mails since {out.splitlines()[-1].split('since ')[1][:16]} examined; "
        f"{len(expected)} would be routed differently"
    )


def test_replay_compares_with_recorded_routing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
    quiet_cli: None,
) -> None:
    with Gateway.start(home=tmp_path / "desk") as desk:
        setup_desk(desk.app)
        # One at a time, so the worker threads cannot swap the ticket ids.
        desk.send(customer_mail(subject="Invoice 12"), "ana@vip.example.com", [SUPPORT])
        desk.wait_idle()
        desk.send(customer_mail(subject="Your receipt", sender="bo@example.org"),
                  "bo@example.org", [SUPPORT])
        desk.wait_idle()
        tickets = [desk.ticket(ticket_id) for ticket_id in desk.ticket_ids()]
        assert [(t["queue"], t["tags"]) for t in tickets] == [
            ("Billing", ["invoice"]), ("Support", [])]
        history = [(e["actor"], e["field"]) for e in tickets[0]["history"]
                   if e["action"] == "field_changed"]
        assert history == [("rule:billing", "queue"), ("rule:billing", "tags")]
        monkeypatch.setenv("MAILGATE_HOME", str(desk.app.settings.home))
        monkeypatch.setenv("MAILGATE_DOMAIN", DOMAIN)
        # Put the proposed rules in force: processing's record is the baseline.
        proposed = tmp_path / "proposed.yaml"
        proposed.write_text(PROPOSED, encoding="utf-8")
        code, _out, err = run_cli(capsys, "rules", "import", str(proposed), "--as", "root")
        assert code == 0, err
        code, out, err = run_cli(capsys, "rules", "replay", "--since", "1h", "--json",
                                 "--as", "root")
    assert code == 0, err
    report = json.loads(out)
    assert report["examined"] == 2
    [changed] = report["mails"]
    assert changed["subject"] == "Your receipt"
    assert changed["baseline"] == "recorded"
    assert changed["changes"] == {
        "queue": {"before": "Support", "after": "Billing"},
        "tags": {"before": [], "after": ["invoice"]},
    }
