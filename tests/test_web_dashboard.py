"""The Actions Dashboard in Chromium: filters, sorting, bulk and quick actions."""

from __future__ import annotations

from tests.browser import browser, screenshot, sign_in, site  # noqa: F401  (fixtures)


def test_filter_by_subject_text(browser, site):
    site.send("Dashboard filter: VPN down", sender="vpn@example.com")
    site.send("Dashboard filter: invoice copy", sender="invoice@example.com")
    site.ticket_id("Dashboard filter: VPN down")
    site.ticket_id("Dashboard filter: invoice copy")
    page = sign_in(browser, site, "ana")
    page.fill("input[name=q]", "vpn")
    page.click("#filters button[type=submit]")
    subjects = page.locator("td.subject a").all_inner_texts()
    assert subjects == ["Dashboard filter: VPN down"]
    assert "q=vpn" in page.url
    page.context.close()


def test_filter_by_queue_hides_other_queues(browser, site):
    site.send("Dashboard queue: refund", to="billing@support.example.org")
    site.ticket_id("Dashboard queue: refund")
    page = sign_in(browser, site, "mia")
    page.select_option("select[name=queue]", "Billing")
    page.click("#filters button[type=submit]")
    queues = set(page.locator("td.queue").all_inner_texts())
    assert queues == {"Billing"}
    page.context.close()


def test_frontline_sees_only_own_queues(browser, site):
    site.send("Dashboard scope: billing only", to="billing@support.example.org")
    site.ticket_id("Dashboard scope: billing only")
    page = sign_in(browser, site, "ana")
    page.fill("input[name=q]", "Dashboard scope")
    page.click("#filters button[type=submit]")
    assert page.locator("td.subject").count() == 0
    assert page.locator("td.empty").inner_text() == "No tickets match these filters."
    page.context.close()


def test_bulk_stage_change_of_three(browser, site):
    ids = []
    for number in range(3):
        subject = f"Dashboard bulk {number}"
        site.send(subject, sender=f"bulk{number}@example.com")
        ids.append(site.ticket_id(subject))
    page = sign_in(browser, site, "ana")
    page.fill("input[name=q]", "Dashboard bulk")
    page.click("#filters button[type=submit]")
    for ticket_id in ids:
        page.check(f"input[name=ticket][value='{ticket_id}']")
    page.select_option("#bulk-action", "stage")
    page.select_option("select[name=value_stage]", "pending")
    page.click("#bulk button[type=submit]")

    result = page.locator("#bulk-result")
    assert "3 changed, 0 unchanged, 0 failed." in result.inner_text()
    for ticket_id in ids:
        assert result.locator(f"li[data-ticket='{ticket_id}']").inner_text() == f"#{ticket_id}: changed"
        row = page.locator(f"tr[data-ticket='{ticket_id}'] td.stage")
        assert row.inner_text() == "pending"
        changes = [entry for entry in site.history(ticket_id) if entry["field"] == "stage"]
        assert changes[-1]["old_value"] == "new"
        assert changes[-1]["new_value"] == "pending"
        assert changes[-1]["actor"] == "user:ana"
        assert changes[-1]["channel"] == "web"
    screenshot(page, "dashboard")
    page.context.close()


def test_bulk_close_not_offered_to_frontline(browser, site):
    page = sign_in(browser, site, "ana")
    options = page.locator("#bulk-action option").all_inner_texts()
    assert "Close" not in options
    assert "Change stage" in options
    page.context.close()


def test_bulk_reports_failure_per_ticket(browser, site):
    site.send("Dashboard bulk failure", sender="fail@example.com")
    ticket_id = site.ticket_id("Dashboard bulk failure")
    page = sign_in(browser, site, "mia")
    page.fill("input[name=q]", "Dashboard bulk failure")
    page.click("#filters button[type=submit]")
    page.check(f"input[name=ticket][value='{ticket_id}']")
    page.select_option("#bulk-action", "stage")
    page.select_option("select[name=value_stage]", "new")
    page.click("#bulk button[type=submit]")
    item = page.locator(f"#bulk-result li[data-ticket='{ticket_id}']")
    assert item.inner_text() == f"#{ticket_id}: unchanged"
    page.context.close()


def test_quick_postpone_from_row(browser, site):
    site.send("Dashboard quick postpone", sender="quick@example.com")
    ticket_id = site.ticket_id("Dashboard quick postpone")
    page = sign_in(browser, site, "ana")
    page.fill("input[name=q]", "Dashboard quick postpone")
    page.click("#filters button[type=submit]")
    row = page.locator(f"tr[data-ticket='{ticket_id}']")
    row.locator("select[aria-label^='Postpone']").select_option("3d")
    row.locator("button:text('Postpone')").click()
    assert f"Ticket {ticket_id} postponed until" in page.locator(".flash").inner_text()
    assert page.locator(f"tr[data-ticket='{ticket_id}'] td.due").inner_text() != ""
    assert "q=Dashboard" in page.url
    [entry] = [entry for entry in site.history(ticket_id) if entry["action"] == "postponed"]
    assert entry["details"]["amount"] == "3d"
    page.context.close()


def test_quick_stage_change_submits_on_select(browser, site):
    site.send("Dashboard quick stage", sender="stage@example.com")
    ticket_id = site.ticket_id("Dashboard quick stage")
    page = sign_in(browser, site, "ana")
    page.fill("input[name=q]", "Dashboard quick stage")
    page.click("#filters button[type=submit]")
    row = page.locator(f"tr[data-ticket='{ticket_id}']")
    with page.expect_navigation():
        row.locator("select[aria-label^='Stage']").select_option("open")
    assert page.locator(f"tr[data-ticket='{ticket_id}'] td.stage").inner_text() == "open"
    page.context.close()


def test_sort_by_subject(browser, site):
    site.send("Dashboard sort B", sender="sortb@example.com")
    site.send("Dashboard sort A", sender="sorta@example.com")
    site.ticket_id("Dashboard sort A")
    site.ticket_id("Dashboard sort B")
    page = sign_in(browser, site, "ana")
    page.goto("/tickets?q=Dashboard+sort&sort=subject&order=asc")
    assert page.locator("td.subject a").all_inner_texts() == ["Dashboard sort A", "Dashboard sort B"]
    page.click("th a.sort:has-text('Subject')")
    assert page.locator("td.subject a").all_inner_texts() == ["Dashboard sort B", "Dashboard sort A"]
    page.context.close()


def test_create_ticket_button(browser, site):
    page = sign_in(browser, site, "ana")
    page.click("text=Create ticket")
    page.select_option("select[name=queue]", "Support")
    page.fill("input[name=requester_email]", "phone@example.com")
    page.fill("input[name=subject]", "Dashboard phone call")
    page.fill("textarea[name=text]", "Customer called about the printer.")
    page.click("#new-ticket-form button[type=submit]")
    assert page.locator("h1").inner_text().endswith("Dashboard phone call")
    ticket_id = site.ticket_id("Dashboard phone call")
    actions = [entry["action"] for entry in site.history(ticket_id)]
    assert "ticket_created_by_hand" in actions
    page.context.close()


def test_dashboard_at_phone_width(browser, site):
    page = sign_in(browser, site, "ana", viewport_width=390)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400
    screenshot(page, "dashboard-phone")
    page.context.close()
