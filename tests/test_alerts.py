"""Alert subscriptions: one email, one signed push and one tray item per
event, whichever way the change arrived."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest

from mailgate.alerts import subscribe
from store.directory import find_user_by_email, issue_api_token
from store.models import Role
from store.operations import Actor, get_ticket, update_ticket
from tests.harness import SUPPORT, Gateway
from tests.mail import customer_mail
from tests.process import wait_for

MONA = "mona@example.org"


class PushReceiver:
    """A local HTTP server that records each POST with its headers."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/mailgate-alerts"

    def __enter__(self) -> PushReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()


@pytest.fixture
def desk(gateway: Gateway):
    gateway.add_queue()
    gateway.add_agent("fran", "fran@example.org")
    gateway.add_agent("mona", MONA, role=Role.MANAGER)
    return gateway


def stage_alert_mails(desk: Gateway) -> list:
    return [m for m in desk.delivered()
            if m["To"].addresses[0].addr_spec == MONA and "Stage:" in str(m["Subject"])]


def test_stage_change_alerts_each_channel_once(desk: Gateway) -> None:
    with PushReceiver() as receiver:
        with desk.app.sessions.begin() as session:
            mona = find_user_by_email(session, MONA)
            secret = subscribe(session, mona.id, queue_id=None, events=["stage"],
                               channels=["email", "push", "tray"], push_url=receiver.url).push_secret
        desk.send(customer_mail(), "ana@example.com", [SUPPORT])
        desk.wait_idle()
        [ticket_id] = desk.ticket_ids()
        token = issue_api_token(desk.app.sessions, "fran")
        headers = {"Authorization": f"Bearer {token}"}
        for stage in ("open", "pending"):
            response = httpx.patch(f"{desk.http_url}/api/tickets/{ticket_id}", json={"stage": stage},
                                   headers=headers, timeout=30)
            assert response.status_code == 200
        wait_for(lambda: len(receiver.received) >= 2 and len(stage_alert_mails(desk)) >= 2, timeout=30)
        desk.wait_idle()
        pushes = list(receiver.received)
    assert len(stage_alert_mails(desk)) == 2
    assert len(pushes) == 2
    for headers_seen, body in pushes:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers_seen["X-Mailgate-Signature"] == expected
    payloads = [json.loads(body) for _, body in pushes]
    assert [p["mailgate"]["new"] for p in payloads] == ["open", "pending"]
    assert payloads[0]["topic"] == "mailgate-alerts"
    with httpx.Client(base_url=desk.http_url, timeout=30,
                      headers={"Authorization": f"Bearer {issue_api_token(desk.app.sessions, 'mona')}"}) as client:
        tray = client.get("/api/tray").json()
        assert [item["event"] for item in tray] == ["stage", "stage"]
        assert client.post(f"/api/tray/{tray[0]['id']}/read").status_code == 200
        assert [item["id"] for item in client.get("/api/tray", params={"unread": True}).json()] == [tray[1]["id"]]


def test_own_changes_raise_no_alert(desk: Gateway) -> None:
    desk.send(customer_mail(), "ana@example.com", [SUPPORT])
    desk.wait_idle()
    [ticket_id] = desk.ticket_ids()
    with desk.app.sessions.begin() as session:
        mona = find_user_by_email(session, MONA)
        subscribe(session, mona.id, queue_id=None, events=["stage"], channels=["tray"])
    token = issue_api_token(desk.app.sessions, "mona")
    response = httpx.patch(f"{desk.http_url}/api/tickets/{ticket_id}", json={"stage": "open"},
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200
    from sqlalchemy import select
    from store.models import TrayItem

    with desk.app.sessions() as session:
        assert list(session.scalars(select(TrayItem))) == []


def test_new_ticket_alert_by_email(desk: Gateway) -> None:
    with desk.app.sessions.begin() as session:
        mona = find_user_by_email(session, MONA)
        subscribe(session, mona.id, queue_id=None, events=["ticket_created"], channels=["email"])
    desk.send(customer_mail(), "ana@example.com", [SUPPORT])
    desk.wait_idle()
    alerts = [m for m in desk.delivered() if m["To"].addresses[0].addr_spec == MONA
              and "Ticket created" in str(m["Subject"])]
    assert len(alerts) == 1
