"""Parsing of every message in the Hunnysoft sample corpus.

The expected values come from CPython's ``email`` package with
``policy.default`` where its result is clean. Where a raw header carries
8-bit text, the stdlib returns U+FFFD for each 8-bit byte. The hunnysoft
samples write that text in ISO-8859-1, so the expectation replaces each
U+FFFD with the matching raw byte decoded as windows-1252.
"""

from __future__ import annotations

import binascii
import email
import re
from email import policy
from email.message import EmailMessage, Message
from pathlib import Path

import pytest

from mailgate.parsing import ParsedMail, parse_message

SHARED = Path(__file__).resolve().parents[2] / "shared"
CORPUS = SHARED / "corpus" / "hunnysoft"

pytestmark = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"shared corpus folder not found at {CORPUS}"
)

CORPUS_FILES = sorted(CORPUS.glob("*.eml")) if CORPUS.is_dir() else []

# Netscape 4.7 wrote full Windows paths into quoted file names. The stdlib
# reads the backslashes as quoting ("C:TEMPnsmailEG.png"); mailgate keeps
# only the base name after the last backslash.
WINDOWS_PATH_NAMES = {
    "C:TEMPnsmailEG.png": "nsmailEG.png",
    "C:TEMPnsmail39.png": "nsmail39.png",
    "C:TEMPnsmailV0.png": "nsmailV0.png",
    "C:TEMPnsmailNM.png": "nsmailNM.png",
}

GENERATED_NAME = re.compile(r"^attachment-\d+\.\w+$")
UUENCODED_BLOCK = re.compile(
    rb"^begin [0-7]{3} (?P<name>\S+)\r?\n(?P<data>.*?)^end\r?$",
    re.MULTILINE | re.DOTALL,
)
WHITESPACE = re.compile(r"[ \t\r\n]+")


def corpus_params() -> list[object]:
    return [pytest.param(path, id=path.name) for path in CORPUS_FILES]


def parse_stdlib(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def raw_field_bytes(part: Message, name: str) -> bytes:
    """Return the raw bytes of the first header ``name`` of ``part``.

    Both policies store 8-bit header bytes as surrogates.
    """
    for field_name, value in part.raw_items():
        if field_name.lower() == name:
            return str(value).encode("utf-8", "surrogateescape")
    return b""


def restore_8bit(value: str, raw: bytes) -> str:
    """Replace each U+FFFD in ``value`` with the next 8-bit byte of ``raw``."""
    high_bytes = [bytes([byte]) for byte in raw if byte >= 0x80]
    assert value.count("\ufffd") == len(high_bytes), "no byte for each U+FFFD"
    for byte in high_bytes:
        value = value.replace("\ufffd", byte.decode("cp1252"), 1)
    return value


def expected_subject(raw: bytes) -> str:
    stdlib_value = str(parse_stdlib(raw)["subject"] or "")
    assert "=?" not in stdlib_value, "stdlib left an encoded-word undecoded"
    if "\ufffd" in stdlib_value:
        compat_root = email.message_from_bytes(raw)
        raw_subject = raw_field_bytes(compat_root, "subject")
        stdlib_value = restore_8bit(stdlib_value, raw_subject)
    return WHITESPACE.sub(" ", stdlib_value).strip()


def leaves(raw: bytes) -> list[EmailMessage]:
    return [part for part in parse_stdlib(raw).walk() if not part.is_multipart()]


def expected_filename(part: EmailMessage) -> str | None:
    name = part.get_filename()
    if name is None:
        return None
    if "\ufffd" in name:
        raw = raw_field_bytes(part, "content-disposition") or raw_field_bytes(
            part, "content-type"
        )
        name = restore_8bit(name, raw)
    return WINDOWS_PATH_NAMES.get(name, name)


def uuencoded_files(text: bytes) -> list[tuple[str, int]]:
    """Return (file name, size) of the uuencoded blocks in a text body."""
    files: list[tuple[str, int]] = []
    for match in UUENCODED_BLOCK.finditer(text):
        lines = match["data"].splitlines()
        size = sum(len(binascii.a2b_uu(line)) for line in lines if line.strip())
        files.append((match["name"].decode("ascii"), size))
    return files


def expected_named_files(raw: bytes) -> list[tuple[str, int]]:
    """Return (file name, decoded size) of each named file, in order.

    Files are the named leaf parts and the uuencoded blocks of unnamed
    text/plain parts.
    """
    files: list[tuple[str, int]] = []
    for part in leaves(raw):
        name = expected_filename(part)
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        if name is not None:
            files.append((name, len(payload)))
        elif part.get_content_type() == "text/plain":
            files.extend(uuencoded_files(payload))
    return files


def file_payloads(raw: bytes) -> list[bytes]:
    """Return the decoded payload of every leaf part that is not text."""
    payloads: list[bytes] = []
    for part in leaves(raw):
        payload = part.get_payload(decode=True)
        if part.get_content_maintype() != "text" and isinstance(payload, bytes):
            payloads.append(payload)
    return payloads


def parse_file(path: Path) -> ParsedMail:
    return parse_message(path.read_bytes())


def test_corpus_folder_has_messages() -> None:
    assert len(CORPUS_FILES) > 0


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_message_parses(path: Path) -> None:
    assert isinstance(parse_file(path), ParsedMail)


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_subject_matches_stdlib(path: Path) -> None:
    assert parse_file(path).subject == expected_subject(path.read_bytes())


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_subject_is_clean(path: Path) -> None:
    subject = parse_file(path).subject
    assert "\ufffd" not in subject
    assert "=?" not in subject


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_named_files_match(path: Path) -> None:
    attachments = parse_file(path).attachments
    named = [
        (item.filename, item.size)
        for item in attachments
        if not GENERATED_NAME.match(item.filename)
    ]
    assert named == expected_named_files(path.read_bytes())


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_file_payloads_kept(path: Path) -> None:
    stored = [item.data for item in parse_file(path).attachments]
    for payload in file_payloads(path.read_bytes()):
        assert payload in stored


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_text_is_clean(path: Path) -> None:
    mail = parse_file(path)
    assert "\ufffd" not in mail.text
    assert "\x1b" not in mail.text
    assert "\x00" not in mail.text


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_headers_all_kept(path: Path) -> None:
    compat_root = email.message_from_bytes(path.read_bytes())
    mail = parse_file(path)
    assert [name for name, _ in mail.headers] == list(compat_root.keys())
    assert all("\ufffd" not in value for _, value in mail.headers)


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_date_is_aware(path: Path) -> None:
    date = parse_file(path).date
    assert date is not None
    assert date.tzinfo is not None


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_sender_has_address(path: Path) -> None:
    sender = parse_file(path).from_
    assert sender is not None
    assert "@" in sender.email
