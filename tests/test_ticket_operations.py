"""Ticket operations with roles and history, through the CLI, the HTTP API
and commands in an agent's emailed reply."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from store.directory import issue_api_token
from store.models import Role
from tests.harness import SUPPORT, Gateway
from tests.mail import agent_reply, customer_mail

FRONTLINE = "fran@example.org"
MANAGER = "mona@example.org"
EX_NOPERM = 77


@pytest.fixture
def desk(gateway: Gateway) -> Gateway:
    gateway.add_queue()
    gateway.add_queue("Billing", "billing@support.example.org")
    gateway.add_agent("fran", FRONTLINE)
    gateway.add_agent("mona", MANAGER, role=Role.MANAGER)
    gateway.add_agent("bob", "bob@example.org", queue="Billing")
    return gateway


def cli(desk: Gateway, *args: str) -> subprocess.CompletedProcess:
    env = desk.cli_env()
    return subprocess.run([sys.executable, "-m", "mailgate", *args], capture_output=True,
                          env=env, timeout=60)


def new_ticket(desk: Gateway, subject: str = "Printer on floor 3 is jammed") -> int:
    desk.send(customer_mail(subject=subject), "ana@example.com", [SUPPORT])
    desk.wait_idle()
    return desk.ticket_ids()[-1]


def api(desk: Gateway, username: str) -> httpx.Client:
    token = issue_api_token(desk.app.sessions, username)
    return httpx.Client(base_url=desk.http_url, headers={"Authorization": f"Bearer {token}"},
                        timeout=30)


def notification_for(desk: Gateway, address: str, ticket_id: int):
    [mail] = [m for m in desk.delivered() if m["To"].addresses[0].addr_spec == address
              and f"[#{ticket_id}]" in m["Subject"] and "New Ticket" in m["Subject"]]
    return mail


def email_reply(desk: Gateway, ticket_id: int, agent: str, text: str) -> None:
    notification = notification_for(desk, agent, ticket_id)
    reply = agent_reply(notification, text, agent)
    desk.send(reply, agent, [notification["Reply-To"].addresses[0].addr_spec])
    desk.wait_idle()


# -- roles ---------------------------------------------------------------------

def test_frontline_cannot_close_anywhere(desk: Gateway) -> None:
    ticket_id = new_ticket(desk)
    result = cli(desk, "tickets", "close", str(ticket_id), "--as", "fran")
    assert result.returncode == EX_NOPERM
    assert b"ticket.close" in result.stderr
    with api(desk, "fran") as client:
        response = client.post(f"/api/tickets/{ticket_id}/close", json={})
    assert response.status_code == 403
    assert response.json()["missing_permission"] == "ticket.close"
    email_reply(desk, ticket_id, FRONTLINE, "#close\nDone here.")
    ticket = desk.ticket(ticket_id)
    assert ticket["stage"] == "new"
    failures = [m for m in desk.delivered() if "Commands in your reply failed" in m["Subject"]]
    assert len(failures) == 1
    assert "ticket.close" in failures[0].get_body(("plain",)).get_content()
    assert [note["body"] for note in ticket["notes"]] == ["Done here."]


def test_manager_closes_everywhere(desk: Gateway) -> None:
    first, second, third = (new_ticket(desk, f"ticket {n}") for n in range(3))
    assert cli(desk, "tickets", "close", str(first), "--as", "mona").returncode == 0
    with api(desk, "mona") as client:
        assert client.post(f"/api/tickets/{second}/close", json={}).status_code == 200
    email_reply(desk, third, MANAGER, "#close")
    for ticket_id in (first, second, third):
        assert desk.ticket(ticket_id)["stage"] == "closed"
    assert desk.ticket(third)["notes"] == []


def test_frontline_can_update_and_postpone(desk: Gateway) -> None:
    ticket_id = new_ticket(desk)
    result = cli(desk, "tickets", "update", str(ticket_id), "--stage", "pending", "--tag", "printer",
                 "--as", "fran", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tags"] == ["printer"]
    assert cli(desk, "tickets", "postpone", str(ticket_id), "3d", "--as", "fran").returncode == 0
    ticket = desk.ticket(ticket_id)
    assert ticket["stage"] == "pending"
    assert ticket["due_at"] is not None


# -- history over a ticket's life ----------------------------------------------------

def test_history_of_whole_life(desk: Gateway, tmp_path: Path) -> None:
    with desk.app.sessions.begin() as session:
        from store.admin import add_root_cause
        from store.operations import Actor
        from store.directory import find_user_by_email

        admin = find_user_by_email(session, MANAGER)
        admin.role = "admin"
        add_root_cause(session, Actor(admin, "cli"), "Paper jam")
    created = cli(desk, "tickets", "create", "--queue", "Support", "--subject", "Toner empty",
                  "--requester", "ana@example.com", "--as", "fran", "--json")
    assert created.returncode == 0, created.stderr
    ticket_id = json.loads(created.stdout)["id"]
    steps = [
        ("update", str(ticket_id), "--stage", "open"),
        ("update", str(ticket_id), "--tag", "toner"),
        ("update", str(ticket_id), "--assignee", "fran"),
        ("note", str(ticket_id), "Ordered a new cartridge."),
    ]
    for step in steps:
        result = cli(desk, "tickets", *step, "--as", "fran")
        assert result.returncode == 0, result.stderr
    upload = tmp_path / "invoice.txt"
    upload.write_text("cartridge invoice\n")
    assert cli(desk, "tickets", "attach", str(ticket_id), str(upload), "--as", "fran").returncode == 0
    with api(desk, "fran") as client:
        attachments = [h for h in client.get(f"/api/tickets/{ticket_id}/history").json()
                       if h["action"] == "attachment_added"]
        attachment_id = attachments[0]["details"]["attachment_id"]
        assert client.delete(f"/api/tickets/{ticket_id}/attachments/{attachment_id}").status_code == 200
        assert client.post(f"/api/tickets/{ticket_id}/postpone", json={"amount": "2w"}).status_code == 200
    closed = cli(desk, "tickets", "close", str(ticket_id), "--reason", "Resolved", "--comment",
                 "New cartridge fitted", "--root-cause", "Paper jam", "--as", "mona")
    assert closed.returncode == 0, closed.stderr

    from_cli = json.loads(cli(desk, "tickets", "history", str(ticket_id), "--json").stdout)
    with api(desk, "mona") as client:
        from_api = client.get(f"/api/tickets/{ticket_id}/history").json()
    assert from_cli == from_api
    actions = [(h["action"], h["field"], h["old_value"], h["new_value"], h["actor"], h["channel"])
               for h in from_cli]
    assert actions[0][0] == "ticket_created"
    expected = [
        ("ticket_created_by_hand", None, None, None, "user:fran", "cli"),
        ("field_changed", "stage", "new", "open", "user:fran", "cli"),
        ("field_changed", "tags", "", "toner", "user:fran", "cli"),
        ("field_changed", "assignee", None, "fran", "user:fran", "cli"),
        ("note_added", None, None, None, "user:fran", "cli"),
        ("attachment_added", "attachments", None, "invoice.txt", "user:fran", "cli"),
        ("attachment_removed", "attachments", "invoice.txt", None, "user:fran", "api"),
    ]
    observed = [row for row in actions if row[0] not in ("ticket_created", "message_added")]
    assert observed[:7] == expected
    postponed, closing = observed[7], observed[8]
    assert postponed[0] == "postponed"
    assert postponed[1] == "due_at"
    assert postponed[5] == "api"
    assert closing[:4] == ("closed", "stage", "open", "closed")
    assert closing[4] == "user:mona"
    close_entry = from_cli[-1]
    assert close_entry["details"]["reason"] == "Resolved"
    assert close_entry["details"]["comment"] == "New cartridge fitted"
    assert close_entry["details"]["root_causes"] == ["Paper jam"]
    times = [h["at"] for h in from_cli]
    assert times == sorted(times)


# -- emailed commands and #public ------------------------------------------------

def test_commands_change_ticket_and_leave_note(desk: Gateway) -> None:
    ticket_id = new_ticket(desk)
    email_reply(desk, ticket_id, FRONTLINE, "#stage pending\n#tag printer\n#assign fran\n\nChecked it.")
    ticket = desk.ticket(ticket_id)
    assert ticket["stage"] == "pending"
    assert ticket["tags"] == ["printer"]
    assert ticket["assignee"] == "fran"
    assert [note["body"] for note in ticket["notes"]] == ["Checked it."]
    channels = {h["channel"] for h in ticket["history"] if h["action"] == "field_changed"}
    assert channels == {"email"}


def test_unknown_stage_command_reports_line(desk: Gateway) -> None:
    ticket_id = new_ticket(desk)
    email_reply(desk, ticket_id, FRONTLINE, "#stage Nowhere\n#tag printer\nFine.")
    ticket = desk.ticket(ticket_id)
    assert ticket["stage"] == "new"
    assert ticket["tags"] == ["printer"]
    [failure] = [m for m in desk.delivered() if "Commands in your reply failed" in m["Subject"]]
    body = failure.get_body(("plain",)).get_content()
    assert "#stage Nowhere" in body
    assert "unknown stage 'Nowhere'" in body
    assert failure["To"].addresses[0].addr_spec == FRONTLINE


def test_public_reply_reaches_customer(desk: Gateway) -> None:
    ticket_id = new_ticket(desk)
    before = len(desk.delivered())
    email_reply(desk, ticket_id, FRONTLINE, "#public\nThe technician comes at 3 pm.")
    sent = [m for m in desk.delivered()[before:] if "ana@example.com" in str(m["To"])]
    assert len(sent) == 1
    answer = sent[0]
    assert answer["To"].addresses[0].addr_spec == "ana@example.com"
    assert answer["From"].addresses[0].addr_spec == SUPPORT
    text = answer.get_body(("plain",)).get_content()
    assert text.startswith("The technician comes at 3 pm.")
    assert "wrote:" not in text
    assert "#public" not in text
    assert FRONTLINE not in answer.as_string()
    assert answer["In-Reply-To"] is not None
    ticket = desk.ticket(ticket_id)
    assert ticket["notes"] == []
    outgoing = [m for m in ticket["messages"] if m["direction"] == "out"]
    assert [m["text"] for m in outgoing] == ["The technician comes at 3 pm."]


def test_reply_without_public_is_private(desk: Gateway) -> None:
    ticket_id = new_ticket(desk)
    before = len(desk.delivered())
    email_reply(desk, ticket_id, FRONTLINE, "The technician comes at 3 pm.")
    to_customer = [m for m in desk.delivered()[before:] if "ana@example.com" in str(m["To"])]
    assert to_customer == []
    assert [note["body"] for note in desk.ticket(ticket_id)["notes"]] == ["The technician comes at 3 pm."]


# -- bulk ------------------------------------------------------------------------

def test_bulk_update_reports_each_ticket(desk: Gateway) -> None:
    from store.operations import Actor, bulk_update, create_ticket
    from store.directory import find_user_by_email
    from store.models import HistoryEntry
    from sqlalchemy import func, select

    with desk.app.sessions.begin() as session:
        mona = find_user_by_email(session, MANAGER)
        actor = Actor(mona, "cli")
        ids = [create_ticket(session, actor, queue="Support", subject=f"bulk {n}",
                             requester_email="ana@example.com").id for n in range(497)]
        bob = find_user_by_email(session, "bob@example.org")
        other = [create_ticket(session, Actor(bob, "cli"), queue="Billing", subject=f"other {n}",
                               requester_email="ana@example.com").id for n in range(3)]
    with desk.app.sessions.begin() as session:
        fran = find_user_by_email(session, FRONTLINE)
        before = session.scalar(select(func.count(HistoryEntry.id)))
        result = bulk_update(session, Actor(fran, "api"), ids + other, add_tags=["bulk"])
        after = session.scalar(select(func.count(HistoryEntry.id)))
    assert len(result.changed) == 497
    assert sorted(result.failed) == sorted(other)
    assert all("ticket.all_queues" in reason for reason in result.failed.values())
    assert after - before == 497


# -- the HTTP API itself -------------------------------------------------------------

def test_openapi_document_lists_endpoints(desk: Gateway) -> None:
    document = httpx.get(f"{desk.http_url}/openapi.json", timeout=30).json()
    assert document["openapi"].startswith("3.")
    assert "/api/tickets/{ticket_id}/close" in document["paths"]
    assert "/api/tickets/bulk" in document["paths"]


ENDPOINTS = [
    ("GET", "/api/tickets", None),
    ("POST", "/api/tickets", {"queue": "Billing", "subject": "x", "requester_email": "a@example.com"}),
    ("GET", "/api/tickets/{id}", None),
    ("PATCH", "/api/tickets/{id}", {"stage": "open"}),
    ("POST", "/api/tickets/{id}/notes", {"body": "x"}),
    ("POST", "/api/tickets/{id}/attachments",
     {"filename": "a.txt", "content_base64": base64.b64encode(b"a").decode()}),
    ("DELETE", "/api/tickets/{id}/attachments/1", None),
    ("POST", "/api/tickets/{id}/postpone", {"amount": "1d"}),
    ("POST", "/api/tickets/{id}/close", {}),
    ("POST", "/api/tickets/{id}/reopen", {}),
    ("GET", "/api/tickets/{id}/history", None),
]


def test_api_rejects_missing_or_bad_token(desk: Gateway) -> None:
    ticket_id = new_ticket(desk)
    for method, path, body in ENDPOINTS + [("POST", "/api/tickets/bulk", {"ticket_ids": [1], "changes": {}})]:
        url = desk.http_url + path.format(id=ticket_id)
        assert httpx.request(method, url, json=body, timeout=30).status_code == 401, path
        headers = {"Authorization": "Bearer wrong"}
        assert httpx.request(method, url, json=body, headers=headers, timeout=30).status_code == 401


def test_api_rejects_other_queue_ticket(desk: Gateway) -> None:
    ticket_id = new_ticket(desk)
    with api(desk, "bob") as client:
        for method, path, body in ENDPOINTS[2:]:
            response = client.request(method, path.format(id=ticket_id), json=body)
            assert response.status_code == 403, (path, response.text)
        listed = client.get("/api/tickets").json()
        assert ticket_id not in [item["id"] for item in listed["items"]]
        created = client.post("/api/tickets", json=ENDPOINTS[1][2])
        assert created.status_code == 201


def test_api_filters_and_pages(desk: Gateway) -> None:
    for number in range(5):
        new_ticket(desk, f"printer {number}")
    new_ticket(desk, "network down")
    with api(desk, "fran") as client:
        page = client.get("/api/tickets", params={"q": "printer", "limit": 2, "offset": 1}).json()
        assert page["total"] == 5
        assert [item["subject"] for item in page["items"]] == ["printer 3", "printer 2"]
        assert client.get("/api/tickets", params={"stage": "closed"}).json()["total"] == 0


def test_custom_field_validated(desk: Gateway) -> None:
    with desk.app.sessions.begin() as session:
        from store.directory import find_user_by_email

        find_user_by_email(session, MANAGER).role = "admin"
    added = cli(desk, "fields", "add", "Contract", "--kind", "choice", "--choice", "Gold",
                "--choice", "Silver", "--as", "mona")
    assert added.returncode == 0, added.stderr
    refused = cli(desk, "fields", "add", "Plan", "--kind", "text", "--as", "fran")
    assert refused.returncode == EX_NOPERM
    assert b"admin.custom_fields" in refused.stderr
    ticket_id = new_ticket(desk)
    bad = cli(desk, "tickets", "update", str(ticket_id), "--field", "Contract=Bronze", "--as", "fran")
    assert bad.returncode == 1
    assert b"'Bronze' is not one of Gold, Silver" in bad.stderr
    good = cli(desk, "tickets", "update", str(ticket_id), "--field", "Contract=Gold", "--as", "fran",
               "--json")
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["custom_fields"] == {"Contract": "Gold"}


def test_role_permissions_configurable(tmp_path: Path) -> None:
    settings = {"role_permissions": {"frontline": ["ticket.create", "ticket.note", "ticket.close"]}}
    with Gateway.start(home=tmp_path / "roles", **settings) as desk:
        desk.add_queue()
        desk.add_agent("fran", FRONTLINE)
        ticket_id = new_ticket(desk)
        # The CLI process below starts without the setting, so the default applies.
        assert cli(desk, "tickets", "close", str(ticket_id), "--as", "fran").returncode == EX_NOPERM
        from store.operations import Actor, close, get_ticket
        from store.directory import find_user_by_email

        with desk.app.sessions.begin() as session:
            actor = Actor(find_user_by_email(session, FRONTLINE), "api")
            close(session, actor, get_ticket(session, actor, ticket_id))
        assert desk.ticket(ticket_id)["stage"] == "closed"


def test_only_admins_manage_queues_and_users(desk: Gateway) -> None:
    with desk.app.sessions.begin() as session:
        from store.directory import find_user_by_email

        find_user_by_email(session, MANAGER).role = "admin"
    new_queue = {"name": "Sales", "address": "sales@support.example.org"}
    new_user = {"username": "sam", "email": "sam@example.org", "queues": ["Sales"]}
    with api(desk, "fran") as client:
        for path, body in (("/api/queues", new_queue), ("/api/users", new_user),
                           ("/api/stages", {"name": "waiting"}), ("/api/fields",
                           {"name": "Plan", "kind": "text"})):
            response = client.post(path, json=body)
            assert response.status_code == 403, path
            assert response.json()["missing_permission"].startswith("admin."), path
        assert client.get("/api/users").status_code == 403
    with api(desk, "mona") as client:
        assert client.post("/api/queues", json=new_queue).status_code == 201
        assert client.post("/api/users", json=new_user).status_code == 201
        assert client.post("/api/stages", json={"name": "waiting"}).status_code == 201
        users = {user["username"]: user for user in client.get("/api/users").json()}
    assert users["sam"]["queues"] == ["Sales"]
    assert users["sam"]["role"] == "frontline"


def test_queues_add_as_frontline_refused(desk: Gateway) -> None:
    result = cli(desk, "queues", "add", "Sales", "--address", "sales@support.example.org",
                 "--as", "fran")
    assert result.returncode == EX_NOPERM
    assert b"admin.queues" in result.stderr
