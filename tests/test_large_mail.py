"""Mails larger than one stored chunk (1 MiB): received over SMTP into a
file, spooled and stored in chunks on SQLite and PostgreSQL, parsed with
their attachments written to files, and read back byte-identical. The
gateway process never has one whole in memory while it receives or
processes it (checked with tracemalloc)."""

from __future__ import annotations

import random
import subprocess
import sys
import tracemalloc
from email.message import EmailMessage
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import func, select

from mailgate.app import App
from mailgate.pipeline import process_spool_entry
from mailgate.settings import load_settings
from store import migrate
from store.blobs import read_blob, store_blob
from store.chunks import CHUNK_BYTES
from store.db import make_engine
from store.directory import add_queue
from store.models import Attachment, BlobChunk, SpoolChunk, SpoolEntry, SpoolState
from store.spool import Envelope, RawFile, read_raw, spool_message
from tests.conftest import Backend
from tests.harness import SUPPORT, Gateway

MIB = 1024 * 1024

_FILE_CLIENT = """
import smtplib, sys
raw = open(sys.argv[2], "rb").read()
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=120) as client:
    client.sendmail("customer@example.com", [sys.argv[3]], raw)
"""


def pdf_bytes(size: int, seed: int = 7) -> bytes:
    return b"%PDF-1.4\n" + random.Random(seed).randbytes(size) + b"\n%%EOF\n"


def large_mail(pdf: bytes, subject: str = "Scanned contract") -> bytes:
    message = EmailMessage()
    message["From"] = "Ana Customer <ana@example.com>"
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@example.com>"
    message.set_content("The scanned contract is attached.\n")
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename="contract.pdf")
    return message.as_bytes().replace(b"\n", b"\r\n")


def send_from_file(port: int, raw: bytes, tmp_path: Path) -> None:
    """Send ``raw`` from a client process, so this process has no copy of it."""
    path = tmp_path / "mail.eml"
    path.write_bytes(raw)
    subprocess.run([sys.executable, "-c", _FILE_CLIENT, str(port), str(path), SUPPORT],
                   check=True, timeout=180)


def test_large_mail_stored_in_chunks(tmp_path: Path, backend: Backend) -> None:
    pdf = pdf_bytes(3 * MIB)
    raw = large_mail(pdf)
    with Gateway.start(
        home=tmp_path / "desk", database=backend.database, broker=backend.broker
    ) as desk:
        desk.add_queue()
        send_from_file(desk.port, raw, tmp_path)
        desk.wait_idle()
        [row] = desk.spool_rows()
        assert row.state == SpoolState.PROCESSED.value, row.error
        assert row.raw == b""
        assert row.size == len(raw)
        with desk.app.sessions() as session:
            assert read_raw(session, row) == raw
            chunks = session.scalar(select(func.count()).where(SpoolChunk.spool_id == row.id))
            [attachment] = session.scalars(select(Attachment)).all()
            blob_chunks = session.scalar(
                select(func.count()).where(BlobChunk.sha256 == attachment.blob_sha256))
            content = read_blob(session, attachment.blob_sha256)
        assert chunks == -(-len(raw) // CHUNK_BYTES)
        assert (attachment.filename, attachment.size) == ("contract.pdf", len(pdf))
        assert blob_chunks == -(-len(pdf) // CHUNK_BYTES)
        assert content == pdf
        assert list((tmp_path / "desk" / "tmp").iterdir()) == []


def test_small_blob_stays_in_its_row(tmp_path: Path, backend: Backend) -> None:
    with Gateway.start(
        home=tmp_path / "desk", database=backend.database, broker=backend.broker
    ) as desk:
        with desk.app.sessions.begin() as session:
            small = store_blob(session, b"x" * CHUNK_BYTES)
            large = store_blob(session, b"y" * (CHUNK_BYTES + 1))
            again = store_blob(session, b"y" * (CHUNK_BYTES + 1))
        with desk.app.sessions() as session:
            counts = {
                sha256: session.scalar(select(func.count()).where(BlobChunk.sha256 == sha256))
                for sha256 in (small, large)
            }
            assert read_blob(session, small) == b"x" * CHUNK_BYTES
            assert read_blob(session, large) == b"y" * (CHUNK_BYTES + 1)
    assert again == large
    assert counts == {small: 0, large: 2}


def test_large_unparseable_mail_kept_and_retryable(tmp_path: Path) -> None:
    raw = large_mail(pdf_bytes(2 * MIB), subject="Too large a part")
    with Gateway.start(home=tmp_path / "desk", max_attachment_bytes=MIB) as desk:
        desk.add_queue()
        send_from_file(desk.port, raw, tmp_path)
        desk.wait_idle()
        [row] = desk.spool_rows()
        assert row.state == SpoolState.FAILED.value
        assert "over the limit of 1048576 (MAILGATE_MAX_ATTACHMENT_BYTES)" in row.error
        shown = subprocess.run(
            [sys.executable, "-m", "mailgate", "spool", "show", str(row.id), "--raw"],
            capture_output=True, env=desk.cli_env(), timeout=120, check=True,
        )
        assert shown.stdout == raw
        retried = subprocess.run(
            [sys.executable, "-m", "mailgate", "spool", "retry", str(row.id)],
            capture_output=True, env=desk.cli_env(), timeout=120,
        )
        assert retried.returncode == 0, retried.stderr
        # The sweeper of a running gateway enqueues the row again.
        desk.actors.received(row.id)
        desk.wait_idle()
        [row] = desk.spool_rows()
        assert row.state == SpoolState.FAILED.value
        assert row.attempts == 2


def test_receiving_never_buffers_whole_mail(tmp_path: Path) -> None:
    raw = large_mail(pdf_bytes(6 * MIB))
    with Gateway.start(home=tmp_path / "desk", worker_threads=1) as desk:
        desk.add_queue()
        # Only receiving is measured: the queue has no worker for the row.
        desk.worker.pause()
        tracemalloc.start()
        try:
            send_from_file(desk.port, raw, tmp_path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            desk.worker.resume()
        desk.wait_idle()
    assert len(raw) > 8 * MIB
    # One stored chunk read from the file, one bound by the driver, and
    # aiosmtpd's read buffer; the mail whole would be over 8 MiB.
    assert peak < 4 * MIB


def test_processing_never_loads_whole_mail(tmp_path: Path) -> None:
    pdf = pdf_bytes(6 * MIB)
    raw = large_mail(pdf)
    app = App.create(load_settings(home=tmp_path, domain="support.example.org"))
    try:
        add_queue(app.sessions, "Support", SUPPORT)
        envelope = Envelope(mail_from="ana@example.com", rcpt_tos=(SUPPORT,), source="smtp")
        spool_id = spool_message(app.sessions, raw, envelope)
        process_spool_entry(app, spool_id)  # starts the parser process
        second = spool_message(app.sessions, large_mail(pdf, subject="Second copy"), envelope)
        tracemalloc.start()
        try:
            outcome = process_spool_entry(app, second)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        app.close()
    assert outcome is not None and outcome.state == SpoolState.PROCESSED
    # Chunks of the raw mail and of the attachment file, one at a time.
    assert peak < 4 * MIB


def test_spool_accepts_raw_file(tmp_path: Path) -> None:
    raw = large_mail(pdf_bytes(2 * MIB))
    app = App.create(load_settings(home=tmp_path, domain="support.example.org"))
    try:
        path = tmp_path / "mail.eml"
        path.write_bytes(raw)
        with path.open("rb") as file:
            spool_id = spool_message(
                app.sessions, RawFile(file, len(raw)),
                Envelope(mail_from="", rcpt_tos=(SUPPORT,), source="smtp"),
            )
        with app.sessions() as session:
            entry = session.get(SpoolEntry, spool_id)
        assert entry is not None
        assert entry.raw == b""
        assert read_raw(app.sessions, entry) == raw
    finally:
        app.close()


def test_downgrade_joins_chunks(tmp_path: Path) -> None:
    raw = large_mail(pdf_bytes(2 * MIB))
    engine = make_engine(f"sqlite:///{tmp_path / 'mailgate.db'}")
    try:
        migrate.upgrade(engine)
        app = App.create(load_settings(home=tmp_path, domain="support.example.org"))
        spool_id = spool_message(
            app.sessions, raw, Envelope(mail_from="", rcpt_tos=(SUPPORT,), source="smtp"))
        app.close()
        config = migrate.alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0009")
        with engine.connect() as connection:
            stored = connection.exec_driver_sql(
                "SELECT raw FROM spool WHERE id = ?", (spool_id,)).scalar_one()
    finally:
        engine.dispose()
    assert stored == raw


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1])
def test_raw_sizes_around_chunk(tmp_path: Path, size: int) -> None:
    raw = b"Subject: s\r\n\r\n" + b"a" * size
    app = App.create(load_settings(home=tmp_path, domain="support.example.org"))
    try:
        spool_id = spool_message(
            app.sessions, raw, Envelope(mail_from="", rcpt_tos=(SUPPORT,), source="smtp"))
        with app.sessions() as session:
            entry = session.get(SpoolEntry, spool_id)
            assert entry is not None
            assert read_raw(session, entry) == raw
    finally:
        app.close()
