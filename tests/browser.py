"""A real ``mailgate serve`` on SQLite with users who have passwords, and
Debian's Chromium driven by Playwright, for the web page tests."""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from sqlalchemy import select

from mailgate.app import App
from mailgate.settings import Settings
from store.models import Ticket
from tests.mail import agent_reply
from tests.process import ServeProcess, free_port, wait_for

CHROMIUM = Path(os.environ.get("MAILGATE_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).parent / "screenshots"
PASSWORD = "a long test password"
SUPPORT = "support@support.example.org"
BILLING = "billing@support.example.org"

# username, role, queues
USERS = (
    ("ana", "frontline", ("Support",)),
    ("mia", "manager", ("Support", "Billing")),
    ("root", "admin", ("Support", "Billing")),
)


@dataclass
class Site:
    """The running gateway: its home, SMTP port and web address."""

    home: Path
    smtp_port: int
    base_url: str
    server: ServeProcess
    _app: App | None = None

    def mailgate(self, *args: str, stdin: str | None = None) -> str:
        """Run a ``mailgate`` command on this site's home; return its stdout."""
        result = subprocess.run(
            [sys.executable, "-m", "mailgate", *args], input=stdin, capture_output=True,
            text=True, env={**os.environ, "MAILGATE_HOME": str(self.home),
                            "MAILGATE_DOMAIN": "support.example.org"},
            timeout=120,
        )
        if result.returncode != 0:
            raise AssertionError(f"mailgate {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def send(self, subject: str, *, sender: str = "customer@example.com", to: str = SUPPORT,
             text: str = "Hello, it does not work.", html: str | None = None,
             message_id: str | None = None, in_reply_to: str | None = None) -> None:
        """Send a customer mail over SMTP."""
        message = EmailMessage()
        message["From"] = sender
        message["To"] = to
        message["Subject"] = subject
        if message_id:
            message["Message-ID"] = message_id
        if in_reply_to:
            message["In-Reply-To"] = in_reply_to
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30) as client:
            client.send_message(message)

    def notification(self, ticket_id: int, recipient: str) -> EmailMessage:
        """Return the New Ticket mail for ``recipient`` from the Maildir outbox."""
        found: list[EmailMessage] = []

        def written() -> bool:
            for path in (self.home / "outbox" / "new").iterdir():
                mail = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
                to = [address.addr_spec for address in mail["To"].addresses]
                if to == [recipient] and f"[#{ticket_id}]" in str(mail["Subject"]):
                    found.append(mail)
                    return True
            return False

        wait_for(written, timeout=60)
        return found[0]

    def reply_as_agent(self, ticket_id: int, username: str, text: str) -> None:
        """Reply to the ticket's New Ticket mail from the agent's inbox, quoting it."""
        address = f"{username}@example.org"
        reply = agent_reply(self.notification(ticket_id, address), text, address)
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30) as client:
            client.send_message(reply)

    def history(self, ticket_id: int) -> list[dict]:
        """Return the ticket's history as ``mailgate tickets history --json`` prints it."""
        return json.loads(self.mailgate("tickets", "history", str(ticket_id), "--json"))

    def ticket_id(self, subject: str) -> int:
        """Wait for the mail with ``subject`` to become a ticket; return its id."""
        found: list[int] = []

        def created() -> bool:
            with self.app().sessions() as session:
                ticket_id = session.scalar(select(Ticket.id).where(Ticket.subject == subject))
            if ticket_id is not None:
                found.append(ticket_id)
            return bool(found)

        wait_for(created, timeout=60)
        return found[0]

    def app(self) -> App:
        """Return the site's database opened from the test process, to check results."""
        if self._app is None:
            self._app = App.create(Settings(home=self.home, domain="support.example.org"))
        return self._app


def start_site(home: Path) -> Site:
    """Set up queues and users with passwords, then start ``mailgate serve``."""
    home.mkdir(parents=True)
    smtp_port = free_port()
    site = Site(home, smtp_port, "", None)  # type: ignore[arg-type]
    site.mailgate("queues", "add", "Support", "--address", SUPPORT)
    site.mailgate("queues", "add", "Billing", "--address", BILLING)
    for username, role, queues in USERS:
        queue_options = [option for name in queues for option in ("--queue", name)]
        site.mailgate("users", "add", username, "--email", f"{username}@example.org",
                      "--role", role, *queue_options)
        site.mailgate("users", "password", username, "--password-stdin", stdin=PASSWORD + "\n")
    site.mailgate("rootcauses", "add", "user error", "--as", "root")
    site.server = ServeProcess(home, smtp_port, MAILGATE_DOMAIN="support.example.org")
    site.server.wait_ready()
    site.base_url = f"http://127.0.0.1:{site.server.http_port}"
    return site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    running = start_site(tmp_path_factory.mktemp("web") / "home")
    try:
        yield running
    finally:
        running.server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium, headless; fails under CI when it is missing."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is required when CI is set: {CHROMIUM} not found")
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


def sign_in(browser: object, site: Site, username: str, *, viewport_width: int = 1280):
    """Return a new page signed in as ``username``."""
    context = browser.new_context(  # type: ignore[attr-defined]
        base_url=site.base_url, viewport={"width": viewport_width, "height": 900})
    page = context.new_page()
    page.goto("/signin")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/tickets")
    return page


def screenshot(page, name: str) -> Path:  # type: ignore[no-untyped-def]
    """Save a full-page screenshot under tests/screenshots (ignored by git)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
