"""The ticket page in Chromium: tabs, notes, attachments and actions,
each checked in the page and in the ticket's history."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx

from tests.browser import PASSWORD, browser, screenshot, sign_in, site  # noqa: F401  (fixtures)
from tests.process import wait_for


def open_ticket(browser, site, username: str, subject: str, tab: str = "info"):
    site.send(subject, sender=f"{abs(hash(subject)) % 10**8}@example.com")
    ticket_id = site.ticket_id(subject)
    page = sign_in(browser, site, username)
    page.goto(f"/tickets/{ticket_id}?tab={tab}")
    return page, ticket_id


def test_add_note(browser, site):
    page, ticket_id = open_ticket(browser, site, "ana", "Ticket page: note", "notes")
    page.fill("#note-form textarea[name=body]", "Called the customer, waiting for logs.")
    page.click("#note-form button[type=submit]")
    assert page.locator(".flash").inner_text() == "Note added."
    assert page.locator("article.note .note-body").inner_text() == "Called the customer, waiting for logs."
    [entry] = [entry for entry in site.history(ticket_id) if entry["action"] == "note_added"]
    assert entry["actor"] == "user:ana"
    assert entry["channel"] == "web"
    page.context.close()


def test_upload_and_remove_attachment(browser, site, tmp_path):
    page, ticket_id = open_ticket(browser, site, "ana", "Ticket page: attachment")
    upload = tmp_path / "printer-log.txt"
    upload.write_text("paper jam at tray 2\n")
    page.set_input_files("#upload-form input[type=file]", str(upload))
    page.click("#upload-form button[type=submit]")
    assert page.locator(".flash").inner_text() == "printer-log.txt attached."
    link = page.locator("#attachments a", has_text="printer-log.txt")
    assert link.count() == 1
    href = link.get_attribute("href")
    content = page.request.get(href)
    assert content.text() == "paper jam at tray 2\n"

    page.on("dialog", lambda dialog: dialog.accept())
    page.locator("#attachments li", has_text="printer-log.txt").locator("button").click()
    assert page.locator(".flash").inner_text() == "Attachment removed."
    assert page.locator("#attachments li.removed s").inner_text() == "printer-log.txt"
    assert content.status == 200
    assert page.request.get(href).status == 404
    actions = [entry["action"] for entry in site.history(ticket_id)]
    assert "attachment_added" in actions
    assert "attachment_removed" in actions
    page.context.close()


def test_postpone_two_weeks(browser, site):
    page, ticket_id = open_ticket(browser, site, "ana", "Ticket page: postpone")
    before = datetime.now(timezone.utc)
    page.click("summary:text('Postpone')")
    page.fill("input[name=count]", "2")
    page.select_option("select[name=unit]", "w")
    page.click("form[action$='/postpone'] button[type=submit]")
    assert page.locator(".flash").inner_text().startswith("Postponed until")
    [entry] = [entry for entry in site.history(ticket_id) if entry["action"] == "postponed"]
    due = datetime.fromisoformat(entry["new_value"])
    assert before + timedelta(days=14) - timedelta(minutes=1) < due
    assert due < before + timedelta(days=14, minutes=5)
    assert entry["details"]["amount"] == "2w"
    assert page.locator("#ticket-due").inner_text() == due.strftime("%Y-%m-%d %H:%M")
    page.context.close()


def test_forward_to_role(browser, site):
    page, ticket_id = open_ticket(browser, site, "ana", "Ticket page: forward")
    page.click("summary:text('Forward')")
    page.fill("form[action$='/forward'] input[name=recipients]", "manager")
    page.fill("form[action$='/forward'] textarea[name=message]", "Please have a look.")
    page.click("form[action$='/forward'] button[type=submit]")
    assert page.locator(".flash").inner_text() == "Forwarded to mia@example.org."
    assert "tab=history" in page.url
    assert page.locator("#panel-history tr[data-action=forwarded]").count() == 1
    [entry] = [entry for entry in site.history(ticket_id) if entry["action"] == "forwarded"]
    assert entry["details"]["recipients"] == ["mia@example.org"]
    assert entry["channel"] == "web"
    page.context.close()


def test_frontline_close_hidden_and_rejected(browser, site):
    page, ticket_id = open_ticket(browser, site, "ana", "Ticket page: forged close")
    actions = page.locator("#ticket-actions")
    assert actions.locator("button:text-is('Close')").count() == 0
    assert actions.locator("summary:text('Explain & Close')").count() == 0
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    forged = page.request.post(f"/tickets/{ticket_id}/close", form={"csrf_token": token},
                               max_redirects=0)
    assert forged.status == 403
    assert "ticket.close" in forged.text()
    stages = [entry for entry in site.history(ticket_id) if entry["field"] == "stage"]
    assert stages == []
    page.goto(f"/tickets/{ticket_id}")
    assert page.locator("#ticket-stage").inner_text() == "new"
    page.context.close()


def test_manager_explain_and_close(browser, site):
    page, ticket_id = open_ticket(browser, site, "mia", "Ticket page: explain and close")
    page.click("summary:text('Explain & Close')")
    form = page.locator("form[action$='/explain-close']")
    form.locator("input[name=reason]").fill("Customer fixed it themselves")
    form.locator("textarea[name=comment]").fill("Paper was loaded upside down.")
    form.locator("select[name=root_causes]").select_option("user error")
    form.locator("button[type=submit]").click()
    assert page.locator(".flash").inner_text() == "Ticket closed with an explanation."
    assert page.locator("#ticket-stage").inner_text() == "closed"
    [entry] = [entry for entry in site.history(ticket_id) if entry["action"] == "closed"]
    assert entry["actor"] == "user:mia"
    assert entry["details"]["reason"] == "Customer fixed it themselves"
    assert entry["details"]["comment"] == "Paper was loaded upside down."
    assert entry["details"]["root_causes"] == ["user error"]
    page.goto(f"/tickets/{ticket_id}?tab=history")
    closed_row = page.locator("#panel-history tr[data-action=closed]")
    assert closed_row.locator("td.new").inner_text() == "closed"
    assert "Customer fixed it themselves" in closed_row.locator("td.details").inner_text()
    screenshot(page, "ticket-history")
    page.context.close()


def test_info_tab_saves_fields(browser, site):
    page, ticket_id = open_ticket(browser, site, "ana", "Ticket page: info")
    page.fill("#info-form input[name=tags]", "printer urgent")
    page.select_option("#info-form select[name=assignee]", "ana")
    page.click("#info-form button[type=submit]")
    assert page.locator(".flash").inner_text() == "Ticket saved."
    assert page.locator("#info-form input[name=tags]").input_value() == "printer urgent"
    fields = {entry["field"] for entry in site.history(ticket_id) if entry["channel"] == "web"}
    assert fields == {"tags", "assignee"}
    page.context.close()


def test_quoted_text_can_be_expanded(browser, site):
    site.send("Ticket page: quoted", sender="quoted@example.com",
              message_id="<quoted-first@example.com>")
    ticket_id = site.ticket_id("Ticket page: quoted")
    site.send("Re: Ticket page: quoted", sender="quoted@example.com",
              in_reply_to="<quoted-first@example.com>",
              text="Still broken.\n\nOn Mon, 1 Dec 2026 at 10:00, Support wrote:\n> Did you restart it?\n")
    wait_for(lambda: len([entry for entry in site.history(ticket_id)
                          if entry["action"] == "message_added"]) == 2, timeout=60)
    page = sign_in(browser, site, "ana")
    page.goto(f"/tickets/{ticket_id}?tab=messages")
    trimmed = page.locator("details.trimmed")
    assert trimmed.count() == 1
    assert not trimmed.locator("pre").is_visible()
    trimmed.locator("summary").click()
    assert "Did you restart it?" in trimmed.locator("pre").inner_text()
    page.context.close()


def test_other_queue_ticket_is_refused(site):
    site.send("Ticket page: billing scope", to="billing@support.example.org")
    ticket_id = site.ticket_id("Ticket page: billing scope")
    with httpx.Client(base_url=site.base_url) as client:
        token = client.get("/signin").text.split('name="csrf_token" value="')[1].split('"')[0]
        client.post("/signin", data={"csrf_token": token, "username": "ana", "password": PASSWORD})
        response = client.get(f"/tickets/{ticket_id}")
    assert response.status_code == 403


def test_tray_shows_subscribed_alert(browser, site):
    watcher = sign_in(browser, site, "mia")
    watcher.goto("/tray")
    watcher.check("#subscribe-form input[name=events][value=stage]")
    watcher.select_option("#subscribe-form select[name=queue]", "Support")
    watcher.click("#subscribe-form button[type=submit]")
    assert watcher.locator(".flash").inner_text() == "Subscribed."
    assert "stage on Support, by tray" in watcher.locator("#subscriptions").inner_text()

    page, ticket_id = open_ticket(browser, site, "ana", "Ticket page: tray alert")
    page.select_option("#info-form select[name=stage]", "open")
    page.click("#info-form button[type=submit]")
    assert page.locator(".flash").inner_text() == "Ticket saved."

    watcher.goto("/tray")
    assert watcher.locator("#unread-count").inner_text() == "1"
    item = watcher.locator("#tray li.unread")
    assert item.count() == 1
    assert item.locator(".text").inner_text() == f"[#{ticket_id}] ana changed stage from new to open"
    assert item.locator("a").inner_text() == f"#{ticket_id}"
    item.locator("button").click()
    assert watcher.locator("#tray li.unread").count() == 0
    assert watcher.locator("#unread-count").count() == 0
    page.context.close()
    watcher.context.close()


def test_tray_skips_tickets_of_other_queues(browser, site):
    frontline = sign_in(browser, site, "ana")
    frontline.goto("/tray")
    frontline.check("#subscribe-form input[name=events][value=queue]")
    frontline.check("#subscribe-form input[name=events][value=tags]")
    frontline.click("#subscribe-form button[type=submit]")
    assert "every queue you work on" in frontline.locator("#subscriptions").inner_text()

    site.send("Ticket page: billing alert", to="billing@support.example.org")
    ticket_id = site.ticket_id("Ticket page: billing alert")
    manager = sign_in(browser, site, "mia")
    manager.goto(f"/tickets/{ticket_id}")
    manager.select_option("#info-form select[name=queue]", "Support")
    manager.click("#info-form button[type=submit]")
    assert manager.locator(".flash").inner_text() == "Ticket saved."
    site.send("Ticket page: billing alert 2", to="billing@support.example.org")
    other_id = site.ticket_id("Ticket page: billing alert 2")
    manager.goto(f"/tickets/{other_id}")
    manager.fill("#info-form input[name=tags]", "vip")
    manager.click("#info-form button[type=submit]")
    assert manager.locator(".flash").inner_text() == "Ticket saved."

    frontline.goto("/tray")
    texts = frontline.locator("#tray li .text").all_inner_texts()
    assert texts == [f"[#{ticket_id}] mia changed queue from Billing to Support"]
    manager.context.close()
    frontline.context.close()


def test_emailed_note_trimmed_part_expands(browser, site):
    site.send("Ticket page: emailed note", sender="emailed@example.com")
    ticket_id = site.ticket_id("Ticket page: emailed note")
    site.reply_as_agent(ticket_id, "ana", "Replaced the fuser, please test.")
    wait_for(lambda: any(entry["action"] == "note_added" for entry in site.history(ticket_id)),
             timeout=60)
    page = sign_in(browser, site, "ana")
    page.goto(f"/tickets/{ticket_id}?tab=notes")
    note = page.locator("article.note")
    assert note.locator(".note-body").inner_text() == "Replaced the fuser, please test."
    assert "via email" in note.locator("header").inner_text()
    trimmed = note.locator("details.trimmed")
    assert not trimmed.locator("pre").is_visible()
    trimmed.locator("summary").click()
    assert "wrote:" in trimmed.locator("pre").inner_text()
    assert "> " in trimmed.locator("pre").inner_text()
    page.context.close()


def test_ticket_page_at_phone_width(browser, site):
    page, ticket_id = open_ticket(browser, site, "mia", "Ticket page: phone")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"/tickets/{ticket_id}")
    assert page.evaluate("document.documentElement.scrollWidth") <= 400
    page.click("summary:text('Explain & Close')")
    box = page.locator("form[action$='/explain-close']").bounding_box()
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 400
    screenshot(page, "ticket-phone")
    page.context.close()
