"""The files in deploy/ pass their own tools' checks and match the code."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mailgate.settings import Settings, load_settings
from tests.conftest import REPO, service_missing

DEPLOY = REPO / "deploy"
UNITS = DEPLOY / "systemd"
INSTALLED_MAILGATE = "/opt/mailgate/venv/bin/mailgate"
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "RestrictSUIDSGID": "yes",
    "CapabilityBoundingSet": "",
    "SystemCallFilter": "@system-service",
    "User": "mailgate",
}


def read_unit(path: Path) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(path)
    return unit


def test_systemd_units_pass_verify(tmp_path: Path) -> None:
    if not shutil.which("systemd-analyze"):
        service_missing("systemd-analyze", "install the systemd package")
    # verify requires ExecStart to exist, so point it at this checkout's mailgate.
    mailgate = Path(sys.executable).with_name("mailgate")
    for path in UNITS.iterdir():
        text = path.read_text().replace(INSTALLED_MAILGATE, str(mailgate))
        (tmp_path / path.name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True, text=True, timeout=120,
    )
    # verify exits 0 on keys it cannot parse and only prints them.
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == ""


@pytest.mark.parametrize("role", ["smtp", "http", "worker", "imap"])
def test_role_unit_is_hardened(role: str) -> None:
    unit = read_unit(UNITS / f"mailgate-{role}.service")
    service = unit["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == value, key
    assert "mailgate-db-upgrade.service" in unit["Unit"]["Requires"]
    expected = "worker" if role == "worker" else f"serve --role {role}"
    assert service["ExecStart"].startswith(f"{INSTALLED_MAILGATE} {expected} ")
    # systemd must wait longer than the default grace time before SIGKILL.
    assert int(service["TimeoutStopSec"]) > Settings().shutdown_grace_seconds


def test_target_wants_every_working_role() -> None:
    wants = read_unit(UNITS / "mailgate.target")["Unit"]["Wants"].split()
    assert wants == ["mailgate-smtp.service", "mailgate-http.service", "mailgate-worker.service"]


def postconf(directory: Path, *args: str) -> subprocess.CompletedProcess:
    if not shutil.which("postconf"):
        service_missing("postconf", "install the postfix package")
    return subprocess.run(
        ["postconf", "-c", str(directory), *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("example", ["smtp-handoff", "pipe"])
def test_postfix_example_passes_postconf(example: str, tmp_path: Path) -> None:
    for path in (DEPLOY / "postfix" / example).iterdir():
        shutil.copy(path, tmp_path / path.name)
    if not (tmp_path / "master.cf").exists():
        (tmp_path / "master.cf").write_text("")
    result = postconf(tmp_path, "-n")
    # postconf warns on stderr about unknown parameters and bad syntax.
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    settings = dict(line.split(" = ", 1) for line in result.stdout.splitlines())
    assert settings["relay_domains"] == "support.example.org"
    assert settings["message_size_limit"] == str(Settings().max_message_bytes)
    transport = (tmp_path / "transport").read_text().splitlines()
    [route] = [line.split() for line in transport if line and not line.startswith("#")]
    assert route[0] == "support.example.org"
    assert route[1] == ("smtp:[127.0.0.1]:2525" if example == "smtp-handoff" else "mailgate:")


def test_postfix_pipe_runs_ingest(tmp_path: Path) -> None:
    for path in (DEPLOY / "postfix" / "pipe").iterdir():
        shutil.copy(path, tmp_path / path.name)
    result = postconf(tmp_path, "-M", "mailgate/unix")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    fields = result.stdout.split()
    assert fields[:8] == ["mailgate", "unix", "-", "n", "n", "-", "10", "pipe"]
    command = result.stdout.split("argv=", 1)[1].split()
    assert command[-4:] == [
        INSTALLED_MAILGATE, "ingest", "--sender=${sender}", "--recipient=${recipient}",
    ]


def example_settings() -> tuple[dict, set[str]]:
    """Return the example TOML's values and the names it only mentions in
    comments (settings without a default)."""
    path = DEPLOY / "mailgate.example.toml"
    values = tomllib.loads(path.read_text())
    commented = set(re.findall(r"^# (\w+) = ", path.read_text(), flags=re.MULTILINE))
    return values, commented


def test_example_config_lists_every_setting() -> None:
    values, commented = example_settings()
    fields = Settings.model_fields
    assert set(values) | commented == set(fields)
    assert set(values) & commented == set()
    for name, value in values.items():
        default = fields[name].get_default(call_default_factory=True)
        assert type(default)(value) == default, name
    for name in commented:
        assert fields[name].default is None, name


def test_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILGATE_CONFIG", str(DEPLOY / "mailgate.example.toml"))
    monkeypatch.delenv("MAILGATE_HOME")
    settings = load_settings()
    assert settings == Settings()


def test_environment_example_names_settings() -> None:
    lines = (DEPLOY / "mailgate.env.example").read_text().splitlines()
    names = [line.split("=", 1)[0] for line in lines if line and not line.startswith("#")]
    assert names
    for name in names:
        assert name.startswith("MAILGATE_")
        setting = name.removeprefix("MAILGATE_").lower()
        assert setting == "config" or setting in Settings.model_fields, name
