"""Sender authentication of agents' replies: trusted Authentication-Results,
held mail and its release from the CLI, DKIM verification, retired keys
and the notices of rejected replies."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dkim
import pytest

from mailgate import authentication
from mailgate.authentication import (
    MethodResult,
    parse_authentication_results,
    results_failure,
    trusted_results,
)
from mailgate.tokens import (
    EXPIRED,
    RETIRED_KEY,
    SigningKey,
    TokenError,
    issue_token,
    parse_keys,
    verify_token,
)
from store.models import SpoolState
from tests.harness import DOMAIN, SUPPORT, Gateway
from tests.mail import agent_reply, customer_mail

AGENT = "carol@example.org"
TRUSTED = "mx.support.example.org"
SELECTOR = b"mail"


@pytest.mark.parametrize(
    ("value", "authserv_id", "pairs"),
    [
        ("mx.example.org; dmarc=fail header.from=example.org", "mx.example.org", [("dmarc", "fail")]),
        ("mx.example.org 1; dkim=pass (good) header.d=a.org; dkim=fail", "mx.example.org",
         [("dkim", "pass"), ("dkim", "fail")]),
        ("MX.Example.ORG (our (nested) mta); SPF = Pass", "mx.example.org", [("spf", "pass")]),
        ("mx.example.org; none", "mx.example.org", []),
        ("(comment only)", "", []),
        ('mx.example.org; dkim=pass reason="a;b=fail"', "mx.example.org", [("dkim", "pass")]),
    ],
)
def test_authentication_results_parsed(value: str, authserv_id: str, pairs: list) -> None:
    assert parse_authentication_results(value) == (authserv_id, pairs)


def test_untrusted_results_ignored() -> None:
    headers = [
        ("Authentication-Results", "mx.evil.example; dmarc=fail"),
        ("Authentication-Results", "mx.example.org.evil.example; dkim=pass"),
        ("Authentication-Results", f"{TRUSTED}; dmarc=pass"),
    ]
    found = trusted_results(headers, [TRUSTED])
    assert found == [MethodResult(TRUSTED, "dmarc", "pass")]
    assert trusted_results(headers, []) == []


@pytest.mark.parametrize(
    ("results", "failure"),
    [
        ([("dmarc", "fail")], "dmarc=fail"),
        ([("dmarc", "permerror")], "dmarc=permerror"),
        ([("dkim", "fail")], "dkim=fail"),
        ([("dkim", "fail"), ("dkim", "pass")], None),
        ([("dmarc", "pass"), ("dkim", "none")], None),
        ([("spf", "fail")], None),
    ],
)
def test_trusted_results_failure(results: list, failure: str | None) -> None:
    found = results_failure([MethodResult(TRUSTED, method, result) for method, result in results])
    if failure is None:
        assert found is None
    else:
        assert found is not None and failure in found


def test_retired_key_never_verifies() -> None:
    active, retired = parse_keys(f"new:{'aa' * 16}, old:{'bb' * 16}:retired")
    assert (active.key_id, active.retired) == ("new", False)
    assert (retired.key_id, retired.retired) == ("old", True)
    token = issue_token(retired, 7, 3, ttl_days=30)
    with pytest.raises(TokenError) as caught:
        verify_token(token, {"new": active, "old": retired})
    assert caught.value.reason == RETIRED_KEY
    assert caught.value.token is not None
    assert caught.value.token.user_id == 3


def test_retired_key_listed_first_does_not_sign() -> None:
    keys = parse_keys(f"old:{'bb' * 16}:retired,new:{'aa' * 16}")
    assert [key.key_id for key in keys] == ["new", "old"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"old:{'bb' * 16}:retired", "every signing key is retired"),
        (f"a:{'bb' * 16}:gone", "unknown flag"),
        (f"a:{'bb' * 16},a:{'cc' * 16}", "share a key id"),
    ],
)
def test_bad_key_entries_raise(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_keys(text)


def test_expired_token_names_owner() -> None:
    key = SigningKey("k", b"k" * 32)
    long_ago = datetime.now(timezone.utc) - timedelta(days=100)
    token = issue_token(key, 5, 9, ttl_days=10, now=long_ago)
    with pytest.raises(TokenError) as caught:
        verify_token(token, {"k": key})
    assert caught.value.reason == EXPIRED
    assert caught.value.token is not None
    assert caught.value.token.ticket_id == 5


# -- through a running gateway -----------------------------------------------


def open_ticket(desk: Gateway) -> tuple[int, dict]:
    desk.send(customer_mail(), "ana@example.com", [SUPPORT])
    desk.wait_idle()
    notification = next(mail for mail in desk.delivered() if AGENT in str(mail["To"]))
    return desk.ticket_ids()[-1], notification


@pytest.fixture
def trusting_desk(tmp_path: Path) -> Iterator[Gateway]:
    with Gateway.start(home=tmp_path / "desk", trusted_authserv_ids=TRUSTED) as desk:
        desk.add_queue()
        desk.add_agent("carol", AGENT)
        yield desk


def mailgate(desk: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the command line on the desk's home, as an operator does."""
    environment = {
        **os.environ, "MAILGATE_HOME": str(desk.app.settings.home), "MAILGATE_DOMAIN": DOMAIN,
    }
    return subprocess.run(
        [sys.executable, "-m", "mailgate", *args],
        capture_output=True, text=True, env=environment, timeout=120,
    )


def test_held_reply_released_from_cli(trusting_desk: Gateway) -> None:
    desk = trusting_desk
    ticket_id, notification = open_ticket(desk)
    reply = agent_reply(notification, "Calling the customer now.", AGENT)
    reply["Authentication-Results"] = f"{TRUSTED}; dmarc=fail header.from=example.org"
    desk.send(reply, AGENT, [notification["Reply-To"].addresses[0].addr_spec])
    desk.wait_idle()
    held = desk.spool_rows()[-1]
    assert held.state == SpoolState.HELD.value
    assert "dmarc=fail" in held.error
    assert desk.ticket(ticket_id)["notes"] == []

    listed = mailgate(desk, "spool", "list", "--state", "held")
    assert listed.returncode == 0, listed.stderr
    assert f"{held.id:>6}  held" in listed.stdout
    released = mailgate(desk, "spool", "release", str(held.id))
    assert released.returncode == 0, released.stderr
    assert f"spool {held.id}: released, now processed" in released.stdout

    notes = desk.ticket(ticket_id)["notes"]
    assert [note["body"] for note in notes] == ["Calling the customer now."]
    assert desk.spool_rows()[-1].state == SpoolState.PROCESSED.value
    again = mailgate(desk, "spool", "release", str(held.id))
    assert again.returncode == 1
    assert "not found or not held" in again.stderr


def test_rejection_notice_once_per_day(trusting_desk: Gateway) -> None:
    desk = trusting_desk
    ticket_id, notification = open_ticket(desk)
    address = notification["Reply-To"].addresses[0].addr_spec
    for number in range(3):
        forged = agent_reply(notification, f"Forged {number}.", f"mallory{number}@example.net")
        desk.send(forged, f"mallory{number}@example.net", [address])
    desk.wait_idle()
    notices = [row for row in desk.outbox_rows() if row.kind.startswith("reply_rejected_")]
    assert [(row.rcpt_to, row.kind) for row in notices] == [(AGENT, "reply_rejected_sender")]
    assert all("mallory" not in row.rcpt_to for row in desk.outbox_rows())
    notice = next(mail for mail in desk.delivered() if "not added" in str(mail["Subject"]))
    assert notice["Auto-Submitted"] == "auto-replied"
    assert re.search(r"mallory[0-2]@example\.net", notice.get_body(("plain",)).get_content())
    assert desk.ticket(ticket_id)["notes"] == []


# -- DKIM verified by the gateway ---------------------------------------------


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """An RSA key pair made with openssl: the PEM private key and the DNS TXT record."""
    folder = tmp_path_factory.mktemp("dkim")
    private = folder / "private.pem"
    subprocess.run(
        ["openssl", "genrsa", "-traditional", "-out", str(private), "1024"],
        check=True, capture_output=True,
    )
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"],
        check=True, capture_output=True,
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    return private.read_bytes(), record


@pytest.fixture
def dkim_desk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dkim_key: tuple[bytes, bytes]
) -> Iterator[Gateway]:
    records = {b"mail._domainkey.example.org.": dkim_key[1]}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    monkeypatch.setattr(authentication, "dns_txt_lookup", lookup)
    with Gateway.start(home=tmp_path / "desk", verify_dkim=True) as desk:
        desk.add_queue()
        desk.add_agent("carol", AGENT)
        yield desk


def signed(raw: bytes, private_key: bytes, domain: bytes = b"example.org") -> bytes:
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    signature = dkim.sign(
        raw, SELECTOR, domain, private_key,
        include_headers=[b"from", b"to", b"subject", b"message-id"],
    )
    return signature + raw


def send_reply(desk: Gateway, notification: dict, raw: bytes) -> None:
    desk.send(raw, AGENT, [notification["Reply-To"].addresses[0].addr_spec])
    desk.wait_idle()


def test_dkim_signed_reply_becomes_note(dkim_desk: Gateway, dkim_key: tuple[bytes, bytes]) -> None:
    ticket_id, notification = open_ticket(dkim_desk)
    reply = agent_reply(notification, "Signed and sealed.", AGENT).as_bytes()
    send_reply(dkim_desk, notification, signed(reply, dkim_key[0]))
    assert dkim_desk.spool_rows()[-1].state == SpoolState.PROCESSED.value
    assert [note["body"] for note in dkim_desk.ticket(ticket_id)["notes"]] == ["Signed and sealed."]


def test_dkim_changed_body_held(dkim_desk: Gateway, dkim_key: tuple[bytes, bytes]) -> None:
    ticket_id, notification = open_ticket(dkim_desk)
    reply = signed(agent_reply(notification, "Original words.", AGENT).as_bytes(), dkim_key[0])
    send_reply(dkim_desk, notification, reply.replace(b"Original words.", b"Changed words."))
    row = dkim_desk.spool_rows()[-1]
    assert row.state == SpoolState.HELD.value
    assert "signature 1: ValidationError: body hash mismatch" in row.error
    assert dkim_desk.ticket(ticket_id)["notes"] == []


def test_dkim_unsigned_reply_held(dkim_desk: Gateway) -> None:
    ticket_id, notification = open_ticket(dkim_desk)
    send_reply(dkim_desk, notification, agent_reply(notification, "No signature.", AGENT).as_bytes())
    row = dkim_desk.spool_rows()[-1]
    assert row.state == SpoolState.HELD.value
    assert "no DKIM signature" in row.error


def test_dkim_unaligned_domain_held(
    dkim_desk: Gateway, dkim_key: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    records = {b"mail._domainkey.example.net.": dkim_key[1]}
    monkeypatch.setattr(authentication, "dns_txt_lookup", lambda name, timeout=5: records.get(name))
    ticket_id, notification = open_ticket(dkim_desk)
    reply = agent_reply(notification, "Signed by another domain.", AGENT).as_bytes()
    send_reply(dkim_desk, notification, signed(reply, dkim_key[0], domain=b"example.net"))
    row = dkim_desk.spool_rows()[-1]
    assert row.state == SpoolState.HELD.value
    assert "d=example.net, not example.org" in row.error
