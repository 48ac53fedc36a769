"""The MIME composer: what a mail client reads back from what we write."""

from __future__ import annotations

import re
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

import pytest

from mailgate.outbound.compose import compose_mail
from mailgate.outbound.rendering import RenderedMail


def compose(
    subject: str = "[Support #7] Printer jammed",
    text: str = "Hello\nThe printer is jammed.\n",
    html: str = "<p>Hello</p>",
    name: str = "Ana Example",
    attachments: list[tuple[str, str, bytes]] = (),
) -> bytes:
    return compose_mail(
        RenderedMail(subject=subject, text=text, html=html),
        from_address=("Support", "support@example.org"),
        to_address=(name, "ana@example.com"),
        message_id="mg.compose@example.org",
        domain="example.org",
        auto_submitted="auto-generated",
        attachments=list(attachments),
    )


def read(raw: bytes) -> EmailMessage:
    return message_from_bytes(raw, policy=default)


def lines_of(raw: bytes) -> list[bytes]:
    assert b"\r\n" in raw
    # Every line ends in CRLF: no bare LF or CR anywhere.
    assert raw.count(b"\n") == raw.count(b"\r\n") == raw.count(b"\r")
    return raw.split(b"\r\n")


def test_ascii_mail_is_7bit_and_reads_back() -> None:
    raw = compose()
    mail = read(raw)
    assert raw.isascii()
    assert str(mail["Subject"]) == "[Support #7] Printer jammed"
    assert mail["To"].addresses[0].display_name == "Ana Example"
    assert mail.get_content_type() == "multipart/alternative"
    plain, html = (part for part in mail.walk() if not part.is_multipart())
    assert plain["Content-Transfer-Encoding"] == "7bit"
    assert plain.get_content() == "Hello\r\nThe printer is jammed.\r\n"
    assert html.get_content_type() == "text/html"
    assert html.get_content() == "<p>Hello</p>\r\n"


@pytest.mark.parametrize(
    "subject",
    [
        "Grüße aus Köln",
        "Заявка: принтер не печатает " * 12,  # folds onto several lines
        "打印机卡纸了，请帮忙",
        "emoji 🖨️ and combining e\u0301",
        "=?utf-8?b?ZXZpbA==?= looks encoded",  # must not decode into "evil"
    ],
)
def test_subject_reads_back_exactly(subject: str) -> None:
    raw = compose(subject=subject)
    assert raw.isascii()
    assert str(read(raw)["Subject"]) == " ".join(subject.split())
    for line in lines_of(raw):
        assert len(line) <= 998
    for word in re.findall(rb"=\?utf-8\?b\?[^?]*\?=", raw):
        assert len(word) <= 75


@pytest.mark.parametrize("name", ["José Müller", "Ana, \"Sales\"", "李雷", "=?utf-8?q?x?="])
def test_display_name_reads_back(name: str) -> None:
    address = read(compose(name=name))["To"].addresses[0]
    assert address.display_name == name
    assert address.addr_spec == "ana@example.com"


def test_non_ascii_and_long_lines_are_quoted_printable() -> None:
    text = "Grüße\n" + "x" * 1500 + "\nend =_ here\n"
    raw = compose(text=text)
    plain = next(part for part in read(raw).walk() if part.get_content_type() == "text/plain")
    assert plain["Content-Transfer-Encoding"] == "quoted-printable"
    assert plain.get_content() == text.replace("\n", "\r\n")
    assert max(len(line) for line in lines_of(raw)) <= 998


@pytest.mark.parametrize(
    ("filename", "content_type", "expected_type"),
    [
        ("report.pdf", "application/pdf", "application/pdf"),
        ("Résumé très long nom de fichier avec des accents partout là-bas.pdf",
         "application/pdf", "application/pdf"),
        ('say "hi"\\there.txt', "text/plain", "text/plain"),
        ("%41%42 percent.txt", "text/plain", "text/plain"),
        ("x" * 300 + ".bin", "Application/Octet-Stream", "application/octet-stream"),
        ("odd.bin", "text/plain; charset=evil\r\nX-Evil: 1", "application/octet-stream"),
        ("odd.bin", "no-slash", "application/octet-stream"),
    ],
)
def test_attachment_reads_back(filename: str, content_type: str, expected_type: str) -> None:
    data = bytes(range(256)) * 20
    raw = compose(attachments=[(filename, content_type, data)])
    mail = read(raw)
    assert mail.get_content_type() == "multipart/mixed"
    assert sorted(key.lower() for key in mail.keys()).count("x-evil") == 0
    attachment = next(part for part in mail.walk() if part.get_filename())
    assert attachment.get_filename() == filename
    assert attachment.get_content_type() == expected_type
    assert attachment.get_payload(decode=True) == data
    assert max(len(line) for line in lines_of(raw)) <= 998


def test_boundary_is_not_in_any_part() -> None:
    raw = compose(text="--=_mailgate_ in the text\n", attachments=[("a.txt", "text/plain", b"a")])
    boundaries = re.findall(rb'boundary="([^"]+)"', raw)
    assert len(boundaries) == 2
    for boundary in boundaries:
        # Once in the Content-Type, once per part, once closing.
        assert raw.count(boundary) >= 3
        assert raw.count(b"--" + boundary + b"--") == 1
    parts = [part for part in read(raw).walk() if not part.is_multipart()]
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html", "text/plain"]
    assert parts[0].get_content() == "--=_mailgate_ in the text\r\n"
