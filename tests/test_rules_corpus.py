"""``mailgate rules test`` on real mail from the hunnysoft corpus predicts
what processing does when the same mail arrives over SMTP."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mailgate.cli import main
from store.models import Role
from tests.conftest import SHARED
from tests.harness import SUPPORT, Gateway

CORPUS = SHARED / "corpus" / "hunnysoft"
# Outlook with attachments; Netscape with a non-ASCII subject; Eudora.
FILES = ["m0011.eml", "m1005.eml", "m2010.eml"]
SENDER = "sender@example.com"

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")

RULES = """\
rules:
  - name: outlook to billing
    enabled: true
    scope: new
    match: all
    conditions:
      - {field: subject, operator: contains, value: "Outlook"}
      - {field: header:X-Mailer, operator: starts-with, value: "microsoft outlook"}
      - {field: header:X-Spam-Flag, operator: not-equals, value: "YES"}
    actions:
      queue: Billing
      tags: [outlook]
      stage: open
    stop: false
  - name: german fables
    match: any
    conditions:
      - {field: subject, operator: matches, value: "fr(ö|oe)sche"}
      - {field: to, operator: ends-with, value: "@example.de"}
    actions:
      tags: [german]
      ticket_type: fable
      acknowledge: false
  - name: files
    conditions:
      - {field: has-attachments, operator: exists}
      - {field: size, operator: greater-than, value: 2K}
    actions:
      tags: [files]
      escalation_level: 1
      queue: Fables
  - name: eudora stops here
    conditions:
      - {field: header:X-Mailer, operator: contains, value: "Eudora"}
    actions:
      tags: [eudora]
    stop: true
  - name: catch-all
    actions:
      tags: [seen]
"""


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    # The CLI would otherwise attach a log handler to the captured stderr,
    # which pytest closes after the test.
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.NullHandler()])
    with Gateway.start(home=tmp_path / "desk") as gateway:
        gateway.add_queue()
        gateway.add_queue("Billing", "billing@support.example.org")
        gateway.add_queue("Fables", "fables@support.example.org")
        gateway.add_agent("carol", "carol@example.org")
        gateway.add_agent("root", "root@example.org", role=Role.ADMIN)
        monkeypatch.setenv("MAILGATE_HOME", str(gateway.app.settings.home))
        monkeypatch.setenv("MAILGATE_DOMAIN", gateway.app.settings.domain)
        rules_file = tmp_path / "rules.yaml"
        rules_file.write_text(RULES, encoding="utf-8")
        code, out, err = run_cli(capsys, "rules", "import", str(rules_file), "--as", "root")
        assert code == 0, err
        assert "added: 5" in out
        yield gateway


def predicted(capsys: pytest.CaptureFixture, name: str) -> dict:
    code, out, err = run_cli(
        capsys, "rules", "test", str(CORPUS / name), "--rcpt", SUPPORT,
        "--mail-from", SENDER, "--as", "root", "--json",
    )
    assert code == 0, err
    return json.loads(out)


def test_rules_test_prints_trace(desk: Gateway, capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_cli(
        capsys, "rules", "test", str(CORPUS / "m1005.eml"), "--rcpt", SUPPORT,
        "--mail-from", SENDER, "--as", "root",
    )
    assert code == 0, err
    lines = [line.strip() for line in out.splitlines()]
    assert "1. outlook to billing: not matched" in lines
    assert ('no   subject "Die Hasen und die Frösche (Netscape Messenger 4.7)" '
            'does not contain "Outlook"') in lines
    assert "2. german fables: matched" in lines
    assert ('yes  subject "Die Hasen und die Frösche (Netscape Messenger 4.7)" '
            'matches "fr(ö|oe)sche"') in lines
    assert "->   tag german (set)" in lines
    # Its four images are inline parts of the HTML body, not attachments.
    assert "3. files: not matched" in lines
    assert "no   has-attachments is absent" in lines
    assert "yes  size 11449 bytes is greater than 2048 bytes" in lines
    assert "queue: Support  (default: by recipient)" in lines
    assert "ticket_type: fable  (rule 'german fables')" in lines
    assert "tags: german (rule 'german fables'), seen (rule 'catch-all')" in lines
    assert "acknowledgement: not sent (rule 'german fables')" in lines


def test_rules_test_matches_processing(desk: Gateway, capsys: pytest.CaptureFixture) -> None:
    predictions = {name: predicted(capsys, name) for name in FILES}
    replies = {name: desk.send((CORPUS / name).read_bytes(), SENDER, [SUPPORT]) for name in FILES}
    desk.wait_idle()
    spool = {row.id: row for row in desk.spool_rows()}
    acknowledged = {row.ticket_id for row in desk.outbox_rows() if row.kind == "acknowledgement"}
    for name in FILES:
        prediction = predictions[name]
        assert prediction["scope"] == "new"
        result = prediction["result"]
        row = spool[int(replies[name].rsplit(" ", 1)[1])]
        assert row.state == "processed", row.error
        ticket = desk.ticket(row.ticket_id)
        assert ticket["queue"] == result["queue"], name
        assert ticket["tags"] == result["tags"], name
        assert ticket["stage"] == (result["stage"] or "new"), name
        assert ticket["ticket_type"] == result["ticket_type"], name
        assert ticket["escalation_level"] == (result["escalation_level"] or 0), name
        assert (ticket["id"] in acknowledged) == result["acknowledge"], name
        # Every field a rule set is in the history under that rule's name.
        changed_by = {(entry["field"], entry["actor"]) for entry in ticket["history"]
                      if entry["action"] == "field_changed"}
        for field, rule in result["placed_by"].items():
            if field in ("queue", "stage", "ticket_type", "escalation_level") and rule != "(default)":
                assert (field, f"rule:{rule}") in changed_by, (name, field)
    outlook = predictions["m0011.eml"]["result"]
    assert outlook["queue"] == "Billing"
    assert outlook["tags"] == ["files", "outlook", "seen"]
    eudora = predictions["m2010.eml"]
    assert eudora["result"]["tags"] == ["eudora", "files"]
    assert [rule["status"] for rule in eudora["rules"]][-1] == "not reached"
