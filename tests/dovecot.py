"""A throwaway Dovecot for tests.

Each instance gets its own configuration, users and Maildirs under a
temporary directory and listens on a free port of 127.0.0.1; the system's
Dovecot service is never used or touched. ``scripts/test.sh`` installs
Debian's ``dovecot-imapd`` when it is missing.

Fixtures: ``dovecot`` (one instance for the session, any user logs in with
PASSWORD, STARTTLS and implicit TLS with a self-signed certificate),
``dovecot_factory`` (instances of a test's own, stopped after it) and
``imap_user`` (a user no other test uses).
"""

from __future__ import annotations

import email
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests.conftest import service_missing
from tests.process import free_port

PASSWORD = "secret"
START_TIMEOUT_SECONDS = 15.0
# Appends per MULTIAPPEND command when filling a folder.
APPEND_CHUNK = 100


def dovecot_binary() -> str:
    path = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not os.access(path, os.X_OK):
        service_missing("Dovecot", "dovecot not found; install Debian's dovecot-imapd")
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    # NOTE: the configuration below is in Dovecot 2.3 syntax (Debian 12);
    # Dovecot 2.4 changed the syntax of passdb, userdb and mail_location.
    if not version.startswith("2.3"):
        service_missing("Dovecot 2.3", f"found Dovecot {version.strip()}")
    return path


class Dovecot:
    """One Dovecot process group with its configuration under ``root``."""

    def __init__(
        self,
        root: Path,
        *,
        tls: bool = False,
        oauth2_tokeninfo_url: str | None = None,
        capabilities: str | None = None,
    ) -> None:
        self.binary = dovecot_binary()
        self.root = root
        self.port = free_port()
        self.tls_port = free_port() if tls else 0
        self.tls = tls
        self.oauth2_tokeninfo_url = oauth2_tokeninfo_url
        self.capabilities = capabilities
        self.process: subprocess.Popen[bytes] | None = None
        self.certificate = root / "cert.pem"
        self._prepare()

    # -- set-up ----------------------------------------------------------

    def _prepare(self) -> None:
        self.root.chmod(0o755)
        for name in ("run", "state", "mail"):
            (self.root / name).mkdir(exist_ok=True)
        mail_user, mail_group, login_user = self._users()
        uid, gid = pwd.getpwnam(mail_user).pw_uid, grp.getgrnam(mail_group).gr_gid
        os.chown(self.root / "mail", uid, gid)
        if self.tls:
            self._make_certificate()
        (self.root / "dovecot.conf").write_text(
            self._config(mail_user, mail_group, login_user, uid, gid)
        )
        if self.oauth2_tokeninfo_url:
            (self.root / "oauth2.conf").write_text(
                f"tokeninfo_url = {self.oauth2_tokeninfo_url}\n"
                "username_attribute = username\n"
                "active_attribute = active\n"
                "active_value = true\n"
            )

    @staticmethod
    def _users() -> tuple[str, str, str]:
        """Return the mail user and group and the login user.

        As root, Dovecot's own unprivileged users from the Debian package;
        otherwise everything runs as the current user.
        """
        # NOTE: only the root branch runs in CI; the other follows Dovecot's
        # documented way of running unprivileged and has not been tried.
        if os.geteuid() == 0:
            return "dovecot", "dovecot", "dovenull"
        user = pwd.getpwuid(os.geteuid()).pw_name
        return user, grp.getgrgid(os.getegid()).gr_name, user

    def _make_certificate(self) -> None:
        key = self.root / "key.pem"
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-keyout", str(key), "-out", str(self.certificate),
            ],
            check=True, capture_output=True,
        )
        key.chmod(0o644)

    def _config(
        self, mail_user: str, mail_group: str, login_user: str, uid: int, gid: int
    ) -> str:
        root = self.root
        if self.oauth2_tokeninfo_url:
            mechanisms = "xoauth2 oauthbearer"
            passdb = f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {root}/oauth2.conf\n}}\n"
        else:
            mechanisms = "plain login"
            passdb = f"passdb {{\n  driver = static\n  args = password={PASSWORD}\n}}\n"
        if self.tls:
            ssl = f"ssl = yes\nssl_cert = <{self.certificate}\nssl_key = <{root / 'key.pem'}\n"
        else:
            ssl = "ssl = no\n"
        capability = f"imap_capability = {self.capabilities}\n" if self.capabilities else ""
        return (
            f"base_dir = {root}/run\n"
            f"state_dir = {root}/state\n"
            f"instance_name = mailgate-test-{self.port}\n"
            "protocols = imap\n"
            "listen = 127.0.0.1\n"
            f"log_path = {root}/dovecot.log\n"
            f"{ssl}"
            "disable_plaintext_auth = no\n"
            f"auth_mechanisms = {mechanisms}\n"
            # Reply to a failed login at once; Dovecot's default delay is 2 seconds.
            "auth_failure_delay = 0\n"
            f"default_internal_user = {mail_user}\n"
            f"default_internal_group = {mail_group}\n"
            f"default_login_user = {login_user}\n"
            "first_valid_uid = 1\n"
            f"mail_location = maildir:{root}/mail/%u\n"
            # Test data: no fsync, which keeps 500 appends quick.
            "mail_fsync = never\n"
            f"{capability}"
            f"{passdb}"
            "userdb {\n  driver = static\n"
            f"  args = uid={uid} gid={gid} home={root}/mail/%u\n}}\n"
            "service imap-login {\n"
            f"  inet_listener imap {{\n    address = 127.0.0.1\n    port = {self.port}\n  }}\n"
            f"  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {self.tls_port}\n  }}\n"
            "  chroot =\n}\n"
            # No growing delay for an address after failed logins, so the
            # tests of refused logins do not slow the others down.
            "service anvil {\n  chroot =\n"
            "  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}\n"
        )

    # -- process ---------------------------------------------------------

    def start(self) -> Dovecot:
        log = (self.root / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited at start:\n{self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    if probe.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"dovecot did not start within {START_TIMEOUT_SECONDS}s:\n{self.log_text()}")

    def kill(self) -> None:
        """SIGKILL every process of the instance, as a crash would."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, signum: int) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=15)
        # Children that outlive the master still hold the port.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _group_alive(self.process.pid):
            time.sleep(0.05)
        self.process = None

    def log_text(self) -> str:
        texts = [path.read_text(errors="replace") for path in
                 (self.root / "dovecot.log", self.root / "stdout.log") if path.exists()]
        return "\n".join(texts)[-4000:]

    # -- mail --------------------------------------------------------------

    def client(self, user: str, password: str = PASSWORD) -> IMAPClient:
        client = IMAPClient("127.0.0.1", self.port, ssl=False, timeout=30)
        client.login(user, password)
        return client

    def append(
        self, user: str, folder: str, messages: list[bytes], flags: tuple[bytes, ...] = ()
    ) -> None:
        """Put ``messages`` into ``folder`` with IMAP APPEND, creating it if needed."""
        with self.client(user) as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            for start in range(0, len(messages), APPEND_CHUNK):
                chunk = messages[start:start + APPEND_CHUNK]
                client.multiappend(folder, [{"msg": raw, "flags": flags} for raw in chunk])

    def folder_flags(self, user: str, folder: str) -> dict[str, tuple[bytes, ...]]:
        """Return the flags of each mail in ``folder`` by Message-ID."""
        with self.client(user) as client:
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            if not uids:
                return {}
            response = client.fetch(uids, ["FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        result = {}
        for data in response.values():
            header = email.message_from_bytes(data[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"])
            result[header["Message-ID"].strip()] = tuple(data[b"FLAGS"])
        return result

    def count(self, user: str, folder: str) -> int:
        with self.client(user) as client:
            return int(client.select_folder(folder, readonly=True)[b"EXISTS"])

    def maildir(self, user: str, folder: str = "INBOX") -> Path:
        base = self.root / "mail" / user
        return base if folder == "INBOX" else base / f".{folder}"

    def maildir_mail(self, user: str, folder: str = "INBOX") -> dict[str, str]:
        """Read a Maildir folder from disk (it works while Dovecot is down);
        return the Maildir flags (``S`` for \\Seen) of each mail by Message-ID."""
        result = {}
        for sub in ("new", "cur"):
            directory = self.maildir(user, folder) / sub
            if not directory.is_dir():
                continue
            for path in directory.iterdir():
                with path.open("rb") as file:
                    header = email.message_from_binary_file(file)
                flags = path.name.partition(":2,")[2]
                result[str(header["Message-ID"]).strip()] = flags
        return result


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def make_root() -> Path:
    # Not under pytest's tmp_path: its directories are private to root, and
    # Dovecot's unprivileged processes must reach the Maildirs.
    return Path(tempfile.mkdtemp(prefix="mailgate-dovecot-"))


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    root = make_root()
    server = Dovecot(root, tls=True).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def dovecot_factory() -> Iterator[Callable[..., Dovecot]]:
    started: list[tuple[Dovecot, Path]] = []

    def start(**options: object) -> Dovecot:
        root = make_root()
        server = Dovecot(root, **options)  # type: ignore[arg-type]
        started.append((server, root))
        return server.start()

    yield start
    for server, root in started:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def imap_user() -> str:
    return f"support-{uuid.uuid4().hex[:10]}@example.org"
