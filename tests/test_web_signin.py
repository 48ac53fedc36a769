"""Sign-in, sign-out, sessions and CSRF of the web pages, in Chromium."""

from __future__ import annotations

import httpx

from tests.browser import PASSWORD, browser, sign_in, site  # noqa: F401  (fixtures)


def test_signin_shows_dashboard(browser, site):
    page = sign_in(browser, site, "ana")
    assert page.locator("h1").inner_text() == "Actions Dashboard"
    assert "ana" in page.locator("header .who").inner_text()
    page.context.close()


def test_wrong_password_rejected(browser, site):
    context = browser.new_context(base_url=site.base_url)
    page = context.new_page()
    page.goto("/tickets")
    assert "/signin" in page.url
    page.fill("input[name=username]", "ana")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    assert page.locator("[role=alert]").inner_text() == "Wrong username or password."
    assert "/signin" in page.url
    context.close()


def test_signout_ends_session(browser, site):
    page = sign_in(browser, site, "ana")
    page.click("text=Sign out")
    page.wait_for_url("**/signin")
    page.goto("/tickets")
    assert "/signin?next=%2Ftickets" in page.url
    page.context.close()


def test_next_stays_on_site(browser, site):
    context = browser.new_context(base_url=site.base_url)
    page = context.new_page()
    page.goto("/signin?next=https://example.com/")
    page.fill("input[name=username]", "ana")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/tickets")
    assert page.url == f"{site.base_url}/tickets"
    context.close()


def test_form_without_csrf_token_rejected(site):
    with httpx.Client(base_url=site.base_url) as client:
        form = client.get("/signin").text
        token = form.split('name="csrf_token" value="')[1].split('"')[0]
        signed_in = client.post("/signin", data={
            "csrf_token": token, "username": "mia", "password": PASSWORD})
        assert signed_in.status_code == 303
        rejected = client.post("/tickets/new", data={
            "queue": "Support", "requester_email": "x@example.com", "subject": "forged"})
        assert rejected.status_code == 403
        assert "CSRF" in rejected.text


def test_password_change_ends_other_sessions(browser, site):
    page = sign_in(browser, site, "mia")
    site.mailgate("users", "password", "mia", "--password-stdin", stdin="another long password\n")
    try:
        page.goto("/tickets")
        assert "/signin" in page.url
    finally:
        site.mailgate("users", "password", "mia", "--password-stdin", stdin=PASSWORD + "\n")
        page.context.close()


def test_pages_send_security_headers(site):
    response = httpx.get(f"{site.base_url}/signin")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    cookie = response.headers["set-cookie"]
    assert "httponly" in cookie.lower()
    assert "samesite=lax" in cookie.lower()
