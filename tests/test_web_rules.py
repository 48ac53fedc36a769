"""The routing rules editor in Chromium, against a real ``mailgate serve``."""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.browser import PASSWORD, browser, screenshot, sign_in, site  # noqa: F401  (fixtures)

INVOICE_RULE = "invoices to billing"


def stored_rules(site) -> list[dict]:
    return json.loads(site.mailgate("rules", "list", "--as", "root", "--json"))


def stored_rule(site, name: str) -> dict:
    [rule] = [rule for rule in stored_rules(site) if rule["name"] == name]
    return rule


def rule_history(site) -> list[dict]:
    return json.loads(site.mailgate("rules", "history", "--as", "root", "--json"))


def add_rule(site, name: str, subject_word: str) -> None:
    site.mailgate("rules", "add", "--name", name, "--when", "subject", "contains", subject_word,
                  "--tag", subject_word.lower(), "--as", "root")


def write_eml(path: Path, subject: str) -> Path:
    message = EmailMessage()
    message["From"] = "Carla Customer <carla@example.com>"
    message["To"] = "support@support.example.org"
    message["Subject"] = subject
    message["Message-ID"] = "<invoice-question@example.com>"
    message.set_content("Hello, my invoice looks wrong.")
    path.write_bytes(bytes(message))
    return path


def test_invalid_pattern_fixed_tested_saved(browser, site, tmp_path):
    page = sign_in(browser, site, "root")
    page.click("header nav >> text=Routing rules")
    page.wait_for_url("**/rules")
    page.click("#add-rule")
    page.wait_for_url("**/rules/new")
    page.fill("input[name=name]", INVOICE_RULE)
    page.fill("input[name='conditions[0].field']", "subject")
    page.select_option("select[name='conditions[0].operator']", "matches")
    page.fill("input[name='conditions[0].value']", "[0-9")
    page.select_option("select[name='actions.queue']", "Billing")
    page.fill("input[name='actions.tags']", "invoice")
    page.click("#save-rule")

    error = page.locator(".field-error[data-field='conditions[0].value']")
    assert "invalid regular expression" in error.inner_text()
    value_input = page.locator("input[name='conditions[0].value']")
    assert value_input.input_value() == "[0-9"
    assert value_input.get_attribute("aria-invalid") == "true"
    assert page.locator("input[name=name]").input_value() == INVOICE_RULE
    assert page.locator("select[name='actions.queue']").input_value() == "Billing"
    assert page.locator(".field-error").count() == 1
    screenshot(page, "rules-editor-invalid")
    assert INVOICE_RULE not in [rule["name"] for rule in stored_rules(site)]

    value_input.fill("Invoice [0-9]+")
    eml = write_eml(tmp_path / "invoice.eml", "Invoice 4711 is wrong")
    page.set_input_files("input[name=mail]", str(eml))
    page.fill("#try-draft input[name=rcpt_to]", "support@support.example.org")
    page.click("#test-draft")

    trace = page.locator("#trace")
    rule_trace = trace.locator(f"li.trace-rule[data-rule='{INVOICE_RULE}']")
    assert rule_trace.locator(".status").inner_text() == "matched"
    condition = rule_trace.locator("li.condition")
    assert condition.get_attribute("class") == "condition matched"
    assert "matches" in condition.inner_text()
    assert "Invoice 4711 is wrong" in condition.inner_text()
    assert "Billing" in trace.locator("dd[data-field=queue]").inner_text()
    assert trace.locator("dd[data-field=tags]").inner_text() == "invoice"
    assert page.locator("input[name='conditions[0].value']").input_value() == "Invoice [0-9]+"
    assert INVOICE_RULE not in [rule["name"] for rule in stored_rules(site)]

    page.click("#save-rule")
    page.wait_for_url("**/rules")
    assert "added at position" in page.locator(".flash").inner_text()
    listed = page.locator("#rules li.rule", has_text=INVOICE_RULE)
    assert "subject matches \"Invoice [0-9]+\"" in listed.locator(".conditions").inner_text()
    assert "queue Billing" in listed.locator(".rule-actions").inner_text()

    rule = stored_rule(site, INVOICE_RULE)
    assert rule["conditions"] == [
        {"field": "subject", "operator": "matches", "value": "Invoice [0-9]+"}]
    assert rule["actions"] == {"queue": "Billing", "tags": ["invoice"]}
    assert rule["enabled"] is True
    assert INVOICE_RULE in site.mailgate("rules", "list", "--as", "root")
    [added] = [entry for entry in rule_history(site) if entry["rule"] == INVOICE_RULE]
    assert added["action"] == "added"
    assert added["channel"] == "web"
    assert added["actor"] == "user:root"
    assert INVOICE_RULE in page.locator("#rule-history").inner_text()
    page.context.close()


def test_history_page_shows_definitions(browser, site):
    add_rule(site, "history rule", "Eta")
    page = sign_in(browser, site, "root")
    page.goto("/rules")
    page.click("#rule-history >> text=All changes")
    page.wait_for_url("**/rules/history")
    row = page.locator("table.changes tbody tr", has_text="history rule").first
    assert "added" in row.inner_text()
    assert "cli" in row.inner_text()
    row.locator("summary").click()
    after = row.locator(".before-after > div").nth(1).inner_text()
    assert '"name": "history rule"' in after
    assert '"value": "Eta"' in after
    page.context.close()


def test_saved_rules_tested_on_mail(browser, site, tmp_path):
    add_rule(site, "saved outlook rule", "Outlook")
    page = sign_in(browser, site, "root")
    page.goto("/rules")
    eml = write_eml(tmp_path / "outlook.eml", "Outlook crashes")
    page.set_input_files("#test-panel input[name=mail]", str(eml))
    page.click("#test-panel button[type=submit]")
    trace = page.locator("#trace")
    matched = trace.locator("li.trace-rule[data-rule='saved outlook rule'] .status")
    assert matched.inner_text() == "matched"
    assert "outlook" in trace.locator("dd[data-field=tags]").inner_text()
    assert "Support" in trace.locator("dd[data-field=queue]").inner_text()
    page.context.close()


def test_edit_keeps_rule_and_records_change(browser, site):
    add_rule(site, "edit me", "Edit")
    rule = stored_rule(site, "edit me")
    page = sign_in(browser, site, "root")
    page.goto(f"/rules/{rule['id']}")
    assert page.locator("input[name='conditions[0].value']").input_value() == "Edit"
    page.select_option("select[name='actions.stage']", index=1)
    stage = page.locator("select[name='actions.stage']").input_value()
    page.click("#save-rule")
    page.wait_for_url("**/rules")
    edited = stored_rule(site, "edit me")
    assert edited["actions"]["stage"] == stage
    assert edited["position"] == rule["position"]
    changes = [entry for entry in rule_history(site) if entry["rule"] == "edit me"]
    assert changes[0]["action"] == "changed"
    assert changes[0]["after"]["actions"]["stage"] == stage

    page.goto(f"/rules/{rule['id']}")
    shown = page.locator("#rule-history tbody tr").all_inner_texts()
    assert len(shown) == 2
    assert "changed" in shown[0]
    assert "web" in shown[0]
    assert "added" in shown[1]
    page.context.close()


def test_reorder_by_buttons(browser, site):
    add_rule(site, "first of two", "Alpha")
    add_rule(site, "second of two", "Beta")
    before = [rule["name"] for rule in stored_rules(site)]
    page = sign_in(browser, site, "root")
    page.goto("/rules")
    page.click("button[aria-label='Move second of two up']")
    page.wait_for_url("**/rules")
    after = [rule["name"] for rule in stored_rules(site)]
    index = before.index("second of two")
    expected = before[:index - 1] + ["second of two", "first of two"] + before[index + 1:]
    assert after == expected
    shown = page.locator("#rules li.rule .rule-name").all_inner_texts()
    assert shown == after

    page.click("button[aria-label='Move second of two down']")
    page.wait_for_url("**/rules")
    assert [rule["name"] for rule in stored_rules(site)] == before
    moves = [entry for entry in rule_history(site) if entry["action"] == "moved"]
    assert moves[0]["rule"] == "second of two"
    page.context.close()


def test_reorder_by_drag_and_drop(browser, site):
    add_rule(site, "drag anchor", "Theta")
    add_rule(site, "dragged rule", "Gamma")
    page = sign_in(browser, site, "root")
    page.goto("/rules")
    names = page.locator("#rules li.rule .rule-name").all_inner_texts()
    assert names[-1] == "dragged rule"
    with page.expect_response("**/move") as moved:
        page.drag_and_drop("#rules li.rule:last-child", "#rules li.rule:first-child",
                              target_position={"x": 20, "y": 3})
    assert moved.value.status == 200
    page.wait_for_load_state()
    assert stored_rule(site, "dragged rule")["position"] == 1
    page.wait_for_selector("#rules li.rule:first-child >> text=dragged rule")

    token = page.locator("#rules").get_attribute("data-csrf")
    rule_id = stored_rule(site, "dragged rule")["id"]
    outside = page.request.post(f"/rules/{rule_id}/move", form={"position": "999"},
                                headers={"X-CSRF-Token": token, "Accept": "application/json"})
    assert outside.status == 400
    assert "outside" in outside.json()["detail"]
    without_token = page.request.post(f"/rules/{rule_id}/move", form={"position": "2"},
                                      headers={"Accept": "application/json"})
    assert without_token.status == 403
    assert stored_rule(site, "dragged rule")["position"] == 1
    page.context.close()


def test_operators_follow_field(browser, site):
    page = sign_in(browser, site, "root")
    page.goto("/rules/new")
    row = page.locator(".condition-row[data-row='0']")
    page.fill("input[name='conditions[0].field']", "size")
    assert row.locator("option:text-is('greater-than')").is_enabled()
    assert row.locator("option:text-is('not-contains')").is_disabled()
    page.fill("input[name='conditions[0].field']", "header:X-Mailer")
    assert row.locator("option:text-is('not-contains')").is_enabled()
    assert row.locator("option:text-is('greater-than')").is_disabled()

    page.click("#add-condition")
    added = page.locator("input[name='conditions[2].field']")
    assert added.input_value() == ""
    assert page.locator(".condition-row").count() == 3
    page.context.close()


def test_disable_then_enable(browser, site):
    add_rule(site, "switched rule", "Delta")
    page = sign_in(browser, site, "root")
    page.goto("/rules")
    item = page.locator("#rules li.rule", has_text="switched rule")
    item.locator("button", has_text="Disable").click()
    page.wait_for_url("**/rules")
    assert stored_rule(site, "switched rule")["enabled"] is False
    item = page.locator("#rules li.rule", has_text="switched rule")
    assert "disabled" in item.get_attribute("class")
    assert item.locator(".state").inner_text() == "disabled"

    item.locator("button", has_text="Enable").click()
    page.wait_for_url("**/rules")
    assert stored_rule(site, "switched rule")["enabled"] is True
    actions = [entry["action"] for entry in rule_history(site) if entry["rule"] == "switched rule"]
    assert actions[:2] == ["enabled", "disabled"]
    page.context.close()


def test_delete_asks_first(browser, site):
    add_rule(site, "deleted rule", "Epsilon")
    page = sign_in(browser, site, "root")
    page.goto("/rules")
    item = page.locator("#rules li.rule", has_text="deleted rule")
    page.once("dialog", lambda dialog: dialog.dismiss())
    item.locator("button", has_text="Delete").click()
    assert "deleted rule" in [rule["name"] for rule in stored_rules(site)]

    page.once("dialog", lambda dialog: dialog.accept())
    item.locator("button", has_text="Delete").click()
    page.wait_for_url("**/rules")
    assert "deleted rule" not in [rule["name"] for rule in stored_rules(site)]
    assert page.locator("#rules li.rule", has_text="deleted rule").count() == 0
    page.context.close()


def test_frontline_refused(browser, site):
    add_rule(site, "guarded rule", "Zeta")
    rule = stored_rule(site, "guarded rule")
    page = sign_in(browser, site, "ana")
    assert page.locator("header nav >> text=Routing rules").count() == 0
    response = page.goto("/rules")
    assert response.status == 403
    response = page.goto(f"/rules/{rule['id']}")
    assert response.status == 403
    page.context.close()

    with httpx.Client(base_url=site.base_url) as client:
        form = client.get("/signin").text
        token = form.split('name="csrf_token" value="')[1].split('"')[0]
        signed_in = client.post("/signin", data={
            "csrf_token": token, "username": "ana", "password": PASSWORD})
        assert signed_in.status_code == 303
        token = client.get("/tickets").text.split('name="csrf_token" value="')[1].split('"')[0]
        forged = client.post(f"/rules/{rule['id']}/disable", data={"csrf_token": token})
        assert forged.status_code == 403
        forged_new = client.post("/rules/new", data={
            "csrf_token": token, "name": "forged", "enabled": "1",
            "conditions[0].field": "subject", "conditions[0].operator": "contains",
            "conditions[0].value": "x", "actions.acknowledge": "1", "intent": "save"})
        assert forged_new.status_code == 403
        forged_move = client.post(f"/rules/{rule['id']}/move", data={"position": "1"},
                                  headers={"X-CSRF-Token": token, "Accept": "application/json"})
        assert forged_move.status_code == 403
    assert stored_rule(site, "guarded rule")["enabled"] is True
    assert "forged" not in [item["name"] for item in stored_rules(site)]


def test_replay_shows_changed_mail(browser, site):
    site.send("Refund request for order 7", sender="dora@example.com")
    site.send("Password reset please", sender="emil@example.com")
    page = sign_in(browser, site, "root")
    page.goto("/rules/new")
    page.fill("input[name=name]", "refunds to billing")
    page.fill("input[name='conditions[0].field']", "subject")
    page.select_option("select[name='conditions[0].operator']", "contains")
    page.fill("input[name='conditions[0].value']", "refund")
    page.select_option("select[name='actions.queue']", "Billing")
    assert page.locator("input[name=since]").input_value() == "7d"
    page.click("#replay-draft")

    replay = page.locator("#replay")
    assert "would be routed differently" in replay.locator("#replay-summary").inner_text()
    rows = replay.locator("table.replay-changes tbody tr")
    assert rows.count() == 1
    row = rows.first
    assert "Refund request for order 7" in row.inner_text()
    assert "dora@example.com" in row.inner_text()
    assert "queue: Support → Billing" in row.inner_text()
    assert "refunds to billing" not in [rule["name"] for rule in stored_rules(site)]
    screenshot(page, "rules-replay")
    assert page.locator("input[name=name]").input_value() == "refunds to billing"
    page.context.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_editor_screenshots(browser, site, tmp_path, width):
    page = sign_in(browser, site, "root", viewport_width=width)
    page.goto("/rules")
    suffix = "" if width == 1280 else "-phone"
    screenshot(page, f"rules-list{suffix}")
    assert page.evaluate("document.documentElement.scrollWidth") <= width

    if "invoice numbers" not in [rule["name"] for rule in stored_rules(site)]:
        site.mailgate("rules", "add", "--name", "invoice numbers", "--when", "subject", "matches",
                      "Invoice [0-9]+", "--queue", "Billing", "--tag", "invoice", "--as", "root")
    rule = stored_rule(site, "invoice numbers")
    page.goto(f"/rules/{rule['id']}")
    page.set_input_files("input[name=mail]", str(write_eml(tmp_path / "shot.eml", "Invoice 12")))
    page.click("#test-draft")
    page.locator("#trace").wait_for()
    screenshot(page, f"rules-editor{suffix}")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.context.close()
