"""A customer's hostile HTML mail shown in the Messages tab: nothing in it
runs or loads, checked in Chromium."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.browser import browser, screenshot, sign_in, site  # noqa: F401  (fixtures)


@pytest.fixture
def image_server():
    """A local HTTP server standing for a remote image host; it records
    every path requested of it."""
    requested: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (name fixed by http.server)
            requested.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/gif")
            self.end_headers()
            self.wfile.write(b"GIF89a")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requested
    server.shutdown()


def test_hostile_html_is_inert(browser, site, image_server):
    remote, requested = image_server
    html = f"""<html><head>
<meta http-equiv="refresh" content="0; url={remote}/refresh">
<style>body {{ background: url({remote}/css-background) }}</style>
<script>window.pwned = "script";</script>
</head><body>
<p id="greeting">Hello, my order is late.</p>
<img src="{remote}/tracker.gif" onerror="window.pwned = 'onerror'" alt="tracker">
<img src="x" onerror="window.pwned = 'onerror2'">
<a id="js-link" href="javascript:window.pwned = 'link'">Click for details</a>
<a href="JaVaScRiPt:window.pwned = 'mixed-case'">Another link</a>
<svg onload="window.pwned = 'svg'"><circle r="4"/></svg>
<iframe src="{remote}/frame"></iframe>
<form action="{remote}/form"><input name="q"><button>Send</button></form>
<div onmouseover="window.pwned = 'hover'">Hover here</div>
</body></html>"""
    site.send("Mail HTML: hostile", sender="hostile@example.com", html=html)
    ticket_id = site.ticket_id("Mail HTML: hostile")
    page = sign_in(browser, site, "ana")
    page.goto(f"/tickets/{ticket_id}?tab=messages")
    body = page.locator(".mail-html")
    assert "Hello, my order is late." in body.inner_text()

    body.locator("a", has_text="Click for details").click()
    page.locator(".mail-html div", has_text="Hover here").hover()
    page.wait_for_timeout(500)
    assert page.evaluate("window.pwned") is None
    assert page.url.endswith(f"/tickets/{ticket_id}?tab=messages")
    assert body.locator("script, iframe, form, svg, style, meta").count() == 0
    assert body.locator("[onerror], [onload], [onmouseover]").count() == 0
    hrefs = [link.get_attribute("href") for link in body.locator("a").all()]
    assert all(href is None or not href.lower().startswith("javascript:") for href in hrefs)
    sources = [image.get_attribute("src") for image in body.locator("img").all()]
    assert all(source is None for source in sources)
    assert requested == []
    screenshot(page, "ticket-messages-hostile")
    page.context.close()
