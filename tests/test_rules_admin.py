"""Editing the rule set from the CLI and the HTTP API, its history, and the
rules' effect in processing: drop, no acknowledgement, follow-ups."""

from __future__ import annotations

import base64
import json
import logging
import stat
from pathlib import Path

import httpx
import pytest

from mailgate.cli import main
from store.directory import issue_api_token
from store.models import Role
from tests.harness import DOMAIN, SUPPORT, Gateway
from tests.mail import customer_mail

EX_DATAERR = 65
EX_NOPERM = 77

RULES = """\
rules:
  - name: outlook to billing
    enabled: true
    scope: new
    match: all
    conditions:
      - {field: subject, operator: contains, value: "Outlook"}
      - {field: header:X-Spam-Flag, operator: not-equals, value: "YES"}
    actions:
      queue: Billing
      tags: [outlook]
    stop: false
  - name: spam
    conditions:
      - {field: header:X-Spam-Flag, operator: equals, value: "YES"}
    actions: {drop: true}
"""


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # The CLI would otherwise attach a log handler to the captured stderr.
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.NullHandler()])
    with Gateway.start(home=tmp_path / "desk") as gateway:
        gateway.add_queue()
        gateway.add_queue("Billing", f"billing@{DOMAIN}")
        gateway.add_agent("fran", "fran@example.org")
        gateway.add_agent("root", "root@example.org", role=Role.ADMIN)
        monkeypatch.setenv("MAILGATE_HOME", str(gateway.app.settings.home))
        monkeypatch.setenv("MAILGATE_DOMAIN", DOMAIN)
        yield gateway


@pytest.fixture
def ruled(desk: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture) -> Gateway:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    code, _out, err = run_cli(capsys, "rules", "import", str(path), "--as", "root")
    assert code == 0, err
    return desk


def listing(capsys: pytest.CaptureFixture) -> list[dict]:
    code, out, err = run_cli(capsys, "rules", "list", "--json", "--as", "root")
    assert code == 0, err
    return json.loads(out)


# -- CLI --------------------------------------------------------------------------

def test_export_matches_imported_file(ruled: Gateway, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    code, out, _err = run_cli(capsys, "rules", "export", "-", "--as", "root")
    assert code == 0
    assert out.startswith("rules:\n  - name: outlook to billing\n    enabled: true\n")
    assert "      - {field: subject, operator: contains, value: Outlook}\n" in out
    assert "      tags: [outlook]\n" in out
    exported = tmp_path / "exported.yaml"
    assert run_cli(capsys, "rules", "export", str(exported), "--as", "root")[0] == 0
    code, out, _err = run_cli(capsys, "rules", "import", str(exported), "--as", "root")
    assert code == 0
    assert out.splitlines() == ["added: 0", "changed: 0", "moved: 0", "deleted: 0"]


def test_import_invalid_file_changes_nothing(ruled: Gateway, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    before = listing(capsys)
    path = tmp_path / "bad.yaml"
    path.write_text(RULES.replace("value: \"Outlook\"", "value: \"Out(look\"").replace(
        "operator: contains", "operator: matches")
        + "  - name: to sales\n    actions: {queue: Sales}\n", encoding="utf-8")
    code, _out, err = run_cli(capsys, "rules", "import", str(path), "--as", "root")
    assert code == EX_DATAERR
    assert "invalid rules; nothing was changed" in err
    assert ("rule 'outlook to billing': conditions[0].value: invalid regular expression "
            "'Out(look': missing ): Out(look") in err
    assert "rule 'to sales': actions.queue: queue 'Sales' not found" in err
    assert listing(capsys) == before


def test_edits_write_history(ruled: Gateway, tmp_path: Path,
                             capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_cli(
        capsys, "rules", "add", "--name", "big mail", "--when", "size", "greater-than", "1M",
        "--when", "has-attachments", "exists", "", "--tag", "big", "--no-ack", "--stop",
        "--position", "1", "--as", "root")
    assert code == 0, err
    assert out.strip() == "rule 'big mail' added at position 1"
    assert [row["name"] for row in listing(capsys)] == ["big mail", "outlook to billing", "spam"]
    [big] = [row for row in listing(capsys) if row["name"] == "big mail"]
    assert big["conditions"] == [
        {"field": "size", "operator": "greater-than", "value": 1048576},
        {"field": "has-attachments", "operator": "exists"}]
    assert big["actions"] == {"tags": ["big"], "acknowledge": False}
    assert big["stop"] is True

    assert run_cli(capsys, "rules", "move", "big mail", "3", "--as", "root")[0] == 0
    assert run_cli(capsys, "rules", "disable", "spam", "--as", "root")[0] == 0
    edited = tmp_path / "edited.yaml"
    edited.write_text("name: big mail\nconditions:\n  - {field: size, operator: greater-than, "
                      "value: 5M}\nactions: {tags: [huge]}\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "rules", "edit", "big mail", "--file", str(edited),
                             "--as", "root")
    assert code == 0, err
    assert out.strip() == "rule 'big mail' changed"
    assert run_cli(capsys, "rules", "delete", "1", "--as", "root")[0] == 0
    assert [(r["position"], r["name"], r["enabled"]) for r in listing(capsys)] == [
        (1, "spam", False), (2, "big mail", True)]

    code, out, _err = run_cli(capsys, "rules", "history", "--json", "--as", "root")
    history = json.loads(out)
    assert [(row["action"], row["rule"]) for row in history] == [
        ("deleted", "outlook to billing"), ("changed", "big mail"), ("disabled", "spam"),
        ("moved", "big mail"), ("added", "big mail"), ("added", "spam"),
        ("added", "outlook to billing")]
    assert {row["actor"] for row in history} == {"user:root"}
    assert {row["channel"] for row in history} == {"cli"}
    changed = history[1]
    assert changed["before"]["actions"] == {"tags": ["big"], "acknowledge": False}
    assert changed["after"]["actions"] == {"tags": ["huge"]}
    assert changed["after"]["conditions"][0]["value"] == 5 * 1024 * 1024
    assert history[0]["before"]["name"] == "outlook to billing"
    assert history[0]["after"] is None
    assert (history[3]["before"]["position"], history[3]["after"]["position"]) == (1, 3)


def test_edit_opens_editor(ruled: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture) -> None:
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/tags: \\[outlook\\]/tags: [outlook, mail]/' \"$1\"\n")
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("EDITOR", str(editor))
    code, out, err = run_cli(capsys, "rules", "edit", "outlook to billing", "--as", "root")
    assert code == 0, err
    assert out.strip() == "rule 'outlook to billing' changed"
    [rule] = [row for row in listing(capsys) if row["name"] == "outlook to billing"]
    assert rule["actions"]["tags"] == ["outlook", "mail"]


def test_frontline_user_cannot_change_rules(ruled: Gateway, capsys: pytest.CaptureFixture) -> None:
    for args in (["list"], ["disable", "spam"], ["export", "-"]):
        code, _out, err = run_cli(capsys, "rules", *args, "--as", "fran")
        assert code == EX_NOPERM, args
        assert "fran lacks permission admin.rules" in err
    assert [row["enabled"] for row in listing(capsys)] == [True, True]


# -- HTTP API ------------------------------------------------------------------------

def api(desk: Gateway, username: str) -> httpx.Client:
    token = issue_api_token(desk.app.sessions, username)
    return httpx.Client(base_url=desk.http_url, timeout=30,
                        headers={"Authorization": f"Bearer {token}"})


def test_http_api_edits_rules(ruled: Gateway) -> None:
    with api(ruled, "fran") as client:
        response = client.get("/api/rules")
        assert response.status_code == 403
        assert response.json()["missing_permission"] == "admin.rules"
    with api(ruled, "root") as client:
        rules = client.get("/api/rules").json()["rules"]
        assert [rule["name"] for rule in rules] == ["outlook to billing", "spam"]
        response = client.post("/api/rules", params={"position": 1}, json={
            "name": "bad", "conditions": [{"field": "subject", "operator": "matches",
                                           "value": "(?P<x"}]})
        assert response.status_code == 422
        [problem] = response.json()["detail"]["problems"]
        assert (problem["rule"], problem["field"]) == ("bad", "conditions[0].value")
        assert problem["message"].startswith("invalid regular expression '(?P<x'")
        response = client.post("/api/rules", params={"position": 1}, json={
            "name": "vip", "conditions": [{"field": "from-domain", "operator": "equals",
                                           "value": "vip.example.com"}],
            "actions": {"tags": ["vip"], "escalation_level": 2}})
        assert response.status_code == 201, response.text
        vip = response.json()
        assert vip["position"] == 1
        moved = client.post(f"/api/rules/{vip['id']}/move", json={"position": 3}).json()
        assert [rule["name"] for rule in moved["rules"]] == ["outlook to billing", "spam", "vip"]
        assert client.post(f"/api/rules/{vip['id']}/disable").json()["enabled"] is False
        replaced = client.put(f"/api/rules/{vip['id']}", json={
            "name": "vip", "enabled": False, "actions": {"tags": ["vip"]}})
        assert replaced.json()["actions"] == {"tags": ["vip"]}
        assert client.delete(f"/api/rules/{vip['id']}").json()["name"] == "vip"
        assert client.get(f"/api/rules/{vip['id']}").status_code == 404
        history = client.get("/api/rules/history").json()
        assert [row["action"] for row in history[:5]] == [
            "deleted", "changed", "disabled", "moved", "added"]
        assert {row["channel"] for row in history[:5]} == {"api"}
        raw = customer_mail(subject="Outlook crashes").as_bytes()
        tested = client.post("/api/rules/test", json={
            "raw_base64": base64.b64encode(raw).decode(), "rcpt_tos": [SUPPORT]}).json()
        assert tested["result"]["queue"] == "Billing"
        assert [rule["status"] for rule in tested["rules"]] == ["matched", "not matched"]
        imported = client.put("/api/rules", json={"rules": []}).json()
        assert imported["report"]["deleted"] == ["outlook to billing", "spam"]


# -- processing ---------------------------------------------------------------------------

def test_dropped_mail_makes_no_ticket(ruled: Gateway) -> None:
    ruled.send(customer_mail(subject="Cheap pills", X_Spam_Flag="YES"), "x@example.com",
               [SUPPORT])
    ruled.wait_idle()
    [row] = ruled.spool_rows()
    assert row.state == "ignored"
    assert row.error == "dropped by rule 'spam'"
    assert ruled.ticket_ids() == []


def test_rule_moves_ticket_and_notifies_queue(ruled: Gateway) -> None:
    ruled.add_agent("bill", "bill@example.org", queue="Billing")
    ruled.send(customer_mail(subject="Outlook crashes"), "ana@example.com", [SUPPORT])
    ruled.wait_idle()
    [ticket_id] = ruled.ticket_ids()
    ticket = ruled.ticket(ticket_id)
    assert ticket["queue"] == "Billing"
    assert ticket["tags"] == ["outlook"]
    [moved] = [e for e in ticket["history"] if e["field"] == "queue"]
    assert (moved["actor"], moved["channel"]) == ("rule:outlook to billing", "email")
    assert (moved["old_value"], moved["new_value"]) == ("Support", "Billing")
    notified = [row.rcpt_to for row in ruled.outbox_rows() if row.kind == "new_ticket"]
    assert notified == ["bill@example.org"]


def test_no_ack_rule_suppresses_acknowledgement(desk: Gateway, capsys) -> None:
    code, _out, err = run_cli(capsys, "rules", "add", "--name", "quiet", "--when", "subject",
                              "starts-with", "[noack]", "--no-ack", "--as", "root")
    assert code == 0, err
    desk.send(customer_mail(subject="[noack] hello"), "ana@example.com", [SUPPORT])
    desk.send(customer_mail(subject="hello", sender="Bo <bo@example.com>"), "bo@example.com",
              [SUPPORT])
    desk.wait_idle()
    acknowledged = [row.rcpt_to for row in desk.outbox_rows() if row.kind == "acknowledgement"]
    assert acknowledged == ["bo@example.com"]


def test_follow_up_rules_apply_to_replies(desk: Gateway, capsys) -> None:
    code, _out, err = run_cli(
        capsys, "rules", "add", "--name", "angry", "--scope", "follow-up", "--when", "body",
        "contains", "still broken", "--escalation", "2", "--tag", "angry", "--as", "root")
    assert code == 0, err
    first = customer_mail(subject="Printer jammed", message_id="<first@example.com>")
    desk.send(first, "ana@example.com", [SUPPORT])
    desk.wait_idle()
    [ticket_id] = desk.ticket_ids()
    assert desk.ticket(ticket_id)["tags"] == []
    reply = customer_mail(subject="Re: Printer jammed", body="It is still broken!\n",
                          In_Reply_To="<first@example.com>")
    desk.send(reply, "ana@example.com", [SUPPORT])
    desk.wait_idle()
    assert desk.ticket_ids() == [ticket_id]
    ticket = desk.ticket(ticket_id)
    assert ticket["tags"] == ["angry"]
    assert ticket["escalation_level"] == 2
    assert ("rule:angry", "escalation_level") in {
        (e["actor"], e["field"]) for e in ticket["history"]}
